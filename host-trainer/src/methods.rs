//! The methods `ldl` runs, by name: what `--methods` and `--method` parse into
//! ([`MethodSpec`]), the device and mcu modes and their settings chosen on the validation
//! split ([`device_mode`], [`mcu_mode`], [`validated`]), and the memory a method's weights
//! would take before anything is allocated ([`check_weight_bytes`]).

use crate::baselines;
use anyhow::{bail, Context, Result};
use ldl_core::methods::{ClosedFormConfig, GradientConfig};
use ldl_core::subspace::FitOptions;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
