//! Running a cell's trials: several at once or one after another, the same results either
//! way.

use crate::data::Loaded;
use crate::experiment::{self, Episode, Protocol, TrialResult};
use crate::methods::MethodSpec;
use anyhow::{Context, Result};
use clap::Args;
use indicatif::ProgressBar;

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

/// Trials `range` of one method on the episodes `draw` makes (`draw(t)`: trial `t`'s, or
/// the same one for every trial), `jobs` at a time, in trial order; `d` inputs per sample,
/// `image` their shape.
#[allow(clippy::too_many_arguments)]
pub fn run_drawn<E, F>(
    method: &MethodSpec,
    d: usize,
    image: Option<(usize, usize)>,
    protocol: &Protocol,
    per_epoch: bool,
    jobs: usize,
    bar: &ProgressBar,
    draw: F,
) -> Result<Vec<TrialResult>>
where
    E: std::borrow::Borrow<Episode>,
    F: Fn(usize) -> Result<E> + Sync + Send,
{
    map_jobs(jobs, 0..protocol.trials, |t| {
        let ep = draw(t)?;
        let r = experiment::run_trial(method, ep.borrow(), d, image, protocol.seed, t, per_epoch)
            .with_context(|| format!("{} trial {t}", method.name()))?;
        bar.inc(1);
        Ok(r)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;

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
