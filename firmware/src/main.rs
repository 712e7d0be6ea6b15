//! LDL edge-classifier firmware: boot, report the memory layout and the model, then (when a
//! host is on the serial link) run the app's serial loop.
#![no_std]
#![no_main]
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use cortex_m_rt::entry;
use ldl_firmware::app::{self, ModelState, MODEL_PROBE_LEN};
use ldl_firmware::board::{self, config};

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
        "STORE {=u32:#010x}..{=u32:#010x} ({=u32} KiB, {=usize} B sectors, {=usize} B writes, persistent: {=bool})",
        store_r.origin,
        store_r.end(),
        store_r.size / 1024,
        config::ERASE_SIZE,
        config::WRITE_SIZE,
        b.store.persistent()
    );

    let model = board::model();
    let head = model.get(..MODEL_PROBE_LEN).unwrap_or(model);
    match app::model_state(model) {
        ModelState::Erased => defmt::info!("no model (MODEL region erased)"),
        ModelState::Present => defmt::info!("model region holds data: {=[u8]:02x}", head),
    }
    if b.button.is_pressed() {
        defmt::info!("button pressed at boot");
    }

    if b.serial_attached {
        defmt::info!("UART echo: send bytes, 0x04 ends");
        match app::echo_until_eot(&mut b.uart) {
            Ok(stats) => defmt::info!("UART echo done: {=usize} bytes, EOT: {=bool}", stats.bytes, stats.got_eot),
            Err(e) => match e {},
        }
    }
    board::exit(0)
}
