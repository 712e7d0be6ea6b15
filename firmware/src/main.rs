//! LDL edge-classifier firmware: boot, validate the model in place, load the index of the
//! enrolled classes from flash, then (when a host is on the serial link) answer protocol
//! frames.
#![no_std]
#![no_main]
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use cortex_m_rt::entry;
use ldl_core::budget::Sizes;
use ldl_core::protocol::{FrameReader, ModelStatus, MAX_FRAME_LEN};
use ldl_core::store::{Loaded, Store};
use ldl_firmware::board::{self, config};
use ldl_firmware::device::Device;
use static_cell::ConstStaticCell;

/// What this board's firmware is built for (`boards.toml`, `[boards.<key>.sizes]`).
const SIZES: Sizes = config::SIZES;
/// Enrolled classes the store keeps.
const C: usize = SIZES.classes;
/// f32s of the one workspace (enrollment images and fit, or a classification).
const WORK: usize = SIZES.workspace();
/// Bytes of the reply frame buffer.
const TX: usize = ldl_core::budget::TX_BYTES;
/// One store slot: `C` classes at their largest, in whole erase sectors.
const SLOT: usize = SIZES.slot_bytes(config::ERASE_SIZE);

// The same formulas `ldl inspect` reports for the board (`ldl_core::budget`).
const _: () = assert!(
    2 * SLOT <= config::STORE.size as usize,
    "the STORE region cannot hold two slots of the enrolled classes: see boards.toml (store, sizes)"
);
const _: () = assert!(
    SIZES.ram_bytes() <= config::RAM.size as usize,
    "the workspace, the frame buffers and the stack do not fit the RAM: see boards.toml (ram, sizes)"
);

static WORKSPACE: ConstStaticCell<[f32; WORK]> = ConstStaticCell::new([0.0; WORK]);
static STORE: ConstStaticCell<Store<C>> = ConstStaticCell::new(Store::empty());
static RX: ConstStaticCell<FrameReader<MAX_FRAME_LEN>> = ConstStaticCell::new(FrameReader::new());
static TXBUF: ConstStaticCell<[u8; TX]> = ConstStaticCell::new([0; TX]);

#[entry]
fn main() -> ! {
    let Some(mut b) = board::take() else {
        defmt::error!("board already taken");
        board::exit(1)
    };

    defmt::info!("ldl-firmware {} on {} ({})", env!("CARGO_PKG_VERSION"), board::NAME, config::TARGET);
    let (model_r, store_r) = (board::model_region(), board::store_region());
    defmt::info!(
        "program {=u32:#010x}..{=u32:#010x}  ram {=u32:#010x}..{=u32:#010x}",
        config::PROGRAM.origin,
        config::PROGRAM.end(),
        config::RAM.origin,
        config::RAM.end()
    );
    defmt::info!(
        "MODEL {=u32:#010x}..{=u32:#010x} ({=u32} KiB)",
        model_r.origin,
        model_r.end(),
        model_r.size / 1024
    );
    defmt::info!(
        "STORE {=u32:#010x}..{=u32:#010x} ({=u32} KiB, {=usize} B sectors, {=usize} B writes, persistent: {=bool}), 2 slots of {=usize} B",
        store_r.origin,
        store_r.end(),
        store_r.size / 1024,
        config::ERASE_SIZE,
        config::WRITE_SIZE,
        b.store.persistent(),
        SLOT
    );
    defmt::info!(
        "sizes: d {=usize}, {=usize} enrolled classes of rank {=usize} ({=usize} B each at most), {=usize} images per enrollment (shift {=usize}); workspace {=usize} B",
        SIZES.inputs,
        C,
        SIZES.rank,
        SIZES.class_bytes(),
        SIZES.images,
        SIZES.shift,
        WORK * 4
    );

    let (Some(work), Some(store), Some(rx), Some(tx)) = (WORKSPACE.try_take(), STORE.try_take(), RX.try_take(), TXBUF.try_take()) else {
        defmt::error!("statics already taken");
        board::exit(1)
    };
    let (mut dev, boot) = Device::<_, C>::new(board::model(), work, store, SIZES, b.store, SLOT as u32);
    match boot.model {
        ModelStatus::Absent => defmt::error!("no model (MODEL region erased): classification refused"),
        ModelStatus::Invalid { code } => defmt::error!("model refused (error code {=u8}): classification refused", u8::from(code)),
        ModelStatus::Valid { crc } => defmt::info!("model valid: crc {=u32:#010x}", crc),
    }
    match boot.store {
        None => {}
        Some(Ok(Loaded::Empty)) => defmt::info!("store: no enrolled classes"),
        Some(Ok(Loaded::Classes { slot, seq, count })) => {
            defmt::info!("store: {=usize} enrolled classes loaded (slot {=u8}, seq {=u32})", count, slot, seq)
        }
        Some(Ok(Loaded::Refused(e))) => defmt::warn!("store: record not loaded ({}); starting empty", e),
        Some(Err(e)) => defmt::error!("store unusable: {}", e),
    }
    if b.button.is_pressed() {
        defmt::info!("button pressed at boot");
    }

    if b.serial_attached {
        defmt::info!("serial protocol v{=u8} ready", ldl_core::protocol::VERSION);
        match dev.serve(&mut b.uart, &mut b.button, rx, tx) {
            Ok(()) => defmt::info!("serial stream ended"),
            Err(e) => match e {},
        }
    }
    board::exit(0)
}
