//! `ldl inspect`: a model file's header, dimensions, labels, size, CRC, per-class form and
//! rank, and whether it fits a board's flash and RAM.
//!
//! The flash check is exact: the file must fit the board's MODEL region (from
//! `firmware/boards.toml`) or `--flash`. The RAM figure is an estimate of the classifier's own
//! buffers on the device, not of the firmware around it (stack, statics, drivers):
//! - classification: the input (`d` f32), `classify::scratch_len` f32 (at least `k + d + R`
//!   once enrolled classes of rank `R` are joined) and one distance per class of capacity;
//! - enrollment, when the capacity leaves room: `Enrolled` storage for every class that can
//!   be enrolled, `4 (d + R d + R + K R + K)` bytes plus about 32 bytes of label and
//!   bookkeeping each (`K = k` with a linear target, 0 with the identity), the sample buffer
//!   (`--enroll-shots` images, each with its `(2 shift + 1)^2` shifts, `d` f32 each) and the
//!   fit's scratch (`subspace::fit_scratch_len`). `R` (fixed when the firmware is built;
//!   a fit keeps its `R` strongest directions) is `--enroll-rank`, else the model's
//!   `fit.max_rank`, else the largest rank among the model's own classes (classes enrolled
//!   from as many samples reach about as much), else the most the buffered samples can span.

use super::boards::{self, Board};
use super::{human_bytes, model_error, parse_size, read_model_bytes};
use anyhow::{Context, Result};
use clap::Args;
use ldl_core::format::{ClassForm, ModelView, TargetKind};
use ldl_core::{FitOptions, Method, Preprocess};
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `ldl inspect`.
#[derive(Debug, Args, Clone)]
pub struct InspectArgs {
    /// The model file.
    #[arg(value_name = "MODEL.ldlm")]
    pub model: PathBuf,
    /// Board whose memory the model must fit (from firmware/boards.toml: qemu, nrf52840dk).
    #[arg(long, default_value = "nrf52840dk")]
    pub board: String,
    /// Flash budget for the model file, instead of the board's MODEL region (e.g. 1M, 640K).
    #[arg(long, value_parser = parse_size)]
    pub flash: Option<u64>,
    /// RAM budget, instead of the board's RAM (e.g. 256K).
    #[arg(long, value_parser = parse_size)]
    pub ram: Option<u64>,
    /// Images a device buffers to enroll one class (each adds its shifts); 0 = leave
    /// enrollment out of the RAM estimate.
    #[arg(long, default_value_t = 5)]
    pub enroll_shots: usize,
    /// Directions kept per enrolled class (the firmware's `R`); default: the model's
    /// fit.max_rank, else the largest rank among the model's classes.
    #[arg(long)]
    pub enroll_rank: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One class entry of the file.
#[derive(Debug, Clone, Serialize)]
pub struct ClassInfo {
    /// Ensemble member.
    pub member: usize,
    /// Class index.
    pub class: usize,
    /// Label.
    pub label: String,
    /// `dense` or `subspace`.
    pub form: &'static str,
    /// Dense: has a bias. Subspace: affine (stores a mean).
    pub bias_or_affine: bool,
    /// Subspace rank.
    pub rank: Option<usize>,
    /// Bytes of weights.
    pub bytes: usize,
}

/// The RAM estimate (bytes).
#[derive(Debug, Clone, Serialize)]
pub struct RamEstimate {
    /// Input vector.
    pub input: u64,
    /// Classification scratch.
    pub scratch: u64,
    /// One distance per class of capacity.
    pub distances: u64,
    /// Enrollment, when the capacity leaves room and `--enroll-shots` > 0.
    pub enroll: Option<EnrollEstimate>,
    /// Everything.
    pub total: u64,
}

/// The enrollment part of the RAM estimate.
#[derive(Debug, Clone, Serialize)]
pub struct EnrollEstimate {
    /// Classes that can be enrolled (capacity - classes).
    pub classes: usize,
    /// Images buffered per class.
    pub shots: usize,
    /// Shifted copies per image.
    pub images_per_shot: usize,
    /// Directions kept per class (R).
    pub rank: usize,
    /// Where `rank` comes from.
    pub rank_source: &'static str,
    /// Storage of one enrolled class.
    pub per_class: u64,
    /// Storage of all of them (`Enrolled`).
    pub storage: u64,
    /// Sample buffer.
    pub samples: u64,
    /// Fit scratch.
    pub fit_scratch: u64,
}

/// The budget check.
#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    /// Board key.
    pub board: String,
    /// Board name.
    pub board_name: String,
    /// Flash available for the model file.
    pub flash: u64,
    /// Where `flash` comes from.
    pub flash_source: String,
    /// RAM available.
    pub ram: u64,
    /// Where `ram` comes from.
    pub ram_source: String,
    /// The file fits `flash`.
    pub flash_fits: bool,
    /// The estimate.
    pub ram_estimate: RamEstimate,
    /// The estimate fits `ram`.
    pub ram_fits: bool,
    /// Enrolled classes persisted in the STORE region (information only).
    pub store_needed: u64,
    /// The board's STORE region.
    pub store_region: u64,
    /// Both fit.
    pub fits: bool,
}

/// Everything `inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The file.
    pub file: String,
    /// File size.
    pub bytes: usize,
    /// Stored CRC-32 (verified).
    pub crc32: String,
    /// Format version.
    pub format_version: u16,
    /// Method.
    pub method: Method,
    /// Input dimension d.
    pub inputs: usize,
    /// Target outputs k.
    pub outputs: usize,
    /// Target of member 0: `identity`, `linear` or `linear+bias`.
    pub target: String,
    /// Ensemble members.
    pub members: usize,
    /// Labels.
    pub labels: Vec<String>,
    /// Capacity.
    pub capacity: u16,
    /// Threshold.
    pub threshold: Option<f32>,
    /// Preprocessing.
    pub preprocess: Preprocess,
    /// Fit options.
    pub fit: FitOptions,
    /// Bytes of weights.
    pub weights_bytes: usize,
    /// Every class entry.
    pub entries: Vec<ClassInfo>,
    /// The budget check.
    pub budget: Budget,
}

/// `Preprocess` for people.
pub fn describe_preprocess(p: &Preprocess) -> String {
    let mut s = format!("device input x -> x * {} + {}", p.scale, p.offset);
    if p.scale == 1.0 / 255.0 && p.offset == 0.0 {
        s.push_str(" (raw 8-bit pixels 0..255 -> [0, 1])");
    }
    if let Some(im) = p.image {
        s.push_str(&format!("; image {}x{}", im.width, im.height));
        if im.source_width != 0 || im.source_height != 0 {
            s.push_str(&format!(" (host resized from {}x{})", im.source_width, im.source_height));
        }
    }
    if p.shift > 0 {
        s.push_str(&format!(
            "; enrollment shift {} px ({} images per enrolled image)",
            p.shift,
            ldl_core::augment::shift_count(p.shift)
        ));
    } else {
        s.push_str("; no enrollment shift");
    }
    s
}

/// `FitOptions` for people.
pub fn describe_fit(f: &FitOptions) -> String {
    format!(
        "ridge {}, affine {}, rank_tol {}, min_weight {}, max_rank {}",
        f.ridge,
        if f.affine { "yes" } else { "no" },
        f.rank_tol,
        f.min_weight,
        if f.max_rank == 0 {
            "no limit".to_string()
        } else {
            f.max_rank.to_string()
        }
    )
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::O2md => "O2MD (gradient)",
        Method::Bd => "BD (gradient)",
        Method::Naive => "naive (gradient)",
        Method::ClosedForm => "closed form",
    }
}

/// Builds the report of a model file (the file is validated completely: CRC, header,
/// weights).
pub fn report(args: &InspectArgs) -> Result<Report> {
    let path = &args.model;
    let bytes = read_model_bytes(path)?;
    // An aligned copy, so the weights can be read in place as a device does.
    let mut buf = vec![0u32; bytes.len().div_ceil(4)];
    let aligned: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
    aligned[..bytes.len()].copy_from_slice(&bytes);
    let view = ModelView::parse(&aligned[..bytes.len()]).map_err(|e| model_error(path, e))?;
    let h = view.header();
    let (d, k) = (view.inputs(), view.outputs());
    let n = h.labels.len();
    let linear_target = |m: usize| matches!(h.members[m].kind, TargetKind::Linear { .. });
    let mut entries = Vec::new();
    for (i, e) in h.classes.iter().enumerate() {
        let (member, class) = (i / n.max(1), i % n.max(1));
        let (form, flag, rank, floats) = match e.form {
            ClassForm::Dense { bias } => ("dense", bias, None, k * d + if bias { k } else { 0 }),
            ClassForm::Subspace { affine, rank } => {
                let r = rank as usize;
                let extra = if linear_target(member) { k * r + k } else { 0 };
                ("subspace", affine, Some(r), if affine { d } else { 0 } + r * d + r + extra)
            }
            ClassForm::Compact { affine, rank, .. } => {
                let shape = e.form.compact_shape(d, k, linear_target(member)).ok().flatten();
                ("compact", affine, Some(rank as usize), shape.map_or(0, |s| s.words()))
            }
        };
        entries.push(ClassInfo {
            member,
            class,
            label: h.labels[class].to_string(),
            form,
            bias_or_affine: flag,
            rank,
            bytes: floats * 4,
        });
    }
    let target = match h.members[0].kind {
        TargetKind::Identity => "identity".to_string(),
        TargetKind::Linear { bias: false } => "linear".to_string(),
        TargetKind::Linear { bias: true } => "linear+bias".to_string(),
    };

    // Budget.
    let board: Board = boards::board(&args.board)?;
    let (flash, flash_source) = match args.flash {
        Some(f) => (f, "--flash".to_string()),
        None => (board.model.size, format!("MODEL region of {}", args.board)),
    };
    let (ram, ram_source) = match args.ram {
        Some(r) => (r, "--ram".to_string()),
        None => (board.ram.size, format!("RAM of {}", args.board)),
    };
    let capacity = h.capacity as usize;
    let free = capacity.saturating_sub(n);
    let pp = view.preprocess();
    let fit = view.fit();
    let enroll = (free > 0 && args.enroll_shots > 0).then(|| {
        let per = ldl_core::augment::shift_count(pp.shift);
        let m = args.enroll_shots * per;
        let largest = entries.iter().filter_map(|e| e.rank).max();
        let (rank, rank_source) = match (args.enroll_rank, fit.max_rank, largest) {
            (Some(r), _, _) => (r.min(d), "--enroll-rank"),
            (None, r, _) if r > 0 => ((r as usize).min(d), "the model's fit.max_rank"),
            (None, _, Some(r)) => (r.min(m).min(d), "the largest rank among the model's classes"),
            _ => (m.min(d), "every sample buffered"),
        };
        let kk = if linear_target(0) { k } else { 0 };
        let per_class = 4 * (d + rank * d + rank + kk * rank + kk) as u64 + 32;
        EnrollEstimate {
            classes: free,
            shots: args.enroll_shots,
            images_per_shot: per,
            rank,
            rank_source,
            per_class,
            storage: per_class * free as u64,
            samples: 4 * (m * d) as u64,
            fit_scratch: 4 * ldl_core::subspace::fit_scratch_len(m, d, k) as u64,
        }
    });
    let scratch_f32 = ldl_core::classify::scratch_len(&view).map_err(|e| model_error(path, e))?;
    let enrolled_scratch = enroll
        .as_ref()
        .map_or(0, |e| k + ldl_core::subspace::distance_scratch_len(d, e.rank));
    let input = 4 * d as u64;
    let scratch = 4 * scratch_f32.max(enrolled_scratch) as u64;
    let distances = 4 * capacity.max(n) as u64;
    let total = input + scratch + distances + enroll.as_ref().map_or(0, |e| e.storage + e.samples + e.fit_scratch);
    let ram_estimate = RamEstimate {
        input,
        scratch,
        distances,
        total,
        enroll,
    };
    let flash_fits = bytes.len() as u64 <= flash;
    let ram_fits = total <= ram;
    let budget = Budget {
        board: args.board.clone(),
        board_name: board.name.clone(),
        flash,
        flash_source,
        ram,
        ram_source,
        flash_fits,
        store_needed: ram_estimate.enroll.as_ref().map_or(0, |e| e.storage),
        ram_estimate,
        ram_fits,
        store_region: board.store.size,
        fits: flash_fits && ram_fits,
    };
    Ok(Report {
        file: path.display().to_string(),
        bytes: bytes.len(),
        crc32: format!("{:08x}", view.crc()),
        format_version: u16::from_le_bytes([bytes[4], bytes[5]]),
        method: view.method(),
        inputs: d,
        outputs: k,
        target,
        members: h.members.len(),
        labels: h.labels.iter().map(|l| l.to_string()).collect(),
        capacity: h.capacity,
        threshold: view.threshold(),
        preprocess: pp,
        fit,
        weights_bytes: view.weights().len() * 4,
        entries,
        budget,
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "fits"
    } else {
        "DOES NOT FIT"
    }
}

/// Prints the report as text.
pub fn print(r: &Report) {
    let hb = |n: u64| human_bytes(n);
    println!(
        "{}: LDL model file, format version {}, {} bytes ({}), CRC-32 {} (verified)",
        r.file,
        r.format_version,
        r.bytes,
        hb(r.bytes as u64),
        r.crc32
    );
    println!("  method      {}", method_name(r.method));
    println!(
        "  dims        d = {} inputs, k = {} outputs; target {}",
        r.inputs, r.outputs, r.target
    );
    println!("  members     {}", r.members);
    println!(
        "  classes     {} of capacity {} (room to enroll {}): {}",
        r.labels.len(),
        r.capacity,
        r.capacity as usize - r.labels.len(),
        r.labels.join(", ")
    );
    match r.threshold {
        Some(t) => println!("  threshold   {t} (best-class distance above it = unknown)"),
        None => println!("  threshold   none"),
    }
    println!("  preprocess  {}", describe_preprocess(&r.preprocess));
    println!("  fit         {}", describe_fit(&r.fit));
    println!("  weights     {}", hb(r.weights_bytes as u64));
    println!();
    let show_member = r.members > 1;
    if show_member {
        print!("  {:>6}", "member");
    }
    println!("  {:>5}  {:<16}  {:<18}  {:>5}  {:>11}", "class", "label", "form", "rank", "bytes");
    for e in &r.entries {
        if show_member {
            print!("  {:>6}", e.member);
        }
        let form = match (e.form, e.bias_or_affine) {
            ("dense", true) => "dense + bias",
            ("dense", false) => "dense",
            (_, true) => "affine subspace",
            _ => "subspace",
        };
        let rank = e.rank.map_or("-".to_string(), |r| r.to_string());
        println!(
            "  {:>5}  {:<16}  {:<18}  {:>5}  {:>11}",
            e.class,
            e.label,
            form,
            rank,
            hb(e.bytes as u64)
        );
    }
    let b = &r.budget;
    let est = &b.ram_estimate;
    println!();
    println!("budget: {} ({})", b.board, b.board_name);
    println!(
        "  flash  model file {} vs {} {}: {}",
        hb(r.bytes as u64),
        b.flash_source,
        hb(b.flash),
        verdict(b.flash_fits)
    );
    println!("  RAM, estimated (the classifier's buffers; the firmware's stack and statics come on top):");
    println!(
        "    classify  input {} + scratch {} + distances {} = {}",
        hb(est.input),
        hb(est.scratch),
        hb(est.distances),
        hb(est.input + est.scratch + est.distances)
    );
    match &est.enroll {
        Some(e) => {
            println!(
                "    enroll    {} classes x {} (rank {}: {}) = {}",
                e.classes,
                hb(e.per_class),
                e.rank,
                e.rank_source,
                hb(e.storage)
            );
            println!(
                "              + samples {} x {} images x {} f32 = {} + fit scratch {}",
                e.shots,
                e.images_per_shot,
                r.inputs,
                hb(e.samples),
                hb(e.fit_scratch)
            );
        }
        None => println!("    enroll    not counted (no room in the capacity, or --enroll-shots 0)"),
    }
    println!(
        "    total     {} vs {} {}: {}",
        hb(est.total),
        b.ram_source,
        hb(b.ram),
        verdict(b.ram_fits)
    );
    if b.store_needed > 0 {
        println!(
            "  store  enrolled classes take about {} vs the STORE region {} (information: depends on the store's format)",
            hb(b.store_needed),
            hb(b.store_region)
        );
    }
    println!("result: {}", if b.fits { "fits" } else { "does NOT fit the budget" });
}

/// Runs `ldl inspect`; `Ok(false)` when the model does not fit the budget.
pub fn run(args: InspectArgs) -> Result<bool> {
    let r = report(&args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r).context("JSON")?);
    } else {
        print(&r);
    }
    Ok(r.budget.fits)
}
