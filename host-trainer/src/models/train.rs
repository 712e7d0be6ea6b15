//! `ldl train`: fits a model on chosen classes of a data set and writes it as a model file
//! (`core/FORMAT.md`) with its preprocessing, fit options and capacity for enrollment.

use super::{model_label, parse_classes, preprocess_for, preprocessed, raw_rows};
use crate::data::{DataArgs, Dataset, DatasetKind, Loaded};
use crate::experiment::augment_support;
use crate::methods::MethodSpec;
use crate::progress::bar;
use anyhow::{bail, Context, Result};
use clap::Args;
use ldl_core::methods::{fit_closed_form, GradientTrainer};
use ldl_core::novelty::Score;
use ldl_core::{format, Model, Rng};
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `ldl train`.
#[derive(Debug, Args, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Classes to learn: names, indices or index ranges, comma-separated (`0-7`, `0,3,5`,
    /// `Walking,Running`). Default: every class of the data set.
    #[arg(long)]
    pub classes: Option<String>,
    /// Training samples per class, drawn at random from the training split (from --seed).
    /// Default: every training sample of each class. With the device mode at 50-200 shots,
    /// the ridge grows with them (40 x shots, chosen on a validation split).
    #[arg(long)]
    pub shots: Option<usize>,
    /// Method: `mcu[:RANK[:SHIFT[:FILL[:ALIGN]]]]` (the mode the microcontroller boards keep:
    /// 8-bit directions), `device[:K[:SHIFT[:FILL[:ALIGN]]]]` (the same fit in f32), `mcu-warp`
    /// and `device-warp` (FILL 5: a class enrolled from fewer than 3 images adds rotated and
    /// sheared copies of them, format version 4), `mcu-align` and `device-align` (the same
    /// and ALIGN 1: each query is also seen slanted both ways, each class at its closest;
    /// format version 5), `closed[:K]`, `o2md[:K]`,
    /// `bd[:K]`, `naive`. The baselines (logreg, mlp, 1nn, ncm) are not LDL models and
    /// cannot be exported.
    #[arg(long, default_value = "device")]
    pub method: String,
    /// Seed of the sample draw and of the target.
    #[arg(long, default_value_t = 2019)]
    pub seed: u64,
    /// Most classes the model may hold, i.e. room a device keeps for enrolling new ones
    /// (default: the trained classes + 10, at most 64).
    #[arg(long)]
    pub capacity: Option<u16>,
    /// The novelty score the threshold applies to, recorded in the model (a device decides
    /// with it, for the classes it enrolls too): `contrast` (closest class's distance over
    /// the mean distance over the classes; chosen on the validation split, docs/novelty.md),
    /// `best` (the closest class's distance), `ratio` (closest / second-closest) or
    /// `relative` (closest distance / the input's squared norm). Default: `contrast` for the
    /// `device` and `mcu` methods, `best` for the others.
    #[arg(long, value_name = "SCORE", value_parser = parse_score)]
    pub novelty: Option<Score>,
    /// Novelty threshold: a sample whose novelty score (--novelty) is above it is "unknown".
    #[arg(long, conflicts_with = "calibrate_threshold")]
    pub threshold: Option<f32>,
    /// Sets the threshold to this quantile (e.g. 0.99) of the training samples' own
    /// novelty scores (nearest rank, on the samples before shift augmentation). The
    /// training samples are close to their own class, so with few shots this threshold is
    /// tight: expect some new samples of known classes to be called unknown.
    #[arg(long, value_name = "Q")]
    pub calibrate_threshold: Option<f64>,
    /// Which samples --calibrate-threshold uses: `support` (the training samples the model
    /// was fitted on, as above) or `heldout` (up to 100 other random training samples per
    /// class, never fitted on: a threshold that accepts about Q of new samples of the known
    /// classes; needs --shots).
    #[arg(long, value_enum, default_value = "support", requires = "calibrate_threshold")]
    pub calibrate_on: CalibrateOn,
    /// Closed-form methods: keep at most this many directions per class (bounds the size of
    /// the model and of classes a device enrolls; 0 = no limit).
    #[arg(long)]
    pub max_rank: Option<u16>,
    /// Ensemble members (bootstrap resamples of each class's support, each member its own
    /// seed; the paper's randomized prior functions): classification averages the members'
    /// distances and reports their agreement. Any LDL method; the model holds every member
    /// (members x the classes' weights). A device classifies with such a model but enrolls
    /// only into single-member ones.
    #[arg(long, default_value_t = 1)]
    pub members: usize,
    /// The most bytes of weights and optimiser state the training may allocate (e.g. 16G);
    /// a method that would take more is refused before training.
    #[arg(long, value_name = "SIZE", value_parser = crate::units::parse_size, default_value = "4G")]
    pub max_weight_bytes: u64,
    /// Where to write the model file.
    #[arg(long, short = 'o', value_name = "MODEL.ldlm")]
    pub out: PathBuf,
    /// Print a JSON summary on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The samples a threshold is calibrated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CalibrateOn {
    /// The training samples the model was fitted on.
    Support,
    /// Other training samples of the same classes (needs --shots).
    Heldout,
}

/// What [`fit`] needs: the training options of `ldl train`, without where its data comes
/// from or where its file goes. A library caller (the demo, tests) builds one directly.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The kind of data set (its preprocessing is recorded in the model).
    pub dataset: DatasetKind,
    /// `--classes`.
    pub classes: Option<String>,
    /// `--shots`.
    pub shots: Option<usize>,
    /// `--method`, as typed.
    pub method: String,
    /// `--seed`.
    pub seed: u64,
    /// `--capacity`.
    pub capacity: Option<u16>,
    /// `--novelty` (`None`: [`default_score`] of the method).
    pub novelty: Option<Score>,
    /// `--threshold`.
    pub threshold: Option<f32>,
    /// `--calibrate-threshold`.
    pub calibrate_threshold: Option<f64>,
    /// `--calibrate-on`.
    pub calibrate_on: CalibrateOn,
    /// `--max-rank`.
    pub max_rank: Option<u16>,
    /// `--members`.
    pub members: usize,
    /// `--max-weight-bytes`.
    pub max_weight_bytes: u64,
}

impl TrainOptions {
    /// `ldl train`'s defaults for `method` on a data set of `dataset`'s kind.
    pub fn new(dataset: DatasetKind, method: &str) -> Self {
        TrainOptions {
            dataset,
            classes: None,
            shots: None,
            method: method.into(),
            seed: 2019,
            capacity: None,
            novelty: None,
            threshold: None,
            calibrate_threshold: None,
            calibrate_on: CalibrateOn::Support,
            max_rank: None,
            members: 1,
            max_weight_bytes: crate::methods::DEFAULT_MAX_WEIGHT_BYTES,
        }
    }
}

impl TrainArgs {
    /// The options [`fit`] takes.
    pub fn options(&self) -> TrainOptions {
        TrainOptions {
            dataset: self.data.dataset,
            classes: self.classes.clone(),
            shots: self.shots,
            method: self.method.clone(),
            seed: self.seed,
            capacity: self.capacity,
            novelty: self.novelty,
            threshold: self.threshold,
            calibrate_threshold: self.calibrate_threshold,
            calibrate_on: self.calibrate_on,
            max_rank: self.max_rank,
            members: self.members,
            max_weight_bytes: self.max_weight_bytes,
        }
    }
}

/// `--novelty`: a score a model file holds (no per-class spreads).
fn parse_score(s: &str) -> std::result::Result<Score, String> {
    match Score::from_name(s) {
        Some(sc) if !sc.needs_spreads() => Ok(sc),
        Some(_) => Err(format!(
            "{s} needs one spread per class, which a model file does not hold: use contrast, best, ratio or relative"
        )),
        None => Err(format!("no novelty score {s:?}: contrast, best, ratio or relative")),
    }
}

/// The novelty score a model of `method` (as typed) records when `--novelty` is not given:
/// the contrast, validated for the device mode (docs/novelty.md), for `device` and `mcu`
/// (and their `-warp` and `-align` forms); the closest distance (what a threshold always
/// meant) for the others.
pub fn default_score(method: &str) -> Score {
    let name = method.trim().split(':').next().unwrap_or("");
    if matches!(name, "device" | "mcu" | "device-warp" | "mcu-warp" | "device-align" | "mcu-align") {
        Score::Contrast
    } else {
        Score::Best
    }
}

/// Held-out samples per class for `--calibrate-on heldout`.
pub const HELDOUT_PER_CLASS: usize = 100;

/// A trained model and how it was obtained.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The model, ready to encode.
    pub model: Model,
    /// The method's name, as given (`--method`).
    pub method: String,
    /// What it resolved to ([`MethodSpec::name`], e.g. `closed-id-shift2` for `device`).
    pub settings: String,
    /// The resolved method (the setting validated for `--shots`).
    pub spec: MethodSpec,
    /// Data-set class names, in model class order.
    pub class_names: Vec<String>,
    /// Training-split row indices used, per class.
    pub indices: Vec<Vec<usize>>,
    /// Fraction of the training samples their own model classifies correctly.
    pub train_accuracy: f64,
    /// Where the threshold came from.
    pub threshold_source: String,
}

/// Largest augmented support held in memory at once (device mode on every sample).
const MAX_SUPPORT_BYTES: usize = 2 << 30;

/// Fits the model `args` describe on `loaded` (no file written). Deterministic: the same
/// arguments give the same model, bit for bit.
pub fn fit(args: &TrainOptions, loaded: &Loaded) -> Result<Trained> {
    let train = &loaded.train;
    let kind = args.dataset;
    let mut spec = MethodSpec::parse(&args.method)?;
    if let (MethodSpec::ClosedForm { .. } | MethodSpec::Compact { .. }, Some(m)) = (&spec, args.shots) {
        // The device mode's ridge validated for this many shots (unchanged up to 10).
        spec = crate::methods::validated(&spec, m);
    }
    let Chosen {
        classes,
        capacity,
        class_names,
        labels,
    } = choose_classes(args, train)?;
    let (indices, heldout) = draw_support(args, train, &classes)?;
    let shift = match &spec {
        MethodSpec::ClosedForm { shift, .. } | MethodSpec::Compact { shift, .. } if *shift > 0 && train.image.is_none() => {
            eprintln!("note: {} is not an image data set: no shift augmentation", super::kind_name(kind));
            0
        }
        MethodSpec::ClosedForm { shift, .. } | MethodSpec::Compact { shift, .. } => *shift,
        _ => 0,
    };
    let mut pp = preprocess_for(kind, train, shift);
    // Warped copies of enrolled images (-warp, -align) and query alignment (-align): images
    // only, not series.
    if let MethodSpec::ClosedForm { cfg, .. } | MethodSpec::Compact { cfg, .. } = &mut spec {
        let images = train.image.is_some_and(|(_, h)| h > 1);
        if (cfg.fill > 0 || cfg.align > 0) && train.image.is_none() {
            eprintln!(
                "note: {} is not an image data set: no warped copies or query alignment",
                super::kind_name(kind)
            );
        }
        if (cfg.fill > 0 || cfg.align > 0) && matches!(train.image, Some((_, 1))) {
            eprintln!("note: --series rows are time series: no warped copies or query alignment (rotations and shears of images); shifts move them in time");
        }
        if !images {
            cfg.fill = 0;
            cfg.align = 0;
        }
        pp.fill = cfg.fill;
        pp.align = cfg.align;
    }
    let support: Vec<Vec<f32>> = indices
        .iter()
        .map(|idx| preprocessed(&pp, raw_rows(kind, train, idx.iter().copied())))
        .collect::<Result<_>>()?;
    let d = train.dim;
    let resolved = spec.clone().ensemble(args.members).context("--members")?;
    crate::methods::check_weight_bytes(&resolved, d, classes.len(), args.max_weight_bytes)?;
    let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();

    let mut model = if args.members > 1 {
        // Each member: the method on its bootstrap resample, with its own seed.
        let views: Vec<&[f32]> = support.iter().map(Vec::as_slice).collect();
        crate::experiment::ensemble_of(&views, d, args.members, args.seed, |v, seed| {
            let resample: Vec<Vec<f32>> = v.iter().map(|c| c.to_vec()).collect();
            let member = TrainOptions { seed, ..args.clone() };
            fit_method(&spec, &member, &resample, d, train.image, shift, &label_refs)
        })?
    } else {
        fit_method(&spec, args, &support, d, train.image, shift, &label_refs)?
    };
    let spec = resolved;
    model.capacity = capacity;
    model.preprocess = pp;

    // Distances of the (unaugmented) training samples: training accuracy and calibration.
    let n: usize = indices.iter().map(Vec::len).sum();
    let xs: Vec<f32> = support.concat();
    let answers: Vec<usize> = indices
        .iter()
        .enumerate()
        .flat_map(|(c, idx)| std::iter::repeat_n(c, idx.len()))
        .collect();
    let nc = classes.len();
    let mut dist = vec![0.0f32; n * nc];
    ldl_core::batch::distances(&model, &xs, n, &mut dist).context("scoring the training samples")?;
    let correct = dist.chunks_exact(nc).zip(&answers).filter(|(row, &a)| argmin(row).0 == a).count();
    model.score = args.novelty.unwrap_or_else(|| default_score(&args.method));
    let mut scores = super::scores(model.rule(), &dist, &xs, nc)?;
    let (threshold, threshold_source) = threshold_for(args, &model, train, &pp, &mut scores, n, &heldout, nc)?;
    model.threshold = threshold;
    model
        .validate()
        .context(crate::errors::Internal("the trained model is inconsistent"))?;
    Ok(Trained {
        model,
        method: args.method.trim().to_string(),
        settings: spec.name(),
        spec,
        class_names,
        indices,
        train_accuracy: correct as f64 / n as f64,
        threshold_source,
    })
}

/// The classes `--classes` selects (data-set indices), the model's capacity, their names
/// and their model labels (distinct, at most 16 bytes).
struct Chosen {
    classes: Vec<usize>,
    capacity: u16,
    class_names: Vec<String>,
    labels: Vec<String>,
}

/// The [`Chosen`] classes of `args` in `train`.
fn choose_classes(args: &TrainOptions, train: &Dataset) -> Result<Chosen> {
    let classes = parse_classes(args.classes.as_deref(), &train.class_names)?;
    if classes.len() > format::MAX_CLASSES {
        bail!(
            "{} classes selected: a model file holds at most {} (choose some with --classes)",
            classes.len(),
            format::MAX_CLASSES
        );
    }
    let capacity = match args.capacity {
        Some(c) if (c as usize) < classes.len() => {
            bail!("--capacity {c} is less than the {} classes trained", classes.len())
        }
        Some(c) if c as usize > format::MAX_CLASSES => bail!("--capacity {c}: a model file holds at most {} classes", format::MAX_CLASSES),
        Some(c) => c,
        None => (classes.len() + 10).min(format::MAX_CLASSES) as u16,
    };
    let class_names: Vec<String> = classes.iter().map(|&c| train.class_names[c].clone()).collect();
    let labels: Vec<String> = class_names.iter().map(|n| model_label(n)).collect();
    for (i, l) in labels.iter().enumerate() {
        if let Some(j) = labels[..i].iter().position(|o| o == l) {
            bail!(
                "classes {:?} and {:?} get the same model label {l:?} (labels are at most 16 bytes)",
                class_names[j],
                class_names[i]
            );
        }
    }
    Ok(Chosen {
        classes,
        capacity,
        class_names,
        labels,
    })
}

/// The support: `shots` random rows per class (or all) and, for `--calibrate-on heldout`,
/// up to [`HELDOUT_PER_CLASS`] other rows per class.
fn draw_support(args: &TrainOptions, train: &Dataset, classes: &[usize]) -> Result<(Vec<Vec<usize>>, Vec<usize>)> {
    let by_class = train.class_indices();
    let mut indices = Vec::with_capacity(classes.len());
    let mut heldout: Vec<usize> = Vec::new();
    for &c in classes {
        let mut idx = by_class[c].clone();
        if idx.is_empty() {
            bail!("class {:?} has no training samples", train.class_names[c]);
        }
        if let Some(m) = args.shots {
            if m == 0 {
                bail!("--shots must be at least 1");
            }
            if idx.len() < m {
                bail!(
                    "class {:?} has {} training samples, --shots asks for {m}",
                    train.class_names[c],
                    idx.len()
                );
            }
            let mut rng = Rng::derive(args.seed ^ 0x5452_4149_4E00, c as u64);
            rng.sample_front(&mut idx, m);
            let rest = &idx[m..idx.len().min(m + HELDOUT_PER_CLASS)];
            heldout.extend_from_slice(rest);
            idx.truncate(m);
        }
        indices.push(idx);
    }
    Ok((indices, heldout))
}

/// Fits the model of `spec` on the preprocessed support (shift-augmented for the device
/// mode).
#[allow(clippy::too_many_arguments)]
fn fit_method(
    spec: &MethodSpec,
    args: &TrainOptions,
    support: &[Vec<f32>],
    d: usize,
    image: Option<(usize, usize)>,
    shift: u8,
    label_refs: &[&str],
) -> Result<Model> {
    Ok(match spec {
        MethodSpec::ClosedForm { cfg, .. } => {
            let mut cfg = *cfg;
            if let Some(r) = args.max_rank {
                cfg.fit.max_rank = r;
            }
            let filled;
            let support = if cfg.fill > 0 && image.is_some() {
                filled = crate::experiment::fill_support(support, image, cfg.fill)?;
                cfg.fill = 0;
                &filled[..]
            } else {
                support
            };
            let aug;
            let views: Vec<&[f32]> = if shift > 0 {
                let total: usize = support.iter().map(|s| s.len()).sum::<usize>() * ldl_core::augment::shift_count(shift) * 4;
                if total > MAX_SUPPORT_BYTES {
                    bail!(
                        "the shift-augmented support would take {} in memory: use --shots (e.g. 50)",
                        crate::units::human_bytes(total as u64)
                    );
                }
                aug = augment_support(support, image, shift)?;
                aug.iter().map(Vec::as_slice).collect()
            } else {
                support.iter().map(Vec::as_slice).collect()
            };
            fit_closed_form(&views, d, label_refs, &cfg, args.seed).context("closed-form fit")?
        }
        MethodSpec::Compact { cfg, .. } => {
            let mut cfg = *cfg;
            if let Some(r) = args.max_rank {
                cfg.fit.max_rank = r;
            }
            let views: Vec<&[f32]> = support.iter().map(Vec::as_slice).collect();
            ldl_core::methods::fit_compact(&views, d, label_refs, &cfg, image, shift, args.seed).context("compact closed-form fit")?
        }
        MethodSpec::Gradient(cfg) => {
            if args.max_rank.is_some() {
                bail!(
                    "--max-rank applies to the closed-form methods (mcu, device, closed), not {}",
                    args.method
                );
            }
            let views: Vec<&[f32]> = support.iter().map(Vec::as_slice).collect();
            let mut tr = GradientTrainer::new(&views, d, label_refs, cfg, args.seed).context("setting up the trainer")?;
            let b = bar(cfg.epochs as u64, format!("{} epochs", args.method));
            for e in 0..cfg.epochs {
                tr.epoch().with_context(|| format!("training epoch {}", e + 1))?;
                b.inc(1);
            }
            b.finish_and_clear();
            tr.into_model()
        }
        _ => bail!(
            "method {:?} is a baseline, not an LDL model: it cannot be exported as a model file \
             (use mcu, device, closed[:K], o2md[:K], bd[:K] or naive)",
            args.method
        ),
    })
}

/// The threshold `--threshold` gives or `--calibrate-threshold` calibrates on the model's
/// novelty score (the support's `scores`, or the held-out rows'), with where it came from.
#[allow(clippy::too_many_arguments)]
fn threshold_for(
    args: &TrainOptions,
    model: &Model,
    train: &Dataset,
    pp: &ldl_core::Preprocess,
    scores: &mut Vec<f32>,
    n: usize,
    heldout: &[usize],
    nc: usize,
) -> Result<(Option<f32>, String)> {
    let kind = args.dataset;
    let score = model.score.name();
    Ok(match (args.threshold, args.calibrate_threshold) {
        (Some(t), _) => {
            if !t.is_finite() || t < 0.0 {
                bail!("--threshold must be a finite number >= 0 (got {t})");
            }
            if matches!(model.score, Score::Contrast | Score::Ratio) && t >= 1.0 {
                eprintln!("note: the {score} score is at most 1: a threshold of {t} never calls a sample unknown");
            }
            (Some(t), format!("given, on the {score} score"))
        }
        (None, Some(q)) => {
            if !(q > 0.0 && q <= 1.0) {
                bail!("--calibrate-threshold takes a quantile in (0, 1], e.g. 0.99");
            }
            if args.calibrate_on == CalibrateOn::Support {
                let t = calibrated(scores, q)?;
                (Some(t), format!("{q}-quantile of the {n} training samples' {score} scores"))
            } else {
                if heldout.is_empty() {
                    bail!("--calibrate-on heldout needs training samples left over: give --shots below the class sizes");
                }
                let nh = heldout.len();
                let xh = preprocessed(pp, raw_rows(kind, train, heldout.iter().copied()))?;
                let mut dh = vec![0.0f32; nh * nc];
                ldl_core::batch::distances(model, &xh, nh, &mut dh).context("scoring the held-out samples")?;
                let mut sh = super::scores(model.rule(), &dh, &xh, nc)?;
                let t = calibrated(&mut sh, q)?;
                (Some(t), format!("{q}-quantile of {nh} held-out training samples' {score} scores"))
            }
        }
        (None, None) => (None, "none".to_string()),
    })
}

/// The `q`-quantile of the novelty scores that tell (not NaN: a contrast or ratio with a
/// single class cannot).
fn calibrated(scores: &mut Vec<f32>, q: f64) -> Result<f32> {
    scores.retain(|s| !s.is_nan());
    if scores.is_empty() {
        bail!("no sample has a novelty score to calibrate on (the ratio and the contrast need two classes)");
    }
    Ok(quantile(scores, q))
}

/// Index and value of the smallest entry.
pub fn argmin(row: &[f32]) -> (usize, f32) {
    row.iter()
        .enumerate()
        .fold((0, f32::INFINITY), |b, (i, &v)| if v < b.1 { (i, v) } else { b })
}

/// The `q`-quantile of `xs` by nearest rank: the smallest value with at least a fraction `q`
/// of the values at or below it.
pub fn quantile(xs: &mut [f32], q: f64) -> f32 {
    xs.sort_by(f32::total_cmp);
    let n = xs.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    xs[rank - 1]
}

#[derive(Serialize)]
struct Summary<'a> {
    out: String,
    bytes: usize,
    crc32: String,
    method: &'a str,
    settings: &'a str,
    dataset: &'static str,
    classes: &'a [String],
    labels: Vec<&'a str>,
    samples_per_class: Vec<usize>,
    seed: u64,
    inputs: usize,
    outputs: usize,
    ranks: Vec<Option<usize>>,
    capacity: u16,
    threshold: Option<f32>,
    /// The novelty score the threshold applies to.
    novelty: &'static str,
    threshold_source: &'a str,
    preprocess: ldl_core::Preprocess,
    /// Closed-form methods: the fit (also how a device fits classes it enrolls).
    fit: Option<ldl_core::subspace::FitOptions>,
    /// Gradient methods: how the classes were trained.
    training: Option<GradientSummary>,
    train_accuracy: f64,
    /// Said on stderr too: a model larger than every board's MODEL region.
    warnings: Vec<String>,
}

/// How a gradient method trained (what `train` prints instead of closed-form fit options).
#[derive(Serialize)]
struct GradientSummary {
    epochs: usize,
    optimizer: &'static str,
    lr: f32,
    /// BD: the target's own rate (stage 1).
    target_lr: Option<f32>,
    batch_size: usize,
    weight_decay: f32,
}

impl GradientSummary {
    fn new(c: &ldl_core::methods::GradientConfig) -> Self {
        let (optimizer, lr) = optimizer(&c.predictor_step.optimizer);
        GradientSummary {
            epochs: c.epochs,
            optimizer,
            lr,
            target_lr: (c.method == ldl_core::methods::GradientMethod::Bd).then(|| optimizer_lr(&c.target_step.optimizer)),
            batch_size: c.predictor_step.batch_size,
            weight_decay: c.predictor_step.weight_decay,
        }
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "{} epochs of {}, lr {}, batch {}",
            self.epochs, self.optimizer, self.lr, self.batch_size
        );
        if self.weight_decay != 0.0 {
            s += &format!(", weight decay {}", self.weight_decay);
        }
        if let Some(t) = self.target_lr {
            s += &format!("; target lr {t}");
        }
        s
    }
}

fn optimizer(o: &ldl_core::train::Optimizer) -> (&'static str, f32) {
    match *o {
        ldl_core::train::Optimizer::Adam { lr, .. } => ("Adam", lr),
        ldl_core::train::Optimizer::Sgd { lr, .. } => ("SGD", lr),
    }
}

fn optimizer_lr(o: &ldl_core::train::Optimizer) -> f32 {
    optimizer(o).1
}

/// A warning when a model file of `bytes` (`classes` classes of `inputs` inputs, trained
/// with `spec`) is larger than every board's MODEL region (`firmware/boards.toml`), with the
/// method that fits: the boards keep classes in the mcu mode's 8-bit form, whose classes
/// take at most [`ldl_core::store::max_plain_class_len`] bytes each.
pub fn size_warning(path: &str, bytes: usize, classes: usize, inputs: usize, spec: &MethodSpec) -> Result<Option<String>> {
    let boards = super::boards::boards()?;
    let Some((key, largest)) = boards.iter().map(|(k, b)| (k, b.model.size)).max_by_key(|&(_, size)| size) else {
        return Ok(None);
    };
    if bytes as u64 <= largest {
        return Ok(None);
    }
    let hb = crate::units::human_bytes;
    let mut msg = format!(
        "{path} is {bytes} bytes ({}), larger than every board's MODEL region (the largest: {key}'s {})",
        hb(bytes as u64),
        hb(largest)
    );
    let (rank, mcu) = match spec {
        MethodSpec::Compact { cfg, .. } => (cfg.fit.max_rank as usize, true),
        _ => (crate::methods::MCU_RANK as usize, false),
    };
    let rank = if rank == 0 { inputs } else { rank.min(inputs) };
    let per_class = ldl_core::store::max_plain_class_len(inputs, rank) as u64;
    let total = per_class * classes as u64;
    let fits: Vec<&str> = boards
        .iter()
        .filter(|(_, b)| total <= b.model.size)
        .map(|(k, _)| k.as_str())
        .collect();
    let most = largest / per_class.max(1);
    if mcu {
        msg += &format!(
            ": its {classes} classes take up to {} each at rank {rank}; keep fewer directions (mcu:RANK) or fewer \
             classes (at most {most} fit {key})",
            hb(per_class)
        );
    } else if fits.is_empty() {
        msg += &format!(
            ". The boards keep classes in the 8-bit form of --method mcu (device is the same fit in f32), up to {} \
             per class here: at most {most} classes fit {key}",
            hb(per_class)
        );
    } else {
        msg += &format!(
            ". The boards keep classes in the 8-bit form of --method mcu (device is the same fit in f32): up to {} \
             per class here, about {} for these {classes} classes, which fits {}",
            hb(per_class),
            hb(total),
            fits.join(", ")
        );
    }
    Ok(Some(msg))
}

/// Runs `ldl train`.
pub fn run(args: TrainArgs) -> Result<()> {
    let loaded = args.data.load()?;
    let t = fit(&args.options(), &loaded)?;
    let bytes = format::encode(&t.model).context("encoding the model file")?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("{}: cannot write the model file", args.out.display()))?;
    let crc = format::checksum(&bytes[..bytes.len() - format::CRC_LEN]);
    let m = &t.model;
    let ranks: Vec<Option<usize>> = m.members[0]
        .predictors
        .iter()
        .map(|p| match p {
            ldl_core::Predictor::Subspace(s) => Some(s.rank()),
            ldl_core::Predictor::Compact(c) => Some(c.shape().rank),
            ldl_core::Predictor::Dense(_) => None,
        })
        .collect();
    let warnings: Vec<String> = size_warning(&args.out.display().to_string(), bytes.len(), m.labels.len(), m.inputs(), &t.spec)?
        .into_iter()
        .collect();
    // After the summary (stdout flushed first, so the warning comes last in a shared log).
    let warn = |ws: &[String]| -> Result<()> {
        std::io::Write::flush(&mut std::io::stdout())?;
        ws.iter().for_each(|w| eprintln!("warning: {w}"));
        Ok(())
    };
    let s = Summary {
        out: args.out.display().to_string(),
        bytes: bytes.len(),
        crc32: format!("{crc:08x}"),
        method: &t.method,
        settings: &t.settings,
        dataset: super::kind_name(args.data.dataset),
        classes: &t.class_names,
        labels: m.labels.iter().map(|l| l.as_str()).collect(),
        samples_per_class: t.indices.iter().map(Vec::len).collect(),
        seed: args.seed,
        inputs: m.inputs(),
        outputs: m.outputs(),
        ranks,
        capacity: m.capacity,
        threshold: m.threshold,
        novelty: m.score.name(),
        threshold_source: &t.threshold_source,
        preprocess: m.preprocess,
        fit: matches!(t.spec, MethodSpec::ClosedForm { .. } | MethodSpec::Compact { .. }).then_some(m.fit),
        training: match &t.spec {
            MethodSpec::Gradient(c) => Some(GradientSummary::new(c)),
            _ => None,
        },
        train_accuracy: t.train_accuracy,
        warnings,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return warn(&s.warnings);
    }
    let per: Vec<usize> = s.samples_per_class.clone();
    let same = per.iter().all(|&x| x == per[0]);
    println!(
        "trained {} ({}) on {} classes {} ({} samples{}, seed {})",
        s.method,
        s.settings,
        s.dataset,
        s.labels.join(", "),
        per.iter().sum::<usize>(),
        if same { format!(", {} per class", per[0]) } else { String::new() },
        s.seed
    );
    let target = if matches!(m.members[0].target, ldl_core::Target::Identity { .. }) {
        "identity target"
    } else {
        "random linear target"
    };
    println!(
        "  dims       d = {}, k = {} ({target}); capacity {}",
        s.inputs, s.outputs, s.capacity
    );
    if s.ranks.iter().all(Option::is_some) {
        let r: Vec<String> = s.ranks.iter().map(|r| r.unwrap_or(0).to_string()).collect();
        println!("  ranks      {}", r.join(" "));
    }
    println!("  preprocess {}", super::inspect::describe_preprocess(&m.preprocess));
    if let Some(f) = &s.fit {
        println!("  fit        {}", super::inspect::describe_fit(f));
    }
    if let Some(g) = &s.training {
        println!("  training   {}", g.describe());
    }
    match s.threshold {
        Some(th) => println!("  threshold  {th:.6} ({})", s.threshold_source),
        None => println!(
            "  threshold  none (every sample gets its closest class; novelty score {})",
            s.novelty
        ),
    }
    println!("  training accuracy {:.4}", s.train_accuracy);
    println!("wrote {}: {} bytes, CRC-32 {}", s.out, s.bytes, s.crc32);
    warn(&s.warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The warning names what fits: the mcu mode when its classes fit a board, else how many
    /// of them fit the largest region; an mcu model that does not fit is told to shrink.
    #[test]
    fn size_warnings_name_what_fits() {
        let device = crate::methods::device_mode(None);
        let mcu = crate::methods::mcu_mode(None, None);
        let qemu = super::super::boards::board("qemu").unwrap().model.size as usize;
        assert_eq!(size_warning("m", qemu, 64, 784, &device).unwrap(), None);
        let w = size_warning("m", qemu + 1, 64, 784, &device).unwrap().unwrap();
        assert!(w.contains("the largest: qemu's 2.00 MiB") && w.contains("which fits qemu"), "{w}");
        let per = ldl_core::store::max_plain_class_len(4096, 40);
        let w = size_warning("m", 1 << 30, 20, 4096, &device).unwrap().unwrap();
        assert!(w.contains(&format!("at most {} classes fit qemu", qemu / per)), "{w}");
        let w = size_warning("m", qemu + 1, 64, 784, &mcu).unwrap().unwrap();
        assert!(w.contains("mcu:RANK") && !w.contains("--method mcu"), "{w}");
    }

    #[test]
    fn nearest_rank_quantile() {
        let mut xs = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&mut xs, 1.0), 5.0);
        assert_eq!(quantile(&mut xs, 0.99), 5.0);
        assert_eq!(quantile(&mut xs, 0.8), 4.0);
        assert_eq!(quantile(&mut xs, 0.5), 3.0);
        assert_eq!(quantile(&mut xs, 0.01), 1.0);
    }
}
