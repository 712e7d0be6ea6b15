//! LDL edge-classifier firmware: boot, validate the model in place, load the enrolled
//! classes from flash, then (when a host is on the serial link) answer protocol frames.
#![no_std]
#![no_main]
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use cortex_m_rt::entry;
use ldl_core::enroll::Enrolled;
use ldl_core::protocol::{FrameReader, ModelStatus, MAX_FRAME_LEN};
use ldl_firmware::board::{self, config};
use ldl_firmware::device::{work_len, Device};
use ldl_firmware::persist::{Loaded, Slots};
use static_cell::ConstStaticCell;

/// Input dimension (MNIST: 28 x 28).
const D: usize = 784;
/// Widest linear target an enrolled class can use (an identity target needs none).
const K: usize = 16;
/// Directions kept per enrolled class, most classes enrolled, enrollment rows (samples
/// after augmentation), per board.
#[cfg(feature = "board-qemu")]
const SIZES: (usize, usize, usize) = (24, 10, 128);
#[cfg(feature = "board-nrf52840dk")]
const SIZES: (usize, usize, usize) = (4, 3, 16);
const R: usize = SIZES.0;
const C: usize = SIZES.1;
const ROWS: usize = SIZES.2;
/// f32s of the enrollment / classification workspace.
const WORK: usize = work_len(D, ROWS, D);
/// Bytes of a reply frame buffer (an `Info` with 64 labels is about 1.2 KB).
const TX: usize = 2048;
/// One store slot: the largest record, in whole erase sectors.
const SLOT: usize = Slots::slot_size_for(ldl_core::store::max_body_len(D, K, R, C), config::ERASE_SIZE);
const _: () = assert!(
    2 * SLOT <= config::STORE.size as usize,
    "STORE region too small for two slots: see boards.toml"
);

static ENROLLED: ConstStaticCell<Enrolled<D, K, R, C>> = ConstStaticCell::new(Enrolled::new());
static WORKSPACE: ConstStaticCell<[f32; WORK]> = ConstStaticCell::new([0.0; WORK]);
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
        "enrolled store {=usize} B (d {=usize}, K {=usize}, R {=usize}, C {=usize}), workspace {=usize} B",
        core::mem::size_of::<Enrolled<D, K, R, C>>(),
        D,
        K,
        R,
        C,
        WORK * 4
    );

    let (Some(enrolled), Some(work), Some(rx), Some(tx)) = (ENROLLED.try_take(), WORKSPACE.try_take(), RX.try_take(), TXBUF.try_take())
    else {
        defmt::error!("statics already taken");
        board::exit(1)
    };
    let (mut dev, boot) = Device::new(board::model(), enrolled, work, ROWS, b.store, SLOT as u32);
    match boot.model {
        ModelStatus::Absent => defmt::error!("no model (MODEL region erased): classification refused"),
        ModelStatus::Invalid { code } => defmt::error!("model refused (error code {=u8}): classification refused", code.0),
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
