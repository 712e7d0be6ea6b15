//! The QEMU board: mps2-an386 (Cortex-M4F), run by `qemu-run.sh`.
//!
//! * log: defmt over semihosting (stdout of QEMU, decoded by `defmt-print`)
//! * panic: panic-semihosting, exits QEMU with status 1
//! * UART: CMSDK UART0, wired to the host by `LDL_SERIAL` (`-serial ...`)
//! * button: a stub, never pressed
//! * store: RAM emulating NOR flash, persisted to the host file `LDL_STORE`
//! * exit: semihosting `SYS_EXIT_EXTENDED`, QEMU's exit status is `code`
//!
//! The runner passes its settings on the semihosting command line
//! (`-semihosting-config ...,arg=ldl-firmware,arg=store=PATH,arg=serial`).

use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, Ordering};

use defmt_semihosting as _; // global defmt logger
use panic_semihosting as _; // panic handler: message to stdout, exit(1)

use super::cmsdk_uart::{CmsdkUart, CLOCK_HZ};
use super::sim_flash::SimFlash;
use super::{regions, Board};

/// Serial link to the host: CMSDK UART0.
pub type Uart = CmsdkUart;
/// The enrolled-class store.
pub type Store = SimFlash;

/// Baud rate programmed into UART0 (QEMU ignores it; a real CMSDK UART would not).
pub const BAUD: u32 = 115_200;
pub use super::semihosted::Button;

/// Initialises the board, once (`None` afterwards).
// Not inlined: its temporaries (the command line, on QEMU) would stay in `main`'s frame.
#[inline(never)]
pub fn take() -> Option<Board> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let settings = super::semihosted::settings();
    let uart = CmsdkUart::uart0(CLOCK_HZ / BAUD)?;
    let mem = regions::take_store_ram()?;
    let path = if settings.has_store {
        CStr::from_bytes_until_nul(&settings.store_path).ok()
    } else {
        None
    };
    let store = SimFlash::new(mem, path);
    Some(Board {
        uart,
        button: Button,
        store,
        serial_attached: settings.serial,
    })
}

/// Ends the program: QEMU exits with status `code` (semihosting).
pub fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}
