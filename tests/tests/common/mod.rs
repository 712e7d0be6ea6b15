//! Helpers shared by the tests that run the firmware in QEMU.
#![allow(dead_code)] // each test binary uses a part

use ldl_host::device::qemu::{build_firmware, Qemu, QemuConfig};
use ldl_host::device::AnyClient;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The firmware ELF of a QEMU board, built once per test process (`cargo build --release` in
/// firmware/; needs the thumbv7em-none-eabihf target, which rust-toolchain.toml installs).
pub fn firmware_elf(board: &str) -> PathBuf {
    static ELF: Mutex<BTreeMap<String, Result<PathBuf, String>>> = Mutex::new(BTreeMap::new());
    let mut built = ELF.lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(board.to_string())
        .or_insert_with(|| build_firmware(board).map_err(|e| format!("{e:#}")))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Boots `board`'s firmware with `model` in the MODEL region and `store` as its flash store;
/// QEMU is killed when the returned value drops (and after 10 minutes whatever happens).
pub fn boot(board: &str, model: &Path, store: &Path, log: &Path) -> Qemu {
    boot_with(board, model, store, log, false)
}

/// [`boot`], with the UART on a pty when `pty` (else loopback TCP).
pub fn boot_with(board: &str, model: &Path, store: &Path, log: &Path, pty: bool) -> Qemu {
    Qemu::boot(&QemuConfig {
        board: board.to_string(),
        elf: firmware_elf(board),
        model: Some(model.to_path_buf()),
        store: store.to_path_buf(),
        log: log.to_path_buf(),
        limit: Duration::from_secs(600),
        pty,
    })
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A protocol client of the firmware in `q`: `reply` per request, 120 s for enrollment fits
/// and flash writes.
pub fn client(q: &mut Qemu, reply: Duration) -> AnyClient {
    let mut c = q.client(Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e:#}"));
    c.set_timeouts(reply, Duration::from_secs(120));
    c
}

/// Serialises the QEMU tests of one test binary: two cores, and each QEMU keeps one busy.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}
