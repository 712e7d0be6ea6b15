//! `ldl tune`: the validation sweep that fixed the device mode's hyper-parameters
//! ([`crate::methods::device_mode`]), rerunnable.
//!
//! MNIST only, and only its training split (the test split is never loaded): supports are
//! drawn from training images `0..50000`, the queries are all of training images
//! `50000..60000`. 10-way, 5 trials per (setting, shots), closed-form fits (no epochs), over
//! shift {0, 1, 2} x ridge {0, 10, 100, 300} x affine {yes, no} x k {0 = identity, 256}, at
//! 1, 5 and 10 shots, `min_weight` 0.1 throughout. A setting's score is its mean accuracy
//! over the shots; the table is sorted by it and marks the device mode's setting.
//! `--blurs` and `--warps` add the axes of issue 14's sweep (docs/invariances.md): passes of
//! the core's blur on supports and queries, and warped copies of the support images
//! ([`crate::warps`]); both are 0 in the grid. `--aligns` adds query alignment: each query
//! is also warped by a variant set, and a class's distance is its least over the query and
//! its variants (one classification per variant on a device); `--norms` divides each
//! class's distance by a per-class scale (screened, not used: docs/invariances.md).

use crate::data::{self, Dataset};
use crate::experiment::{augment_support, ci_text, mean_ci95};
use crate::methods::{device_mode, MethodSpec};
use crate::progress::bar;
use anyhow::{bail, Context, Result};
use clap::Args;
use ldl_core::methods::{fit_closed_form, ClosedFormConfig};
use ldl_core::subspace::FitOptions;
use ldl_core::Rng;
use serde::Serialize;
use std::path::PathBuf;

pub use crate::data::VALIDATION_START;
/// MNIST's training split.
pub const TRAIN_LEN: usize = 60_000;

/// Arguments of `ldl tune`.
#[derive(Debug, Args, Clone)]
pub struct TuneArgs {
    /// A first look: shift {0, 2}, ridge {0, 100}, affine no, k {0, 256}, 2 trials.
    #[arg(long)]
    pub quick: bool,
    /// Trials per (setting, shots) (default 5; 2 with --quick).
    #[arg(long)]
    pub trials: Option<usize>,
    /// Shots per class.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10")]
    pub shots: Vec<usize>,
    /// Seed of the episodes and targets.
    #[arg(long, default_value_t = 2019)]
    pub seed: u64,
    /// MNIST folder (default: data/mnist); only the training files are read.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// These ridges (comma-separated) instead of the grid's (e.g. to look at many shots).
    #[arg(long, value_delimiter = ',')]
    pub ridges: Option<Vec<f32>>,
    /// These shifts instead of the grid's.
    #[arg(long, value_delimiter = ',')]
    pub shifts: Option<Vec<u8>>,
    /// These target sizes (0 = identity) instead of the grid's.
    #[arg(long, value_delimiter = ',')]
    pub ks: Option<Vec<usize>>,
    /// These affine choices (true, false) instead of the grid's.
    #[arg(long, value_delimiter = ',')]
    pub affine: Option<Vec<bool>>,
    /// These blur passes (`ldl_core::augment::blur`, applied to supports and queries)
    /// instead of the grid's (0).
    #[arg(long, value_delimiter = ',')]
    pub blurs: Option<Vec<u8>>,
    /// These enrollment variant sets (`crate::warps::SETS`: 0 none, 1 rotations by 10
    /// degrees, 2 scalings, 3 stroke thickness, 4 shears, 5 rotations and scalings, 6
    /// rotations by 15 degrees) instead of the grid's (0).
    #[arg(long, value_delimiter = ',')]
    pub warps: Option<Vec<u8>>,
    /// These query alignments (`crate::warps::ALIGNS`: 0 none, 1 rotations by 10 degrees,
    /// 2 by 15, 3 shears by 0.25, 4 rotations by 15 and shears, 5 shears by 0.15, 6 by
    /// 0.35, 7 by 0.45, 8 by 0.55; a class's distance is its least over the query and its
    /// warps) instead of the grid's (0).
    #[arg(long, value_delimiter = ',')]
    pub aligns: Option<Vec<u8>>,
    /// These per-class normalisations of the distances (0 none; 1 each class's distance over
    /// the mean squared norm of its augmented support rows, its energy; 2 over its mean
    /// distance of the other classes' support images) instead of the grid's (0).
    #[arg(long, value_delimiter = ',')]
    pub norms: Option<Vec<u8>>,
    #[command(flatten)]
    pub jobs: crate::trials::JobsArg,
}

/// One point of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Setting {
    /// Shift augmentation, pixels.
    pub shift: u8,
    /// Ridge.
    pub ridge: f32,
    /// Affine subspaces.
    pub affine: bool,
    /// Target outputs (0 = identity).
    pub k: usize,
    /// Blur passes on supports and queries.
    pub blur: u8,
    /// Enrollment variant set ([`crate::warps::SETS`]).
    pub warp: u8,
    /// Query alignment ([`crate::warps::ALIGNS`]): the warps the query is also seen
    /// through, a class's distance the least over them (0: the query alone).
    pub align: u8,
    /// Per-class normalisation of the distances (0 none, 1 support energy, 2 distance of
    /// the other classes' supports; see `--norms`).
    pub norm: u8,
}

impl Setting {
    fn config(&self) -> ClosedFormConfig {
        ClosedFormConfig {
            k: self.k,
            fit: FitOptions {
                ridge: self.ridge,
                affine: self.affine,
                min_weight: 0.1,
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// The device mode's setting, as [`device_mode`] defines it.
pub fn chosen() -> Setting {
    match device_mode(None) {
        MethodSpec::ClosedForm { cfg, shift } => Setting {
            shift,
            ridge: cfg.fit.ridge,
            affine: cfg.fit.affine,
            k: cfg.k,
            blur: 0,
            warp: 0,
            align: 0,
            norm: 0,
        },
        _ => unreachable!("the device mode is a closed form"),
    }
}

/// The grid's axes: shifts, ridges, affine choices, target sizes (`quick`: a subset).
#[allow(clippy::type_complexity)]
fn axes(quick: bool) -> (&'static [u8], &'static [f32], &'static [bool], &'static [usize]) {
    if quick {
        (&[0, 2], &[0.0, 100.0], &[false], &[0, 256])
    } else {
        (&[0, 1, 2], &[0.0, 10.0, 100.0, 300.0], &[true, false], &[0, 256])
    }
}

/// Every combination of the given axes, at blur 0 and no variants.
fn product(shifts: &[u8], ridges: &[f32], affines: &[bool], ks: &[usize]) -> Vec<Setting> {
    product_all(shifts, ridges, affines, ks, &[0], &[0], &[0], &[0])
}

/// Every combination of the given axes (alignments and normalisations innermost: they
/// share a fit).
#[allow(clippy::too_many_arguments)]
fn product_all(
    shifts: &[u8],
    ridges: &[f32],
    affines: &[bool],
    ks: &[usize],
    blurs: &[u8],
    warps: &[u8],
    aligns: &[u8],
    norms: &[u8],
) -> Vec<Setting> {
    let mut out = Vec::new();
    for &blur in blurs {
        for &warp in warps {
            for &shift in shifts {
                for &ridge in ridges {
                    for &affine in affines {
                        for &k in ks {
                            for &align in aligns {
                                for &norm in norms {
                                    out.push(Setting {
                                        shift,
                                        ridge,
                                        affine,
                                        k,
                                        blur,
                                        warp,
                                        align,
                                        norm,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The grid (`quick`: a subset).
pub fn grid(quick: bool) -> Vec<Setting> {
    let (shifts, ridges, affines, ks) = axes(quick);
    product(shifts, ridges, affines, ks)
}

/// One validation episode: row indices into MNIST's training split.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Shots per class.
    pub shots: usize,
    /// Trial.
    pub trial: usize,
    /// Support rows of each class `0..classes`, all `< VALIDATION_START`.
    pub support: Vec<Vec<usize>>,
    /// Query rows: `VALIDATION_START..labels.len()`.
    pub queries: Vec<usize>,
}

/// The episodes of the sweep, from the training labels alone: supports drawn per class from
/// rows `0..VALIDATION_START`, queries every row from `VALIDATION_START` on.
pub fn plan(labels: &[u32], classes: usize, shots: &[usize], trials: usize, seed: u64) -> Result<Vec<Plan>> {
    if labels.len() <= VALIDATION_START {
        bail!(
            "the training split has {} images, the sweep needs more than {VALIDATION_START}",
            labels.len()
        );
    }
    let mut pool = vec![Vec::new(); classes];
    for (i, &l) in labels[..VALIDATION_START].iter().enumerate() {
        pool[l as usize].push(i);
    }
    let queries: Vec<usize> = (VALIDATION_START..labels.len()).collect();
    let mut out = Vec::new();
    for &m in shots {
        for t in 0..trials {
            let mut rng = Rng::derive(seed ^ 0x5455_4E45, (m * 1000 + t) as u64);
            let mut support = Vec::with_capacity(classes);
            for (c, p) in pool.iter().enumerate() {
                if p.len() < m {
                    bail!("class {c} has {} images before {VALIDATION_START}, {m} shots asked", p.len());
                }
                let mut idx = p.clone();
                rng.sample_front(&mut idx, m);
                idx.truncate(m);
                support.push(idx);
            }
            out.push(Plan {
                shots: m,
                trial: t,
                support,
                queries: queries.clone(),
            });
        }
    }
    Ok(out)
}

/// One setting's results.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The setting.
    pub setting: Setting,
    /// The device mode's setting.
    pub chosen: bool,
    /// Per shots: (shots, mean, 95% half-width, every trial's accuracy).
    pub cells: Vec<Cell>,
    /// Mean of the cells' means.
    pub mean: f64,
}

/// One (setting, shots) cell.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Shots.
    pub shots: usize,
    /// Mean accuracy.
    pub mean: f64,
    /// 95% half-width.
    pub ci95: f64,
    /// Accuracies.
    pub trials: Vec<f64>,
}

/// The queries after a blur of `.0` passes (`.1`), and the variants of them each alignment
/// adds (`.2`, by the alignment's index in the sweep; none for alignment 0).
type Blurred = (u8, Vec<f32>, Vec<Vec<Vec<f32>>>);

/// Runs the sweep on `train` (MNIST's training split).
///
/// Plans run `jobs` at a time ([`crate::trials::JobsArg`]); the results do not depend on it.
pub fn sweep(
    train: &Dataset,
    settings: &[Setting],
    shots: &[usize],
    trials: usize,
    seed: u64,
    jobs: usize,
    show: bool,
) -> Result<Vec<Row>> {
    if train.len() != TRAIN_LEN {
        bail!("expected MNIST's {TRAIN_LEN} training images, found {}", train.len());
    }
    let plans = plan(&train.labels, train.num_classes(), shots, trials, seed)?;
    let d = train.dim;
    let q = &plans[0].queries;
    let mut queries = Vec::with_capacity(q.len() * d);
    for &i in q {
        queries.extend_from_slice(train.row(i));
    }
    let mut blurs: Vec<u8> = settings.iter().map(|s| s.blur).collect();
    blurs.sort_unstable();
    blurs.dedup();
    let mut warps: Vec<u8> = settings.iter().map(|s| s.warp).collect();
    warps.sort_unstable();
    warps.dedup();
    if warps.iter().any(|&w| crate::warps::count(w).is_none()) {
        bail!("variant sets are 0..{}", crate::warps::SETS.len());
    }
    let mut aligns: Vec<u8> = settings.iter().map(|s| s.align).collect();
    aligns.sort_unstable();
    aligns.dedup();
    if aligns.iter().any(|&a| usize::from(a) >= crate::warps::ALIGNS.len()) {
        bail!("query alignments are 0..{}", crate::warps::ALIGNS.len() - 1);
    }
    let images = blurs.iter().any(|&b| b > 0) || warps.iter().any(|&w| w > 0) || aligns.iter().any(|&a| a > 0);
    if images && train.image.is_none() {
        bail!("blur, variants and alignments need images");
    }
    // The queries after each blur, and their variants of each alignment (by the index of
    // the alignment in `aligns`; none for 0).
    let blurred: Vec<Blurred> = blurs
        .iter()
        .map(|&bl| {
            let mut q = queries.clone();
            let mut aligned = vec![Vec::new(); aligns.len()];
            if let Some((w, h)) = train.image {
                for img in q.chunks_exact_mut(d) {
                    ldl_core::augment::blur(img, w, h, bl).context("blur")?;
                }
                for (set, out) in aligns.iter().zip(&mut aligned) {
                    let n = crate::warps::ALIGNS[*set as usize].1.len();
                    *out = vec![Vec::with_capacity(q.len()); n];
                    for img in q.chunks_exact(d) {
                        for (o, v) in out.iter_mut().zip(crate::warps::aligned(img, w, h, *set)) {
                            o.extend_from_slice(&v);
                        }
                    }
                }
            }
            Ok((bl, q, aligned))
        })
        .collect::<Result<_>>()?;
    let answers: Vec<usize> = q.iter().map(|&i| train.labels[i] as usize).collect();
    let labels: Vec<String> = train.class_names.clone();
    let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    let b = bar((plans.len() * settings.len()) as u64, "tune".into());
    if !show {
        b.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut shifts: Vec<u8> = settings.iter().map(|s| s.shift).collect();
    shifts.sort_unstable();
    shifts.dedup();
    // One plan: every setting's accuracy, in the order of `settings`.
    let one = |i: usize| -> Result<Vec<f64>> {
        let p = &plans[i];
        let support: Vec<Vec<f32>> = p
            .support
            .iter()
            .map(|idx| idx.iter().flat_map(|&i| train.row(i).iter().copied()).collect())
            .collect();
        let mseed = Rng::derive(seed ^ 0x4D45_5448, p.trial as u64).next_u64();
        let mut out = vec![0.0; settings.len()];
        for (bl, queries, aligned) in &blurred {
            for &warp in &warps {
                // Blurred as a device preprocesses, then the variants, then the shifts.
                let support: Vec<Vec<f32>> = support
                    .iter()
                    .map(|rows| {
                        let mut rows = rows.clone();
                        let Some((w, h)) = train.image else { return Ok(rows) };
                        for img in rows.chunks_exact_mut(d) {
                            ldl_core::augment::blur(img, w, h, *bl).context("blur")?;
                        }
                        let mut all = rows.clone();
                        if warp < crate::warps::UNSHIFTED {
                            for img in rows.chunks_exact(d) {
                                for v in crate::warps::variants(img, w, h, warp) {
                                    all.extend_from_slice(&v);
                                }
                            }
                        }
                        Ok(all)
                    })
                    .collect::<Result<_>>()?;
                for &shift in &shifts {
                    let here = |s: &&Setting| s.shift == shift && s.blur == *bl && s.warp == warp;
                    if !settings.iter().any(|s| here(&s)) {
                        continue;
                    }
                    let mut aug = if shift > 0 {
                        augment_support(&support, train.image, shift)?
                    } else {
                        support.clone()
                    };
                    // Unshifted variants: after the shifts, of the (blurred) images only.
                    if let (Some((w, h)), true) = (train.image, warp >= crate::warps::UNSHIFTED) {
                        for (a, rows) in aug.iter_mut().zip(&support) {
                            for img in rows.chunks_exact(d) {
                                for v in crate::warps::variants(img, w, h, warp - crate::warps::UNSHIFTED) {
                                    a.extend_from_slice(&v);
                                }
                            }
                        }
                    }
                    let views: Vec<&[f32]> = aug.iter().map(Vec::as_slice).collect();
                    // Settings that differ only in their alignment share a fit.
                    let mut fitted: Option<(Setting, ldl_core::Model)> = None;
                    for (j, s) in settings.iter().enumerate().filter(|(_, s)| here(s)) {
                        b.set_message(format!("{}-shot shift {} ridge {} k {}", p.shots, s.shift, s.ridge, s.k));
                        let key = Setting { align: 0, norm: 0, ..*s };
                        if fitted.as_ref().map(|f| f.0) != Some(key) {
                            let model =
                                fit_closed_form(&views, d, &label_refs, &s.config(), mseed).with_context(|| format!("fitting {s:?}"))?;
                            fitted = Some((key, model));
                        }
                        let Some((_, model)) = fitted.as_ref() else {
                            unreachable!("fitted above")
                        };
                        let a = aligns.iter().position(|&a| a == s.align).unwrap_or(0);
                        let mut dist = aligned_distances(model, queries, &aligned[a], answers.len())?;
                        let scale = class_scales(model, s.norm, &views, &support, d)?;
                        for row in dist.chunks_exact_mut(scale.len()) {
                            row.iter_mut().zip(&scale).for_each(|(v, s)| *v /= s);
                        }
                        let pred: Vec<usize> = dist
                            .chunks_exact(scale.len())
                            .map(|row| ldl_core::classify::closest(row).unwrap_or(0))
                            .collect();
                        let ok = pred.iter().zip(&answers).filter(|(a, b)| a == b).count();
                        out[j] = ok as f64 / answers.len() as f64;
                        b.inc(1);
                    }
                }
            }
        }
        Ok(out)
    };
    let per_plan = crate::trials::map_jobs(jobs, 0..plans.len(), one)?;
    let mut acc = vec![vec![Vec::new(); shots.len()]; settings.len()];
    for (p, scores) in plans.iter().zip(per_plan) {
        let si = shots.iter().position(|&s| s == p.shots).unwrap_or(0);
        for (j, a) in scores.into_iter().enumerate() {
            acc[j][si].push(a);
        }
    }
    b.finish_and_clear();
    let chosen = chosen();
    let mut rows: Vec<Row> = settings
        .iter()
        .zip(acc)
        .map(|(s, per)| {
            let cells: Vec<Cell> = shots
                .iter()
                .zip(per)
                .map(|(&m, t)| {
                    let (mean, ci95) = mean_ci95(&t);
                    Cell {
                        shots: m,
                        mean,
                        ci95,
                        trials: t,
                    }
                })
                .collect();
            let mean = cells.iter().map(|c| c.mean).sum::<f64>() / cells.len() as f64;
            Row {
                setting: *s,
                chosen: *s == chosen,
                cells,
                mean,
            }
        })
        .collect();
    rows.sort_by(|a, b| b.mean.total_cmp(&a.mean));
    Ok(rows)
}

/// Every class's distance of each of the `n` queries (row-major `n x C`), the least over the
/// query and its `variants` (each `n` rows as the queries).
fn aligned_distances(model: &ldl_core::Model, queries: &[f32], variants: &[Vec<f32>], n: usize) -> Result<Vec<f32>> {
    let c = model.labels.len();
    let mut best = vec![0.0; n * c];
    ldl_core::batch::distances(model, queries, n, &mut best)?;
    let mut other = vec![0.0; n * c];
    for v in variants {
        ldl_core::batch::distances(model, v, n, &mut other)?;
        best.iter_mut().zip(&other).for_each(|(b, o)| *b = b.min(*o));
    }
    Ok(best)
}

/// What each class's distance is divided by under normalisation `norm`: 0 none (1); 1 the
/// mean squared norm of the class's augmented support rows (`views`); 2 the class's mean
/// distance of the other classes' support images (`support`, unaugmented).
fn class_scales(model: &ldl_core::Model, norm: u8, views: &[&[f32]], support: &[Vec<f32>], d: usize) -> Result<Vec<f32>> {
    let c = model.labels.len();
    Ok(match norm {
        0 => vec![1.0; c],
        1 => views
            .iter()
            .map(|v| {
                let rows = (v.len() / d).max(1) as f32;
                v.iter().map(|x| x * x).sum::<f32>() / rows
            })
            .collect(),
        2 => {
            let all: Vec<f32> = support.concat();
            let n = all.len() / d;
            let owner: Vec<usize> = support
                .iter()
                .enumerate()
                .flat_map(|(k, s)| std::iter::repeat_n(k, s.len() / d))
                .collect();
            let mut dist = vec![0.0; n * c];
            ldl_core::batch::distances(model, &all, n, &mut dist)?;
            (0..c)
                .map(|k| {
                    let (sum, count) = dist
                        .chunks_exact(c)
                        .zip(&owner)
                        .filter(|(_, &o)| o != k)
                        .fold((0.0f32, 0usize), |(s, m), (row, _)| (s + row[k], m + 1));
                    sum / count.max(1) as f32
                })
                .collect()
        }
        _ => bail!("normalisations are 0, 1 and 2"),
    })
}

/// Runs `ldl tune`.
pub fn run(args: TuneArgs) -> Result<()> {
    let dir = args.data.clone().unwrap_or_else(|| crate::repo_root().join("data/mnist"));
    let train = data::load_mnist(&dir, data::Split::Train)?;
    let trials = args.trials.unwrap_or(if args.quick { 2 } else { 5 });
    if trials == 0 || args.shots.is_empty() {
        bail!("--trials and --shots must not be empty or zero");
    }
    let settings = {
        let (shifts, ridges, affines, ks) = axes(args.quick);
        product_all(
            args.shifts.as_deref().unwrap_or(shifts),
            args.ridges.as_deref().unwrap_or(ridges),
            args.affine.as_deref().unwrap_or(affines),
            args.ks.as_deref().unwrap_or(ks),
            args.blurs.as_deref().unwrap_or(&[0]),
            args.warps.as_deref().unwrap_or(&[0]),
            args.aligns.as_deref().unwrap_or(&[0]),
            args.norms.as_deref().unwrap_or(&[0]),
        )
    };
    let t0 = std::time::Instant::now();
    let rows = sweep(&train, &settings, &args.shots, trials, args.seed, args.jobs.jobs, true)?;
    let secs = t0.elapsed().as_secs_f64();
    if args.json {
        let v = serde_json::json!({
            "validation": {"support_rows": [0, VALIDATION_START], "query_rows": [VALIDATION_START, TRAIN_LEN], "split": "train"},
            "trials": trials, "shots": args.shots, "seed": args.seed, "seconds": secs,
            "chosen": chosen(), "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "validation sweep: MNIST train images 0..{VALIDATION_START} as supports, {VALIDATION_START}..{TRAIN_LEN} as queries, 10-way, {trials} trials, {} settings, {secs:.0} s",
        settings.len()
    );
    print!(
        "  {:>5} {:>6} {:>6} {:>5} {:>4} {:>16} {:>13} {:>4}",
        "shift", "ridge", "affine", "k", "blur", "variants", "align", "norm"
    );
    for m in &args.shots {
        print!(" {:>15}", format!("{m}-shot"));
    }
    println!(" {:>7}", "mean");
    for r in &rows {
        let s = r.setting;
        print!(
            "{} {:>5} {:>6} {:>6} {:>5}",
            if r.chosen { "*" } else { " " },
            s.shift,
            s.ridge,
            if s.affine { "yes" } else { "no" },
            if s.k == 0 { "id".to_string() } else { s.k.to_string() }
        );
        print!(
            " {:>4} {:>16} {:>13} {:>4}",
            s.blur,
            crate::warps::name(s.warp),
            crate::warps::ALIGNS.get(s.align as usize).map_or("?", |a| a.0),
            s.norm
        );
        for c in &r.cells {
            print!(" {:>15}", format!("{:.4} ±{}", c.mean, ci_text(c.ci95, 4)));
        }
        println!(" {:>7.4}", r.mean);
    }
    let best = &rows[0];
    match rows.iter().position(|r| r.chosen) {
        Some(0) => println!("* = the device mode's setting (methods::device_mode): the best on validation"),
        Some(i) => println!(
            "* = the device mode's setting (methods::device_mode): rank {} of {}, {:.4} below the best ({:?})",
            i + 1,
            rows.len(),
            best.mean - rows[i].mean,
            best.setting
        ),
        None => println!("(the device mode's setting {:?} is not in this grid)", chosen()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_holds_the_device_mode() {
        assert_eq!(grid(false).len(), 48);
        assert!(grid(false).contains(&chosen()));
        assert!(grid(true).contains(&chosen()));
    }

    /// The per-class normalisations divide by what they say: 1 for none, the mean squared
    /// norm of a class's rows, the class's mean distance of the other classes' images.
    #[test]
    fn class_scales_are_what_the_normalisations_name() {
        let d = 2;
        let support = vec![vec![1.0, 0.0, 3.0, 0.0], vec![0.0, 2.0]];
        let views: Vec<&[f32]> = support.iter().map(Vec::as_slice).collect();
        let cfg = ClosedFormConfig {
            k: 0,
            fit: FitOptions {
                affine: false,
                ..Default::default()
            },
            ..Default::default()
        };
        let model = fit_closed_form(&views, d, &["a", "b"], &cfg, 1).unwrap();
        assert_eq!(class_scales(&model, 0, &views, &support, d).unwrap(), vec![1.0, 1.0]);
        assert_eq!(class_scales(&model, 1, &views, &support, d).unwrap(), vec![5.0, 4.0]);
        // Class a's scale is its distance of b's one image; b's the mean of its distances of
        // a's two images (class b spans the y axis: those are 1 : 9).
        let dist = |x: &[f32]| {
            let mut out = vec![0.0; 2];
            ldl_core::batch::distances(&model, x, 1, &mut out).unwrap();
            out
        };
        let (one, three) = (dist(&[1.0, 0.0])[1], dist(&[3.0, 0.0])[1]);
        assert!((three / one - 9.0).abs() < 1e-3, "{one} {three}");
        let cross = class_scales(&model, 2, &views, &support, d).unwrap();
        assert_eq!(cross[0], dist(&[0.0, 2.0])[0]);
        assert!((cross[1] - (one + three) / 2.0).abs() < 1e-5, "{cross:?}");
        assert!(class_scales(&model, 3, &views, &support, d).is_err());
    }

    #[test]
    fn validation_never_touches_the_test_split_or_mixes_rows() {
        let labels: Vec<u32> = (0..TRAIN_LEN as u32).map(|i| (i * 7 + i / 13) % 10).collect();
        let plans = plan(&labels, 10, &[1, 5, 10], 5, 2019).unwrap();
        assert_eq!(plans.len(), 15);
        for p in &plans {
            assert_eq!(p.queries, (VALIDATION_START..TRAIN_LEN).collect::<Vec<_>>());
            assert_eq!(p.support.len(), 10);
            for (c, s) in p.support.iter().enumerate() {
                assert_eq!(s.len(), p.shots);
                assert!(s.iter().all(|&i| i < VALIDATION_START && labels[i] as usize == c));
                let mut u = s.clone();
                u.sort_unstable();
                u.dedup();
                assert_eq!(u.len(), s.len());
            }
        }
        // Reproducible, and trials differ.
        let again = plan(&labels, 10, &[1, 5, 10], 5, 2019).unwrap();
        assert_eq!(plans[3].support, again[3].support);
        assert_ne!(plans[5].support, plans[6].support);
        assert!(plan(&labels[..VALIDATION_START], 10, &[1], 1, 0).is_err());
    }

    #[test]
    fn plans_at_once_give_the_scores_of_plans_in_turn() {
        // A 6x6 "image" data set of MNIST's training size: each class a noisy bar.
        let (w, h, n) = (6, 6, TRAIN_LEN);
        let mut rng = Rng::new(7);
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
        let mut features = Vec::with_capacity(n * w * h);
        for &l in &labels {
            for p in 0..w * h {
                let on = (p + l as usize).is_multiple_of(7) || p / w == l as usize % h;
                features.push(if on { rng.uniform(0.6, 1.0) } else { rng.uniform(0.0, 0.1) });
            }
        }
        let names = (0..10).map(|c| c.to_string()).collect();
        let train = Dataset::new(features, labels, names, w * h, Some((w, h)));
        let settings = product(&[0, 1], &[0.0, 10.0], &[false, true], &[0]);
        let inturn = sweep(&train, &settings, &[1, 3], 3, 5, 1, false).unwrap();
        // An alignment past the sweep's table is refused before any work (not an index panic).
        let beyond = Setting {
            align: crate::warps::ALIGNS.len() as u8,
            ..settings[0]
        };
        let err = sweep(&train, &[beyond], &[1], 1, 5, 1, false).unwrap_err().to_string();
        assert!(err.contains("query alignments are 0..8"), "{err}");
        assert!(inturn.iter().all(|r| r.cells.iter().all(|c| c.trials.len() == 3)));
        // Learnable, and the settings differ (or the comparison below would be empty).
        assert!(inturn[0].mean > 0.3, "best mean {}", inturn[0].mean);
        assert!(inturn.iter().any(|r| r.mean != inturn[0].mean));
        for jobs in [0, 2] {
            let at_once = sweep(&train, &settings, &[1, 3], 3, 5, jobs, false).unwrap();
            for (a, b) in inturn.iter().zip(&at_once) {
                assert_eq!(a.setting, b.setting);
                for (ca, cb) in a.cells.iter().zip(&b.cells) {
                    assert_eq!(ca.trials, cb.trials, "jobs {jobs}, {:?}, {} shots", a.setting, ca.shots);
                }
            }
        }
    }
}
