//! `ldl eval`: scores a model file on a data set's test split. Test classes are matched to
//! the model's classes by label ([`super::model_label`] of the class name); test samples of
//! classes the model does not know are counted apart, as "unknown expected".

use super::{kind_name, load_model, model_label, preprocessed, raw_rows};
use crate::data::{DataArgs, Loaded};
use crate::models::train::argmin;
use crate::progress::bar;
use anyhow::{bail, Context, Result};
use clap::Args;
use ldl_core::Model;
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `ldl eval`.
#[derive(Debug, Args, Clone)]
pub struct EvalArgs {
    /// The model file.
    #[arg(value_name = "MODEL.ldlm")]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the whole confusion matrix here as CSV (the text report prints it only
    /// when it is at most 100 characters wide, else the most frequent confusions).
    #[arg(long, value_name = "PATH")]
    pub confusion_csv: Option<PathBuf>,
}

/// One model class's result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassEval {
    /// Label.
    pub label: String,
    /// Test samples of this class.
    pub samples: usize,
    /// Closest class is this one.
    pub correct: usize,
    /// `correct / samples`.
    pub accuracy: f64,
    /// Called unknown (threshold).
    pub rejected: usize,
}

/// What `eval` reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalReport {
    /// Test samples of the model's classes.
    pub known: usize,
    /// Of those, whose closest class is the right one.
    pub correct: usize,
    /// `correct / known`: closed-set accuracy (the threshold ignored).
    pub accuracy: f64,
    /// The model's threshold.
    pub threshold: Option<f32>,
    /// The novelty score it applies to (`ldl_core::novelty::Score::name`).
    pub novelty: &'static str,
    /// Known-class samples called unknown.
    pub rejected_known: usize,
    /// Right class and not called unknown, over `known` (with a threshold).
    pub accepted_accuracy: Option<f64>,
    /// Test samples of classes the model does not know.
    pub unknown_expected: usize,
    /// Of those, called unknown (with a threshold).
    pub unknown_detected: usize,
    /// Per model class.
    pub per_class: Vec<ClassEval>,
    /// Rows of `confusion`: the model's labels, then `(not in model)`.
    pub confusion_rows: Vec<String>,
    /// Columns of `confusion`: the model's labels, then `unknown`.
    pub confusion_cols: Vec<String>,
    /// Counts: true class (row) against decision (column: the class, or unknown when the
    /// threshold says so).
    pub confusion: Vec<Vec<usize>>,
}

/// The test samples of `loaded` (its test split, or its only set) in the model's input
/// domain, with each sample's model class (`None`: a class the model does not know).
pub fn test_inputs(model: &Model, kind: crate::data::DatasetKind, loaded: &Loaded) -> Result<(Vec<f32>, Vec<Option<usize>>)> {
    let ds = loaded.test.as_ref().unwrap_or(&loaded.train);
    if ds.dim != model.inputs() {
        bail!(
            "the model takes {} inputs, the {} samples have {}",
            model.inputs(),
            kind_name(kind),
            ds.dim
        );
    }
    let map: Vec<Option<usize>> = ds.class_names.iter().map(|n| model.class_index(&model_label(n))).collect();
    let truth: Vec<Option<usize>> = ds.labels.iter().map(|&l| map[l as usize]).collect();
    let xs = preprocessed(&model.preprocess, raw_rows(kind, ds, 0..ds.len()))?;
    Ok((xs, truth))
}

/// Scores `model` on `xs` (preprocessed, row-major) with the true model classes `truth`,
/// through [`ldl_core::batch::distances`] in blocks (with a progress bar when `show`).
pub fn evaluate(model: &Model, xs: &[f32], truth: &[Option<usize>], show: bool) -> Result<EvalReport> {
    let c = model.labels.len();
    let d = model.inputs();
    let n = truth.len();
    if c == 0 {
        bail!("the model has no classes");
    }
    let mut per = vec![(0usize, 0usize, 0usize); c];
    let mut conf = vec![vec![0usize; c + 1]; c + 1];
    let (mut unknown_expected, mut unknown_detected) = (0, 0);
    const CHUNK: usize = 2048;
    let b = bar(n as u64, "evaluating".into());
    if !show {
        b.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut dist = vec![0.0f32; CHUNK * c];
    for start in (0..n).step_by(CHUNK) {
        let nb = CHUNK.min(n - start);
        let out = &mut dist[..nb * c];
        let block = &xs[start * d..(start + nb) * d];
        ldl_core::batch::distances(model, block, nb, out).context("classifying the test samples")?;
        let scores = super::scores(model.rule(), out, block, c)?;
        for (i, (row, &score)) in out.chunks_exact(c).zip(&scores).enumerate() {
            let best = argmin(row).0;
            let unknown = model.rule().rejects(score);
            let col = if unknown { c } else { best };
            match truth[start + i] {
                Some(t) => {
                    per[t].0 += 1;
                    per[t].1 += usize::from(best == t);
                    per[t].2 += usize::from(unknown);
                    conf[t][col] += 1;
                }
                None => {
                    unknown_expected += 1;
                    unknown_detected += usize::from(unknown);
                    conf[c][col] += 1;
                }
            }
        }
        b.inc(nb as u64);
    }
    b.finish_and_clear();
    let known: usize = per.iter().map(|p| p.0).sum();
    let correct: usize = per.iter().map(|p| p.1).sum();
    let rejected_known: usize = per.iter().map(|p| p.2).sum();
    let accepted: usize = (0..c).map(|t| conf[t][t]).sum();
    let ratio = |a: usize, b: usize| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
    let labels: Vec<String> = model.labels.iter().map(|l| l.to_string()).collect();
    Ok(EvalReport {
        known,
        correct,
        accuracy: ratio(correct, known),
        threshold: model.threshold,
        novelty: model.score.name(),
        rejected_known,
        accepted_accuracy: model.threshold.map(|_| ratio(accepted, known)),
        unknown_expected,
        unknown_detected,
        per_class: per
            .iter()
            .zip(&labels)
            .map(|(&(s, k, r), l)| ClassEval {
                label: l.clone(),
                samples: s,
                correct: k,
                accuracy: ratio(k, s),
                rejected: r,
            })
            .collect(),
        confusion_rows: labels.iter().cloned().chain(["(not in model)".to_string()]).collect(),
        confusion_cols: labels.iter().cloned().chain(["unknown".to_string()]).collect(),
        confusion: conf,
    })
}

fn print(path: &str, dataset: &str, split: &str, r: &EvalReport) {
    println!("{path} on {dataset} ({split}): {} samples of the model's classes", r.known);
    println!(
        "  accuracy   {:.4} ({} / {}; closest class, threshold ignored)",
        r.accuracy, r.correct, r.known
    );
    match (r.threshold, r.accepted_accuracy) {
        (Some(t), Some(a)) => {
            println!(
                "  threshold  {t} on the {} score: {} / {} known samples called unknown ({:.4}); right and accepted {a:.4}",
                r.novelty,
                r.rejected_known,
                r.known,
                r.rejected_known as f64 / r.known.max(1) as f64
            );
            if r.unknown_expected > 0 {
                println!(
                    "  unknown expected {} (classes not in the model): {} called unknown ({:.4})",
                    r.unknown_expected,
                    r.unknown_detected,
                    r.unknown_detected as f64 / r.unknown_expected as f64
                );
            }
        }
        _ => {
            if r.unknown_expected > 0 {
                println!(
                    "  unknown expected {} (classes not in the model; no threshold, so each got a known class)",
                    r.unknown_expected
                );
            }
        }
    }
    println!();
    println!(
        "  {:<16} {:>8} {:>8} {:>9} {:>9}",
        "class", "samples", "correct", "accuracy", "rejected"
    );
    for p in &r.per_class {
        println!(
            "  {:<16} {:>8} {:>8} {:>9.4} {:>9}",
            p.label, p.samples, p.correct, p.accuracy, p.rejected
        );
    }
    // Confusion: only the columns that matter (unknown when there is a threshold).
    let c = r.per_class.len();
    let cols: Vec<usize> = (0..c).chain(r.threshold.map(|_| c)).collect();
    let rows: Vec<usize> = (0..c).chain((r.unknown_expected > 0).then_some(c)).collect();
    let w = r.confusion_cols.iter().map(String::len).max().unwrap_or(1).clamp(5, 16);
    println!();
    if 2 + 16 + cols.len() * (w + 1) <= MATRIX_WIDTH {
        println!("  confusion (rows: true class, columns: decision)");
        print!("  {:<16}", "");
        for &j in &cols {
            print!(" {:>w$}", r.confusion_cols[j]);
        }
        println!();
        for &i in &rows {
            print!("  {:<16}", r.confusion_rows[i]);
            for &j in &cols {
                print!(" {:>w$}", r.confusion[i][j]);
            }
            println!();
        }
        return;
    }
    let top = top_confusions(r, TOP_CONFUSIONS);
    println!(
        "  most frequent confusions ({} classes: the whole matrix is in --json and --confusion-csv)",
        c
    );
    if top.is_empty() {
        println!("  none: every sample of the model's classes got its own class");
    }
    for (i, j, n) in top {
        println!("  {:<16} -> {:<16} {n:>6}", r.confusion_rows[i], r.confusion_cols[j]);
    }
}

/// Widest confusion matrix `eval` prints, in characters; a wider one is summed up by its
/// most frequent confusions ([`top_confusions`]).
pub const MATRIX_WIDTH: usize = 100;

/// Confusions listed when the matrix is too wide to print.
pub const TOP_CONFUSIONS: usize = 10;

/// The `n` largest off-diagonal counts of the model's classes (row: true class, column: the
/// decision, `unknown` included), largest first, ties in row then column order.
pub fn top_confusions(r: &EvalReport, n: usize) -> Vec<(usize, usize, usize)> {
    let c = r.per_class.len();
    let mut all: Vec<(usize, usize, usize)> = (0..c)
        .flat_map(|i| (0..=c).map(move |j| (i, j)))
        .filter(|&(i, j)| i != j && r.confusion[i][j] > 0)
        .map(|(i, j)| (i, j, r.confusion[i][j]))
        .collect();
    all.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    all.truncate(n);
    all
}

/// Writes the whole confusion matrix as CSV: a header `true` then the decisions, one row per
/// true class.
fn write_confusion_csv(path: &std::path::Path, r: &EvalReport) -> Result<()> {
    let fail = || format!("{}: cannot write the confusion CSV", path.display());
    let mut w = csv::Writer::from_path(path).with_context(fail)?;
    w.write_record(std::iter::once("true").chain(r.confusion_cols.iter().map(String::as_str)))
        .with_context(fail)?;
    for (label, row) in r.confusion_rows.iter().zip(&r.confusion) {
        w.write_record(std::iter::once(label.clone()).chain(row.iter().map(usize::to_string)))
            .with_context(fail)?;
    }
    w.flush().with_context(fail)
}

/// Which samples `eval` scores, as far as the arguments tell (the model file does not say
/// what it was trained on): a test or validation split, or every drawing of an Omniglot set.
/// Only the default Omniglot set, which `ldl train` also draws from by default, is said to
/// hold the model's training drawings if it was trained there.
fn set_description(data: &DataArgs, loaded: &Loaded) -> String {
    if loaded.test.is_some() {
        return if data.validation {
            format!(
                "validation split: training images {}..{}",
                crate::data::VALIDATION_START,
                crate::tune::TRAIN_LEN
            )
        } else {
            "test split".into()
        };
    }
    let default = crate::data::default_omniglot();
    let path = data.data.clone().unwrap_or_else(|| default.clone());
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(&path, &default) {
        format!(
            "every drawing of {}, the set `ldl train` draws from by default: the model's training drawings are among them if it was trained there",
            path.display()
        )
    } else {
        format!("every drawing of {}", path.display())
    }
}

/// Runs `ldl eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let loaded = args.data.load()?;
    let (xs, truth) = test_inputs(&model, args.data.dataset, &loaded).with_context(|| format!("{}", args.model.display()))?;
    if truth.iter().all(Option::is_none) {
        bail!(
            "{}: none of its classes ({}) is in the {} data set",
            args.model.display(),
            model.labels.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", "),
            kind_name(args.data.dataset)
        );
    }
    let r = evaluate(&model, &xs, &truth, !args.json)?;
    let split = set_description(&args.data, &loaded);
    if let Some(p) = &args.confusion_csv {
        write_confusion_csv(p, &r)?;
    }
    if args.json {
        let mut v = serde_json::to_value(&r)?;
        v["model"] = args.model.display().to_string().into();
        v["dataset"] = kind_name(args.data.dataset).into();
        v["split"] = split.as_str().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print(&args.model.display().to_string(), kind_name(args.data.dataset), &split, &r);
    }
    Ok(())
}
