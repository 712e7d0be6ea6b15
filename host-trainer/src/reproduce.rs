//! `ldl reproduce`: the paper's MNIST table (10-way, full test set), every method, beside
//! the published numbers; a markdown report, CSVs and plots.

use crate::data::{DataArgs, DatasetKind, Loaded};
use crate::experiment::{ci_text, mean_ci95, Cell, Protocol};
use crate::methods::{MethodSpec, NamedMethod};
use crate::paper::{paper_at, PAPER_SHOTS};
use crate::progress::bar;
use crate::trials::run_cell;
use anyhow::{Context, Result};
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `ldl reproduce`.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// A first look: 1, 5 and 10 shots, 3 trials (BD 2), in about a minute.
    #[arg(long)]
    pub quick: bool,
    /// Trials per cell (default 100, BD half of it, as the authors).
    #[arg(long)]
    pub trials: Option<usize>,
    /// Shots (default 1,5,10,50,100,200).
    #[arg(long, value_delimiter = ',')]
    pub shots: Option<Vec<usize>>,
    /// Methods (default: naive, logreg, mlp, o2md, bd, closed, device-align, 1nn, ncm). Reports name
    /// each as given; summary.csv's `settings` column holds what each cell ran.
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<String>>,
    /// Trials of the open-set section (8 known digits / 2 unknown, 5 shots, the device mode,
    /// its ROC curves in `roc_openset.svg`; `ldl openset` runs more). Default: the table's
    /// trials; 0 leaves the section out.
    #[arg(long)]
    pub openset_trials: Option<usize>,
    /// Trials at 10 shots that also score every epoch (accuracy-against-epoch figure).
    #[arg(long, default_value_t = 10)]
    pub epoch_trials: usize,
    /// Seed (the authors used 2019).
    #[arg(long, default_value_t = 2019)]
    pub seed: u64,
    /// Run O2MD and BD with the authors' default settings at every shot count instead of the
    /// grid point chosen on the validation split ([`crate::methods::validated`]).
    #[arg(long)]
    pub paper_defaults: bool,
    /// Output folder.
    #[arg(long, default_value = "out/reproduce")]
    pub out: PathBuf,
    /// MNIST folder (default: the copy in data/mnist).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub jobs: crate::trials::JobsArg,
}

/// Runs it.
pub fn run(a: ReproduceArgs) -> Result<()> {
    let t0 = Instant::now();
    let shots = a
        .shots
        .clone()
        .unwrap_or_else(|| if a.quick { vec![1, 5, 10] } else { PAPER_SHOTS.to_vec() });
    let trials = a.trials.unwrap_or(if a.quick { 3 } else { 100 });
    if trials == 0 {
        anyhow::bail!("--trials must be at least 1");
    }
    let names = a.methods.clone().unwrap_or_else(|| {
        ["naive", "logreg", "mlp", "o2md", "bd", "closed", "device-align", "1nn", "ncm"]
            .map(String::from)
            .to_vec()
    });
    let methods: Vec<NamedMethod> = names.iter().map(|m| NamedMethod::parse(m)).collect::<Result<_>>()?;
    let data = DataArgs {
        dataset: DatasetKind::Mnist,
        data: a.data.clone(),
        test: None,
        rotations: false,
        validation: false,
        max_input_bytes: crate::data::DEFAULT_MAX_INPUT_BYTES,
        series: None,
    };
    eprintln!("loading MNIST ...");
    let loaded: Loaded = data.load()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;

    let mut cells = Vec::new();
    let mut epochs: Vec<(String, Vec<Vec<f64>>)> = Vec::new();
    for NamedMethod { name, spec: m } in &methods {
        let is_bd = matches!(m, MethodSpec::Gradient(c) if c.method == ldl_core::methods::GradientMethod::Bd);
        let n = if is_bd { trials.div_ceil(2) } else { trials };
        for &s in &shots {
            // The faithful methods and the device mode at their validated setting for this
            // many shots (`--paper-defaults`: the faithful ones at the authors'); the row keeps
            // the method's name, the cell's `settings` say which setting ran.
            let tuned = if a.paper_defaults && matches!(m, MethodSpec::Gradient(_)) {
                m.clone()
            } else {
                crate::methods::validated(m, s)
            };
            let m = &tuned;
            let p = Protocol {
                ways: 10,
                shots: s,
                trials: n,
                queries_per_class: None,
                seed: a.seed,
            };
            let pb = bar(n as u64, format!("{name} {s}-shot"));
            // The first `epoch_trials` trials at 10 shots also score every epoch.
            let per_epoch = s == 10 && m.epochs() > 0 && a.epoch_trials > 0;
            let tc = Instant::now();
            let jobs = a.jobs.jobs;
            let res = if per_epoch {
                let k = a.epoch_trials.min(n);
                let mut first = run_cell(&loaded, m, &Protocol { trials: k, ..p }, true, jobs, &pb)?;
                let rest = crate::trials::run_trials(&loaded, m, &p, k..n, false, jobs, &pb)?;
                epochs.push((name.clone(), first.iter().map(|t| t.epoch_accuracy.clone()).collect()));
                first.extend(rest);
                first
            } else {
                run_cell(&loaded, m, &p, false, jobs, &pb)?
            };
            let wall_secs = tc.elapsed().as_secs_f64();
            pb.finish_and_clear();
            let cell = Cell {
                method: name.clone(),
                settings: m.name(),
                shots: s,
                trials: res,
                wall_secs,
            };
            let (mean, ci) = mean_ci95(&cell.accs());
            let ci = ci_text(ci, 4);
            let (tt, te) = cell.mean_secs();
            let pub_ = paper_at(name, s).map_or("-".to_string(), |v| format!("{v:.3}"));
            eprintln!(
                "{name:>20} {s:>4}-shot: {mean:.4} ± {ci} (paper {pub_}), train {tt:.3} s + eval {te:.3} s per trial, {wall_secs:.1} s for the cell"
            );
            cells.push(cell);
        }
    }
    let open = match a.openset_trials.unwrap_or(trials) {
        0 => None,
        n => Some(open_set(&loaded, n, a.seed, a.jobs.jobs, &a.out)?),
    };
    let elapsed = t0.elapsed().as_secs_f64();
    write_outputs(
        &a.out,
        &cells,
        &epochs,
        &shots,
        trials,
        a.seed,
        a.quick,
        elapsed,
        a.jobs.jobs,
        open.as_deref(),
    )?;
    println!("{}", std::fs::read_to_string(a.out.join("report.md"))?);
    eprintln!(
        "wrote {}/report.md, summary.csv, trials.csv, epochs.csv, accuracy_vs_shots.svg, accuracy_vs_epoch.svg{}",
        a.out.display(),
        if a.openset_trials == Some(0) { "" } else { ", roc_openset.svg" }
    );
    Ok(())
}

/// The open-set section of the report: MNIST's test split, 8 known digits and 2 unknown per
/// trial, 5 shots, the device mode, scored by the closest distance (`best`) and by the score
/// chosen on the validation split (`contrast`, docs/novelty.md); writes `roc_openset.svg`
/// into `out` and returns the section's markdown.
fn open_set(loaded: &Loaded, trials: usize, seed: u64, jobs: usize, out: &Path) -> Result<String> {
    use crate::openset::{self, Novelty, Plan};
    let plan = Plan {
        known: 8,
        unknown: 2,
        shots: 5,
        queries: None,
        trials,
        members: 1,
        scores: vec![Novelty::parse("best")?, Novelty::parse("contrast")?],
        fpr: 0.05,
        seed,
    };
    plan.check(loaded.train.num_classes())?;
    let methods = [NamedMethod::parse("device")?];
    let results = openset::evaluate(loaded, &plan, &methods, jobs)?;
    let title = format!("MNIST open set: 8 known / 2 unknown, 5 shots, {trials} trials (test split)");
    openset::svg::roc(&out.join("roc_openset.svg"), &title, &results, plan.fpr)?;
    let mut md = String::new();
    writeln!(
        md,
        "\n## Saying \"unknown\": open set\n\nMNIST test split, each trial 8 known digits (5 shots each) and 2 held out as unknown, {trials} trials, the device mode. A score ranks how new a sample is; AUROC over every known and unknown query, and the share of unknown queries caught when 5% of known ones are rejected. `contrast` (closest / mean distance) was chosen on the validation split (docs/novelty.md). `ldl openset` runs more.\n"
    )?;
    writeln!(
        md,
        "| method | score | AUROC | TPR at 5% FPR | closed-set accuracy |\n|---|---|---:|---:|---:|"
    )?;
    for r in &results {
        for sc in &r.scores {
            writeln!(
                md,
                "| {} | {} | {:.3} ± {} | {:.3} ± {} | {:.3} ± {} |",
                r.method,
                sc.score,
                sc.auroc.mean,
                ci_text(sc.auroc.ci95, 3),
                sc.tpr.mean,
                ci_text(sc.tpr.ci95, 3),
                r.accuracy.mean,
                ci_text(r.accuracy.ci95, 3)
            )?;
        }
    }
    writeln!(md, "\n![ROC curves of the open-set section](roc_openset.svg)")?;
    Ok(md)
}

/// Writes `summary.csv`, `trials.csv`, `epochs.csv`, `report.md` (ending with `open_set`, the
/// open-set section, when there is one) and the two plots into `out`.
#[allow(clippy::too_many_arguments)]
fn write_outputs(
    out: &Path,
    cells: &[Cell],
    epochs: &[(String, Vec<Vec<f64>>)],
    shots: &[usize],
    trials: usize,
    seed: u64,
    quick: bool,
    elapsed: f64,
    jobs: usize,
    open_set: Option<&str>,
) -> Result<()> {
    let mut methods: Vec<String> = Vec::new();
    for c in cells {
        if !methods.contains(&c.method) {
            methods.push(c.method.clone());
        }
    }
    let find = |m: &str, s: usize| cells.iter().find(|c| c.method == m && c.shots == s);

    // summary.csv and trials.csv
    let mut summary = String::from("method,shots,trials,mean,ci95,paper,train_secs,eval_secs,cell_secs,settings\n");
    let mut all = String::from("method,shots,trial,accuracy,train_secs,eval_secs\n");
    for c in cells {
        let (mean, ci) = mean_ci95(&c.accs());
        let (tt, te) = c.mean_secs();
        let p = paper_at(&c.method, c.shots).map_or(String::new(), |v| v.to_string());
        // No interval (one trial): an empty field, as for `paper`.
        let ci = if ci.is_finite() { format!("{ci:.5}") } else { String::new() };
        writeln!(
            summary,
            "{},{},{},{mean:.5},{ci},{p},{tt:.4},{te:.4},{:.2},{}",
            c.method,
            c.shots,
            c.trials.len(),
            c.wall_secs,
            c.settings
        )?;
        for t in &c.trials {
            writeln!(
                all,
                "{},{},{},{:.5},{:.4},{:.4}",
                c.method, c.shots, t.trial, t.accuracy, t.train_secs, t.eval_secs
            )?;
        }
    }
    std::fs::write(out.join("summary.csv"), summary)?;
    std::fs::write(out.join("trials.csv"), all)?;
    let mut ep = String::from("method,trial,epoch,accuracy\n");
    for (m, runs) in epochs {
        for (t, accs) in runs.iter().enumerate() {
            for (e, a) in accs.iter().enumerate() {
                writeln!(ep, "{m},{t},{},{a:.5}", e + 1)?;
            }
        }
    }
    std::fs::write(out.join("epochs.csv"), ep)?;

    // report.md
    let mut md = String::new();
    writeln!(md, "# LDL on MNIST: the paper's table, reproduced\n")?;
    writeln!(
        md,
        "10-way, full 10,000-image test set, {trials} trials per cell (BD {}), seed {seed}{}. Each cell: mean accuracy ± half-width of the 95% confidence interval; *paper* is the published figure (the best over a grid scored on the test set, i.e. optimistic). Run time {:.0} s.\n",
        trials.div_ceil(2),
        if quick { ", quick mode" } else { "" },
        elapsed
    )?;
    table(&mut md, &methods, shots, |m, s| {
        find(m, s).map(|c| {
            let (mean, ci) = mean_ci95(&c.accs());
            let p = paper_at(m, s).map_or(String::new(), |v| format!(" (paper {v:.3})"));
            format!("{mean:.3} ± {}{p}", ci_text(ci, 3))
        })
    })?;
    let at_once = match jobs {
        1 => "one trial at a time, each on every core",
        _ => "several trials at once, so per trial on a shared machine; `--jobs 1` gives one trial's latency",
    };
    writeln!(md, "\nSeconds per trial (train + evaluate on 10,000 images; {at_once}):\n")?;
    table(&mut md, &methods, shots, |m, s| {
        find(m, s).map(|c| {
            let (tt, te) = c.mean_secs();
            format!("{tt:.2} + {te:.2}")
        })
    })?;
    writeln!(md, "\nWall-clock seconds per cell (all its trials):\n")?;
    table(&mut md, &methods, shots, |m, s| find(m, s).map(|c| format!("{:.1}", c.wall_secs)))?;
    writeln!(md, "\nMethods: `o2md` (k = 2000), `bd` (k = 2000) and `naive` use the authors' settings (for each number of shots, O2MD and BD use the point of the authors' grid chosen on a validation split of the training set: more epochs at 5-10 shots, lr 1e-4 for O2MD at 10 and 100-200 and BD at 1-200 shots, BD's target at 1e-3 at 1 shot and its predictors at 5e-5 at 10, see `ldl_host::methods::validated`; `--paper-defaults` turns that off); `closed` is the exact closed-form fit of O2MD (k = 256, no epochs); `device-align` is the mode for devices (the closed form of the naive form on each class's images and their shifts by up to 2 pixels, ridge 100 at 1-10 shots and 40 x shots at 50-200; below 3 shots each image also adds warped copies, rotated by ±15° and sheared by ±0.25, in the image slots a 5-image board enrollment leaves free; each query is also seen sheared by ±0.25, a class's distance the least of the three views: all chosen on a validation split of the training set, docs/invariances.md; `device` is the same without copies or alignment); `logreg`, `mlp` (one hidden layer of 1024), `1nn`, `ncm` (nearest class mean) are baselines. The settings each cell ran (e.g. `o2md-k2000-lr1e-4-e10`, `closed-id-shift2`) are in the `settings` column of `summary.csv`.\n")?;
    writeln!(
        md,
        "Plots: `accuracy_vs_shots.svg`, `accuracy_vs_epoch.svg`. Data: `summary.csv`, `trials.csv`, `epochs.csv`."
    )?;
    md.push_str(open_set.unwrap_or(""));
    std::fs::write(out.join("report.md"), md)?;

    crate::plot::accuracy_vs_shots(&out.join("accuracy_vs_shots.svg"), cells, &methods)?;
    crate::plot::accuracy_vs_epoch(&out.join("accuracy_vs_epoch.svg"), epochs)?;
    Ok(())
}

/// A markdown table: one row per method, one column per shot count, `cell` giving the text
/// (or "-" when the cell was not run).
fn table(md: &mut String, methods: &[String], shots: &[usize], cell: impl Fn(&str, usize) -> Option<String>) -> std::fmt::Result {
    write!(md, "| method |")?;
    for s in shots {
        write!(md, " {s} shot |")?;
    }
    writeln!(md)?;
    write!(md, "|---|")?;
    for _ in shots {
        write!(md, "---:|")?;
    }
    writeln!(md)?;
    for m in methods {
        write!(md, "| {m} |")?;
        for &s in shots {
            write!(md, " {} |", cell(m, s).unwrap_or_else(|| "-".into()))?;
        }
        writeln!(md)?;
    }
    Ok(())
}
