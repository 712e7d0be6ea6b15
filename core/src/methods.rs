//! The paper's methods end to end on the host: O2MD, BD, naive, the closed form and
//! ensembles, each building a [`Model`] from a support set (one row-major sample matrix per
//! class). Everything is reproducible from one seed: each class and member draws from its own
//! derived stream, so running classes in parallel (feature `parallel`) gives the same bits.
// Opts out of the crate's indexing and overflow lints: host only (alloc), on matrices the
// trainer allocated to the sizes it indexes them with.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::columns::{column_runs, gather_columns, live_columns, run_width, scatter_columns};
use crate::error::{check_len, Error, Result};
use crate::linear::{Init, Linear, Target};
use crate::model::{Label, Member, Method, Model, Preprocess};
use crate::predictor::Predictor;
use crate::rng::Rng;
use crate::subspace::{FitOptions, Subspace};
use crate::train::{fit_epoch, OptState, Optimizer, StepOptions};
use alloc::vec;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Stream index of the target's initialisation (classes use their own index).
const TARGET_STREAM: u64 = u64::MAX;

/// The methods trained by gradient descent: a [`GradientConfig`] cannot name the closed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GradientMethod {
    /// One-to-Many Distillation: frozen random target.
    O2md,
    /// Bidirectional Distillation: target and predictors trained in turn.
    Bd,
    /// The naive form: identity target, each predictor an autoencoder.
    Naive,
}

impl From<GradientMethod> for Method {
    fn from(m: GradientMethod) -> Method {
        match m {
            GradientMethod::O2md => Method::O2md,
            GradientMethod::Bd => Method::Bd,
            GradientMethod::Naive => Method::Naive,
        }
    }
}

/// Settings of a gradient-trained method (O2MD, BD or naive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradientConfig {
    /// The method.
    pub method: GradientMethod,
    /// Target outputs `k` (ignored by the naive form, where `k = d`).
    pub k: usize,
    /// Target has a bias.
    pub target_bias: bool,
    /// Predictors have a bias.
    pub predictor_bias: bool,
    /// Target initialisation.
    pub target_init: Init,
    /// Predictor initialisation.
    pub predictor_init: Init,
    /// Predictor optimiser, weight decay, batch size.
    pub predictor_step: StepOptions,
    /// Target optimiser (BD stage 1 only).
    pub target_step: StepOptions,
    /// Epochs.
    pub epochs: usize,
}

impl GradientConfig {
    /// O2MD as in the authors' code: target Linear(d, k) with bias, Xavier-normal, frozen;
    /// predictors with bias, PyTorch default init; Adam lr 1e-3, batch 1, 3 epochs.
    pub fn o2md_paper(k: usize) -> Self {
        let step = StepOptions {
            optimizer: Optimizer::adam(1e-3),
            weight_decay: 0.0,
            batch_size: 1,
        };
        GradientConfig {
            method: GradientMethod::O2md,
            k,
            target_bias: true,
            predictor_bias: true,
            target_init: Init::XavierNormal,
            predictor_init: Init::Uniform,
            predictor_step: step,
            target_step: step,
            epochs: 3,
        }
    }
    /// BD as in the authors' code: no biases, orthogonal target, Adam lr 1e-3 with weight
    /// decay 5e-7 on everything, batch 1, 5 epochs.
    pub fn bd_paper(k: usize) -> Self {
        let step = StepOptions {
            optimizer: Optimizer::adam(1e-3),
            weight_decay: 5e-7,
            batch_size: 1,
        };
        GradientConfig {
            method: GradientMethod::Bd,
            k,
            target_bias: false,
            predictor_bias: false,
            target_init: Init::Orthogonal,
            predictor_init: Init::Uniform,
            predictor_step: step,
            target_step: step,
            epochs: 5,
        }
    }
    /// The naive autoencoder form: identity target, predictors d -> d with bias, Adam 1e-3,
    /// batch 1, 3 epochs.
    pub fn naive_paper() -> Self {
        GradientConfig {
            method: GradientMethod::Naive,
            ..Self::o2md_paper(0)
        }
    }
}

/// Checks a support set: at least one class, every class non-empty, rows of `d` values,
/// all finite.
fn check_support(classes: &[&[f32]], d: usize) -> Result<()> {
    if classes.is_empty() || d == 0 {
        return Err(Error::EmptyClass);
    }
    for c in classes {
        if c.is_empty() {
            return Err(Error::EmptyClass);
        }
        if c.len() % d != 0 {
            return Err(Error::DimensionMismatch {
                expected: d as u32,
                found: c.len() as u32,
            });
        }
        crate::error::check_finite(c)?;
    }
    Ok(())
}

fn labels_for(labels: &[&str], n: usize) -> Result<Vec<Label>> {
    check_len(n, labels.len())?;
    labels.iter().map(|l| crate::model::label(l)).collect()
}

/// A random target from the seed: identity when `k == 0`.
pub fn make_target(d: usize, k: usize, bias: bool, init: Init, seed: u64) -> Result<Target<Vec<f32>>> {
    if k == 0 {
        return Ok(Target::Identity { dim: d });
    }
    Ok(Target::Linear(Linear::new(
        d,
        k,
        bias,
        init,
        &mut Rng::derive(seed, TARGET_STREAM),
    )?))
}

/// Trains O2MD, BD or the naive form epoch by epoch, so a caller can evaluate between epochs.
pub struct GradientTrainer<'a> {
    cfg: GradientConfig,
    classes: &'a [&'a [f32]],
    d: usize,
    model: Model,
    states: Vec<OptState<Vec<f32>>>,
    /// Per class, the runs of its live input columns when its predictor trains on those
    /// alone (`None`: on every column). See [`GradientTrainer::new`].
    live: Vec<Option<Vec<(usize, usize)>>>,
    rngs: Vec<Rng>,
    target_state: Option<OptState<Vec<f32>>>,
    target_rng: Rng,
    epochs_done: usize,
}

impl<'a> GradientTrainer<'a> {
    /// Initialises target and predictors from `seed`.
    ///
    /// Without weight decay (O2MD, naive), an input that is zero in every sample of a class
    /// gives its predictor's weights on that input a zero gradient at every step: they keep
    /// their initial values, and their optimiser state stays zero. So each predictor trains
    /// on its class's live inputs only (on MNIST, 42% of the pixels are blank in 200 samples
    /// of a digit, 60% in 10) and its other weights are left as drawn. The result is the same
    /// model up to rounding (the products sum fewer zeros, in another order). BD's weight
    /// decay moves every weight, so BD trains on every input.
    pub fn new(classes: &'a [&'a [f32]], d: usize, labels: &[&str], cfg: &GradientConfig, seed: u64) -> Result<Self> {
        Self::with_compaction(classes, d, labels, cfg, seed, true)
    }

    /// [`GradientTrainer::new`], optionally training every predictor on every input (for
    /// testing the compaction against the plain form).
    fn with_compaction(
        classes: &'a [&'a [f32]],
        d: usize,
        labels: &[&str],
        cfg: &GradientConfig,
        seed: u64,
        compact: bool,
    ) -> Result<Self> {
        check_support(classes, d)?;
        let labels = labels_for(labels, classes.len())?;
        let (k, target) = match cfg.method {
            GradientMethod::Naive => (d, Target::Identity { dim: d }),
            GradientMethod::O2md | GradientMethod::Bd => {
                if cfg.k == 0 {
                    return Err(Error::InvalidParameter);
                }
                (cfg.k, make_target(d, cfg.k, cfg.target_bias, cfg.target_init, seed)?)
            }
        };
        let mut rngs: Vec<Rng> = (0..classes.len() as u64).map(|c| Rng::derive(seed, c)).collect();
        let init = |r: &mut Rng| Linear::new(d, k, cfg.predictor_bias, cfg.predictor_init, r);
        let predictors: Vec<Linear<Vec<f32>>> = crate::parallel::map_mut(&mut rngs, init).into_iter().collect::<Result<_>>()?;
        let compact = compact && cfg.predictor_step.weight_decay == 0.0;
        let live: Vec<Option<Vec<(usize, usize)>>> = classes
            .iter()
            .map(|c| {
                let cols = live_columns(c, c.len() / d, d);
                (compact && cols.len() < d).then(|| column_runs(&cols))
            })
            .collect();
        let states = predictors
            .iter()
            .zip(&live)
            .map(|(p, runs)| {
                let w = runs.as_ref().map_or(d, |r| run_width(r)) * p.outputs();
                let b = p.bias().map_or(0, |b| b.len());
                OptState::from_parts(vec![0.0; w], vec![0.0; w], vec![0.0; b], vec![0.0; b])
            })
            .collect();
        let target_state = match (&cfg.method, &target) {
            (GradientMethod::Bd, Target::Linear(l)) => Some(OptState::for_layer(l)),
            _ => None,
        };
        let model = Model {
            method: cfg.method.into(),
            members: vec![Member {
                target,
                predictors: predictors.into_iter().map(Predictor::Dense).collect(),
            }],
            capacity: labels.len() as u16,
            labels,
            threshold: None,
            score: crate::novelty::Score::Best,
            preprocess: Preprocess::default(),
            fit: FitOptions::default(),
        };
        Ok(GradientTrainer {
            cfg: *cfg,
            classes,
            d,
            model,
            states,
            live,
            rngs,
            target_state,
            target_rng: Rng::derive(seed, TARGET_STREAM - 1),
            epochs_done: 0,
        })
    }

    /// The model as trained so far.
    pub fn model(&self) -> &Model {
        &self.model
    }
    /// Takes the model.
    pub fn into_model(self) -> Model {
        self.model
    }
    /// Epochs run so far.
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// Runs one epoch (BD: stage 1 on the target, then stage 2 on the predictors) and returns
    /// the predictors' mean loss over classes.
    pub fn epoch(&mut self) -> Result<f32> {
        let d = self.d;
        let member = &mut self.model.members[0];
        if let (Some(ts), Target::Linear(target)) = (self.target_state.as_mut(), &mut member.target) {
            // Stage 1: the target learns to predict each class's predictor on that class.
            let k = target.outputs();
            let n: usize = self.classes.iter().map(|c| c.len() / d).sum();
            let mut xs = Vec::with_capacity(n * d);
            let mut t1 = vec![0.0; n * k];
            let mut off = 0;
            for (c, p) in self.classes.iter().zip(&member.predictors) {
                let m = c.len() / d;
                xs.extend_from_slice(c);
                if let Predictor::Dense(p) = p {
                    p.forward_batch(c, m, &mut t1[off * k..(off + m) * k])?;
                }
                off += m;
            }
            let mut order: Vec<u32> = (0..n as u32).collect();
            self.target_rng.shuffle(&mut order);
            fit_epoch(target, ts, &xs, &t1, &order, &self.cfg.target_step)?;
        }
        // Stage 2 (every method): each predictor simulates the (now frozen) target.
        let target = &member.target;
        let step = self.cfg.predictor_step;
        let work = |((((p, st), rng), xs), live): ClassWork<'_>| -> Result<f32> {
            let Predictor::Dense(p) = p else {
                return Err(Error::InvalidParameter);
            };
            let m = xs.len() / d;
            let k = target.outputs();
            let mut ts = vec![0.0; m * k];
            target.forward_batch(xs, m, &mut ts)?;
            let mut order: Vec<u32> = (0..m as u32).collect();
            rng.shuffle(&mut order);
            let Some(runs) = live else {
                return fit_epoch(p, st, xs, &ts, &order, &step);
            };
            // The predictor restricted to the live inputs trains on the samples restricted
            // to them, then goes back into its columns.
            let width = run_width(runs);
            let mut cx = Vec::with_capacity(m * width);
            gather_columns(xs, d, runs, &mut cx);
            let mut cw = Vec::with_capacity(k * width);
            gather_columns(p.weight(), d, runs, &mut cw);
            let mut cp = Linear::from_parts(width, k, cw, p.bias().map(<[f32]>::to_vec))?;
            let loss = fit_epoch(&mut cp, st, &cx, &ts, &order, &step)?;
            scatter_columns(cp.weight(), p.weight_mut(), d, runs);
            if let (Some(b), Some(cb)) = (p.bias_mut(), cp.bias()) {
                b.copy_from_slice(cb);
            }
            Ok(loss)
        };
        let items = member
            .predictors
            .iter_mut()
            .zip(self.states.iter_mut())
            .zip(self.rngs.iter_mut())
            .zip(self.classes.iter())
            .zip(self.live.iter());
        let losses: Vec<Result<f32>> = crate::parallel::map_owned(items.collect(), work);
        let mut total = 0.0;
        for l in &losses {
            total += (*l)?;
        }
        self.epochs_done += 1;
        Ok(total / losses.len() as f32)
    }

    /// Runs the configured number of epochs and returns the model.
    pub fn run(mut self) -> Result<Model> {
        for _ in 0..self.cfg.epochs {
            self.epoch()?;
        }
        Ok(self.model)
    }
}

/// One class's share of an epoch: its predictor, optimiser state, stream and samples.
type ClassWork<'a> = (
    (
        ((&'a mut Predictor<Vec<f32>>, &'a mut OptState<Vec<f32>>), &'a mut Rng),
        &'a &'a [f32],
    ),
    &'a Option<Vec<(usize, usize)>>,
);

/// Settings of the closed-form method.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClosedFormConfig {
    /// Target outputs `k`; 0 = identity target (the exact nearest-subspace classifier).
    pub k: usize,
    /// Target has a bias.
    pub target_bias: bool,
    /// Target initialisation.
    pub target_init: Init,
    /// The fit.
    pub fit: FitOptions,
    /// [`fit_compact`] on images: each class's samples also add warped copies of themselves
    /// while they stay within this many images ([`crate::augment::fill`], the model's
    /// [`Preprocess::fill`]); 0 = none.
    pub fill: u8,
    /// The model's query alignment ([`Preprocess::align`], [`crate::augment::ALIGNS`]; 0 =
    /// none), images only: [`fit_compact`] records it with the image geometry; after
    /// [`fit_closed_form`], which has no geometry, the caller records both.
    #[serde(default)]
    pub align: u8,
}

impl Default for ClosedFormConfig {
    fn default() -> Self {
        ClosedFormConfig {
            k: 256,
            target_bias: true,
            target_init: Init::XavierNormal,
            fit: FitOptions::default(),
            fill: 0,
            align: 0,
        }
    }
}

/// Fits every class in closed form: no epochs, deterministic given the seed (which only
/// draws the target).
pub fn fit_closed_form(classes: &[&[f32]], d: usize, labels: &[&str], cfg: &ClosedFormConfig, seed: u64) -> Result<Model> {
    check_support(classes, d)?;
    let labels = labels_for(labels, classes.len())?;
    let target = make_target(d, cfg.k, cfg.target_bias, cfg.target_init, seed)?;
    let predictors: Result<Vec<_>> = crate::parallel::map(classes, |xs| {
        Subspace::fit(&target, xs, xs.len() / d, &cfg.fit).map(Predictor::Subspace)
    })
    .into_iter()
    .collect();
    Ok(closed_model(target, predictors?, labels, Preprocess::default(), cfg.fit))
}

/// A closed-form model of one member, its capacity its classes.
fn closed_model(
    target: Target<Vec<f32>>,
    predictors: Vec<Predictor<Vec<f32>>>,
    labels: Vec<Label>,
    preprocess: Preprocess,
    fit: FitOptions,
) -> Model {
    Model {
        method: Method::ClosedForm,
        members: vec![Member { target, predictors }],
        capacity: labels.len() as u16,
        labels,
        threshold: None,
        score: crate::novelty::Score::Best,
        preprocess,
        fit,
    }
}

/// Fits every class in the compact closed form a microcontroller keeps ([`crate::fit`]): from
/// the raw (preprocessed, not augmented) samples of each class, augmented with their shifts
/// by up to `shift` pixels when `image` gives their geometry, at most `cfg.fit.max_rank`
/// directions (no limit at 0). Up to [`crate::fit::GRAM_ROWS`] rows each
/// class has the bits a device enrolling the same samples computes. The model records the
/// shift and geometry in its preprocessing (scale 1, offset 0: the caller sets them).
pub fn fit_compact(
    classes: &[&[f32]],
    d: usize,
    labels: &[&str],
    cfg: &ClosedFormConfig,
    image: Option<(usize, usize)>,
    shift: u8,
    seed: u64,
) -> Result<Model> {
    check_support(classes, d)?;
    let labels = labels_for(labels, classes.len())?;
    let target = make_target(d, cfg.k, cfg.target_bias, cfg.target_init, seed)?;
    let cap = match cfg.fit.max_rank {
        0 => d,
        r => (r as usize).min(d),
    };
    if cfg.fill > crate::augment::MAX_FILL {
        return Err(Error::InvalidParameter);
    }
    let fill = if image.is_some() { cfg.fill } else { 0 };
    if fill > 0 && image.is_some_and(|(w, h)| w.checked_mul(h) != Some(d)) {
        return Err(Error::InvalidParameter);
    }
    let predictors: Result<Vec<_>> = crate::parallel::map(classes, |xs| {
        let n = xs.len() / d;
        // The warped copies a device adds in its free image slots.
        let filled;
        let (xs, n) = match image {
            Some((w, h)) if fill > 0 => {
                let mut buf = vec![0.0; n * (1 + crate::augment::warps_per_image(n, fill)) * d];
                buf[..xs.len()].copy_from_slice(xs);
                let n = crate::augment::fill(&mut buf, n, w, h, fill)?;
                filled = buf;
                (filled.as_slice(), n)
            }
            _ => (*xs, n),
        };
        let smp = crate::fit::Samples {
            data: xs,
            n,
            d,
            image,
            shift,
        };
        crate::fit::fit_owned(&target, &smp, &cfg.fit, cap).map(Predictor::Compact)
    })
    .into_iter()
    .collect();
    let image = match image {
        Some((w, h)) => Some(crate::model::ImageSpec {
            width: u16::try_from(w).map_err(|_| Error::InvalidParameter)?,
            height: u16::try_from(h).map_err(|_| Error::InvalidParameter)?,
            source_width: 0,
            source_height: 0,
        }),
        None => None,
    };
    let preprocess = Preprocess {
        image,
        shift: if image.is_some() { shift } else { 0 },
        fill,
        align: if image.is_some() { cfg.align } else { 0 },
        ..Preprocess::default()
    };
    // An unknown alignment is refused here, not at the first classification.
    preprocess.alignment()?;
    Ok(closed_model(target, predictors?, labels, preprocess, cfg.fit))
}

/// An ensemble of `members` independent models ("randomized prior functions"): member `i`
/// gets its own seed and a bootstrap resample (with replacement, same size) of every class's
/// samples, and is built by `build(classes, member_seed)`. The members are joined into one
/// model whose classification averages their distances and reports their agreement.
pub fn ensemble<F>(classes: &[&[f32]], d: usize, members: usize, seed: u64, mut build: F) -> Result<Model>
where
    F: FnMut(&[&[f32]], u64) -> Result<Model>,
{
    check_support(classes, d)?;
    if members == 0 || members > crate::classify::MAX_MEMBERS {
        return Err(Error::InvalidParameter);
    }
    let mut out: Option<Model> = None;
    for i in 0..members {
        let mut rng = Rng::derive(seed ^ 0x5EED_E45E, i as u64);
        let resampled: Vec<Vec<f32>> = classes
            .iter()
            .map(|c| {
                let m = c.len() / d;
                let mut r = Vec::with_capacity(c.len());
                for _ in 0..m {
                    let j = rng.below(m as u32) as usize;
                    r.extend_from_slice(&c[j * d..(j + 1) * d]);
                }
                r
            })
            .collect();
        let views: Vec<&[f32]> = resampled.iter().map(|v| v.as_slice()).collect();
        let model = build(&views, Rng::derive(seed, i as u64).next_u64())?;
        match out.as_mut() {
            None => out = Some(model),
            Some(o) => {
                check_len(o.labels.len(), model.labels.len())?;
                o.members.extend(model.members);
            }
        }
    }
    let model = out.ok_or(Error::InvalidParameter)?;
    model.validate()?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Training each predictor on its class's live inputs gives the model that training on
    /// every input gives, up to rounding; the weights on a class's blank inputs keep their
    /// initial values in both. BD (weight decay) trains on every input.
    #[test]
    fn training_on_the_live_inputs_equals_training_on_all() {
        const D: usize = 40;
        let mut rng = Rng::new(11);
        // Class 0: inputs 0..12 blank; class 1: every third input blank; class 2: none.
        let blank = |c: usize, j: usize| match c {
            0 => j < 12,
            1 => j.is_multiple_of(3),
            _ => false,
        };
        let data: Vec<Vec<f32>> = (0..3)
            .map(|c| (0..7 * D).map(|i| if blank(c, i % D) { 0.0 } else { rng.normal() }).collect())
            .collect();
        let views: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
        let labels = ["a", "b", "c"];
        for cfg in [GradientConfig::o2md_paper(16), GradientConfig::naive_paper()] {
            let fresh = GradientTrainer::with_compaction(&views, D, &labels, &cfg, 5, false).unwrap();
            let plain = GradientTrainer::with_compaction(&views, D, &labels, &cfg, 5, false).unwrap();
            let compact = GradientTrainer::new(&views, D, &labels, &cfg, 5).unwrap();
            assert!(plain.live.iter().all(Option::is_none));
            assert_eq!(compact.live.iter().map(Option::is_some).collect::<Vec<_>>(), [true, true, false]);
            let (plain, compact) = (plain.run().unwrap(), compact.run().unwrap());
            let dense = |m: &Model, c: usize| match &m.members[0].predictors[c] {
                Predictor::Dense(p) => p.clone(),
                _ => unreachable!(),
            };
            for c in 0..3 {
                let (p0, p1, p2) = (dense(fresh.model(), c), dense(&plain, c), dense(&compact, c));
                for (i, ((&w0, &w1), &w2)) in p0.weight().iter().zip(p1.weight()).zip(p2.weight()).enumerate() {
                    if blank(c, i % D) {
                        assert_eq!((w1, w2), (w0, w0), "class {c}, weight {i} on a blank input moved");
                    } else {
                        assert!((w1 - w2).abs() <= 1e-5 * (1.0 + w1.abs()), "class {c}, weight {i}: {w1} vs {w2}");
                    }
                }
                let moved = p0.weight().iter().zip(p2.weight()).filter(|(a, b)| a != b).count();
                assert!(moved > 0, "class {c} did not train");
                for (b1, b2) in p1.bias().unwrap().iter().zip(p2.bias().unwrap()) {
                    assert!((b1 - b2).abs() <= 1e-5 * (1.0 + b1.abs()));
                }
            }
        }
        let bd = GradientTrainer::new(&views, D, &labels, &GradientConfig::bd_paper(16), 5).unwrap();
        assert!(bd.live.iter().all(Option::is_none));
    }
}
