//! `ldl fewshot`: episodic few-shot evaluation of one or more methods (mean accuracy, 95%
//! interval), printed as a table and optionally written as JSON.

use crate::data::{default_omniglot, load_omniglot, load_omniglot_drawers, DataArgs, DatasetKind, Loaded, OmniglotOptions};
use crate::experiment::{self, Protocol};
use crate::methods::NamedMethod;
use crate::progress::bar;
use crate::trials::{run_cell, run_drawn, JobsArg};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

/// `ldl fewshot`'s arguments.
#[derive(Debug, Args)]
pub struct FewshotArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Methods: o2md[:K[:LR:EPOCHS]], bd[...[:TARGET_LR]], naive[::LR:EPOCHS], closed[:K],
    /// device[:K[:SHIFT[:FILL[:ALIGN]]]], mcu[:RANK[:SHIFT[:FILL[:ALIGN]]]] (what the boards
    /// compute, bit for bit), device-warp, mcu-warp (FILL 5: enrolled images add rotated and
    /// sheared copies while a class stays within 5 images), device-align, mcu-align (the
    /// same and ALIGN 1: each query is also seen slanted both ways, each class at its
    /// closest), logreg, mlp, 1nn, ncm. The table and the JSON
    /// name each as given, with the settings it resolves to beside it (`device`:
    /// closed-id-shift2).
    #[arg(long, value_delimiter = ',', default_value = "device")]
    methods: Vec<String>,
    /// Shots per class (comma-separated list; default 1,5,10). Not with --query: the support
    /// is then every drawing of --data.
    #[arg(long, value_delimiter = ',')]
    shots: Vec<usize>,
    /// Classes per episode (default: every class of the data set; --within-alphabet: 20).
    #[arg(long)]
    ways: Option<usize>,
    /// Episodes per (method, shots) (default 100; with --query 1: its one episode is fixed,
    /// so its trials differ only where a method draws at random: o2md, bd, naive, closed:K,
    /// logreg and mlp; device, mcu, 1nn and ncm give the same answer every trial).
    #[arg(long)]
    trials: Option<usize>,
    /// Queries per class (default: the whole test split; Omniglot: 1). Not with --query.
    #[arg(long)]
    queries: Option<usize>,
    /// Omniglot: Lake's one-shot episodes: each draws one alphabet with at least --ways
    /// characters, --ways of its characters, and per character --shots drawings as support and
    /// --queries drawings by other drawers (the DD of NNNN_DD.png) as queries.
    #[arg(long)]
    within_alphabet: bool,
    /// Omniglot: a fixed split: --data holds the support (every drawing of it), this folder
    /// or zip the queries; classes are matched by their alphabet/character path.
    #[arg(long, value_name = "PATH")]
    query: Option<PathBuf>,
    /// Seed of everything (the authors used 2019).
    #[arg(long, default_value_t = 2019)]
    seed: u64,
    /// Ensemble members per LDL method (bootstrap resamples of each class's support, each
    /// member its own seed; `ldl_core::methods::ensemble`), their distances averaged; the
    /// settings column shows `-mN`. 1 = plain models. Not with the baselines.
    #[arg(long, default_value_t = 1)]
    members: usize,
    /// Also score the queries after every epoch (gradient methods; not with --members).
    #[arg(long)]
    per_epoch: bool,
    /// Write every trial's result as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The most bytes of weights and optimiser state one trial may allocate (e.g. 16G); a
    /// method that would take more is refused before training.
    #[arg(long, value_name = "SIZE", value_parser = crate::units::parse_size, default_value = "4G")]
    max_weight_bytes: u64,
    #[command(flatten)]
    jobs: JobsArg,
}

/// How a run's episodes come about.
enum Draw {
    /// [`experiment::episode_after`]: classes, support and queries drawn per trial.
    Drawn,
    /// [`experiment::within_alphabet_episode`], with the drawer of each training row.
    WithinAlphabet(Vec<String>),
    /// [`experiment::fixed_episode`]: the same episode every trial.
    Fixed(experiment::Episode),
}

/// Loads the data and says how its episodes are drawn.
fn load(a: &FewshotArgs) -> Result<(Loaded, Draw)> {
    let omniglot = || {
        if a.data.dataset != DatasetKind::Omniglot {
            bail!(
                "{} is for --dataset omniglot (its alphabet/character folders), not {}",
                if a.within_alphabet { "--within-alphabet" } else { "--query" },
                a.data.dataset.name()
            );
        }
        Ok((
            a.data.data.clone().unwrap_or_else(default_omniglot),
            OmniglotOptions {
                rotations: a.data.rotations,
                ..Default::default()
            },
        ))
    };
    if a.within_alphabet {
        let (path, opts) = omniglot()?;
        if a.query.is_some() {
            bail!("--within-alphabet draws its episodes, --query gives a fixed one: choose one");
        }
        if a.data.rotations {
            bail!("--within-alphabet takes the characters as drawn: leave out --rotations");
        }
        let (train, drawers) = load_omniglot_drawers(&path, &opts)?;
        return Ok((Loaded { train, test: None }, Draw::WithinAlphabet(drawers)));
    }
    if let Some(q) = &a.query {
        let (path, opts) = omniglot()?;
        if !a.shots.is_empty() {
            bail!("--query gives a fixed split: the support is every drawing of --data; leave out --shots");
        }
        if a.queries.is_some() {
            bail!("--query gives a fixed split: every drawing of it is a query; leave out --queries");
        }
        let train = load_omniglot(&path, &opts)?;
        let queries = load_omniglot(q, &opts)?;
        let ep =
            experiment::fixed_episode(&train, &queries).with_context(|| format!("support {}, queries {}", path.display(), q.display()))?;
        if let Some(w) = a.ways.filter(|&w| w != train.num_classes()) {
            bail!("--query gives a fixed split of {} classes, not --ways {w}", train.num_classes());
        }
        return Ok((Loaded { train, test: None }, Draw::Fixed(ep)));
    }
    Ok((a.data.load()?, Draw::Drawn))
}

/// Runs `ldl fewshot`.
pub fn run(a: FewshotArgs) -> Result<()> {
    let trials = a.trials.unwrap_or(if a.query.is_some() { 1 } else { 100 });
    if trials == 0 {
        bail!("--trials must be at least 1");
    }
    let (loaded, draw) = load(&a)?;
    let mut methods: Vec<NamedMethod> = a.methods.iter().map(|m| NamedMethod::parse(m)).collect::<Result<_>>()?;
    if let Some(note) = crate::methods::drop_shifts_without_images(&mut methods, loaded.train.image, a.data.dataset.name()) {
        eprintln!("{note}");
    }
    if a.members > 1 && a.per_epoch {
        bail!("--per-epoch scores one model epoch by epoch: not with --members");
    }
    for m in &mut methods {
        m.spec = m
            .spec
            .clone()
            .ensemble(a.members)
            .with_context(|| format!("--methods {}", m.name))?;
    }
    let default_ways = if a.within_alphabet { 20 } else { loaded.train.num_classes() };
    let ways = a.ways.unwrap_or(default_ways);
    for m in &methods {
        crate::methods::check_weight_bytes(&m.spec, loaded.train.dim, ways, a.max_weight_bytes)?;
    }
    let queries = a.queries.or(if loaded.test.is_none() { Some(1) } else { None });
    let shots = match &draw {
        // The fixed support's shots: its fewest drawings of a class.
        Draw::Fixed(ep) => vec![ep.support.iter().map(|s| s.len() / loaded.train.dim.max(1)).min().unwrap_or(0)],
        _ if a.shots.is_empty() => vec![1, 5, 10],
        _ => a.shots.clone(),
    };
    if let Draw::Fixed(ep) = &draw {
        println!(
            "fixed split: {} classes, {} support drawings, {} queries; {trials} trial(s)",
            ep.classes.len(),
            loaded.train.len(),
            ep.answers.len()
        );
    }
    let mut all = Vec::new();
    if a.jobs.jobs != 1 {
        println!("(several trials at once: train and eval seconds are per trial on a shared machine; --jobs 1 gives one trial's latency)");
    }
    println!(
        "{:<22} {:>5} {:>10} {:>9} {:>10} {:>10}  settings",
        "method", "shots", "accuracy", "±95%", "train s", "eval s"
    );
    for m in &methods {
        for &shots in &shots {
            let p = Protocol {
                ways,
                shots,
                trials,
                queries_per_class: queries,
                seed: a.seed,
            };
            let bar = bar(trials as u64, format!("{} {shots}-shot", m.name));
            let (d, image) = (loaded.train.dim, loaded.train.image);
            let res = match &draw {
                Draw::Drawn => run_cell(&loaded, &m.spec, &p, a.per_epoch, a.jobs.jobs, &bar)?,
                Draw::WithinAlphabet(drawers) => run_drawn(&m.spec, d, image, &p, a.per_epoch, a.jobs.jobs, &bar, |t| {
                    experiment::within_alphabet_episode(&loaded.train, drawers, &p, t)
                })?,
                Draw::Fixed(ep) => run_drawn(&m.spec, d, image, &p, a.per_epoch, a.jobs.jobs, &bar, |_| Ok(ep))?,
            };
            bar.finish_and_clear();
            let accs: Vec<f64> = res.iter().map(|r| r.accuracy).collect();
            let (mean, ci) = experiment::mean_ci95(&accs);
            let tt = res.iter().map(|r| r.train_secs).sum::<f64>() / res.len() as f64;
            let te = res.iter().map(|r| r.eval_secs).sum::<f64>() / res.len() as f64;
            let ci_s = experiment::ci_text(ci, 4);
            let settings = m.settings();
            println!(
                "{:<22} {:>5} {:>10.4} {:>9} {:>10.3} {:>10.3}  {settings}",
                m.name, shots, mean, ci_s, tt, te
            );
            // `jobs` says how to read the trials' seconds: latencies at 1, shared-machine times
            // otherwise.
            all.push(serde_json::json!({"method": m.name, "settings": settings, "shots": shots, "ways": ways, "mean": mean, "ci95": ci, "jobs": a.jobs.jobs, "trials": res}));
        }
    }
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_string_pretty(&all)?).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
