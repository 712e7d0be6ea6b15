//! Command-line interface: argument parsing (clap) and the dispatch to each command.

use crate::data::{self, Dataset};
use crate::experiment::{self, MethodSpec, NamedMethod, Protocol, TrialResult};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// Linear Distillation Learning on the host: data sets, the paper's experiments, models
/// for devices.
#[derive(Debug, Parser)]
#[command(name = "ldl", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Episodic few-shot evaluation of one or more methods (mean accuracy, 95% CI).
    Fewshot(FewshotArgs),
    /// Runs the paper's MNIST table (every method, 1..200 shots) beside the published
    /// numbers; writes a markdown report, CSVs and plots.
    Reproduce(crate::reproduce::ReproduceArgs),
    /// Open-set episodes: fits known classes, holds others out as unknown, and compares
    /// novelty scores by AUROC and the unknowns caught at 5% false rejection (ROC as SVG).
    Openset(crate::openset::OpensetArgs),
    /// Fits a model on chosen classes of a data set and writes it as a model file for a
    /// device (preprocessing, fit options and room for enrollment recorded in it).
    Train(crate::models::train::TrainArgs),
    /// Prints a model file's header, dimensions, labels, size, CRC and per-class form, and
    /// checks it against a board's flash and RAM (exit code 2 when it does not fit).
    Inspect(crate::models::inspect::InspectArgs),
    /// Scores a model file on a data set's test split (Omniglot: every drawing of --data):
    /// accuracy, per class, confusion.
    Eval(crate::models::eval::EvalArgs),
    /// Classifies given inputs (CSV rows, MNIST test images, PNG files) with a model file.
    Predict(crate::models::predict::PredictArgs),
    /// Reruns the validation sweep that fixed the device mode's hyper-parameters (MNIST
    /// train images only: supports from 0..50000, queries 50000..60000).
    Tune(crate::tune::TuneArgs),
    /// Writes a model file into a board's MODEL region with a debug probe (probe-rs),
    /// after checking offline that it is valid and fits; --dry-run only checks.
    Flash(crate::flash::FlashArgs),
    /// Talks to a device over a serial port (or QEMU's UART on TCP): info, classify,
    /// enroll, list, forget.
    Device(crate::device::cli::DeviceArgs),
    /// The whole story on a device (QEMU, or a real board with --chip/--port): train digits
    /// 0-7 on the host, classify on the device, enroll 8 and 9 there from five images each,
    /// classify again, reset, and show the new classes are kept.
    Demo(crate::demo::DemoArgs),
}

/// Which data set.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DatasetKind {
    /// MNIST from IDX files (train / t10k).
    Mnist,
    /// Omniglot from a zip or folder of alphabet/character/*.png (one set: support and
    /// queries are disjoint drawings of the same characters).
    Omniglot,
    /// A CSV of `label,features...` (give --train and --test).
    Csv,
}

/// Where the data comes from.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// Data set kind.
    #[arg(long, value_enum, default_value = "mnist")]
    pub dataset: DatasetKind,
    /// MNIST folder, Omniglot zip/folder, or the training CSV.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Test CSV (for --dataset csv).
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Omniglot: add rotations by 90, 180, 270 degrees as new classes.
    #[arg(long)]
    pub rotations: bool,
    /// MNIST: choose hyper-parameters without the test split: supports from training
    /// images 0..50000, queries from 50000..60000 (the split `ldl tune` uses).
    #[arg(long)]
    pub validation: bool,
    /// MNIST: the most bytes an IDX file may hold after decompression (e.g. 4G); a file
    /// whose header declares more is refused before it is read or inflated.
    #[arg(long, value_name = "SIZE", value_parser = crate::models::parse_size, default_value = "1G")]
    pub max_input_bytes: u64,
}

/// The Omniglot set used without --data.
pub fn default_omniglot() -> PathBuf {
    crate::repo_root().join("data/omniglot/images_background_small1.zip")
}

/// Loaded data: training split, optional test split.
pub struct Loaded {
    /// Support pool.
    pub train: Dataset,
    /// Query pool (`None`: queries come from `train`).
    pub test: Option<Dataset>,
}

impl DataArgs {
    /// Loads the data set.
    pub fn load(&self) -> Result<Loaded> {
        let root = crate::repo_root();
        let limits = data::Limits {
            input_bytes: self.max_input_bytes,
        };
        Ok(match self.dataset {
            DatasetKind::Mnist if self.validation => {
                let dir = self.data.clone().unwrap_or_else(|| root.join("data/mnist"));
                let all = data::load_mnist_with(&dir, data::Split::Train, &limits)?;
                let split = crate::tune::VALIDATION_START;
                Loaded {
                    train: all.subset(&(0..split).collect::<Vec<_>>()),
                    test: Some(all.subset(&(split..all.len()).collect::<Vec<_>>())),
                }
            }
            DatasetKind::Mnist => {
                let dir = self.data.clone().unwrap_or_else(|| root.join("data/mnist"));
                Loaded {
                    train: data::load_mnist_with(&dir, data::Split::Train, &limits)?,
                    test: Some(data::load_mnist_with(&dir, data::Split::Test, &limits)?),
                }
            }
            DatasetKind::Omniglot => {
                let path = self.data.clone().unwrap_or_else(default_omniglot);
                let opts = data::OmniglotOptions {
                    rotations: self.rotations,
                    ..Default::default()
                };
                Loaded {
                    train: data::load_omniglot(&path, &opts)?,
                    test: None,
                }
            }
            DatasetKind::Csv => {
                let (Some(train), Some(test)) = (&self.data, &self.test) else {
                    bail!("--dataset csv needs --data TRAIN.csv and --test TEST.csv")
                };
                let (a, b) = data::load_csv_split(train, test, &Default::default())?;
                Loaded { train: a, test: Some(b) }
            }
        })
    }
}

#[derive(Debug, Args)]
struct FewshotArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Methods: o2md[:K[:LR:EPOCHS]], bd[...[:TARGET_LR]], naive[::LR:EPOCHS], closed[:K],
    /// device[:K[:SHIFT]], mcu[:RANK[:SHIFT]] (what the boards compute, bit for bit),
    /// logreg, mlp, 1nn, ncm. The table and the JSON name each as given, with the settings it
    /// resolves to beside it (`device`: closed-id-shift2).
    #[arg(long, value_delimiter = ',', default_value = "device")]
    methods: Vec<String>,
    /// Shots per class (comma-separated list).
    #[arg(long, value_delimiter = ',', default_value = "1,5,10")]
    shots: Vec<usize>,
    /// Classes per episode (default: every class of the data set).
    #[arg(long)]
    ways: Option<usize>,
    /// Episodes per (method, shots).
    #[arg(long, default_value_t = 100)]
    trials: usize,
    /// Queries per class (default: the whole test split; Omniglot: 1).
    #[arg(long)]
    queries: Option<usize>,
    /// Seed of everything (the authors used 2019).
    #[arg(long, default_value_t = 2019)]
    seed: u64,
    /// Also score the queries after every epoch (gradient methods).
    #[arg(long)]
    per_epoch: bool,
    /// Write every trial's result as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The most bytes of weights and optimiser state one trial may allocate (e.g. 16G); a
    /// method that would take more is refused before training.
    #[arg(long, value_name = "SIZE", value_parser = crate::models::parse_size, default_value = "4G")]
    max_weight_bytes: u64,
    #[command(flatten)]
    jobs: JobsArg,
}

/// How many trials run at once.
#[derive(Debug, Clone, Copy, Args)]
pub struct JobsArg {
    /// Trials run at once: 0 = one per core (each mostly on its own core: the most trials per
    /// hour, and the same results), 1 = one after another, each on every core (its train and
    /// eval seconds are then one trial's latency, comparable with `cargo bench`).
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
}

/// Runs `trials` episodes of one method with a progress bar.
pub fn run_cell(
    loaded: &Loaded,
    method: &MethodSpec,
    protocol: &Protocol,
    per_epoch: bool,
    jobs: usize,
    bar: &ProgressBar,
) -> Result<Vec<TrialResult>> {
    run_trials(loaded, method, protocol, 0..protocol.trials, per_epoch, jobs, bar)
}

/// Trials `range` of a cell, `jobs` at a time ([`JobsArg`]), in trial order: the same
/// episodes, and results, as in a run of all of them one after another.
///
/// A trial's parallel parts (classes, rows of weights, blocks of test samples) are rayon
/// tasks too: when every core has a trial of its own they stay on its core, and a core that
/// runs out of trials helps the others. Measured on 2 cores (`ldl fewshot --methods
/// o2md,mlp,device --shots 10,200 --trials 4`, `--jobs 0` against `--jobs 1`): two trials at
/// once give 2.1x the MLP trials per hour (its 32-row products leave a second core mostly
/// waiting), 1.15x for the device mode at 200 shots, and the same for O2MD, whose training
/// and evaluation already keep both cores busy.
pub fn run_trials(
    loaded: &Loaded,
    method: &MethodSpec,
    protocol: &Protocol,
    range: std::ops::Range<usize>,
    per_epoch: bool,
    jobs: usize,
    bar: &ProgressBar,
) -> Result<Vec<TrialResult>> {
    let d = loaded.train.dim;
    let Some(first) = range.clone().next() else {
        return Ok(Vec::new());
    };
    let test = loaded.test.as_ref();
    // The first episode; the others share its queries when they are the same.
    let first_ep = experiment::episode_after(&loaded.train, test, protocol, first, None)?;
    let one = |t: usize| -> Result<TrialResult> {
        let own = if t == first {
            None
        } else {
            Some(experiment::episode_after(&loaded.train, test, protocol, t, Some(&first_ep))?)
        };
        let r = experiment::run_trial(
            method,
            own.as_ref().unwrap_or(&first_ep),
            d,
            loaded.train.image,
            protocol.seed,
            t,
            per_epoch,
        )
        .with_context(|| format!("{} trial {t}", method.name()))?;
        bar.inc(1);
        Ok(r)
    };
    map_jobs(jobs, range, one)
}

/// `f` over `range`, `jobs` at a time ([`JobsArg`]: 0 = one per core, 1 = in turn), the
/// results in the order of `range`. If some calls fail, one of their errors is returned (in
/// turn: the first; at once: whichever rayon meets).
pub fn map_jobs<T, F>(jobs: usize, range: std::ops::Range<usize>, f: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(usize) -> Result<T> + Sync + Send,
{
    use rayon::prelude::*;
    match jobs {
        1 => range.map(f).collect(),
        0 => range.into_par_iter().map(f).collect(),
        n => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .context("starting the trial threads")?
            .install(|| range.into_par_iter().map(f).collect()),
    }
}

/// A progress bar in the house style.
pub fn bar(len: u64, msg: String) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>28} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(msg);
    b
}

fn fewshot(a: FewshotArgs) -> Result<()> {
    if a.trials == 0 {
        bail!("--trials must be at least 1");
    }
    let loaded = a.data.load()?;
    let methods: Vec<NamedMethod> = a.methods.iter().map(|m| NamedMethod::parse(m)).collect::<Result<_>>()?;
    let ways = a.ways.unwrap_or(loaded.train.num_classes());
    for m in &methods {
        experiment::check_weight_bytes(&m.spec, loaded.train.dim, ways, a.max_weight_bytes)?;
    }
    let queries = a.queries.or(if loaded.test.is_none() { Some(1) } else { None });
    let mut all = Vec::new();
    if a.jobs.jobs != 1 {
        println!("(several trials at once: train and eval seconds are per trial on a shared machine; --jobs 1 gives one trial's latency)");
    }
    println!(
        "{:<22} {:>5} {:>10} {:>9} {:>10} {:>10}  settings",
        "method", "shots", "accuracy", "±95%", "train s", "eval s"
    );
    for m in &methods {
        for &shots in &a.shots {
            let p = Protocol {
                ways,
                shots,
                trials: a.trials,
                queries_per_class: queries,
                seed: a.seed,
            };
            let bar = bar(a.trials as u64, format!("{} {shots}-shot", m.name));
            let res = run_cell(&loaded, &m.spec, &p, a.per_epoch, a.jobs.jobs, &bar)?;
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

/// Marks an error that is a bug in `ldl`, not a problem with the user's input: its report
/// keeps the backtrace ([`error_report`]). Attach it with `.context(Internal("..."))`.
#[derive(Debug, thiserror::Error)]
#[error("internal error (a bug in ldl): {0}")]
pub struct Internal(pub &'static str);

/// What `ldl` prints when a command fails: the error and its causes, as anyhow prints them,
/// without the backtrace anyhow captures when `RUST_BACKTRACE` is set: a wrong file or
/// argument is not a bug. An [`Internal`] error keeps it (and panics are unaffected).
pub fn error_report(e: &anyhow::Error) -> String {
    if e.downcast_ref::<Internal>().is_some() {
        return format!("Error: {e:?}");
    }
    let mut out = format!("Error: {e}");
    let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
    if !causes.is_empty() {
        out.push_str("\n\nCaused by:");
        for (i, c) in causes.iter().enumerate() {
            if causes.len() == 1 {
                out.push_str(&format!("\n    {c}"));
            } else {
                out.push_str(&format!("\n    {i}: {c}"));
            }
        }
    }
    out
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Fewshot(a) => fewshot(a),
        Command::Reproduce(a) => crate::reproduce::run(a),
        Command::Openset(a) => crate::openset::run(a),
        Command::Train(a) => crate::models::train::run(a),
        Command::Inspect(a) => {
            if !crate::models::inspect::run(a)? {
                // Not an error: the report is printed; the exit code tells scripts.
                use std::io::Write as _;
                std::io::stdout().flush()?;
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Eval(a) => crate::models::eval::run(a),
        Command::Predict(a) => crate::models::predict::run(a),
        Command::Tune(a) => crate::tune::run(a),
        Command::Flash(a) => crate::flash::run(a),
        Command::Device(a) => crate::device::cli::run(a),
        Command::Demo(a) => crate::demo::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user's error prints with its causes, as anyhow's own report without a backtrace;
    /// an internal one is anyhow's whole report (with the backtrace when one was captured).
    #[test]
    fn error_reports() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io).context("m.ldlm: cannot read the model file");
        assert_eq!(
            error_report(&e),
            "Error: m.ldlm: cannot read the model file\n\nCaused by:\n    no such file"
        );
        let e = e.context("predict");
        assert_eq!(
            error_report(&e),
            "Error: predict\n\nCaused by:\n    0: m.ldlm: cannot read the model file\n    1: no such file"
        );
        assert_eq!(error_report(&anyhow::anyhow!("bad --classes")), "Error: bad --classes");
        let bug = anyhow::anyhow!("label count 3, predictors 2")
            .context(Internal("the trained model is inconsistent"))
            .context("train");
        let r = error_report(&bug);
        assert_eq!(r, format!("Error: {bug:?}"));
        assert!(
            r.contains("internal error (a bug in ldl): the trained model is inconsistent"),
            "{r}"
        );
        assert!(r.contains("label count 3, predictors 2"), "{r}");
    }

    /// Noisy clusters: 4 classes, 12 features, `per_class` samples each, from `seed`.
    fn clusters(per_class: usize, seed: u64) -> Dataset {
        let mut rng = ldl_core::Rng::new(seed);
        let centres: Vec<f32> = (0..4 * 12).map(|i| ((i * 7 % 11) as f32) / 4.0).collect();
        let (mut f, mut l) = (Vec::new(), Vec::new());
        for c in 0..4u32 {
            for _ in 0..per_class {
                f.extend((0..12).map(|j| centres[c as usize * 12 + j] + 1.5 * rng.normal()));
                l.push(c);
            }
        }
        Dataset::new(f, l, (0..4).map(|c| c.to_string()).collect(), 12, None)
    }

    /// Trials run several at once give every trial the result it gets when trials run one
    /// after another, in trial order, for a gradient method (with per-epoch scores) and a
    /// closed-form one; a range of trials gives the same trials as a whole run.
    #[test]
    fn trials_at_once_give_the_results_of_trials_in_turn() {
        let loaded = Loaded {
            train: clusters(30, 1),
            test: Some(clusters(10, 2)),
        };
        let p = Protocol {
            ways: 3,
            shots: 4,
            trials: 6,
            queries_per_class: None,
            seed: 9,
        };
        let key = |r: &[TrialResult]| {
            r.iter()
                .map(|t| (t.trial, t.accuracy, t.epoch_accuracy.clone()))
                .collect::<Vec<_>>()
        };
        for m in ["o2md:16", "closed:8"] {
            let m = MethodSpec::parse(m).unwrap();
            let bar = ProgressBar::hidden();
            let in_turn = run_trials(&loaded, &m, &p, 0..6, true, 1, &bar).unwrap();
            assert_eq!(in_turn.iter().map(|t| t.trial).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
            let accs: Vec<f64> = in_turn.iter().map(|t| t.accuracy).collect();
            assert!(accs.iter().any(|&a| a != accs[0]), "{accs:?}: the trials should differ");
            assert_eq!(in_turn[0].epoch_accuracy.len(), m.epochs());
            for jobs in [0, 2, 3] {
                assert_eq!(
                    key(&run_trials(&loaded, &m, &p, 0..6, true, jobs, &bar).unwrap()),
                    key(&in_turn),
                    "jobs {jobs}"
                );
            }
            assert_eq!(key(&run_trials(&loaded, &m, &p, 2..6, true, 2, &bar).unwrap()), key(&in_turn[2..]));
            assert!(run_trials(&loaded, &m, &p, 3..3, true, 0, &bar).unwrap().is_empty());
        }
    }
}
