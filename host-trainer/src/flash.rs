//! `ldl flash`: writes a model file into a board's MODEL region through the probe-rs library,
//! verifies it, and resets the chip so the firmware validates the new model at boot.
//!
//! Everything that can be checked without hardware is checked first, and `--dry-run` stops
//! there: the file is a valid model (magic, version, dimensions, CRC: the core's own
//! decoder), the board's MODEL region (from `firmware/boards.toml`, the layout the firmware
//! links with) holds it, and that region lies in the chip's non-volatile memory according to
//! probe-rs's chip registry. Only then is a probe opened; no probe, or a probe that cannot
//! attach to the chip, is a clear error and nothing is written.

use crate::models::boards::{self, Board};
use crate::models::{load_model, read_model_bytes};
use crate::units::human_bytes;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use probe_rs::config::{MemoryRegion, Registry};
use probe_rs::flashing::{DownloadOptions, FlashProgress, ProgressEvent, ProgressOperation};
use probe_rs::probe::{list::Lister, DebugProbeSelector};
use probe_rs::Permissions;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Arguments of `ldl flash`.
#[derive(Debug, Args, Clone)]
pub struct FlashArgs {
    /// The model file to write.
    #[arg(value_name = "MODEL.ldlm")]
    pub model: PathBuf,
    /// The chip, as probe-rs names it (e.g. nRF52840_xxAA).
    #[arg(long)]
    pub chip: String,
    /// The board whose MODEL region to use (a key of firmware/boards.toml). Default: the
    /// board whose runner uses this chip.
    #[arg(long)]
    pub board: Option<String>,
    /// Which probe, as VID:PID or VID:PID:SERIAL (default: the only one attached).
    #[arg(long)]
    pub probe: Option<String>,
    /// Only check, offline, that the model is valid and fits (no probe is opened).
    #[arg(long)]
    pub dry_run: bool,
    /// Do not reset the chip after writing.
    #[arg(long)]
    pub no_reset: bool,
    /// Print the plan (and the result) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What would be (or was) written where.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The model file.
    pub model: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its CRC-32 (from its trailer).
    pub crc: u32,
    /// The chip's name in the registry.
    pub chip: String,
    /// The board key.
    pub board: String,
    /// Start of the MODEL region (where the model is written).
    pub address: u64,
    /// Size of the MODEL region.
    pub region_size: u64,
    /// The chip's flash range holding the region.
    pub nvm: (u64, u64),
    /// Whether it was written (false for a dry run).
    pub written: bool,
    /// Whether it was read back and compared.
    pub verified: bool,
}

/// The board for `chip`: `--board` if given (its runner must not name another chip), else the
/// one whose runner is `probe-rs:<chip>`.
fn board_for(chip: &str, key: Option<&str>) -> Result<(String, Board)> {
    let all = boards::boards()?;
    let chip_of = |b: &Board| b.target.strip_prefix("probe-rs:").map(str::to_string);
    if let Some(k) = key {
        let b = boards::board(k)?;
        match chip_of(&b) {
            Some(c) if c.eq_ignore_ascii_case(chip) => Ok((k.to_string(), b)),
            Some(c) => bail!("board {k:?} has chip {c}, not {chip}"),
            None => bail!("board {k:?} is not flashed with a probe ({}); use `ldl demo` for QEMU", b.target),
        }
    } else {
        let found: Vec<_> = all
            .iter()
            .filter(|(_, b)| chip_of(b).is_some_and(|c| c.eq_ignore_ascii_case(chip)))
            .collect();
        match found.as_slice() {
            [(k, b)] => Ok(((*k).clone(), (*b).clone())),
            [] => {
                let known: Vec<String> = all.iter().filter_map(|(k, b)| chip_of(b).map(|c| format!("{k} ({c})"))).collect();
                bail!(
                    "no board in firmware/boards.toml uses chip {chip} (boards with a probe: {}); the firmware \
                     must be built for a board before a model can be flashed for it",
                    known.join(", ")
                )
            }
            _ => bail!("several boards use chip {chip}: choose one with --board"),
        }
    }
}

/// The offline checks of writing the model file at `model` to `chip` (into `board`'s MODEL
/// region; default: the board whose runner uses the chip); returns the plan and the bytes
/// to write.
pub fn plan(model: &Path, chip: &str, board: Option<&str>) -> Result<(Plan, Vec<u8>)> {
    let bytes = read_model_bytes(model)?;
    load_model(model)?; // magic, version, dimensions, CRC, values
    let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().expect("a valid model ends with its CRC"));
    let registry = Registry::from_builtin_families();
    let target = registry.get_target_by_name(chip).map_err(|e| {
        let similar = registry.search_chips(chip);
        let hint = if similar.is_empty() || similar.len() > 12 {
            String::new()
        } else {
            format!(" (similar: {})", similar.join(", "))
        };
        anyhow!("chip {:?}: {e}{hint}", chip)
    })?;
    let (board_key, board) = board_for(&target.name, board)?;
    let len = bytes.len() as u64;
    if len > board.model.size {
        bail!(
            "{}: {} does not fit the MODEL region of {} ({} at {:#010x}); nothing written",
            model.display(),
            human_bytes(len),
            board.name,
            human_bytes(board.model.size),
            board.model.origin
        );
    }
    // The board's firmware must run it: its inputs, and the workspace for its classes.
    let aligned = ldl_core::format::Aligned::new(&bytes);
    let view = ldl_core::format::ModelView::parse(&aligned).map_err(|e| crate::models::model_error(model, e))?;
    if let Err(why) = crate::models::inspect::device_runs(&view, &board) {
        bail!(
            "{}: {} would refuse it at boot: {why}; nothing written",
            model.display(),
            board.name
        );
    }
    let (start, end) = (board.model.origin, board.model.origin + len);
    let nvm = target
        .memory_map
        .iter()
        .filter_map(|r| match r {
            MemoryRegion::Nvm(n) if !n.is_alias => Some(n.range.clone()),
            _ => None,
        })
        .find(|r| r.start <= start && end <= r.end)
        .ok_or_else(|| {
            anyhow!(
                "{:#010x}..{end:#010x} (the model in {}'s MODEL region) is not in the flash of {} per probe-rs's chip \
                 registry; firmware/boards.toml and the chip disagree",
                start,
                board.name,
                target.name
            )
        })?;
    Ok((
        Plan {
            model: model.display().to_string(),
            bytes: len,
            crc,
            chip: target.name.clone(),
            board: board_key,
            address: start,
            region_size: board.model.size,
            nvm: (nvm.start, nvm.end),
            written: false,
            verified: false,
        },
        bytes,
    ))
}

fn print_plan(p: &Plan, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(p)?);
        return Ok(());
    }
    let what = if p.written { "wrote" } else { "would write" };
    println!(
        "{what} {} ({}, CRC {:08x}) to {:#010x}..{:#010x} of {} (board {}: MODEL region {} at {:#010x}, in flash {:#010x}..{:#010x}){}",
        p.model,
        human_bytes(p.bytes),
        p.crc,
        p.address,
        p.address + p.bytes,
        p.chip,
        p.board,
        human_bytes(p.region_size),
        p.address,
        p.nvm.0,
        p.nvm.1,
        if p.verified { ", verified" } else { "" }
    );
    Ok(())
}

/// Opens the probe `selector` (VID:PID[:SERIAL]) or the only one attached.
fn open_probe(selector: Option<&str>) -> Result<probe_rs::probe::Probe> {
    let lister = Lister::new();
    if let Some(sel) = selector {
        let parsed: DebugProbeSelector = sel.parse().with_context(|| format!("--probe {sel:?}"))?;
        return lister.open(parsed).with_context(|| format!("cannot open probe {sel}"));
    }
    let probes = lister.list_all();
    match probes.as_slice() {
        [] => bail!("no debug probe found (is the board plugged in, and may this user open it?)"),
        [one] => one.open().with_context(|| format!("cannot open probe {}", one.identifier)),
        many => bail!(
            "{} probes found, choose one with --probe VID:PID[:SERIAL]: {}",
            many.len(),
            many.iter()
                .map(|p| format!(
                    "{:04x}:{:04x}{}",
                    p.vendor_id,
                    p.product_id,
                    p.serial_number.as_deref().map(|s| format!(":{s}")).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Writes `bytes` as `plan` says through a probe, verifies them, and resets the chip unless
/// `reset` is false. Nothing is written when the probe cannot be opened or attached.
pub fn write(mut plan: Plan, bytes: &[u8], probe: Option<&str>, reset: bool, quiet: bool) -> Result<Plan> {
    let probe = open_probe(probe).map_err(|e| e.context("nothing written"))?;
    let mut session = probe
        .attach(plan.chip.as_str(), Permissions::default())
        .with_context(|| format!("cannot attach to {}; nothing written", plan.chip))?;
    let mut loader = session.target().flash_loader();
    loader
        .add_data(plan.address, bytes)
        .with_context(|| format!("{:#010x} is not flash of {}", plan.address, plan.chip))?;
    let bar = ProgressBar::new(bytes.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {bytes}/{total_bytes}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut opts = DownloadOptions::default();
    opts.verify = true;
    opts.keep_unwritten_bytes = true; // the rest of the last sector stays as it was
    opts.progress = FlashProgress::new(|e| match e {
        ProgressEvent::Started(op) => {
            bar.set_position(0);
            bar.set_message(match op {
                ProgressOperation::Fill => "reading",
                ProgressOperation::Erase => "erasing",
                ProgressOperation::Program => "writing",
                ProgressOperation::Verify => "verifying",
            });
        }
        ProgressEvent::Progress { size, .. } => bar.inc(size),
        _ => {}
    });
    loader.commit(&mut session, opts).context("flashing failed")?;
    bar.finish_and_clear();
    plan.written = true;
    plan.verified = true;
    if reset {
        let mut core = session.core(0).context("reset after flashing")?;
        core.reset().context("reset after flashing")?;
    }
    Ok(plan)
}

/// Resets `chip` through the probe (the firmware boots again).
pub fn reset_chip(chip: &str, probe: Option<&str>) -> Result<()> {
    let mut session = open_probe(probe)?
        .attach(chip, Permissions::default())
        .with_context(|| format!("cannot attach to {chip}"))?;
    session.core(0)?.reset().with_context(|| format!("resetting {chip}"))?;
    Ok(())
}

/// Runs `ldl flash`.
pub fn run(args: FlashArgs) -> Result<()> {
    let (plan, bytes) = plan(&args.model, &args.chip, args.board.as_deref())?;
    if args.dry_run {
        return print_plan(&plan, args.json);
    }
    let plan = write(plan, &bytes, args.probe.as_deref(), !args.no_reset, args.json)?;
    print_plan(&plan, args.json)
}
