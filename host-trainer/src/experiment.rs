//! Episodic few-shot evaluation, as the paper does it: N-way, m-shot, T trials, support drawn
//! from the training split per trial, queries from the test split; every random choice from
//! one seed, so a run is reproducible bit for bit.

use crate::baselines;
use crate::data::Dataset;
use crate::methods::MethodSpec;
use anyhow::{bail, Context, Result};
use ldl_core::methods::{fit_closed_form, ClosedFormConfig, GradientTrainer};
use ldl_core::{augment, Rng};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// How episodes are drawn.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Protocol {
    /// Classes per episode (N).
    pub ways: usize,
    /// Support samples per class (m).
    pub shots: usize,
    /// Episodes.
    pub trials: usize,
    /// Query samples per class from the query set; `None` = every sample of the episode's
    /// classes (MNIST: the full test set, as the paper).
    pub queries_per_class: Option<usize>,
    /// Seed of everything.
    pub seed: u64,
}

/// One episode: support per class, queries with their class index within the episode.
#[derive(Debug)]
pub struct Episode {
    /// Data-set class of each episode class.
    pub classes: Vec<usize>,
    /// Support samples, one row-major matrix per episode class.
    pub support: Vec<Vec<f32>>,
    /// Query samples, row-major. Shared between the episodes of a run when they are the same
    /// (every test sample of the same classes: MNIST's 10-way episodes), see [`episode_after`].
    pub queries: Arc<[f32]>,
    /// Episode class of each query.
    pub answers: Arc<[usize]>,
}

/// Draws episode `trial`: `ways` classes of `train` (all of them when `ways` equals their
/// number, in order), `shots` support samples each from `train`, queries from `test`. When
/// `test` is `None` (Omniglot: one set of characters), support and queries are disjoint
/// samples of the same classes.
pub fn episode(train: &Dataset, test: Option<&Dataset>, p: &Protocol, trial: usize) -> Result<Episode> {
    episode_after(train, test, p, trial, None)
}

/// [`episode`], given another episode drawn from the same data and protocol (a run's first
/// one): when both take every test sample of the same classes, their queries are the same, and
/// the new one shares them instead of copying the test set again (31 MB per MNIST trial).
pub fn episode_after(train: &Dataset, test: Option<&Dataset>, p: &Protocol, trial: usize, earlier: Option<&Episode>) -> Result<Episode> {
    let mut rng = Rng::derive(p.seed, trial as u64);
    let nclasses = train.num_classes();
    if p.ways == 0 || p.ways > nclasses {
        bail!(
            "{}-way episodes need at least {} classes, the data set has {nclasses}",
            p.ways,
            p.ways
        );
    }
    let mut classes: Vec<usize> = (0..nclasses).collect();
    if p.ways < nclasses {
        rng.shuffle(&mut classes);
        classes.truncate(p.ways);
    }
    let by_class = train.class_indices();
    let d = train.dim;
    let mut support = Vec::with_capacity(p.ways);
    let (mut queries, mut answers) = (Vec::new(), Vec::new());
    // The queries of `earlier` when they are this episode's too (they use no random draw).
    let shared = earlier.filter(|prev| test.is_some() && p.queries_per_class.is_none() && prev.classes == classes);
    let test_by_class = test.filter(|_| shared.is_none()).map(|t| t.class_indices());
    for (e, &c) in classes.iter().enumerate() {
        let mut idx = by_class[c].clone();
        let need = p.shots + if test.is_none() { p.queries_per_class.unwrap_or(1) } else { 0 };
        if idx.len() < need {
            bail!("class {} has {} samples, the episode needs {need}", train.class_names[c], idx.len());
        }
        // Partial Fisher-Yates: the first `need` entries become a uniform sample.
        rng.sample_front(&mut idx, need);
        let mut s = Vec::with_capacity(p.shots * d);
        for &i in &idx[..p.shots] {
            s.extend_from_slice(train.row(i));
        }
        support.push(s);
        let (qset, qidx): (&Dataset, Vec<usize>) = match (test, &test_by_class) {
            (Some(t), _) if shared.is_some() => (t, Vec::new()),
            (Some(t), Some(tb)) => {
                let mut q = tb.get(c).cloned().unwrap_or_default();
                if let Some(nq) = p.queries_per_class {
                    rng.shuffle(&mut q);
                    q.truncate(nq);
                }
                (t, q)
            }
            _ => (train, idx[p.shots..need].to_vec()),
        };
        for i in qidx {
            queries.extend_from_slice(qset.row(i));
            answers.push(e);
        }
    }
    let (queries, answers): (Arc<[f32]>, Arc<[usize]>) = match shared {
        Some(prev) => (prev.queries.clone(), prev.answers.clone()),
        None => (queries.into(), answers.into()),
    };
    if answers.is_empty() {
        bail!("the episode has no query samples");
    }
    Ok(Episode {
        classes,
        support,
        queries,
        answers,
    })
}

/// Lake's one-shot Omniglot episode `trial` (Lake, Salakhutdinov, Tenenbaum 2015): one
/// alphabet drawn among those with at least `ways` characters (a class's alphabet is its name
/// up to the `/`), `ways` of its characters, and for each character `shots` drawings as
/// support and `queries_per_class` (default 1) drawings by drawers none of the support
/// drawings is by as queries. `drawers` holds the drawer of each row of `train`
/// ([`crate::data::load_omniglot_drawers`]). Reproducible from `p.seed`, one episode per trial.
pub fn within_alphabet_episode(train: &Dataset, drawers: &[String], p: &Protocol, trial: usize) -> Result<Episode> {
    let mut rng = Rng::derive(p.seed ^ 0x4C41_4B45, trial as u64);
    let mut alphabets: std::collections::BTreeMap<&str, Vec<usize>> = std::collections::BTreeMap::new();
    for (c, name) in train.class_names.iter().enumerate() {
        let alphabet = name.split_once('/').map_or(name.as_str(), |(a, _)| a);
        alphabets.entry(alphabet).or_default().push(c);
    }
    let (largest, size) = alphabets
        .iter()
        .map(|(a, cs)| (*a, cs.len()))
        .max_by_key(|&(_, n)| n)
        .unwrap_or(("none", 0));
    let eligible: Vec<&Vec<usize>> = alphabets.values().filter(|cs| cs.len() >= p.ways).collect();
    if p.ways == 0 || eligible.is_empty() {
        bail!(
            "--within-alphabet: no alphabet has {} characters (the largest, {largest}, has {size}); ask for --ways {size} or fewer",
            p.ways
        );
    }
    let mut classes = eligible[rng.below(eligible.len() as u32) as usize].clone();
    rng.shuffle(&mut classes);
    classes.truncate(p.ways);
    let by_class = train.class_indices();
    let nq = p.queries_per_class.unwrap_or(1);
    let mut support = Vec::with_capacity(p.ways);
    let (mut queries, mut answers) = (Vec::new(), Vec::new());
    for (e, &c) in classes.iter().enumerate() {
        let mut idx = by_class[c].clone();
        rng.shuffle(&mut idx);
        if idx.len() < p.shots {
            bail!(
                "class {} has {} drawings, the episode needs {} as support",
                train.class_names[c],
                idx.len(),
                p.shots
            );
        }
        let (s, rest) = idx.split_at(p.shots);
        let support_drawers: Vec<&str> = s.iter().map(|&i| drawers[i].as_str()).collect();
        let q: Vec<usize> = rest
            .iter()
            .copied()
            .filter(|&i| !support_drawers.contains(&drawers[i].as_str()))
            .take(nq)
            .collect();
        if q.len() < nq {
            bail!(
                "class {} has {} drawings by other drawers than its {} support drawing(s), the episode needs {nq}",
                train.class_names[c],
                q.len(),
                p.shots
            );
        }
        support.push(s.iter().flat_map(|&i| train.row(i).iter().copied()).collect());
        for i in q {
            queries.extend_from_slice(train.row(i));
            answers.push(e);
        }
    }
    Ok(Episode {
        classes,
        support,
        queries: queries.into(),
        answers: answers.into(),
    })
}

/// The one episode of a fixed split: every sample of `support` as the support of its class
/// (every class of `support`, in order), every sample of `queries` as a query of the class of
/// the same name. A query class the support lacks is an error naming it.
pub fn fixed_episode(support: &Dataset, queries: &Dataset) -> Result<Episode> {
    if support.dim != queries.dim {
        bail!("the support has {} values per sample, the queries {}", support.dim, queries.dim);
    }
    let by_class = support.class_indices();
    let empty: Vec<&str> = support
        .class_names
        .iter()
        .zip(&by_class)
        .filter(|(_, rows)| rows.is_empty())
        .map(|(n, _)| n.as_str())
        .collect();
    if let Some(c) = empty.first() {
        bail!("class {c} has no support sample");
    }
    let support_rows = by_class
        .iter()
        .map(|rows| rows.iter().flat_map(|&i| support.row(i).iter().copied()).collect())
        .collect();
    let index: std::collections::HashMap<&str, usize> = support.class_names.iter().enumerate().map(|(c, n)| (n.as_str(), c)).collect();
    let mut answers = Vec::with_capacity(queries.len());
    for &l in &queries.labels {
        let name = &queries.class_names[l as usize];
        let Some(&c) = index.get(name.as_str()) else {
            bail!("query class {name} is not in the support (classes are matched by their alphabet/character path)")
        };
        answers.push(c);
    }
    if answers.is_empty() {
        bail!("the query set has no samples");
    }
    Ok(Episode {
        classes: (0..support.num_classes()).collect(),
        support: support_rows,
        queries: queries.features.clone().into(),
        answers: answers.into(),
    })
}

/// What one trial of one method gave.
#[derive(Debug, Clone, Serialize)]
pub struct TrialResult {
    /// Episode index.
    pub trial: usize,
    /// Fraction of queries classified correctly.
    pub accuracy: f64,
    /// Seconds spent training.
    pub train_secs: f64,
    /// Seconds spent classifying the queries.
    pub eval_secs: f64,
    /// Accuracy after each epoch (gradient methods, when asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub epoch_accuracy: Vec<f64>,
}

fn accuracy(pred: &[usize], answers: &[usize]) -> f64 {
    pred.iter().zip(answers).filter(|(a, b)| a == b).count() as f64 / answers.len() as f64
}

/// Support with each image's shifts added (closed form with `shift` > 0).
pub fn augment_support<S: AsRef<[f32]>>(support: &[S], image: Option<(usize, usize)>, shift: u8) -> Result<Vec<Vec<f32>>> {
    let Some((w, h)) = image else {
        bail!("shift augmentation needs images")
    };
    let n = w * h;
    if n == 0 {
        bail!("shift augmentation needs images of at least one pixel, not {w}x{h}");
    }
    let per = augment::shift_count(shift);
    support
        .iter()
        .map(|s| {
            let s = s.as_ref();
            let m = s.len() / n;
            let mut out = vec![0.0; m * per * n];
            for (i, img) in s.chunks_exact(n).enumerate() {
                augment::shifts(img, w, h, shift, &mut out[i * per * n..(i + 1) * per * n]).context("augment")?;
            }
            Ok(out)
        })
        .collect()
}

/// Each class's samples followed by their warped copies while the class stays within `fill`
/// images, as a device enrolls them (`ldl_core::augment::fill`): the f32 device mode's
/// enrollment before its shifts.
pub fn fill_support<S: AsRef<[f32]>>(support: &[S], image: Option<(usize, usize)>, fill: u8) -> Result<Vec<Vec<f32>>> {
    let Some((w, h)) = image else { bail!("warped copies need images") };
    let n = w * h;
    support
        .iter()
        .map(|s| {
            let s = s.as_ref();
            let m = s.len().checked_div(n).unwrap_or(0);
            let mut out = vec![0.0; m * (1 + augment::warps_per_image(m, fill)) * n];
            out[..s.len()].copy_from_slice(s);
            let k = augment::fill(&mut out, m, w, h, fill).context("warped copies")?;
            out.truncate(k * n);
            Ok(out)
        })
        .collect()
}

/// Fits an LDL method on one support per class (labels `0`, `1`, ...), as a trial does: a
/// gradient method for all its epochs, the closed form on the support with its shifts, the
/// mcu mode with shifts only on images. The baselines make no model: an error.
pub fn fit_model(method: &MethodSpec, views: &[&[f32]], d: usize, image: Option<(usize, usize)>, seed: u64) -> Result<ldl_core::Model> {
    let labels: Vec<String> = (0..views.len()).map(|c| c.to_string()).collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    Ok(match method {
        MethodSpec::Gradient(cfg) => GradientTrainer::new(views, d, &labels, cfg, seed)?.run()?,
        MethodSpec::ClosedForm { cfg, shift } if cfg.fill > 0 && image.is_some() => {
            let filled = fill_support(views, image, cfg.fill)?;
            let filled: Vec<&[f32]> = filled.iter().map(Vec::as_slice).collect();
            let spec = MethodSpec::ClosedForm {
                cfg: ClosedFormConfig { fill: 0, ..*cfg },
                shift: *shift,
            };
            fit_model(&spec, &filled, d, image, seed)?
        }
        MethodSpec::ClosedForm { cfg, shift } if *shift > 0 => {
            let aug = augment_support(views, image, *shift)?;
            let aug: Vec<&[f32]> = aug.iter().map(Vec::as_slice).collect();
            with_alignment(fit_closed_form(&aug, d, &labels, cfg, seed)?, cfg.align, image)?
        }
        MethodSpec::ClosedForm { cfg, .. } => with_alignment(fit_closed_form(views, d, &labels, cfg, seed)?, cfg.align, image)?,
        MethodSpec::Compact { cfg, shift } => {
            ldl_core::methods::fit_compact(views, d, &labels, cfg, image, if image.is_some() { *shift } else { 0 }, seed)?
        }
        MethodSpec::Ensemble { of, members } => ensemble_of(views, d, *members, seed, |v, s| fit_model(of, v, d, image, s))?,
        _ => bail!("{} is a baseline: it makes no LDL model", method.name()),
    })
}

/// `model` (of `image`s) with the query alignment `align` recorded, as
/// `ldl_core::methods::fit_compact` records it: the closed form has no image geometry.
fn with_alignment(mut model: ldl_core::Model, align: u8, image: Option<(usize, usize)>) -> Result<ldl_core::Model> {
    if align == 0 {
        return Ok(model);
    }
    let Some((w, h)) = image else {
        bail!("a query alignment needs images");
    };
    let p = &mut model.preprocess;
    p.image.get_or_insert(ldl_core::ImageSpec {
        width: u16::try_from(w)?,
        height: u16::try_from(h)?,
        source_width: 0,
        source_height: 0,
    });
    p.align = align;
    p.alignment().context("query alignment")?;
    Ok(model)
}

/// [`ldl_core::methods::ensemble`] with a `build` that fails with a host error (kept whole,
/// not flattened into the core's error type).
pub fn ensemble_of(
    views: &[&[f32]],
    d: usize,
    members: usize,
    seed: u64,
    mut build: impl FnMut(&[&[f32]], u64) -> Result<ldl_core::Model>,
) -> Result<ldl_core::Model> {
    let mut err = None;
    let r = ldl_core::methods::ensemble(views, d, members, seed, |v, s| {
        build(v, s).map_err(|e| {
            err = Some(e);
            ldl_core::Error::InvalidParameter
        })
    });
    match (r, err) {
        (Ok(m), _) => Ok(m),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(anyhow::anyhow!(e)).context("ensemble"),
    }
}

/// Runs one method on one episode. With `per_epoch`, gradient methods also score the
/// queries after every epoch (the paper's accuracy-against-epoch figure).
pub fn run_trial(
    method: &MethodSpec,
    ep: &Episode,
    d: usize,
    image: Option<(usize, usize)>,
    seed: u64,
    trial: usize,
    per_epoch: bool,
) -> Result<TrialResult> {
    let n = ep.answers.len();
    let labels: Vec<String> = (0..ep.support.len()).map(|c| c.to_string()).collect();
    let labels: Vec<&str> = labels.iter().map(|s| s.as_str()).collect();
    let views: Vec<&[f32]> = ep.support.iter().map(|v| v.as_slice()).collect();
    let mseed = Rng::derive(seed ^ 0x4D45_5448, trial as u64).next_u64();
    let t0 = Instant::now();
    let mut epoch_accuracy = Vec::new();
    let (pred, train_secs, t1) = match method {
        MethodSpec::Gradient(cfg) => {
            let mut tr = GradientTrainer::new(&views, d, &labels, cfg, mseed)?;
            let mut eval_time = 0.0;
            for _ in 0..cfg.epochs {
                tr.epoch().context("training")?;
                if per_epoch {
                    let te = Instant::now();
                    let p = ldl_core::batch::predict(tr.model(), &ep.queries, n)?;
                    epoch_accuracy.push(accuracy(&p, &ep.answers));
                    eval_time += te.elapsed().as_secs_f64();
                }
            }
            let train_secs = t0.elapsed().as_secs_f64() - eval_time;
            let t1 = Instant::now();
            let model = tr.into_model();
            (ldl_core::batch::predict(&model, &ep.queries, n)?, train_secs, t1)
        }
        MethodSpec::ClosedForm { .. } | MethodSpec::Compact { .. } | MethodSpec::Ensemble { .. } => {
            let model = fit_model(method, &views, d, image, mseed)?;
            let train_secs = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            (ldl_core::batch::predict(&model, &ep.queries, n)?, train_secs, t1)
        }
        MethodSpec::LogReg => {
            let p = baselines::logistic_regression(&views, d, &ep.queries, n, &Default::default(), mseed);
            (p, t0.elapsed().as_secs_f64(), Instant::now())
        }
        MethodSpec::Mlp => {
            let p = baselines::mlp(&views, d, &ep.queries, n, &Default::default(), mseed);
            (p, t0.elapsed().as_secs_f64(), Instant::now())
        }
        MethodSpec::NearestNeighbour => {
            let p = baselines::nearest_neighbour(&views, d, &ep.queries, n);
            (p, 0.0, t0)
        }
        MethodSpec::NearestMean => {
            let p = baselines::nearest_class_mean(&views, d, &ep.queries, n);
            (p, 0.0, t0)
        }
    };
    Ok(TrialResult {
        trial,
        accuracy: accuracy(&pred, &ep.answers),
        train_secs,
        eval_secs: t1.elapsed().as_secs_f64(),
        epoch_accuracy,
    })
}

/// Mean and half-width of the 95% confidence interval of the mean (Student's t).
pub fn mean_ci95(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, f64::NAN);
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
    (mean, t975(n - 1) * (var / n as f64).sqrt())
}

/// A 95% half-width ([`mean_ci95`]) for a table or a CSV: `decimals` places, or `-` when
/// there is none (a single trial). The JSON outputs keep the number, `null` for none.
pub fn ci_text(ci: f64, decimals: usize) -> String {
    if ci.is_finite() {
        format!("{ci:.decimals$}")
    } else {
        "-".into()
    }
}

/// 97.5% quantile of Student's t with `df` degrees of freedom.
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
        2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        31..=60 => 2.000 + (60 - df) as f64 * 0.042 / 30.0,
        61..=120 => 1.980 + (120 - df) as f64 * 0.020 / 60.0,
        _ => 1.960,
    }
}

/// One (method, shots) cell of a results table (`reproduce`).
pub struct Cell {
    /// Method name, as given.
    pub method: String,
    /// What it ran ([`MethodSpec::name`] of the setting for these shots).
    pub settings: String,
    /// Shots.
    pub shots: usize,
    /// Every trial.
    pub trials: Vec<TrialResult>,
    /// Wall-clock seconds of the whole cell (its trials may run several at once).
    pub wall_secs: f64,
}

impl Cell {
    /// Every trial's accuracy.
    pub fn accs(&self) -> Vec<f64> {
        self.trials.iter().map(|t| t.accuracy).collect()
    }
    /// Mean train and eval seconds of a trial.
    pub fn mean_secs(&self) -> (f64, f64) {
        let n = self.trials.len().max(1) as f64;
        (
            self.trials.iter().map(|t| t.train_secs).sum::<f64>() / n,
            self.trials.iter().map(|t| t.eval_secs).sum::<f64>() / n,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::device_mode;

    #[test]
    fn ci_matches_a_known_case() {
        // n = 4, values 1..4: mean 2.5, s = 1.291, t(3) = 3.182 -> half-width 2.054.
        let (m, h) = mean_ci95(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((h - 2.054).abs() < 1e-3, "{h}");
        assert!((t975(1000) - 1.96).abs() < 1e-9);
        assert_eq!(ci_text(h, 3), "2.054");
        // One trial: no interval, a dash in tables.
        let (m, h) = mean_ci95(&[0.75]);
        assert_eq!((m, ci_text(h, 4)), (0.75, "-".to_string()));
    }

    /// The device mode at many shots: 64 and 100 images of a digit with their shifts are more
    /// rows than dimensions, so the fit goes through the scatter matrix, whose blank-border
    /// rows once made the eigen-solver stall ("non-finite value"). Both fits must give a
    /// subspace that puts unseen images of the digit closer than images of another digit.
    #[test]
    fn device_mode_fits_many_shots() {
        let dir = crate::repo_root().join("data/mnist");
        let train = crate::data::load_mnist(&dir, crate::data::Split::Train).unwrap();
        let MethodSpec::ClosedForm { cfg, shift } = device_mode(None) else {
            unreachable!()
        };
        let t = ldl_core::Target::<Vec<f32>>::Identity { dim: train.dim };
        let (zeros, ones) = (train.indices_of_class(0), train.indices_of_class(1));
        for shots in [64usize, 100] {
            let rows: Vec<f32> = zeros[..shots].iter().flat_map(|&i| train.row(i).to_vec()).collect();
            let aug = augment_support(&[rows], train.image, shift).unwrap().concat();
            let m = aug.len() / train.dim;
            assert!(m >= 2 * train.dim, "{m}");
            let s = ldl_core::subspace::Subspace::fit(&t, &aug, m, &cfg.fit).unwrap_or_else(|e| panic!("{shots} shots: {e}"));
            assert!(s.rank() > 0);
            let mut scratch = vec![0.0; ldl_core::subspace::distance_scratch_len(train.dim, s.rank())];
            let mut dist = |i: usize| s.distance(train.row(i), train.row(i), &mut scratch).unwrap();
            let near: f32 = (0..20).map(|j| dist(zeros[1000 + j])).sum();
            let far: f32 = (0..20).map(|j| dist(ones[1000 + j])).sum();
            assert!(near < far, "{shots} shots: zeros {near} vs ones {far}");
        }
    }

    #[test]
    fn ensembles_are_of_ldl_methods_and_fit_one_member_per_bootstrap() {
        let dev = MethodSpec::parse("device").unwrap();
        // 1 member is the method itself; 0, more than a model holds, a baseline, an
        // ensemble of an ensemble are refused.
        assert_eq!(dev.clone().ensemble(1).unwrap().name(), dev.name());
        for (spec, m, why) in [
            (dev.clone(), 0, "at least 1"),
            (dev.clone(), 17, "at most 16"),
            (MethodSpec::parse("logreg").unwrap(), 3, "baseline"),
            (dev.clone().ensemble(2).unwrap(), 2, "already an ensemble"),
        ] {
            let e = spec.ensemble(m).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        // Every LDL method can be one: the model holds one member per bootstrap, the same
        // members the core's ensemble makes from the same seed.
        let mut rng = Rng::new(3);
        let classes: Vec<Vec<f32>> = (0..3).map(|_| (0..4 * 12).map(|_| rng.normal()).collect()).collect();
        let views: Vec<&[f32]> = classes.iter().map(Vec::as_slice).collect();
        for name in ["closed:8", "mcu:4:0", "o2md:8:1e-3:2"] {
            let spec = MethodSpec::parse(name).unwrap();
            let ens = spec.clone().ensemble(3).unwrap();
            assert_eq!(ens.name(), format!("{}-m3", spec.name()));
            let model = fit_model(&ens, &views, 12, None, 9).unwrap();
            assert_eq!(model.members.len(), 3, "{name}");
            let direct = ldl_core::methods::ensemble(&views, 12, 3, 9, |v, s| {
                fit_model(&spec, v, 12, None, s).map_err(|_| ldl_core::Error::InvalidParameter)
            })
            .unwrap();
            assert_eq!(
                ldl_core::format::encode(&model).unwrap(),
                ldl_core::format::encode(&direct).unwrap(),
                "{name}"
            );
            // The members differ (their own resamples and seeds).
            let bytes = |i: usize| {
                let mut one = model.clone();
                one.members = vec![model.members[i].clone()];
                ldl_core::format::encode(&one).unwrap()
            };
            assert_ne!(bytes(0), bytes(1), "{name}");
        }
        // A member's own error reaches the caller whole.
        let bad = MethodSpec::parse("device").unwrap().ensemble(2).unwrap();
        let e = fit_model(&bad, &views, 12, Some((5, 5)), 1).unwrap_err();
        assert!(!format!("{e:#}").contains("InvalidParameter"), "{e:#}");
    }

    fn toy() -> Dataset {
        // 3 classes x 6 samples, 2 features; value encodes (class, index).
        let mut f = Vec::new();
        let mut l = Vec::new();
        for c in 0..3u32 {
            for i in 0..6 {
                f.extend_from_slice(&[c as f32, i as f32]);
                l.push(c);
            }
        }
        Dataset::new(f, l, vec!["a".into(), "b".into(), "c".into()], 2, None)
    }

    #[test]
    fn episodes_are_reproducible_and_disjoint() {
        let ds = toy();
        let p = Protocol {
            ways: 2,
            shots: 2,
            trials: 3,
            queries_per_class: Some(3),
            seed: 5,
        };
        let a = episode(&ds, None, &p, 1).unwrap();
        let b = episode(&ds, None, &p, 1).unwrap();
        assert_eq!(
            (a.classes.clone(), a.support.clone(), a.queries.clone()),
            (b.classes.clone(), b.support.clone(), b.queries.clone())
        );
        assert_eq!(a.classes.len(), 2);
        assert_eq!(a.answers.len(), 6);
        for (e, &c) in a.classes.iter().enumerate() {
            // Support rows belong to the class; queries of the class do not repeat support rows.
            let s: Vec<&[f32]> = a.support[e].chunks(2).collect();
            assert!(s.iter().all(|r| r[0] == c as f32));
            for (q, &ans) in a.queries.chunks(2).zip(a.answers.iter()) {
                if ans == e {
                    assert_eq!(q[0], c as f32);
                    assert!(!s.contains(&q));
                }
            }
        }
        let other = episode(&ds, None, &p, 2).unwrap();
        assert!(other.classes != a.classes || other.support != a.support);
        let too_many = Protocol { shots: 6, ..p };
        assert!(episode(&ds, None, &too_many, 0).is_err());
    }

    /// With a test set and every test sample as a query, an episode drawn after another one
    /// of the same classes shares its queries, and is otherwise the episode drawn alone; with
    /// other classes, or a number of queries per class, it draws its own.
    #[test]
    fn episodes_share_the_test_queries_of_the_previous_one() {
        let (train, test) = (toy(), toy());
        let p = Protocol {
            ways: 3,
            shots: 2,
            trials: 3,
            queries_per_class: None,
            seed: 5,
        };
        let first = episode(&train, Some(&test), &p, 0).unwrap();
        let alone = episode(&train, Some(&test), &p, 1).unwrap();
        let after = episode_after(&train, Some(&test), &p, 1, Some(&first)).unwrap();
        assert!(Arc::ptr_eq(&after.queries, &first.queries));
        assert_eq!(
            (&after.classes, &after.support, &after.queries, &after.answers),
            (&alone.classes, &alone.support, &alone.queries, &alone.answers)
        );
        // Two of three classes: drawn at random per episode, so not shared unless equal.
        let two = Protocol { ways: 2, ..p };
        let a = episode(&train, Some(&test), &two, 0).unwrap();
        let (b, b_alone) = (1..)
            .map(|t| {
                (
                    episode_after(&train, Some(&test), &two, t, Some(&a)).unwrap(),
                    episode(&train, Some(&test), &two, t).unwrap(),
                )
            })
            .find(|(b, _)| b.classes != a.classes)
            .unwrap();
        assert!(!Arc::ptr_eq(&b.queries, &a.queries));
        assert_eq!((&b.queries, &b.answers), (&b_alone.queries, &b_alone.answers));
        let some = Protocol {
            queries_per_class: Some(2),
            ..p
        };
        let a = episode(&train, Some(&test), &some, 0).unwrap();
        let b = episode_after(&train, Some(&test), &some, 1, Some(&a)).unwrap();
        assert!(!Arc::ptr_eq(&b.queries, &a.queries));
        assert_eq!(b.queries, episode(&train, Some(&test), &some, 1).unwrap().queries);
    }

    /// A grey `4 x 4` PNG whose pixels are all `value`.
    fn grey_png(value: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 4, 4);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(&[value; 16]).unwrap();
        out
    }

    /// An Omniglot-like folder: alphabet `A` of 3 characters, `B` of 5, 4 drawings each
    /// (`NNNN_DD.png`, drawer DD = 01..04), whose ink is the drawer's number / 10.
    fn drawers_folder(dir: &std::path::Path) -> Dataset {
        for (alphabet, n) in [("A", 3), ("B", 5)] {
            for c in 1..=n {
                let d = dir.join("set").join(alphabet).join(format!("character{c:02}"));
                std::fs::create_dir_all(&d).unwrap();
                for k in 1..=4u8 {
                    std::fs::write(d.join(format!("07{c:02}_{k:02}.png")), grey_png(255 - 25 * k)).unwrap();
                }
            }
        }
        crate::data::load_omniglot(
            &dir.join("set"),
            &crate::data::OmniglotOptions {
                size: 4,
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// Lake's episodes: every character of one alphabet, each query by another drawer than
    /// its character's support, the same episode for the same seed and trial, others for
    /// other trials; too many ways name the largest alphabet.
    #[test]
    fn within_alphabet_episodes_pair_drawers_of_one_alphabet() {
        let dir = tempfile::tempdir().unwrap();
        let plain = drawers_folder(dir.path());
        let opts = crate::data::OmniglotOptions {
            size: 4,
            ..Default::default()
        };
        let (ds, drawers) = crate::data::load_omniglot_drawers(&dir.path().join("set"), &opts).unwrap();
        assert_eq!(ds, plain);
        let drawer_of = |row: &[f32]| (row[0] * 10.0).round() as usize;
        for (i, d) in drawers.iter().enumerate() {
            assert_eq!(format!("{:02}", drawer_of(ds.row(i))), *d);
        }
        for ways in [3, 5] {
            let p = Protocol {
                ways,
                shots: 1,
                trials: 20,
                queries_per_class: None,
                seed: 7,
            };
            let mut seen = std::collections::BTreeSet::new();
            for t in 0..20 {
                let ep = within_alphabet_episode(&ds, &drawers, &p, t).unwrap();
                let again = within_alphabet_episode(&ds, &drawers, &p, t).unwrap();
                assert_eq!(
                    (&ep.classes, &ep.support, &ep.queries, &ep.answers),
                    (&again.classes, &again.support, &again.queries, &again.answers)
                );
                assert_eq!(ep.classes.len(), ways);
                let alphabets: std::collections::BTreeSet<&str> = ep.classes.iter().map(|&c| &ds.class_names[c][..1]).collect();
                assert_eq!(alphabets.len(), 1, "{:?}", ep.classes);
                assert_eq!(&*ep.answers, (0..ways).collect::<Vec<_>>());
                for (e, q) in ep.queries.chunks(16).enumerate() {
                    assert_eq!(ep.support[e].len(), 16);
                    assert_ne!(drawer_of(&ep.support[e]), drawer_of(q), "trial {t} class {e}");
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                seen.insert((
                    ep.classes.clone(),
                    ep.support.iter().map(|r| bits(r)).collect::<Vec<_>>(),
                    bits(&ep.queries),
                ));
            }
            assert!(seen.len() > 10, "{ways}-way: {} distinct episodes of 20", seen.len());
            if ways == 5 {
                // Only B has 5 characters.
                assert!(seen
                    .iter()
                    .all(|(cs, _, _)| cs.iter().all(|&c| ds.class_names[c].starts_with("B/"))));
            }
        }
        let p = Protocol {
            ways: 6,
            shots: 1,
            trials: 1,
            queries_per_class: None,
            seed: 7,
        };
        let e = within_alphabet_episode(&ds, &drawers, &p, 0).unwrap_err().to_string();
        assert!(
            e.contains("no alphabet has 6 characters") && e.contains("the largest, B, has 5"),
            "{e}"
        );
        // Four drawers: 2 support drawings leave 2 other drawers, not 3.
        let p = Protocol {
            ways: 3,
            shots: 2,
            queries_per_class: Some(3),
            ..p
        };
        let e = within_alphabet_episode(&ds, &drawers, &p, 0).unwrap_err().to_string();
        assert!(e.contains("by other drawers"), "{e}");
    }

    /// A fixed split: every support sample, one per class here, and queries matched by class
    /// name; a query class the support lacks is named.
    #[test]
    fn a_fixed_split_takes_one_sample_per_class_and_names_unknown_query_classes() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let support = Dataset::new(vec![0.0, 1.0, 2.0], vec![0, 1, 2], names(&["a", "b", "c"]), 1, None);
        let queries = Dataset::new(vec![2.0, 0.5, 2.5], vec![0, 1, 0], names(&["c", "a"]), 1, None);
        let ep = fixed_episode(&support, &queries).unwrap();
        assert_eq!(ep.classes, [0, 1, 2]);
        assert_eq!(ep.support, [vec![0.0], vec![1.0], vec![2.0]]);
        assert_eq!(&*ep.answers, [2, 0, 2]);
        assert_eq!(&*ep.queries, [2.0, 0.5, 2.5]);
        let stranger = Dataset::new(vec![0.0], vec![0], names(&["z"]), 1, None);
        let e = fixed_episode(&support, &stranger).unwrap_err().to_string();
        assert!(e.contains("query class z is not in the support"), "{e}");
    }

    /// The f32 device mode with warped copies fits each class on its samples, their copies
    /// (while within the fill) and all their shifts: one image and four copies at fill 5,
    /// nothing more at 5 shots.
    #[test]
    fn warped_copies_fill_free_slots_only() {
        let (w, h) = (6, 6);
        let img: Vec<f32> = (0..36)
            .map(|i| if (i % 6 == 2 || i / 6 == 3) && i % 7 != 0 { 1.0 } else { 0.0 })
            .collect();
        let one = fill_support(std::slice::from_ref(&img), Some((w, h)), 5).unwrap();
        assert_eq!(one[0].len(), 5 * 36);
        assert_eq!(&one[0][..36], &img[..]);
        let five: Vec<f32> = img.iter().cycle().take(5 * 36).copied().collect();
        assert_eq!(fill_support(std::slice::from_ref(&five), Some((w, h)), 5).unwrap()[0], five);
        assert!(fill_support(&[img], None, 5).is_err());
    }
}
