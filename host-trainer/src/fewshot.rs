//! `ldl fewshot`: episodic few-shot evaluation of one or more methods (mean accuracy, 95%
//! interval), printed as a table and optionally written as JSON.

use crate::data::DataArgs;
use crate::experiment::{self, NamedMethod, Protocol};
use crate::progress::bar;
use crate::trials::{run_cell, JobsArg};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

/// `ldl fewshot`'s arguments.
#[derive(Debug, Args)]
pub struct FewshotArgs {
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
    #[arg(long, value_name = "SIZE", value_parser = crate::units::parse_size, default_value = "4G")]
    max_weight_bytes: u64,
    #[command(flatten)]
    jobs: JobsArg,
}

/// Runs `ldl fewshot`.
pub fn run(a: FewshotArgs) -> Result<()> {
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
