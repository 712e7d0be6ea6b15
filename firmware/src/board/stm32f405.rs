//! The STM32F405 board as QEMU emulates it: netduinoplus2 (STM32F405RG, Cortex-M4F, 1 MiB
//! flash, 128 KiB of SRAM given to the linker), run by `qemu-run.sh`.
//!
//! * log: defmt over semihosting (stdout of QEMU, decoded by `defmt-print`)
//! * panic: panic-semihosting, exits QEMU with status 1
//! * UART: USART1 (`stm32f2xx-usart`), wired to the host by `LDL_SERIAL` (`-serial ...`)
//! * button: a stub, never pressed
//! * store: NOR flash with the STORE region's 128 KiB sectors in the host file `LDL_STORE`,
//!   read in pieces ([`SemiFlash`]); nothing of it in RAM
//! * exit: semihosting `SYS_EXIT_EXTENDED`, QEMU's exit status is `code`
//!
//! The model is flashed into the MODEL region (QEMU: `-device loader` into the flash ROM)
//! and read in place. The runner passes its settings on the semihosting command line
//! (`arg=ldl-firmware,arg=store=PATH,arg=serial`), as for the mps2-an386 board.

use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, Ordering};

use defmt_semihosting as _; // global defmt logger
use panic_semihosting as _; // panic handler: message to stdout, exit(1)

use super::semi_flash::SemiFlash;
use super::stm32_usart::Stm32Usart;
use super::{config, Board};

/// Serial link to the host: USART1.
pub type Uart = Stm32Usart;
/// The enrolled-class store.
pub type Store = SemiFlash;

/// Baud rate programmed into USART1.
pub const BAUD: u32 = 115_200;

pub use super::semihosted::Button;

/// Initialises the board, once (`None` afterwards).
// Not inlined: its temporaries (the command line) would stay in `main`'s frame.
#[inline(never)]
pub fn take() -> Option<Board> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let settings = super::semihosted::settings();
    let uart = Stm32Usart::usart1(BAUD)?;
    let path = if settings.has_store {
        CStr::from_bytes_until_nul(&settings.store_path).ok()
    } else {
        None
    };
    let store = SemiFlash::new(config::STORE.size as usize, path);
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
