//! The MODEL and STORE regions, located through the linker symbols that build.rs puts in
//! memory.x (`_model_start`, `_model_end`, `_store_start`, `_store_end`).
//!
//! `unsafe` is allowed in this module only: turning a linker-provided address range into a
//! slice is the one thing safe Rust cannot express.
#![allow(unsafe_code)]

use super::Region;

extern "C" {
    static _model_start: u8;
    static _model_end: u8;
    static _store_start: u8;
    static _store_end: u8;
}

fn span(start: *const u8, end: *const u8) -> Region {
    let (s, e) = (start as usize as u32, end as usize as u32);
    Region {
        origin: s,
        size: e.saturating_sub(s),
    }
}

/// The MODEL region, as the linker placed it.
pub fn model_region() -> Region {
    // Only the addresses of the symbols are taken; they are never read as u8.
    span(&raw const _model_start, &raw const _model_end)
}

/// The STORE region, as the linker placed it.
pub fn store_region() -> Region {
    span(&raw const _store_start, &raw const _store_end)
}

/// The MODEL region as bytes, read in place (no copy).
///
/// The model is written by a debugger/flasher (or QEMU's `-device loader`) before the
/// firmware starts and never while it runs, so a shared `'static` slice is sound.
pub fn model() -> &'static [u8] {
    let r = model_region();
    let ptr = core::ptr::with_exposed_provenance::<u8>(r.origin as usize);
    // SAFETY: [origin, origin + size) is the MODEL region of memory.x: mapped, readable
    // memory (flash, or RAM on QEMU), outside every section of the program, never written
    // while the firmware runs (see above), and smaller than isize::MAX.
    unsafe { core::slice::from_raw_parts(ptr, r.size as usize) }
}

/// QEMU only: the STORE region as a mutable slice, once (`None` afterwards).
///
/// On mps2-an386 the "flash" is RAM, so the store emulation (`sim_flash`) owns it as a plain
/// `&'static mut [u8]`. On real hardware the store is written by the flash controller and
/// must not be handed out as a Rust slice.
#[cfg(feature = "board-qemu")]
pub fn take_store_ram() -> Option<&'static mut [u8]> {
    use core::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let r = store_region();
    let ptr = core::ptr::with_exposed_provenance_mut::<u8>(r.origin as usize);
    // SAFETY: the STORE region of memory.x is RAM on mps2-an386, outside every section of
    // the program; the TAKEN flag makes this the only reference to it ever created.
    Some(unsafe { core::slice::from_raw_parts_mut(ptr, r.size as usize) })
}
