//! Episodic few-shot evaluation, as the paper does it: N-way, m-shot, T trials, support drawn
//! from the training split per trial, queries from the test split; every random choice from
//! one seed, so a run is reproducible bit for bit.

use crate::baselines;
use crate::data::Dataset;
use anyhow::{bail, Context, Result};
use ldl_core::methods::{fit_closed_form, ClosedFormConfig, GradientConfig, GradientTrainer};
use ldl_core::subspace::FitOptions;
use ldl_core::{augment, Rng};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// A method to evaluate, with its hyper-parameters (fixed before any test accuracy is seen).
#[derive(Debug, Clone)]
pub enum MethodSpec {
    /// Gradient-trained LDL: O2MD, BD or naive.
    Gradient(GradientConfig),
    /// Closed-form LDL; `shift` > 0 adds each support image's shifts by up to that many pixels.
    ClosedForm {
        /// Target and fit.
        cfg: ClosedFormConfig,
        /// Shift augmentation (images only).
        shift: u8,
    },
    /// The closed form as the microcontroller boards keep and enroll classes
    /// (`ldl_core::compact`: 8-bit directions over the live inputs, at most `fit.max_rank`),
    /// fitted by the device's own code (`ldl_core::fit`): what a board computes, bit for bit.
    Compact {
        /// Target and fit.
        cfg: ClosedFormConfig,
        /// Shift augmentation (images only).
        shift: u8,
    },
    /// Logistic regression (baseline).
    LogReg,
    /// MLP with one hidden ReLU layer of 1024 (baseline).
    Mlp,
    /// 1-nearest-neighbour (baseline).
    NearestNeighbour,
    /// Nearest class mean (baseline).
    NearestMean,
    /// An ensemble of an LDL method ("randomized prior functions", the paper's uncertainty
    /// device): `members` models, each fitted with its own seed on a bootstrap resample of
    /// every class's support ([`ldl_core::methods::ensemble`]), their distances averaged.
    Ensemble {
        /// The method of every member (an LDL method, not an ensemble).
        of: Box<MethodSpec>,
        /// Members, 2..=[`ldl_core::classify::MAX_MEMBERS`].
        members: usize,
    },
}

impl MethodSpec {
    /// Short name used on the command line and in reports.
    pub fn name(&self) -> String {
        match self {
            MethodSpec::Ensemble { of, members } => format!("{}-m{members}", of.name()),
            MethodSpec::Gradient(c) => {
                let base = match c.method {
                    ldl_core::methods::GradientMethod::O2md => format!("o2md-k{}", c.k),
                    ldl_core::methods::GradientMethod::Bd => format!("bd-k{}", c.k),
                    _ => "naive".into(),
                };
                let paper = match c.method {
                    ldl_core::methods::GradientMethod::O2md => GradientConfig::o2md_paper(c.k),
                    ldl_core::methods::GradientMethod::Bd => GradientConfig::bd_paper(c.k),
                    _ => GradientConfig::naive_paper(),
                };
                let mut name = base;
                if let (ldl_core::train::Optimizer::Adam { lr, .. }, true) =
                    (c.predictor_step.optimizer, c.predictor_step != paper.predictor_step)
                {
                    name += &format!("-lr{lr:e}");
                }
                if c.epochs != paper.epochs {
                    name += &format!("-e{}", c.epochs);
                }
                // BD's target at a rate of its own (a target that does not train has none).
                if let (ldl_core::methods::GradientMethod::Bd, ldl_core::train::Optimizer::Adam { lr, .. }) =
                    (c.method, c.target_step.optimizer)
                {
                    if !matches!(c.predictor_step.optimizer, ldl_core::train::Optimizer::Adam { lr: p, .. } if p == lr) {
                        name += &format!("-tlr{lr:e}");
                    }
                }
                name
            }
            MethodSpec::ClosedForm { cfg, shift } => {
                let t = if cfg.k == 0 { "id".to_string() } else { format!("k{}", cfg.k) };
                let mut fill = if cfg.fill > 0 {
                    format!("-fill{}", cfg.fill)
                } else {
                    String::new()
                };
                if cfg.align > 0 {
                    fill += &format!("-align{}", cfg.align);
                }
                if *shift > 0 {
                    format!("closed-{t}-shift{shift}{fill}")
                } else {
                    format!("closed-{t}{fill}")
                }
            }
            MethodSpec::Compact { cfg, shift } => {
                let MethodSpec::Compact { cfg: def, shift: dshift } = mcu_mode(None, None) else {
                    unreachable!("mcu_mode is compact")
                };
                let default = cfg.fit.max_rank == def.fit.max_rank && *shift == dshift;
                match (cfg.fill, cfg.align) {
                    (0, 0) if default => "mcu".into(),
                    (0, 0) => format!("mcu:{}:{shift}", cfg.fit.max_rank),
                    (WARP_FILL, 0) if default => "mcu-warp".into(),
                    (WARP_FILL, ALIGN) if default => "mcu-align".into(),
                    (f, 0) => format!("mcu:{}:{shift}:{f}", cfg.fit.max_rank),
                    (f, a) => format!("mcu:{}:{shift}:{f}:{a}", cfg.fit.max_rank),
                }
            }
            MethodSpec::LogReg => "logreg".into(),
            MethodSpec::Mlp => "mlp".into(),
            MethodSpec::NearestNeighbour => "1nn".into(),
            MethodSpec::NearestMean => "ncm".into(),
        }
    }

    /// Parses a method name: `o2md`, `bd`, `naive`, `closed`, `device` (the f32 mode for
    /// devices), `mcu` (the 8-bit form the microcontroller boards keep), `logreg`, `mlp`,
    /// `1nn`, `ncm`; `o2md`, `bd`, `closed` and `device` take `:K` (e.g. `o2md:784`);
    /// `device` also `:SHIFT` (e.g. `device::1`: shifts by up to 1 pixel, 9 copies of each
    /// image instead of 25); `mcu` takes `:RANK[:SHIFT]`. Both also take a last `:FILL`:
    /// enrolled images add warped copies of themselves while a class stays within FILL
    /// images (`ldl_core::augment::fill`, 0 = none, at most
    /// `ldl_core::augment::MAX_FILL`); `device-warp` and `mcu-warp` are `device:::5` and
    /// `mcu:::5` ([`WARP_FILL`]: the free slots of a 5-image board). A fifth field `:ALIGN`
    /// names a query alignment (`ldl_core::augment::ALIGNS`, 0 = none): `device-align` and
    /// `mcu-align` are `device:::5:1` and `mcu:::5:1` ([`ALIGN`]: the warped copies and the
    /// query seen slanted both ways).
    pub fn parse(s: &str) -> Result<Self> {
        let named = [
            ("device-warp", "device", format!("{WARP_FILL}")),
            ("mcu-warp", "mcu", format!("{WARP_FILL}")),
            ("device-align", "device", format!("{WARP_FILL}:{ALIGN}")),
            ("mcu-align", "mcu", format!("{WARP_FILL}:{ALIGN}")),
        ];
        for (prefix, base, tail) in &named {
            let Some(rest) = s.strip_prefix(prefix) else { continue };
            if !rest.is_empty() && !rest.starts_with(':') {
                bail!("unknown method {s:?}");
            }
            // NAME-warp[:A[:SHIFT]]: NAME:A:SHIFT:5, NAME-align: NAME:A:SHIFT:5:1.
            let fields: Vec<&str> = rest.split(':').skip(1).collect();
            if fields.len() > 2 {
                bail!(
                    "method {s:?}: {prefix} takes :{} and :SHIFT only",
                    if *base == "mcu" { "RANK" } else { "K" }
                );
            }
            let a = fields.first().copied().unwrap_or("");
            let sh = fields.get(1).copied().unwrap_or("");
            return Self::parse(&format!("{base}:{a}:{sh}:{tail}"));
        }
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default();
        fn field(p: Option<&str>) -> Option<&str> {
            p.filter(|v| !v.is_empty())
        }
        let k = field(parts.next())
            .map(|v| v.parse::<usize>().with_context(|| format!("bad k in method {s:?}")))
            .transpose()?;
        if name == "mcu" || name == "device" {
            // The last field of both is the shift augmentation.
            let shift = field(parts.next())
                .map(|v| {
                    v.parse::<u8>()
                        .ok()
                        .filter(|&s| s <= MAX_SHIFT)
                        .with_context(|| format!("bad shift in method {s:?} (0 to {MAX_SHIFT})"))
                })
                .transpose()?;
            let fill = field(parts.next())
                .map(|v| {
                    v.parse::<u8>()
                        .ok()
                        .filter(|&f| f <= ldl_core::augment::MAX_FILL)
                        .with_context(|| format!("bad fill in method {s:?} (0 to {})", ldl_core::augment::MAX_FILL))
                })
                .transpose()?
                .unwrap_or(0);
            let aligns = ldl_core::augment::ALIGNS.len();
            let align = field(parts.next())
                .map(|v| {
                    v.parse::<u8>()
                        .ok()
                        .filter(|&a| usize::from(a) < aligns)
                        .with_context(|| format!("bad alignment in method {s:?} (0 to {})", aligns - 1))
                })
                .transpose()?
                .unwrap_or(0);
            if parts.next().is_some() {
                bail!(
                    "method {s:?}: {name} takes :{}, :SHIFT, :FILL and :ALIGN only",
                    if name == "mcu" { "RANK" } else { "K" }
                );
            }
            if name == "mcu" {
                // mcu[:RANK[:SHIFT]]: the first field is the rank here, not k.
                let rank = k
                    .map(|r| {
                        u16::try_from(r)
                            .ok()
                            .filter(|&r| r >= 1)
                            .with_context(|| format!("bad rank in method {s:?} (1 to 65535)"))
                    })
                    .transpose()?;
                let mut m = mcu_mode(rank, shift);
                if let MethodSpec::Compact { cfg, .. } = &mut m {
                    cfg.fill = fill;
                    cfg.align = align;
                }
                return Ok(m);
            }
            let mut m = device_mode(k);
            if let MethodSpec::ClosedForm { shift: sh, cfg } = &mut m {
                if let Some(v) = shift {
                    *sh = v;
                }
                cfg.fill = fill;
                cfg.align = align;
            }
            return Ok(m);
        }
        // Gradient methods also take :LR:EPOCHS (e.g. `o2md:784:1e-4:10`, `naive::1e-4:10`),
        // the authors' grid.
        let lr = field(parts.next())
            .map(|v| v.parse::<f32>().with_context(|| format!("bad learning rate in method {s:?}")))
            .transpose()?;
        let epochs = field(parts.next())
            .map(|v| v.parse::<usize>().with_context(|| format!("bad epochs in method {s:?}")))
            .transpose()?;
        // BD also takes the target's own rate, :LR:EPOCHS:TARGET_LR (e.g.
        // `bd:784:1e-4:10:5e-5`): the authors' BD grid sets the two apart.
        let target_lr = field(parts.next())
            .map(|v| {
                v.parse::<f32>()
                    .with_context(|| format!("bad target learning rate in method {s:?}"))
            })
            .transpose()?;
        if target_lr.is_some() && name != "bd" {
            bail!("method {s:?}: only bd trains its target, so only bd takes a target learning rate");
        }
        if parts.next().is_some() {
            bail!("method {s:?}: too many fields (NAME:K:LR:EPOCHS, and :TARGET_LR for bd)");
        }
        let grad = |mut c: GradientConfig| {
            if let Some(lr) = lr {
                c.predictor_step.optimizer = ldl_core::train::Optimizer::adam(lr);
            }
            if let Some(lr) = target_lr.or(lr) {
                c.target_step.optimizer = ldl_core::train::Optimizer::adam(lr);
            }
            if let Some(e) = epochs {
                c.epochs = e;
            }
            MethodSpec::Gradient(c)
        };
        Ok(match name {
            "o2md" => grad(GradientConfig::o2md_paper(k.unwrap_or(2000))),
            "bd" => grad(GradientConfig::bd_paper(k.unwrap_or(2000))),
            "naive" => grad(GradientConfig::naive_paper()),
            "closed" => MethodSpec::ClosedForm {
                cfg: ClosedFormConfig {
                    k: k.unwrap_or(256),
                    ..Default::default()
                },
                shift: 0,
            },
            "logreg" => MethodSpec::LogReg,
            "mlp" => MethodSpec::Mlp,
            "1nn" => MethodSpec::NearestNeighbour,
            "ncm" => MethodSpec::NearestMean,
            _ => bail!("unknown method {s:?} (o2md, bd, naive, closed, device, mcu, logreg, mlp, 1nn, ncm)"),
        })
    }

    /// Number of epochs, for methods trained epoch by epoch.
    pub fn epochs(&self) -> usize {
        match self {
            MethodSpec::Gradient(c) => c.epochs,
            _ => 0,
        }
    }

    /// This method as an ensemble of `members` bootstrap members (`members = 1`: itself).
    /// Any LDL method can be one, the closed forms too (each member fits its own resample);
    /// the baselines make no LDL model and cannot.
    pub fn ensemble(self, members: usize) -> Result<MethodSpec> {
        let max = ldl_core::classify::MAX_MEMBERS;
        match (members, &self) {
            (0, _) => bail!("--members must be at least 1"),
            (1, _) => Ok(self),
            (m, _) if m > max => bail!("--members {m}: a model holds at most {max} ensemble members"),
            (_, MethodSpec::Ensemble { .. }) => bail!("{} is already an ensemble", self.name()),
            (_, MethodSpec::ClosedForm { cfg, .. } | MethodSpec::Compact { cfg, .. }) if cfg.align > 0 => {
                bail!("{}: a query alignment classifies with one member, not an ensemble", self.name())
            }
            (_, MethodSpec::Gradient(_) | MethodSpec::ClosedForm { .. } | MethodSpec::Compact { .. }) => Ok(MethodSpec::Ensemble {
                of: Box::new(self),
                members,
            }),
            _ => bail!("{} is a baseline, not an LDL method: it has no ensemble members", self.name()),
        }
    }
}

/// A method as the user named it (`device`, `mcu:32`, `o2md:784:1e-4:10`), with what it
/// resolves to. Tables, JSON and CSVs show `name`, the name the user typed, and beside it
/// [`NamedMethod::settings`] (e.g. `closed-id-shift2` for `device`).
#[derive(Debug, Clone)]
pub struct NamedMethod {
    /// As typed (surrounding spaces dropped).
    pub name: String,
    /// What it resolves to.
    pub spec: MethodSpec,
}

impl NamedMethod {
    /// Parses a method name ([`MethodSpec::parse`]), keeping it.
    pub fn parse(s: &str) -> Result<Self> {
        let name = s.trim().to_string();
        let spec = MethodSpec::parse(&name)?;
        Ok(NamedMethod { name, spec })
    }

    /// The resolved settings: [`MethodSpec::name`] of the spec.
    pub fn settings(&self) -> String {
        self.spec.name()
    }
}

/// The setting of a method for a number of shots, chosen on the MNIST validation split
/// (supports from training images 0..50000, queries 50000..60000), never on the test set:
/// the faithful O2MD and BD at 1, 5, 10 and 50-200 shots get the learning rates and epochs
/// that won among the authors' grid; the device and mcu modes a ridge of `40 x shots` at
/// 50-200 shots. `docs/validation.md` has the sweeps, their tables and the commands that
/// rerun them. Other shot counts, and specs that are not the paper's defaults or the device
/// mode, are returned unchanged: they were not validated.
pub fn validated(spec: &MethodSpec, shots: usize) -> MethodSpec {
    if let MethodSpec::Ensemble { of, members } = spec {
        return MethodSpec::Ensemble {
            of: Box::new(validated(of, shots)),
            members: *members,
        };
    }
    // The mcu mode fits as the device mode does: the same ridge rule.
    if let MethodSpec::Compact { cfg, shift } = spec {
        let mut c = *cfg;
        if c.fit.ridge == 100.0 && (50..=200).contains(&shots) {
            c.fit.ridge = 40.0 * shots as f32;
        }
        return MethodSpec::Compact { cfg: c, shift: *shift };
    }
    if let (
        MethodSpec::ClosedForm { cfg, shift },
        MethodSpec::ClosedForm {
            cfg: dev,
            shift: dev_shift,
        },
    ) = (spec, device_mode(None))
    {
        let mut cfg = *cfg;
        // Copies and alignment do not change the fit's ridge rule.
        let plain = ClosedFormConfig { fill: 0, align: 0, ..cfg };
        if plain == dev && *shift == dev_shift && (50..=200).contains(&shots) {
            cfg.fit.ridge = 40.0 * shots as f32;
        }
        return MethodSpec::ClosedForm { cfg, shift: *shift };
    }
    let MethodSpec::Gradient(c) = spec else { return spec.clone() };
    let mut c = *c;
    let rates = |c: &mut GradientConfig, predictor: f32, target: f32| {
        c.predictor_step.optimizer = ldl_core::train::Optimizer::adam(predictor);
        c.target_step.optimizer = ldl_core::train::Optimizer::adam(target);
    };
    let lr_1e4 = |c: &mut GradientConfig| rates(c, 1e-4, 1e-4);
    match c.method {
        ldl_core::methods::GradientMethod::O2md if c == GradientConfig::o2md_paper(2000) => match shots {
            5 => c.epochs = 10,
            10 => {
                c.epochs = 10;
                lr_1e4(&mut c);
            }
            100..=200 => lr_1e4(&mut c),
            _ => {}
        },
        ldl_core::methods::GradientMethod::Bd if c == GradientConfig::bd_paper(2000) => {
            if (1..=10).contains(&shots) {
                c.epochs = 10;
            }
            match shots {
                1 => rates(&mut c, 1e-4, 1e-3),
                10 => rates(&mut c, 5e-5, 1e-4),
                // 5 shots, the counts between 1 and 10 that were not validated, and 50-200.
                2..=9 | 50..=200 => lr_1e4(&mut c),
                _ => {}
            }
        }
        _ => {}
    }
    MethodSpec::Gradient(c)
}

/// Largest shift `device::SHIFT` takes: `(2s + 1)^2` copies of each image (49 at 3).
pub const MAX_SHIFT: u8 = 3;

/// The best mode the project offers for devices: the closed form of the naive (identity
/// target) form, a class being the linear span of its images and their shifts by up to 2
/// pixels, with ridge shrinkage and directions of weight < 0.1 dropped (same accuracy, about
/// a third of the rank). Chosen on a validation split (MNIST train images 50000..60000 as
/// queries, supports from 0..50000, 5 trials per setting; `ldl tune` reruns it), never on
/// the test split. With `k`, a random target of `k` outputs replaces the identity.
pub fn device_mode(k: Option<usize>) -> MethodSpec {
    let fit = FitOptions {
        ridge: 100.0,
        affine: false,
        min_weight: 0.1,
        ..Default::default()
    };
    MethodSpec::ClosedForm {
        cfg: ClosedFormConfig {
            k: k.unwrap_or(0),
            fit,
            ..Default::default()
        },
        shift: 2,
    }
}

/// The images a class of `device-warp` and `mcu-warp` fills with warped copies of its
/// enrolled images: the STM32F405 board's 5 (`firmware/boards.toml`), so that the largest
/// enrollment buffers do not grow. Chosen with the warps on the validation split by the rule
/// of `docs/invariances.md`.
pub const WARP_FILL: u8 = 5;

/// The query alignment of `device-align` and `mcu-align` (`ldl_core::augment::ALIGNS`): the
/// query also seen slanted both ways, each class's distance the least of the three. Chosen
/// on the validation split by the rule of `docs/invariances.md`.
pub const ALIGN: u8 = 1;

/// Directions per class of the mcu mode. Chosen on the validation split before any test
/// run, by the rule: the smallest rank of {24, 32, 40, 48} within half a point of the f32
/// device mode (no rank limit) at 1, 5 and 10 shots. Validation means over 100 trials
/// (`ldl fewshot --validation --trials 100 --shots 1,5,10 --methods
/// device,mcu:24,mcu:32,mcu:40,mcu:48`; the 1-shot classes never reach 24 directions):
///
/// | rank | 1 shot | 5 shots | 10 shots |
/// |---|---|---|---|
/// | f32, no limit (`device`) | .5028 | .7945 | .8805 |
/// | 24 | .5028 | .7874 | .8655 |
/// | 32 | .5028 | .7913 | .8730 |
/// | **40** | .5028 | .7932 | .8767 |
/// | 48 | .5028 | .7941 | .8786 |
///
/// A board enrolls with fewer (`rank` in `firmware/boards.toml`, 32): ten enrolled classes of
/// that rank fit its store at their largest.
pub const MCU_RANK: u16 = 40;

/// The mode the microcontroller boards run: the device mode's fit ([`device_mode`]: identity
/// target, ridge 100, no mean, directions of weight < 0.1 dropped, shifts by up to 2 pixels)
/// kept in the compact form (8-bit directions over the live inputs, `ldl_core::compact`), at
/// most `rank` directions per class ([`MCU_RANK`] by default), fitted by the device's own
/// code. `shift` overrides the shift augmentation.
pub fn mcu_mode(rank: Option<u16>, shift: Option<u8>) -> MethodSpec {
    let MethodSpec::ClosedForm { mut cfg, shift: s } = device_mode(None) else {
        unreachable!("the device mode is a closed form")
    };
    cfg.fit.max_rank = rank.unwrap_or(MCU_RANK);
    MethodSpec::Compact {
        cfg,
        shift: shift.unwrap_or(s),
    }
}

/// Default of `--max-weight-bytes`: 4 GiB. MNIST's 10 classes take 188 MB with O2MD at
/// k = 2000 (the largest of the paper's table), the MLP 10 MB.
pub const DEFAULT_MAX_WEIGHT_BYTES: u64 = 4 << 30;

/// Bytes of the parameters and optimiser state that `method` allocates to train `classes`
/// classes of `d` inputs at once, where that grows with `d` times a width: the gradient
/// methods' target and predictors (`k x d` each, and Adam's two moments of each trained
/// one), the MLP's first layer (1024 x d, with its moments), the closed form's random
/// target (`k x d`). Other methods keep a few vectors of `d` per class: 0. `None` when the
/// count overflows a `u64`, which no memory holds anyway.
pub fn weight_bytes(method: &MethodSpec, d: usize, classes: usize) -> Option<u64> {
    let (d, n) = (d as u64, classes as u64);
    // A k x d layer with its bias.
    let layer = |k: u64| d.checked_mul(k)?.checked_add(k);
    let floats = match method {
        MethodSpec::Gradient(c) => {
            let k = if c.method == ldl_core::methods::GradientMethod::Naive {
                d
            } else {
                c.k as u64
            };
            // Weights and two moments per predictor; BD also trains its target.
            let target = if c.method == ldl_core::methods::GradientMethod::Bd { 3 } else { 1 };
            layer(k)?.checked_mul(n.checked_mul(3)?.checked_add(target)?)?
        }
        MethodSpec::Mlp => baselines::MlpConfig::default()
            .hidden
            .iter()
            .try_fold((d, 0u64), |(inputs, total), &h| {
                Some((h as u64, total.checked_add(inputs.checked_mul(h as u64)?.checked_add(h as u64)?)?))
            })
            .and_then(|(last, total)| total.checked_add(last.checked_mul(n)?))?
            .checked_mul(3)?,
        MethodSpec::ClosedForm { cfg, .. } => layer(cfg.k as u64)?,
        // Every member's model is kept (one member trains at a time: a bound).
        MethodSpec::Ensemble { of, members } => return weight_bytes(of, d as usize, classes)?.checked_mul(*members as u64),
        _ => 0,
    };
    floats.checked_mul(4)
}

/// Refuses, before anything is allocated, to train `method` on `classes` classes of `d`
/// inputs when its parameters and optimiser state ([`weight_bytes`]) would take more than
/// `limit` bytes (`--max-weight-bytes`): the error names the size and the option.
pub fn check_weight_bytes(method: &MethodSpec, d: usize, classes: usize, limit: u64) -> Result<()> {
    let need = weight_bytes(method, d, classes);
    if need.is_some_and(|b| b <= limit) {
        return Ok(());
    }
    let size = need.map_or_else(
        || "over 2^64 bytes".to_string(),
        |b| format!("{b} bytes ({:.1} GiB)", b as f64 / (1u64 << 30) as f64),
    );
    bail!(
        "{} on {d} inputs and {classes} classes would allocate {size} of weights and optimiser state, \
         more than --max-weight-bytes {limit}: raise --max-weight-bytes, or use fewer inputs, fewer classes \
         or a smaller target (e.g. o2md:256)",
        method.name()
    )
}

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

/// The methods as they run on a data set whose samples are images (`image`) or not: without
/// images, the device and mcu modes' shift augmentation is dropped (their settings then say
/// so), as `ldl train` does. Returns the note to print once per command run, naming the
/// methods that lost it, or `None` when nothing changed.
pub fn drop_shifts_without_images(methods: &mut [NamedMethod], image: Option<(usize, usize)>, data: &str) -> Option<String> {
    // A time series (`--series`) is a one-pixel-high image: its shifts move it in time, but
    // warped copies (rotations and shears of a picture) mean nothing there.
    let series = matches!(image, Some((_, 1)));
    if image.is_some() && !series {
        return None;
    }
    let mut dropped = Vec::new();
    let mut warps = false;
    for m in methods.iter_mut() {
        if let MethodSpec::ClosedForm { shift, cfg } | MethodSpec::Compact { shift, cfg } = &mut m.spec {
            if cfg.fill > 0 || cfg.align > 0 || (*shift > 0 && !series) {
                warps |= cfg.fill > 0 || cfg.align > 0;
                if !series {
                    *shift = 0;
                }
                cfg.fill = 0;
                cfg.align = 0;
                dropped.push(m.name.clone());
            }
        }
    }
    let verb = if dropped.len() == 1 {
        "runs without its"
    } else {
        "run without their"
    };
    (!dropped.is_empty()).then(|| {
        if series {
            format!(
                "note: {data} holds time series: {} {verb} warped copies and query alignment (rotations and shears of images); shifts move the series in time",
                dropped.join(", ")
            )
        } else {
            format!(
                "note: {data} is not an image data set: {} {verb} shift augmentation{}",
                dropped.join(", "),
                if warps { " and warped copies (or alignment)" } else { "" }
            )
        }
    })
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
    fn device_method_names_take_k_and_shift() {
        let shift_k = |s: &str| match MethodSpec::parse(s).unwrap() {
            MethodSpec::ClosedForm { cfg, shift } => (cfg.k, shift, cfg.fit),
            _ => unreachable!(),
        };
        let dev = device_mode(None);
        let MethodSpec::ClosedForm { cfg: dcfg, .. } = &dev else {
            unreachable!()
        };
        assert_eq!(shift_k("device"), (0, 2, dcfg.fit));
        assert_eq!(shift_k("device::1"), (0, 1, dcfg.fit));
        assert_eq!(shift_k("device:256:0"), (256, 0, dcfg.fit));
        assert_eq!(MethodSpec::parse("device::1").unwrap().name(), "closed-id-shift1");
        // Reports name a method as typed, its settings beside it.
        let m = NamedMethod::parse(" device::1").unwrap();
        assert_eq!((m.name.as_str(), m.settings().as_str()), ("device::1", "closed-id-shift1"));
        assert!(NamedMethod::parse("device:x").is_err());
        for bad in ["device::4", "device::x", "device::-1", "device:0:1:2:3"] {
            assert!(MethodSpec::parse(bad).is_err(), "{bad}");
        }
    }

    /// `mcu[:RANK[:SHIFT]]`: the device mode's fit, compact, at most RANK directions.
    #[test]
    fn mcu_method_names_take_rank_and_shift() {
        let rank_shift = |s: &str| match MethodSpec::parse(s).unwrap() {
            MethodSpec::Compact { cfg, shift } => (cfg.k, cfg.fit.max_rank, shift, cfg.fit.ridge, cfg.fit.affine),
            _ => unreachable!(),
        };
        assert_eq!(rank_shift("mcu"), (0, MCU_RANK, 2, 100.0, false));
        assert_eq!(rank_shift("mcu:24"), (0, 24, 2, 100.0, false));
        assert_eq!(rank_shift("mcu::1"), (0, MCU_RANK, 1, 100.0, false));
        assert_eq!(MethodSpec::parse("mcu").unwrap().name(), "mcu");
        assert_eq!(MethodSpec::parse("mcu:24:1").unwrap().name(), "mcu:24:1");
        for bad in ["mcu:0", "mcu::4", "mcu:x", "mcu:8:1:2:3", "mcu:70000"] {
            assert!(MethodSpec::parse(bad).is_err(), "{bad}");
        }
        // The device mode's ridge rule at many shots.
        let MethodSpec::Compact { cfg, .. } = validated(&mcu_mode(None, None), 100) else {
            unreachable!()
        };
        assert_eq!(cfg.fit.ridge, 4000.0);
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

    #[test]
    fn bd_takes_a_target_learning_rate_of_its_own() {
        let MethodSpec::Gradient(c) = MethodSpec::parse("bd:784:1e-4:10:5e-5").unwrap() else {
            unreachable!()
        };
        assert_eq!((c.k, c.epochs), (784, 10));
        assert_eq!(c.predictor_step.optimizer, ldl_core::train::Optimizer::adam(1e-4));
        assert_eq!(c.target_step.optimizer, ldl_core::train::Optimizer::adam(5e-5));
        assert_eq!(
            MethodSpec::parse("bd:784:1e-4:10:5e-5").unwrap().name(),
            "bd-k784-lr1e-4-e10-tlr5e-5"
        );
        // Without it, both train at the one rate and the name says nothing more.
        let MethodSpec::Gradient(c) = MethodSpec::parse("bd:2000:1e-4:10").unwrap() else {
            unreachable!()
        };
        assert_eq!(c.target_step.optimizer, c.predictor_step.optimizer);
        assert_eq!(MethodSpec::parse("bd:2000:1e-4:10").unwrap().name(), "bd-k2000-lr1e-4-e10");
        for bad in [
            "o2md:2000:1e-3:3:1e-4",
            "naive::1e-3:3:1e-4",
            "bd:2000:1e-3:5:x",
            "bd:2000:1e-3:5:1e-4:9",
        ] {
            assert!(MethodSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validated_points_are_the_tabled_ones() {
        let lr = |m: &MethodSpec| match m {
            MethodSpec::Gradient(c) => (c.epochs, c.predictor_step.optimizer, c.target_step.optimizer),
            _ => unreachable!(),
        };
        let (o2md, bd) = (MethodSpec::parse("o2md").unwrap(), MethodSpec::parse("bd").unwrap());
        let a3 = ldl_core::train::Optimizer::adam(1e-3);
        let a4 = ldl_core::train::Optimizer::adam(1e-4);
        assert_eq!(lr(&validated(&o2md, 1)), (3, a3, a3));
        assert_eq!(lr(&validated(&o2md, 5)), (10, a3, a3));
        assert_eq!(lr(&validated(&o2md, 10)), (10, a4, a4));
        assert_eq!(lr(&validated(&o2md, 50)), (3, a3, a3));
        assert_eq!(lr(&validated(&o2md, 200)), (3, a4, a4));
        assert_eq!(lr(&validated(&bd, 1)), (10, a4, a3));
        assert_eq!(lr(&validated(&bd, 5)), (10, a4, a4));
        assert_eq!(lr(&validated(&bd, 3)), (10, a4, a4));
        assert_eq!(lr(&validated(&bd, 10)), (10, ldl_core::train::Optimizer::adam(5e-5), a4));
        assert_eq!(lr(&validated(&bd, 100)), (5, a4, a4));
        // Not the paper's defaults: untouched.
        let custom = MethodSpec::parse("o2md:2000:1e-3:7").unwrap();
        assert_eq!(lr(&validated(&custom, 200)), (7, a3, a3));
        // The device mode's ridge grows with many shots; other closed forms keep theirs.
        let ridge = |m: &MethodSpec| match m {
            MethodSpec::ClosedForm { cfg, .. } => cfg.fit.ridge,
            _ => f32::NAN,
        };
        assert_eq!(ridge(&validated(&device_mode(None), 10)), 100.0);
        assert_eq!(ridge(&validated(&device_mode(None), 50)), 2000.0);
        assert_eq!(ridge(&validated(&device_mode(None), 200)), 8000.0);
        for name in ["device-warp", "device-align"] {
            assert_eq!(ridge(&validated(&MethodSpec::parse(name).unwrap(), 100)), 4000.0, "{name}");
        }
        assert_eq!(ridge(&validated(&device_mode(Some(256)), 200)), 100.0);
        assert_eq!(ridge(&validated(&MethodSpec::parse("closed").unwrap(), 200)), 0.0);
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

    /// Without images, the device and mcu modes lose their shifts, with one note naming them;
    /// with images, or without shifts, nothing changes.
    #[test]
    fn shifts_are_dropped_without_images_with_one_note() {
        let mut ms: Vec<NamedMethod> = ["device", "mcu", "device::0", "ncm"]
            .iter()
            .map(|m| NamedMethod::parse(m).unwrap())
            .collect();
        assert_eq!(drop_shifts_without_images(&mut ms, Some((28, 28)), "mnist"), None);
        assert_eq!(ms[0].settings(), "closed-id-shift2");
        let note = drop_shifts_without_images(&mut ms, None, "csv").unwrap();
        assert_eq!(
            note,
            "note: csv is not an image data set: device, mcu run without their shift augmentation"
        );
        assert_eq!(ms[0].settings(), ms[2].settings());
        assert!(matches!(ms[1].spec, MethodSpec::Compact { shift: 0, .. }));
        assert_eq!(drop_shifts_without_images(&mut ms, None, "csv"), None);
        // Warped copies go with the shifts, and the note says so.
        let mut ms: Vec<NamedMethod> = ["device-warp", "ncm"].iter().map(|s| NamedMethod::parse(s).unwrap()).collect();
        let note = drop_shifts_without_images(&mut ms, None, "csv").unwrap();
        assert_eq!(
            note,
            "note: csv is not an image data set: device-warp runs without its shift augmentation and warped copies (or alignment)"
        );
        assert!(matches!(ms[0].spec, MethodSpec::ClosedForm { shift: 0, cfg } if cfg.fill == 0));
    }

    /// `device-warp` and `mcu-warp` are the device and mcu modes with warped copies filling
    /// 5 images; `:FILL` sets it on either, out-of-range fills are refused.
    #[test]
    fn warp_method_names_take_a_fill() {
        let fill = |s: &str| match MethodSpec::parse(s).unwrap() {
            MethodSpec::ClosedForm { cfg, shift } => (cfg.k, cfg.fit.max_rank, shift, cfg.fill),
            MethodSpec::Compact { cfg, shift } => (cfg.k, cfg.fit.max_rank, shift, cfg.fill),
            _ => unreachable!(),
        };
        assert_eq!(fill("device-warp"), (0, 0, 2, WARP_FILL));
        assert_eq!(fill("device-warp:256:1"), (256, 0, 1, WARP_FILL));
        assert_eq!(fill("device:::3"), (0, 0, 2, 3));
        assert_eq!(fill("device"), (0, 0, 2, 0));
        assert_eq!(fill("mcu-warp"), (0, MCU_RANK, 2, WARP_FILL));
        assert_eq!(fill("mcu-warp:24"), (0, 24, 2, WARP_FILL));
        assert_eq!(fill("mcu:32:1:7"), (0, 32, 1, 7));
        assert_eq!(MethodSpec::parse("mcu-warp").unwrap().name(), "mcu-warp");
        assert_eq!(MethodSpec::parse("mcu-warp:24").unwrap().name(), "mcu:24:2:5");
        assert_eq!(MethodSpec::parse("device-warp").unwrap().name(), "closed-id-shift2-fill5");
        for bad in [
            "mcu:::65",
            "mcu:::x",
            "device:::-1",
            "device-warp:1:2:3",
            "mcu-warpx",
            "mcu:1:1:1:1:1",
            "mcu:1:1:1:2",
            "device-align:1:2:3",
        ] {
            assert!(MethodSpec::parse(bad).is_err(), "{bad}");
        }
    }

    /// `device-align` and `mcu-align` are the `-warp` modes with query alignment [`ALIGN`];
    /// `:ALIGN` sets it on either; an ensemble of an aligned mode is refused (its
    /// classification has one member), and alignment goes with the shifts when there are no
    /// images.
    #[test]
    fn align_method_names_take_an_alignment() {
        let align = |s: &str| match MethodSpec::parse(s).unwrap() {
            MethodSpec::ClosedForm { cfg, shift } | MethodSpec::Compact { cfg, shift } => (shift, cfg.fill, cfg.align),
            _ => unreachable!(),
        };
        assert_eq!(align("device-align"), (2, WARP_FILL, ALIGN));
        assert_eq!(align("mcu-align:32:1"), (1, WARP_FILL, ALIGN));
        assert_eq!(align("device:::0:1"), (2, 0, 1));
        assert_eq!(align("mcu-warp"), (2, WARP_FILL, 0));
        assert_eq!(MethodSpec::parse("mcu-align").unwrap().name(), "mcu-align");
        assert_eq!(MethodSpec::parse("mcu:::0:1").unwrap().name(), "mcu:40:2:0:1");
        assert_eq!(MethodSpec::parse("device-align").unwrap().name(), "closed-id-shift2-fill5-align1");
        let err = MethodSpec::parse("device-align").unwrap().ensemble(3).unwrap_err().to_string();
        assert!(err.contains("one member"), "{err}");
        let mut ms = vec![NamedMethod::parse("mcu-align").unwrap()];
        drop_shifts_without_images(&mut ms, None, "csv").unwrap();
        assert!(matches!(ms[0].spec, MethodSpec::Compact { shift: 0, cfg } if cfg.fill == 0 && cfg.align == 0));
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
