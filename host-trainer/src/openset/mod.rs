//! `ldl openset`: how well a model says "unknown". Episodes hold some classes out: the model
//! is fitted on the known classes only (as `ldl fewshot` fits them), every query of a known
//! or an unknown class is scored for novelty, and each score is judged by its AUROC
//! (unknowns are the positives, higher is more novel) and by the share of unknowns it
//! catches when it wrongly rejects at most 5% of the knowns ([`metrics`]). Means and 95%
//! intervals over trials, per method and per score; ROC curves as SVG.
//!
//! The scores are computed from the per-class distances the core returns, by the core's
//! own functions ([`ldl_core::novelty`]), so a device can compute the same ones.

pub mod metrics;
pub mod svg;

use crate::data::Dataset;
use crate::data::{DataArgs, DatasetKind, Loaded};
use crate::experiment::{ci_text, mean_ci95};
use crate::methods::{MethodSpec, NamedMethod};
use crate::progress::bar;
use crate::trials::{map_jobs, JobsArg};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use ldl_core::classify::Classes;
use ldl_core::novelty::{self, Score};
use ldl_core::{Model, Rng};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Where supports and queries come from.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Supports from the training split, queries from the test split (Omniglot: disjoint
    /// drawings of the same characters; CSV: --data and --test).
    Test,
    /// MNIST only: supports from training images 0..50000, queries from training images
    /// 50000..60000 (the split `ldl tune` uses); the test split is never read.
    Validation,
}

/// Arguments of `ldl openset`.
#[derive(Debug, Args)]
pub struct OpensetArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Known classes per trial, drawn at random (the model is fitted on them).
    #[arg(long, default_value_t = 8)]
    pub known: usize,
    /// Unknown classes per trial, drawn at random among the others (never fitted; their
    /// queries should be called unknown).
    #[arg(long, default_value_t = 2)]
    pub unknown: usize,
    /// Support samples per known class.
    #[arg(long, default_value_t = 5)]
    pub shots: usize,
    /// Trials (episodes).
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Query samples per class (default: every query sample of the episode's classes; for
    /// Omniglot, every drawing not in the support).
    #[arg(long)]
    pub queries: Option<usize>,
    /// LDL methods, as `ldl fewshot` names them: device[:K[:SHIFT]], mcu[:RANK[:SHIFT]],
    /// closed[:K], o2md[...], bd[...], naive[...]. The baselines have no class distances.
    #[arg(long, value_delimiter = ',', default_value = "device")]
    pub methods: Vec<String>,
    /// Novelty scores to compare: best (the closest class's distance, the classifier's own),
    /// ratio (closest / second-closest), contrast (closest / the mean over the classes; the one chosen on the validation split,
    /// docs/novelty.md), normalized (closest distance over that class's
    /// spread, the mean of its support samples' leave-one-out distances; pooled over classes
    /// with 1 shot), normalized-min (the smallest distance over spread), relative (closest
    /// distance over the input's squared norm), span (distance to the span of every known
    /// class's support together: one more fit), disagreement (ensembles: the share of members
    /// whose closest class is not the ensemble's). Default: the first six, and disagreement
    /// with --members above 1.
    #[arg(long, value_delimiter = ',')]
    pub scores: Option<Vec<String>>,
    /// Ensemble members per model (bootstrap resamples of each class's support, each member
    /// its own seed; `ldl_core::methods::ensemble`). 1 = a plain model.
    #[arg(long, default_value_t = 1)]
    pub members: usize,
    /// The false rejection of knowns the true-positive rate is read at.
    #[arg(long, default_value_t = 0.05)]
    pub fpr: f64,
    /// Where supports and queries come from. `validation` (MNIST): training images 0..50000
    /// for supports, 50000..60000 for queries, as `ldl tune`. Same as --validation.
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    /// Seed of everything: classes, supports, targets.
    #[arg(long, default_value_t = 2019)]
    pub seed: u64,
    /// Write the ROC curves (mean over trials, one line per method and score) here as SVG.
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,
    /// Print the results as JSON (every trial included) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The most bytes of weights and optimiser state one trial may allocate (as fewshot).
    #[arg(long, value_name = "SIZE", value_parser = crate::units::parse_size, default_value = "4G")]
    pub max_weight_bytes: u64,
    #[command(flatten)]
    pub jobs: JobsArg,
}

/// A novelty score to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Novelty {
    /// One of the core's scores from the class distances.
    Core(Score),
    /// Distance to one more class fitted on every known class's support at once.
    Span,
    /// Ensemble disagreement ([`novelty::disagreement`]).
    Disagreement,
}

impl Novelty {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Novelty::Core(s) => s.name(),
            Novelty::Span => "span",
            Novelty::Disagreement => "disagreement",
        }
    }

    /// Parses a name ([`Novelty::name`]).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Some(c) = Score::from_name(s) {
            return Ok(Novelty::Core(c));
        }
        match s {
            "span" => Ok(Novelty::Span),
            "disagreement" => Ok(Novelty::Disagreement),
            _ => bail!("unknown score {s:?} (best, ratio, contrast, normalized, normalized-min, relative, span, disagreement)"),
        }
    }

    fn needs_spreads(self) -> bool {
        matches!(self, Novelty::Core(s) if s.needs_spreads())
    }
}

/// The scores compared by default: the core's, and disagreement for an ensemble.
pub fn default_scores(members: usize) -> Vec<Novelty> {
    let mut v: Vec<Novelty> = Score::ALL.into_iter().map(Novelty::Core).collect();
    if members > 1 {
        v.push(Novelty::Disagreement);
    }
    v
}

/// How a run's episodes are drawn and scored.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Known classes per episode.
    pub known: usize,
    /// Unknown classes per episode.
    pub unknown: usize,
    /// Support samples per known class.
    pub shots: usize,
    /// Query samples per class (`None`: all).
    pub queries: Option<usize>,
    /// Trials.
    pub trials: usize,
    /// Ensemble members.
    pub members: usize,
    /// Scores.
    pub scores: Vec<Novelty>,
    /// False-positive rate of the operating point.
    pub fpr: f64,
    /// Seed.
    pub seed: u64,
}

impl Plan {
    /// Checks the plan against a data set of `classes` classes: clear errors for what cannot
    /// work.
    pub fn check(&self, classes: usize) -> Result<()> {
        if self.unknown == 0 {
            bail!("--unknown must be at least 1: an open-set episode holds classes out (ldl fewshot measures closed-set accuracy)");
        }
        if self.known == 0 {
            bail!("--known must be at least 1: the model needs classes to know");
        }
        if self.known.saturating_add(self.unknown) > classes {
            bail!(
                "--known {} and --unknown {} need {} classes, the data set has {classes}",
                self.known,
                self.unknown,
                self.known.saturating_add(self.unknown)
            );
        }
        if self.shots == 0 || self.trials == 0 || self.queries == Some(0) {
            bail!("--shots, --trials and --queries must be at least 1");
        }
        if !(self.fpr.is_finite() && self.fpr > 0.0 && self.fpr < 1.0) {
            bail!("--fpr must be a number between 0 and 1 (exclusive), not {}", self.fpr);
        }
        if self.members == 0 || self.members > ldl_core::classify::MAX_MEMBERS {
            bail!("--members must be 1 to {}", ldl_core::classify::MAX_MEMBERS);
        }
        if self.scores.is_empty() {
            bail!("--scores: give at least one score");
        }
        for s in &self.scores {
            match s {
                Novelty::Core(c) if self.known < c.min_classes() => {
                    bail!(
                        "score {} compares the closest class with others: it needs --known 2 or more",
                        c.name()
                    )
                }
                Novelty::Disagreement if self.members < 2 => {
                    bail!("score disagreement is the ensemble members' disagreement: it needs --members 2 or more")
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// One episode: known classes with their supports, the queries of known and unknown classes.
pub struct Episode {
    /// Data-set classes fitted, in episode order.
    pub known: Vec<usize>,
    /// Data-set classes held out.
    pub unknown: Vec<usize>,
    /// Support rows (row-major), one matrix per known class.
    pub support: Vec<Vec<f32>>,
    /// Query rows, row-major.
    pub queries: Arc<[f32]>,
    /// Data-set class of each query.
    pub labels: Arc<[u32]>,
}

/// Query rows (row-major) and the data-set class of each.
type Queries = (Arc<[f32]>, Arc<[u32]>);

/// The data a run draws from: supports from `train`, queries from `test` (or, without one,
/// from other samples of `train`).
pub struct Pools<'a> {
    train: &'a Dataset,
    test: Option<&'a Dataset>,
    train_by_class: Vec<Vec<usize>>,
    test_by_class: Option<Vec<Vec<usize>>>,
    /// Every test sample, when each episode queries all of them.
    all_queries: Option<Queries>,
}

impl<'a> Pools<'a> {
    /// Indexes the data for `plan`.
    pub fn new(loaded: &'a Loaded, plan: &Plan) -> Pools<'a> {
        let train = &loaded.train;
        let test = loaded.test.as_ref();
        let every_class = plan.known + plan.unknown == train.num_classes();
        let all_queries = match test {
            Some(t) if every_class && plan.queries.is_none() => Some((t.features.clone().into(), t.labels.clone().into())),
            _ => None,
        };
        Pools {
            train,
            test,
            train_by_class: train.class_indices(),
            test_by_class: test.filter(|_| all_queries.is_none()).map(|t| t.class_indices()),
            all_queries,
        }
    }

    /// Draws episode `trial`: the classes shuffled from the seed, the first `known` fitted,
    /// the next `unknown` held out; `shots` support samples of each known class (a uniform
    /// sample without replacement); the queries.
    pub fn episode(&self, plan: &Plan, trial: usize) -> Result<Episode> {
        let mut rng = Rng::derive(plan.seed ^ 0x4F50_454E_5345_5421, trial as u64);
        let train = self.train;
        let mut classes: Vec<usize> = (0..train.num_classes()).collect();
        rng.shuffle(&mut classes);
        let known = classes[..plan.known].to_vec();
        let unknown = classes[plan.known..plan.known + plan.unknown].to_vec();
        let mut support = Vec::with_capacity(known.len());
        let (mut queries, mut labels) = (Vec::new(), Vec::new());
        for (i, &c) in known.iter().chain(&unknown).enumerate() {
            let is_known = i < known.len();
            let shots = if is_known { plan.shots } else { 0 };
            let mut idx = self.train_by_class[c].clone();
            // Without a test split, queries are other samples of the class.
            let q = match self.test {
                Some(_) => 0,
                None => plan.queries.unwrap_or(idx.len().saturating_sub(plan.shots)),
            };
            let need = shots + q;
            if idx.len() < need {
                bail!("class {} has {} samples, the episode needs {need}", train.class_names[c], idx.len());
            }
            for j in 0..need {
                let r = j + rng.below((idx.len() - j) as u32) as usize;
                idx.swap(j, r);
            }
            if is_known {
                support.push(idx[..shots].iter().flat_map(|&r| train.row(r).iter().copied()).collect());
            }
            let (set, rows): (&Dataset, Vec<usize>) = match (self.test, &self.test_by_class) {
                (Some(_), None) => continue, // every test sample, shared below
                (Some(t), Some(tb)) => {
                    let mut rows = tb[c].clone();
                    if let Some(q) = plan.queries {
                        rng.shuffle(&mut rows);
                        rows.truncate(q);
                    }
                    (t, rows)
                }
                (None, _) => (train, idx[shots..need].to_vec()),
            };
            for r in rows {
                queries.extend_from_slice(set.row(r));
                labels.push(set.labels[r]);
            }
        }
        let (queries, labels) = match &self.all_queries {
            Some((q, l)) => (q.clone(), l.clone()),
            None => (queries.into(), labels.into()),
        };
        Ok(Episode {
            known,
            unknown,
            support,
            queries,
            labels,
        })
    }
}

/// One member of a model, as a plain model's classes (for each member's own answer).
struct OneMember<'a>(&'a Model, usize);

impl Classes for OneMember<'_> {
    fn members(&self) -> usize {
        1
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn target(&self, _: usize) -> ldl_core::Result<ldl_core::Target<&[f32]>> {
        self.0.target(self.1)
    }
    fn predictor(&self, _: usize, class: usize) -> ldl_core::Result<ldl_core::Predictor<&[f32]>> {
        self.0.predictor(self.1, class)
    }
}

/// Refuses what cannot give class distances, before any data is drawn.
pub fn check_method(m: &NamedMethod, image: Option<(usize, usize)>) -> Result<()> {
    match &m.spec {
        MethodSpec::Gradient(_) | MethodSpec::Compact { .. } => Ok(()),
        MethodSpec::ClosedForm { shift, .. } => {
            if *shift > 0 && image.is_none() {
                bail!(
                    "method {}: shifts images by up to {shift} pixels, and this data set has no images (try {}::0, mcu or closed)",
                    m.name,
                    m.name.split(':').next().unwrap_or("device")
                );
            }
            Ok(())
        }
        _ => bail!(
            "method {}: a baseline, it gives no class distances to score novelty with (use an LDL method: device, mcu, closed, o2md, bd, naive)",
            m.name
        ),
    }
}

/// A method (plain, or an ensemble of bootstrap members) and how to fit it.
struct Fitter {
    spec: MethodSpec,
    d: usize,
    image: Option<(usize, usize)>,
    seed: u64,
}

impl Fitter {
    fn fit(&self, views: &[&[f32]]) -> Result<Model> {
        crate::experiment::fit_model(&self.spec, views, self.d, self.image, self.seed)
    }

    /// Each class's spread: the mean distance of each support sample to the class fitted
    /// again without it ([`novelty::loo_spread`]); classes of one sample get the others'
    /// mean ([`novelty::pool_spreads`]). Closed forms fit each class alone (the class's
    /// predictor does not depend on the others); gradient methods fit the whole model again.
    fn spreads(&self, views: &[&[f32]]) -> Result<Vec<f32>> {
        let d = self.d;
        let alone = matches!(self.spec, MethodSpec::ClosedForm { .. } | MethodSpec::Compact { .. });
        let mut spreads = vec![f32::NAN; views.len()];
        for (c, sup) in views.iter().enumerate() {
            let m = sup.len() / d;
            if m < 2 {
                continue;
            }
            let mut loo = Vec::with_capacity(m);
            for i in 0..m {
                let rest: Vec<f32> = sup[..i * d].iter().chain(&sup[(i + 1) * d..]).copied().collect();
                let x = &sup[i * d..(i + 1) * d];
                let dist = if alone {
                    let model = self.fit(&[&rest])?;
                    let mut out = [0.0f32];
                    ldl_core::batch::distances(&model, x, 1, &mut out)?;
                    out[0]
                } else {
                    let mut all = views.to_vec();
                    all[c] = &rest;
                    let model = self.fit(&all)?;
                    let mut out = vec![0.0f32; views.len()];
                    ldl_core::batch::distances(&model, x, 1, &mut out)?;
                    out[c]
                };
                loo.push(dist);
            }
            spreads[c] = novelty::loo_spread(&loo).unwrap_or(f32::NAN);
        }
        novelty::pool_spreads(&mut spreads);
        Ok(spreads)
    }
}

/// One score in one trial.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreTrial {
    /// The score's name.
    pub score: &'static str,
    /// Area under the ROC curve.
    pub auroc: f64,
    /// Unknowns caught at the operating point.
    pub tpr: f64,
    /// Knowns rejected there (at most `--fpr`).
    pub fpr: f64,
    /// The threshold (null: none).
    pub threshold: Option<f64>,
    /// TPR on [`metrics::fpr_grid`].
    #[serde(skip)]
    pub roc: Vec<f64>,
}

/// One trial of one method.
#[derive(Debug, Clone, Serialize)]
pub struct TrialOut {
    /// Episode index.
    pub trial: usize,
    /// Names of the known classes.
    pub known: Vec<String>,
    /// Names of the unknown classes.
    pub unknown: Vec<String>,
    /// Queries of known classes.
    pub known_queries: usize,
    /// Queries of unknown classes.
    pub unknown_queries: usize,
    /// Closed-set accuracy: known queries whose closest class is theirs.
    pub accuracy: f64,
    /// Seconds fitting the model.
    pub train_secs: f64,
    /// Seconds scoring (distances, spreads, metrics).
    pub eval_secs: f64,
    /// Each score.
    pub scores: Vec<ScoreTrial>,
}

/// Runs one trial of one method.
pub fn run_trial(pools: &Pools<'_>, plan: &Plan, spec: &MethodSpec, trial: usize) -> Result<TrialOut> {
    let ep = pools.episode(plan, trial)?;
    let train = pools.train;
    let d = train.dim;
    let fitter = Fitter {
        spec: spec.clone().ensemble(plan.members)?,
        d,
        image: train.image,
        seed: Rng::derive(plan.seed ^ 0x4D45_5448, trial as u64).next_u64(),
    };
    let views: Vec<&[f32]> = ep.support.iter().map(Vec::as_slice).collect();
    let t0 = Instant::now();
    let model = fitter.fit(&views).context("fitting the known classes")?;
    let train_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (c, n) = (ep.known.len(), ep.labels.len());
    let e = |what: &'static str| move |err: ldl_core::Error| anyhow!("{what}: {err}");
    let mut dist = vec![0.0f32; n * c];
    ldl_core::batch::distances(&model, &ep.queries, n, &mut dist).map_err(e("class distances of the queries"))?;
    // Each query's role: its episode class, or unknown.
    let mut role = vec![None; train.num_classes()];
    for (i, &k) in ep.known.iter().enumerate() {
        role[k] = Some(Some(i));
    }
    for &u in &ep.unknown {
        role[u] = Some(None);
    }
    let closest: Vec<usize> = dist.chunks_exact(c).map(closest_class).collect();
    let (mut correct, mut nk) = (0usize, 0usize);
    for (q, &l) in ep.labels.iter().enumerate() {
        if let Some(Some(k)) = role[l as usize] {
            nk += 1;
            correct += usize::from(closest[q] == k);
        }
    }
    let scores = &plan.scores;
    let spreads = if scores.iter().any(|s| s.needs_spreads()) {
        fitter.spreads(&views).context("leave-one-out spreads")?
    } else {
        vec![1.0; c]
    };
    let span = if scores.contains(&Novelty::Span) {
        let all: Vec<f32> = ep.support.concat();
        let m = fitter.fit(&[&all]).context("fitting the span of every known class")?;
        let mut out = vec![0.0f32; n];
        ldl_core::batch::distances(&m, &ep.queries, n, &mut out).map_err(e("distances to the span"))?;
        out
    } else {
        Vec::new()
    };
    let member_best: Vec<u16> = if scores.contains(&Novelty::Disagreement) {
        let mm = model.members.len();
        let mut best = vec![0u16; n * mm];
        let mut md = vec![0.0f32; n * c];
        for m in 0..mm {
            ldl_core::batch::distances(&OneMember(&model, m), &ep.queries, n, &mut md).map_err(e("a member's distances"))?;
            for (q, row) in md.chunks_exact(c).enumerate() {
                best[q * mm + m] = closest_class(row) as u16;
            }
        }
        best
    } else {
        Vec::new()
    };
    let norm2: Vec<f32> = ep.queries.chunks_exact(d).map(ldl_core::linalg::norm2).collect();
    let grid = metrics::fpr_grid();
    let mut out = Vec::with_capacity(scores.len());
    for &s in scores {
        let (mut known, mut unknown) = (Vec::with_capacity(nk), Vec::with_capacity(n - nk));
        for (q, &l) in ep.labels.iter().enumerate() {
            let Some(r) = role[l as usize] else { continue };
            let row = &dist[q * c..(q + 1) * c];
            let v = match s {
                Novelty::Core(sc) => sc.of(row, &spreads, norm2[q]),
                Novelty::Span => Ok(span[q]),
                Novelty::Disagreement => {
                    let mm = model.members.len();
                    novelty::disagreement(&member_best[q * mm..(q + 1) * mm], closest[q])
                }
            }
            .map_err(|err| anyhow!("score {} of query {q}: {err}", s.name()))?;
            if r.is_some() {
                known.push(v as f64);
            } else {
                unknown.push(v as f64);
            }
        }
        let ctx = || format!("score {}", s.name());
        let op = metrics::at_fpr(&known, &unknown, plan.fpr).with_context(ctx)?;
        out.push(ScoreTrial {
            score: s.name(),
            auroc: metrics::auroc(&known, &unknown).with_context(ctx)?,
            tpr: op.tpr,
            fpr: op.fpr,
            threshold: op.threshold,
            roc: metrics::roc_on_grid(&known, &unknown, &grid).with_context(ctx)?,
        });
    }
    let names = |cs: &[usize]| cs.iter().map(|&c| train.class_names[c].clone()).collect();
    Ok(TrialOut {
        trial,
        known: names(&ep.known),
        unknown: names(&ep.unknown),
        known_queries: nk,
        unknown_queries: n - nk,
        accuracy: correct as f64 / nk.max(1) as f64,
        train_secs,
        eval_secs: t1.elapsed().as_secs_f64(),
        scores: out,
    })
}

/// A mean with its 95% half-width (null in JSON for a single trial).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stat {
    /// Mean over trials.
    pub mean: f64,
    /// Half-width of the 95% interval ([`mean_ci95`]).
    pub ci95: f64,
}

impl Stat {
    fn of(xs: impl Iterator<Item = f64>) -> Stat {
        let v: Vec<f64> = xs.collect();
        let (mean, ci95) = mean_ci95(&v);
        Stat { mean, ci95 }
    }
}

/// One score of one method over the trials.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreSummary {
    /// The score's name.
    pub score: &'static str,
    /// AUROC.
    pub auroc: Stat,
    /// TPR at the operating point.
    pub tpr: Stat,
    /// FPR at the operating point.
    pub fpr: Stat,
    /// Mean TPR on [`metrics::fpr_grid`].
    pub roc_tpr: Vec<f64>,
}

/// One method over the trials.
#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    /// As typed.
    pub method: String,
    /// What it resolves to.
    pub settings: String,
    /// Closed-set accuracy on the known classes.
    pub accuracy: Stat,
    /// Each score.
    pub scores: Vec<ScoreSummary>,
    /// Every trial.
    pub trials: Vec<TrialOut>,
}

/// Sums up the trials of one method.
pub fn summarize(method: &NamedMethod, trials: Vec<TrialOut>) -> MethodResult {
    let ns = trials.first().map_or(0, |t| t.scores.len());
    let scores = (0..ns)
        .map(|j| {
            let col = |f: fn(&ScoreTrial) -> f64| Stat::of(trials.iter().map(move |t| f(&t.scores[j])));
            let g = trials[0].scores[j].roc.len();
            let roc_tpr = (0..g)
                .map(|i| trials.iter().map(|t| t.scores[j].roc[i]).sum::<f64>() / trials.len() as f64)
                .collect();
            ScoreSummary {
                score: trials[0].scores[j].score,
                auroc: col(|s| s.auroc),
                tpr: col(|s| s.tpr),
                fpr: col(|s| s.fpr),
                roc_tpr,
            }
        })
        .collect();
    MethodResult {
        method: method.name.clone(),
        settings: method.settings(),
        accuracy: Stat::of(trials.iter().map(|t| t.accuracy)),
        scores,
        trials,
    }
}

/// Every method's trials of `plan` on `loaded` (checked with [`Plan::check`] and
/// [`check_method`] first), `jobs` trials at a time, summed up.
pub fn evaluate(loaded: &Loaded, plan: &Plan, methods: &[NamedMethod], jobs: usize) -> Result<Vec<MethodResult>> {
    let pools = Pools::new(loaded, plan);
    let mut results = Vec::new();
    for m in methods {
        let b = bar(plan.trials as u64, format!("{} open set", m.name));
        let trials = map_jobs(jobs, 0..plan.trials, |t| {
            let r = run_trial(&pools, plan, &m.spec, t).with_context(|| format!("{} trial {t}", m.name));
            b.inc(1);
            r
        })?;
        b.finish_and_clear();
        results.push(summarize(m, trials));
    }
    Ok(results)
}

/// Runs `ldl openset`.
pub fn run(a: OpensetArgs) -> Result<()> {
    let mut data = a.data.clone();
    let split = match (a.split, data.validation) {
        (Some(Split::Test), true) => bail!("--split test and --validation contradict each other"),
        (Some(s), false) => s,
        (_, true) => Split::Validation,
        (None, false) => Split::Test,
    };
    if split == Split::Validation {
        if data.dataset != DatasetKind::Mnist {
            bail!("--split validation is MNIST's (training images 0..50000 / 50000..60000); for a CSV give a validation file as --test");
        }
        data.validation = true;
    }
    let scores = match &a.scores {
        Some(v) => v.iter().map(|s| Novelty::parse(s)).collect::<Result<Vec<_>>>()?,
        None => default_scores(a.members),
    };
    let plan = Plan {
        known: a.known,
        unknown: a.unknown,
        shots: a.shots,
        queries: a.queries,
        trials: a.trials,
        members: a.members,
        scores,
        fpr: a.fpr,
        seed: a.seed,
    };
    let mut methods: Vec<NamedMethod> = a.methods.iter().map(|m| NamedMethod::parse(m)).collect::<Result<_>>()?;
    if methods.is_empty() {
        bail!("--methods: give at least one method");
    }
    // What does not depend on the data, before loading it.
    plan.check(usize::MAX)?;
    let loaded = data.load()?;
    let train = &loaded.train;
    plan.check(train.num_classes())?;
    if let Some(note) = crate::methods::drop_shifts_without_images(&mut methods, train.image, data.dataset.name()) {
        eprintln!("{note}");
    }
    for m in &methods {
        check_method(m, train.image)?;
        crate::methods::check_weight_bytes(&m.spec, train.dim, plan.known, a.max_weight_bytes)?;
    }
    if let Some(dir) = a.svg.as_ref().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let t0 = Instant::now();
    let results = evaluate(&loaded, &plan, &methods, a.jobs.jobs)?;
    let secs = t0.elapsed().as_secs_f64();
    let (dataset, shown) = match data.dataset {
        DatasetKind::Mnist => ("mnist", "MNIST"),
        DatasetKind::Omniglot => ("omniglot", "Omniglot"),
        DatasetKind::Csv => ("csv", "CSV"),
    };
    if let Some(path) = &a.svg {
        let title = format!(
            "{shown} open set: {} known / {} unknown, {} shots, {} trials ({} split)",
            plan.known,
            plan.unknown,
            plan.shots,
            plan.trials,
            if split == Split::Validation { "validation" } else { "test" }
        );
        svg::roc(path, &title, &results, plan.fpr).with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        let v = serde_json::json!({
            "dataset": dataset,
            "split": split,
            "validation": (split == Split::Validation).then(|| serde_json::json!({
                "support_rows": [0, crate::data::VALIDATION_START],
                "query_rows": [crate::data::VALIDATION_START, crate::tune::TRAIN_LEN],
            })),
            "known": plan.known, "unknown": plan.unknown, "shots": plan.shots, "trials": plan.trials,
            "queries_per_class": plan.queries, "members": plan.members, "seed": plan.seed,
            "fpr_target": plan.fpr, "seconds": secs, "jobs": a.jobs.jobs,
            "scores": plan.scores.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "roc_fpr": metrics::fpr_grid(),
            "svg": a.svg,
            "results": results,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "open set: {shown} ({} split), {} known / {} unknown classes drawn per trial, {} shots, {} trials{}, seed {}, {secs:.0} s",
        if split == Split::Validation { "validation" } else { "test" },
        plan.known,
        plan.unknown,
        plan.shots,
        plan.trials,
        if plan.members > 1 {
            format!(", ensembles of {}", plan.members)
        } else {
            String::new()
        },
        plan.seed
    );
    let pct = format!("{}", plan.fpr * 100.0);
    println!(
        "{:<16} {:<15} {:>7} {:>7} {:>10} {:>7} {:>7} {:>9} {:>7}  settings",
        "method",
        "score",
        "AUROC",
        "±95%",
        format!("TPR@{pct}%"),
        "±95%",
        "FPR",
        "accuracy",
        "±95%"
    );
    for r in &results {
        for s in &r.scores {
            println!(
                "{:<16} {:<15} {:>7.4} {:>7} {:>10.4} {:>7} {:>7.4} {:>9.4} {:>7}  {}",
                r.method,
                s.score,
                s.auroc.mean,
                ci_text(s.auroc.ci95, 4),
                s.tpr.mean,
                ci_text(s.tpr.ci95, 4),
                s.fpr.mean,
                r.accuracy.mean,
                ci_text(r.accuracy.ci95, 4),
                r.settings
            );
        }
    }
    println!(
        "AUROC: unknowns (positives) against knowns, higher score = more novel; TPR@{pct}%: unknowns above the {}th percentile of the knowns' scores; FPR: knowns above it; accuracy: closed-set, on the known classes' queries",
        100.0 - plan.fpr * 100.0
    );
    if let Some(p) = &a.svg {
        println!("ROC curves: {}", p.display());
    }
    Ok(())
}

/// The class a row of distances decides for: the core's own rule (the first of the smallest
/// finite distances), 0 when none is finite.
fn closest_class(row: &[f32]) -> usize {
    ldl_core::classify::closest(row).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Noisy clusters: `classes` classes, 12 features, `per_class` samples each.
    fn clusters(classes: u32, per_class: usize, seed: u64) -> Dataset {
        let mut rng = Rng::new(seed);
        let centres: Vec<f32> = (0..classes as usize * 12).map(|i| ((i * 7 % 11) as f32) / 2.0).collect();
        let (mut f, mut l) = (Vec::new(), Vec::new());
        for c in 0..classes {
            for _ in 0..per_class {
                f.extend((0..12).map(|j| centres[c as usize * 12 + j] + 0.3 * rng.normal()));
                l.push(c);
            }
        }
        Dataset::new(f, l, (0..classes).map(|c| c.to_string()).collect(), 12, None)
    }

    fn plan(known: usize, unknown: usize, scores: Vec<Novelty>) -> Plan {
        Plan {
            known,
            unknown,
            shots: 4,
            queries: None,
            trials: 3,
            members: 1,
            scores,
            fpr: 0.05,
            seed: 3,
        }
    }

    #[test]
    fn episodes_draw_known_and_unknown_classes_apart() {
        let loaded = Loaded {
            train: clusters(6, 20, 1),
            test: Some(clusters(6, 7, 2)),
        };
        let p = plan(3, 2, default_scores(1));
        let pools = Pools::new(&loaded, &p);
        let mut seen_unknown = std::collections::BTreeSet::new();
        for t in 0..8 {
            let ep = pools.episode(&p, t).unwrap();
            assert_eq!((ep.known.len(), ep.unknown.len()), (3, 2));
            assert!(ep.known.iter().all(|k| !ep.unknown.contains(k)));
            seen_unknown.extend(ep.unknown.iter().copied());
            assert_eq!(ep.support.len(), 3);
            assert!(ep.support.iter().all(|s| s.len() == 4 * 12));
            // The queries: every test sample of the 5 classes, none of the sixth.
            assert_eq!(ep.labels.len(), 5 * 7);
            assert!(ep
                .labels
                .iter()
                .all(|&l| ep.known.contains(&(l as usize)) || ep.unknown.contains(&(l as usize))));
            // The supports are training samples of their classes.
            for (s, &k) in ep.support.iter().zip(&ep.known) {
                for row in s.chunks(12) {
                    let found = (0..loaded.train.len()).any(|i| loaded.train.row(i) == row && loaded.train.labels[i] as usize == k);
                    assert!(found);
                }
            }
            // Reproducible.
            let again = pools.episode(&p, t).unwrap();
            assert_eq!(
                (again.known, again.unknown, again.support),
                (ep.known.clone(), ep.unknown.clone(), ep.support.clone())
            );
        }
        // Unknown classes are drawn at random, not always the last ones.
        assert!(seen_unknown.len() >= 4, "{seen_unknown:?}");
        // Every class in the episode: the whole test set, shared between episodes.
        let all = plan(4, 2, default_scores(1));
        let pools = Pools::new(&loaded, &all);
        let (a, b) = (pools.episode(&all, 0).unwrap(), pools.episode(&all, 1).unwrap());
        assert!(Arc::ptr_eq(&a.queries, &b.queries));
        assert_eq!(a.labels.len(), 42);
        // No test set: queries are the class's other samples, disjoint from the support.
        let one = Loaded {
            train: clusters(6, 10, 1),
            test: None,
        };
        let pools = Pools::new(&one, &p);
        let ep = pools.episode(&p, 0).unwrap();
        assert_eq!(ep.labels.len(), 5 * 6);
        for (s, &k) in ep.support.iter().zip(&ep.known) {
            for (q, &l) in ep.queries.chunks(12).zip(ep.labels.iter()) {
                if l as usize == k {
                    assert!(s.chunks(12).all(|r| r != q));
                }
            }
        }
    }

    /// Separated clusters: known queries are near their classes, unknown ones far from all,
    /// so every distance-based score separates them well and the closed-set accuracy is high.
    #[test]
    fn a_trial_scores_every_query_and_the_scores_separate() {
        let loaded = Loaded {
            train: clusters(6, 20, 1),
            test: Some(clusters(6, 15, 2)),
        };
        let scores = vec![
            Novelty::Core(Score::Best),
            Novelty::Core(Score::Ratio),
            Novelty::Core(Score::Normalized),
            Novelty::Span,
        ];
        let p = plan(4, 2, scores);
        let pools = Pools::new(&loaded, &p);
        let spec = MethodSpec::parse("closed:0").unwrap();
        let t = run_trial(&pools, &p, &spec, 0).unwrap();
        assert_eq!((t.known_queries, t.unknown_queries), (60, 30));
        assert!(t.accuracy > 0.9, "{}", t.accuracy);
        assert_eq!(t.scores.len(), 4);
        let best = &t.scores[0];
        assert!(best.auroc > 0.6, "{best:?}");
        assert!(best.fpr <= 0.05);
        assert_eq!(best.roc.len(), 201);
        // An ensemble adds disagreement, and refits with bootstrap members.
        let mut pe = plan(4, 2, vec![Novelty::Core(Score::Best), Novelty::Disagreement]);
        pe.members = 3;
        let te = run_trial(&pools, &pe, &spec, 0).unwrap();
        assert_eq!(te.scores[1].score, "disagreement");
        assert!((0.0..=1.0).contains(&te.scores[1].auroc));
    }

    /// The closed-set accuracy is what `ldl fewshot` gets on the same classes and supports:
    /// the fit is the same code path.
    #[test]
    fn the_fit_is_fewshot_s() {
        let loaded = Loaded {
            train: clusters(5, 20, 4),
            test: Some(clusters(5, 9, 5)),
        };
        let p = plan(3, 2, vec![Novelty::Core(Score::Best)]);
        let pools = Pools::new(&loaded, &p);
        for m in ["closed:8", "o2md:16", "mcu", "device::0"] {
            let spec = MethodSpec::parse(m).unwrap();
            let ep = pools.episode(&p, 1).unwrap();
            // The known queries only, in episode classes, as a fewshot episode holds them.
            let (mut q, mut answers) = (Vec::new(), Vec::new());
            for (row, &l) in ep.queries.chunks(12).zip(ep.labels.iter()) {
                if let Some(e) = ep.known.iter().position(|&k| k == l as usize) {
                    q.extend_from_slice(row);
                    answers.push(e);
                }
            }
            let fe = crate::experiment::Episode {
                classes: ep.known.clone(),
                support: ep.support.clone(),
                queries: q.into(),
                answers: answers.into(),
            };
            let few = crate::experiment::run_trial(&spec, &fe, 12, None, p.seed, 1, false).unwrap();
            let open = run_trial(&pools, &p, &spec, 1).unwrap();
            assert_eq!(open.accuracy, few.accuracy, "{m}");
        }
    }

    #[test]
    fn plans_that_cannot_work_are_refused() {
        let msg = |p: Plan, classes: usize| p.check(classes).unwrap_err().to_string();
        let best = || vec![Novelty::Core(Score::Best)];
        assert!(msg(plan(8, 2, best()), 6).contains("need 10 classes, the data set has 6"));
        assert!(msg(plan(3, 0, best()), 6).contains("--unknown must be at least 1"));
        assert!(msg(plan(0, 2, best()), 6).contains("--known"));
        assert!(msg(plan(1, 2, vec![Novelty::Core(Score::Ratio)]), 6).contains("--known 2"));
        assert!(msg(plan(3, 2, vec![Novelty::Disagreement]), 6).contains("--members 2"));
        assert!(msg(
            Plan {
                fpr: f64::NAN,
                ..plan(3, 2, best())
            },
            6
        )
        .contains("--fpr"));
        assert!(msg(
            Plan {
                fpr: 1.0,
                ..plan(3, 2, best())
            },
            6
        )
        .contains("--fpr"));
        assert!(msg(
            Plan {
                members: 17,
                ..plan(3, 2, best())
            },
            6
        )
        .contains("--members"));
        assert!(plan(3, 2, best()).check(5).is_ok());
        assert!(Novelty::parse("nope").unwrap_err().to_string().contains("unknown score"));
        assert_eq!(Novelty::parse(" span").unwrap(), Novelty::Span);
        let ncm = NamedMethod::parse("ncm").unwrap();
        assert!(check_method(&ncm, None).unwrap_err().to_string().contains("baseline"));
        let dev = NamedMethod::parse("device").unwrap();
        assert!(check_method(&dev, None).unwrap_err().to_string().contains("no images"));
        assert!(check_method(&dev, Some((28, 28))).is_ok());
    }
}
