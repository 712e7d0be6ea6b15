//! `ldl inspect`: a model file's header, dimensions, labels, size, CRC, per-class form and
//! rank, and whether it fits a board.
//!
//! A board's firmware is built for fixed sizes (`firmware/boards.toml`, `sizes`), and the
//! check uses the same formulas as the firmware's build-time assertions
//! (`ldl_core::budget`):
//! - flash: the file must fit the board's MODEL region (or `--flash`);
//! - the firmware: its RAM (workspace, frame buffers, statics, the stack it keeps free) must
//!   fit the board's RAM (or `--ram`), its inputs must be the model's, and the model's
//!   classification scratch must fit what the workspace leaves it (the device refuses the
//!   model at boot otherwise);
//! - enrollment (information): how many classes the device can enroll into this model, from
//!   how many images, with how many directions, given the room the model's capacity leaves
//!   and a store slot's room for classes of this model's kind at their largest.

use super::boards::{self, Board};
use super::{model_error, read_model_bytes};
use crate::units::{human_bytes, parse_size};
use anyhow::{anyhow, Context, Result};
use clap::Args;
use ldl_core::classify::Classes;
use ldl_core::format::{ClassForm, ModelView, TargetKind};
use ldl_core::subspace::FitOptions;
use ldl_core::{Method, Preprocess};
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `ldl inspect`.
#[derive(Debug, Args, Clone)]
pub struct InspectArgs {
    /// The model file.
    #[arg(value_name = "MODEL.ldlm")]
    pub model: PathBuf,
    /// Board whose memory the model must fit (from firmware/boards.toml: qemu, stm32f405,
    /// nrf52840dk).
    #[arg(long, default_value = "nrf52840dk")]
    pub board: String,
    /// Flash budget for the model file, instead of the board's MODEL region (e.g. 1M, 640K).
    #[arg(long, value_parser = parse_size)]
    pub flash: Option<u64>,
    /// RAM budget, instead of the board's RAM (e.g. 256K).
    #[arg(long, value_parser = parse_size)]
    pub ram: Option<u64>,
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

/// What a device can enroll into the model.
#[derive(Debug, Clone, Serialize)]
pub struct EnrollBudget {
    /// Classes it can enroll: the capacity's room, the store's classes, and the classes of
    /// this model's kind a store slot holds at their largest, whichever is least.
    pub classes: usize,
    /// Images per enrollment (each with its shifts).
    pub images: usize,
    /// Directions kept per enrolled class (the board's, or the model's `fit.max_rank` if
    /// lower).
    pub rank: usize,
    /// Bytes of one enrolled class at its largest, for this model's kind (0 when no device
    /// keeps classes of its inputs: more than 65535).
    pub class_bytes: u64,
    /// Bytes of one store slot (the store takes two).
    pub slot_bytes: u64,
    /// Why the device cannot enroll into this model, if it cannot.
    pub refused: Option<String>,
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
    /// The file fits `flash`.
    pub flash_fits: bool,
    /// RAM available.
    pub ram: u64,
    /// Where `ram` comes from.
    pub ram_source: String,
    /// RAM the board's firmware takes (workspace, frame buffers, statics, stack).
    pub firmware_ram: u64,
    /// Of which the workspace.
    pub workspace: u64,
    /// `firmware_ram` fits `ram`.
    pub ram_fits: bool,
    /// Inputs the firmware is built for.
    pub firmware_inputs: usize,
    /// Bytes of classification scratch the model's classes need.
    pub scratch: u64,
    /// Bytes the workspace leaves for it.
    pub scratch_room: u64,
    /// The device runs the model: its inputs and its scratch fit.
    pub runs: bool,
    /// Enrollment.
    pub enroll: EnrollBudget,
    /// The board's STORE region.
    pub store_region: u64,
    /// Flash, RAM and the model's fit on the device.
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
    /// The novelty score the threshold applies to (`best` in a file before version 3).
    pub novelty: &'static str,
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
    if p.fill > 0 {
        s.push_str(&format!(
            "; warped copies of enrolled images while a class stays within {} images",
            p.fill
        ));
    }
    if p.align > 0 {
        let views = 1 + ldl_core::augment::ALIGNS.get(usize::from(p.align)).map_or(0, |a| a.len());
        s.push_str(&format!(
            "; query alignment {} ({views} views of each query, each class at its closest)",
            p.align
        ));
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

/// Bytes of `words` 4-byte words, `None` on overflow.
fn word_bytes(words: usize) -> Option<u64> {
    u64::try_from(words).ok()?.checked_mul(4)
}

/// What the header says beyond the format's own rules, checked before any size is computed
/// from it: a model whose image is not its inputs, or whose enrollment shift does not fit
/// its image, cannot have been trained as it says, and the sizes `inspect` would derive from
/// it would be meaningless. `Err` says why.
pub fn check_header_sizes(view: &ModelView<'_>) -> std::result::Result<(), String> {
    let (d, pp) = (view.inputs(), view.preprocess());
    if let Some(im) = pp.image {
        let pixels = u64::from(im.width) * u64::from(im.height);
        if pixels != d as u64 {
            return Err(format!(
                "its header declares images of {}x{} = {pixels} pixels but {d} inputs",
                im.width, im.height
            ));
        }
        if pp.shift > 0 && u16::from(pp.shift) >= im.width {
            return Err(format!(
                "its header declares an enrollment shift of {} pixels on {}x{} images (a shift must be less than the image's width)",
                pp.shift, im.width, im.height
            ));
        }
    }
    Ok(())
}

/// Builds the report of a model file (the file is validated completely: CRC, header,
/// weights; then [`check_header_sizes`]), every size computed with overflow checks.
pub fn report(args: &InspectArgs) -> Result<Report> {
    let path = &args.model;
    let bytes = read_model_bytes(path)?;
    // An aligned copy, so the weights can be read in place as a device does.
    let aligned = ldl_core::format::Aligned::new(&bytes);
    let view = ModelView::parse(&aligned).map_err(|e| model_error(path, e))?;
    let invalid = |why: String| anyhow!("{}: not a valid LDL model file: {why}", path.display());
    check_header_sizes(&view).map_err(invalid)?;
    let h = view.header();
    let (d, k) = (view.inputs(), view.outputs());
    let entries = class_entries(&view, path)?;
    let target = match h.members[0].kind {
        TargetKind::Identity => "identity".to_string(),
        TargetKind::Linear { bias: false } => "linear".to_string(),
        TargetKind::Linear { bias: true } => "linear+bias".to_string(),
    };

    let budget = budget(args, &view, bytes.len() as u64, path)?;
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
        novelty: view.score().name(),
        preprocess: view.preprocess(),
        fit: view.fit(),
        weights_bytes: view.weights().len() * 4,
        entries,
        budget,
    })
}

/// One [`ClassInfo`] per class entry: its form, rank and bytes as the format lays them out.
fn class_entries(view: &ModelView<'_>, path: &std::path::Path) -> Result<Vec<ClassInfo>> {
    let invalid = |why: String| anyhow!("{}: not a valid LDL model file: {why}", path.display());
    let overflow = || invalid("the sizes its header declares overflow".into());
    let h = view.header();
    let (d, k) = (view.inputs(), view.outputs());
    let n = h.labels.len();
    let linear_target = |m: usize| matches!(h.members[m].kind, TargetKind::Linear { .. });
    let mut entries = Vec::new();
    for (i, e) in h.classes.iter().enumerate() {
        let (member, class) = (i / n.max(1), i % n.max(1));
        // The weights' words, as the format lays them out (FORMAT.md section 4).
        let words = |parts: &[(usize, usize)]| {
            parts
                .iter()
                .try_fold(0usize, |sum, &(a, b)| sum.checked_add(a.checked_mul(b)?))
                .ok_or_else(overflow)
        };
        let (form, flag, rank, floats) = match e.form {
            ClassForm::Dense { bias } => ("dense", bias, None, words(&[(k, d), (k, usize::from(bias))])?),
            ClassForm::Subspace { affine, rank } => {
                let r = rank as usize;
                let lin = usize::from(linear_target(member));
                let floats = words(&[(d, usize::from(affine)), (r, d), (r, 1), (k * lin, r), (k, lin)])?;
                ("subspace", affine, Some(r), floats)
            }
            ClassForm::Compact { affine, rank, .. } => {
                let shape = e
                    .form
                    .compact_shape(d, k, linear_target(member))
                    .map_err(|e| model_error(path, e))?;
                let floats = shape.map_or(Ok(0), |s| s.checked_words()).map_err(|e| model_error(path, e))?;
                ("compact", affine, Some(rank as usize), floats)
            }
        };
        entries.push(ClassInfo {
            member,
            class,
            label: h.labels[class].to_string(),
            form,
            bias_or_affine: flag,
            rank,
            bytes: floats.checked_mul(4).ok_or_else(overflow)?,
        });
    }
    Ok(entries)
}

/// The model against `args`'s board (or `--flash`/`--ram`): flash, RAM, whether its firmware
/// runs the model, and what it can enroll.
fn budget(args: &InspectArgs, view: &ModelView<'_>, file_bytes: u64, path: &std::path::Path) -> Result<Budget> {
    let invalid = |why: String| anyhow!("{}: not a valid LDL model file: {why}", path.display());
    let overflow = || invalid("the sizes its header declares overflow".into());
    let n = view.header().labels.len();
    let board: Board = boards::board(&args.board)?;
    let (flash, flash_source) = match args.flash {
        Some(f) => (f, "--flash".to_string()),
        None => (board.model.size, format!("MODEL region of {}", args.board)),
    };
    let (ram, ram_source) = match args.ram {
        Some(r) => (r, "--ram".to_string()),
        None => (board.ram.size, format!("RAM of {}", args.board)),
    };
    let sizes = board.sizes.core();
    let scratch = word_bytes(ldl_core::classify::scratch_len(view).map_err(|e| model_error(path, e))?).ok_or_else(overflow)?;
    let scratch_room = word_bytes(sizes.model_scratch()).ok_or_else(overflow)?;
    let runs = device_runs(view, &board).is_ok();
    let enroll = enroll_budget(view, &sizes, board.erase_size as usize, n).ok_or_else(overflow)?;
    let firmware_ram = sizes.ram_bytes() as u64;
    let flash_fits = file_bytes <= flash;
    let ram_fits = firmware_ram <= ram;
    Ok(Budget {
        board: args.board.clone(),
        board_name: board.name.clone(),
        flash,
        flash_source,
        flash_fits,
        ram,
        ram_source,
        firmware_ram,
        workspace: sizes.workspace_bytes() as u64,
        ram_fits,
        firmware_inputs: sizes.inputs,
        scratch,
        scratch_room,
        runs,
        enroll,
        store_region: board.store.size,
        fits: flash_fits && ram_fits && runs,
    })
}

/// Whether `board`'s firmware runs the model: `Err` says why it would refuse it at boot (its
/// inputs, or a classification scratch larger than its workspace leaves).
pub fn device_runs(view: &ModelView<'_>, board: &Board) -> std::result::Result<(), String> {
    let sizes = board.sizes.core();
    if view.inputs() != sizes.inputs {
        return Err(format!(
            "the firmware of {} takes {} inputs, the model has {}",
            board.name,
            sizes.inputs,
            view.inputs()
        ));
    }
    let need = ldl_core::classify::scratch_len(view).map_err(|e| e.to_string())?;
    if need > sizes.model_scratch() {
        return Err(format!(
            "its classification needs {} of scratch, the firmware of {} leaves {}",
            human_bytes(word_bytes(need).unwrap_or(u64::MAX)),
            board.name,
            human_bytes(word_bytes(sizes.model_scratch()).unwrap_or(u64::MAX))
        ));
    }
    Ok(())
}

/// What the device of `sizes` can enroll into the model (`n` classes of its own); `None`
/// when a size overflows.
fn enroll_budget(view: &ModelView<'_>, sizes: &ldl_core::budget::Sizes, erase: usize, n: usize) -> Option<EnrollBudget> {
    let (d, k) = (view.inputs(), view.outputs());
    let fit = view.fit();
    let pp = view.preprocess();
    let linear = view.target(0).is_ok_and(|t| matches!(t, ldl_core::Target::Linear(_)));
    let rank = match fit.max_rank {
        0 => sizes.rank,
        r => sizes.rank.min(r as usize),
    }
    .min(d);
    // The class at its largest: all inputs live in one run, with a mean (`store::worst_class_len`,
    // here with every step checked).
    let worst = ldl_core::compact::Shape {
        inputs: d,
        outputs: k,
        rank,
        runs: 1,
        live: d,
        affine: fit.affine,
        linear,
    };
    let class_bytes = match worst.checked_words() {
        Ok(words) => word_bytes(words)?.checked_add(ldl_core::store::CLASS_HEAD as u64)?,
        // No device keeps a class of this shape (e.g. more than 65535 inputs).
        Err(_) => 0,
    };
    let slot_bytes = sizes.slot_bytes(erase);
    let per_slot =
        (slot_bytes.saturating_sub(ldl_core::store::HEADER_LEN + ldl_core::store::BODY_HEAD) as u64 / class_bytes.max(1)) as usize;
    let room = (view.capacity() as usize).saturating_sub(n);
    let (w, s) = match pp.image {
        Some(im) if pp.shift > 0 => (im.width as usize, pp.shift as usize),
        _ => (d, 0),
    };
    let kl = if linear { k } else { 0 };
    let have = sizes.workspace() - sizes.images * sizes.inputs;
    // The fit's scratch, only asked for once `d` is the firmware's inputs and the image and
    // shift fit them ([`check_header_sizes`]): every term is then small.
    let need = || {
        let rows = sizes.images.checked_mul(ldl_core::augment::shift_count(s as u8))?;
        Some(ldl_core::fit::fit_scratch_len(rows, d, w, s, kl, rank))
    };
    let refused = if view.members() != 1 {
        Some("an ensemble model: enrolled classes need one target".to_string())
    } else if d != sizes.inputs {
        Some(format!("the firmware takes {} inputs", sizes.inputs))
    } else if pp
        .image
        .is_some_and(|im| pp.shift > 0 && im.width as usize * im.height as usize != d)
    {
        Some("the image size does not match the inputs".to_string())
    } else if need()? > have {
        Some(format!(
            "the fit of {} images with shift {} needs {} of workspace, the device has {} (its shift {}, linear targets up to {} outputs)",
            sizes.images,
            s,
            human_bytes(word_bytes(need()?)?),
            human_bytes(word_bytes(have)?),
            sizes.shift,
            sizes.outputs
        ))
    } else if pp.fill as usize > sizes.images {
        Some(format!(
            "the model's warped copies fill up to {} images, the device holds {}",
            pp.fill, sizes.images
        ))
    } else if room == 0 {
        Some("the model's capacity leaves no room".to_string())
    } else if per_slot == 0 {
        Some("a store slot cannot hold one class of this kind".to_string())
    } else {
        None
    };
    Some(EnrollBudget {
        classes: if refused.is_some() {
            0
        } else {
            room.min(sizes.classes).min(per_slot)
        },
        images: sizes.images,
        rank,
        class_bytes,
        slot_bytes: slot_bytes as u64,
        refused,
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
        (r.capacity as usize).saturating_sub(r.labels.len()),
        r.labels.join(", ")
    );
    match r.threshold {
        Some(t) => println!("  threshold   {t} on the {} score (above it = unknown)", r.novelty),
        None => println!("  threshold   none (novelty score {})", r.novelty),
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
            ("compact", true) => "affine int8 subspace",
            ("compact", false) => "int8 subspace",
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
    println!();
    println!("budget: {} ({})", b.board, b.board_name);
    println!(
        "  flash     model file {} vs {} {}: {}",
        hb(r.bytes as u64),
        b.flash_source,
        hb(b.flash),
        verdict(b.flash_fits)
    );
    println!(
        "  RAM       the firmware's {} (workspace {}, frame buffers, statics, {} of stack) vs {} {}: {}",
        hb(b.firmware_ram),
        hb(b.workspace),
        hb(ldl_core::budget::STACK_BYTES as u64),
        b.ram_source,
        hb(b.ram),
        verdict(b.ram_fits)
    );
    println!(
        "  model     {} inputs (the firmware's: {}); classification scratch {} of {}: {}",
        r.inputs,
        b.firmware_inputs,
        hb(b.scratch),
        hb(b.scratch_room),
        if b.runs { "runs" } else { "REFUSED at boot" }
    );
    let e = &b.enroll;
    match &e.refused {
        None => println!(
            "  enroll    {} classes on the device, {} images each, up to {} directions ({} each at most; store slots of {}, two in the STORE region of {})",
            e.classes,
            e.images,
            e.rank,
            hb(e.class_bytes),
            hb(e.slot_bytes),
            hb(b.store_region)
        ),
        Some(why) => println!("  enroll    none on this device: {why}"),
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
