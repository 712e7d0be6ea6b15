//! Board layer: everything that differs between the QEMU board and real hardware.
//!
//! The board is chosen by exactly one cargo feature, `board-qemu` (default),
//! `board-stm32f405` (QEMU's netduinoplus2) or `board-nrf52840dk`; its memory layout comes from `boards.toml` through build.rs
//! ([`config`], and the linker symbols behind [`model`] and [`model_region`]).
//!
//! What every board provides, under the same names:
//!
//! | item | type / signature | what |
//! |---|---|---|
//! | [`take`] | `fn take() -> Option<Board>` | initialises the board once (`None` the 2nd time) |
//! | [`Board::uart`] | [`Uart`]: `embedded_io::{Read, Write, ReadReady, WriteReady}`, `Error = Infallible` | the serial link to the host (QEMU: UART0; DK: VCOM UART, 115200 8N1) |
//! | [`Board::button`] | [`Button`]: `embedded_hal::digital::InputPin`, `Error = Infallible`, plus `is_pressed(&mut self) -> bool` | active low, as on the DK (QEMU: a stub never pressed) |
//! | [`Board::store`] | [`Store`]: `embedded_storage::nor_flash::{NorFlash, ReadNorFlash}`, `Error = NorFlashErrorKind`, plus `persistent(&self) -> bool` | the enrolled-class store (offsets are relative to the STORE region) |
//! | [`Board::serial_attached`] | `bool` | QEMU: a host serial port is wired to UART0 (`LDL_SERIAL`); DK: always |
//! | [`exit`] | `fn exit(code: i32) -> !` | QEMU: semihosting exit with `code`; DK: breakpoint, then sleep |
//! | [`model`] | `fn model() -> &'static [u8]` | the MODEL region, read in place |
//! | [`NAME`], [`config`] | consts | board name, regions, erase/write sizes from boards.toml |

use cortex_m as _; // critical-section implementation (single core), needed by defmt
use cortex_m_rt as _; // vector table, reset handler, link.x (also for the test binaries)

mod regions;

#[cfg(feature = "board-qemu")]
pub mod cmsdk_uart;
#[cfg(feature = "board-qemu")]
mod qemu;
#[cfg(feature = "board-qemu")]
pub mod sim_flash;
#[cfg(feature = "board-qemu")]
pub use qemu::{exit, take, Button, Store, Uart};

#[cfg(feature = "board-stm32f405")]
pub mod semi_flash;
#[cfg(feature = "board-stm32f405")]
pub mod stm32_usart;
#[cfg(feature = "board-stm32f405")]
mod stm32f405;
#[cfg(feature = "board-stm32f405")]
pub use stm32f405::{exit, take, Button, Store, Uart};

#[cfg(feature = "board-nrf52840dk")]
mod nrf52840dk;
#[cfg(feature = "board-nrf52840dk")]
pub use nrf52840dk::{exit, take, Button, Store, Uart};

#[cfg(any(
    all(feature = "board-qemu", feature = "board-nrf52840dk"),
    all(feature = "board-qemu", feature = "board-stm32f405"),
    all(feature = "board-stm32f405", feature = "board-nrf52840dk")
))]
compile_error!("select exactly one board: --no-default-features --features board-<name>");
#[cfg(not(any(feature = "board-qemu", feature = "board-nrf52840dk", feature = "board-stm32f405")))]
compile_error!("select a board feature: board-qemu (default), board-stm32f405 or board-nrf52840dk");

/// The runner's settings on the semihosting command line, for the QEMU boards
/// (`arg=ldl-firmware[,arg=serial][,arg=store=PATH]`, see `qemu-run.sh`).
#[cfg(any(feature = "board-qemu", feature = "board-stm32f405"))]
mod semihosted {
    /// Longest semihosting command line read at boot.
    const CMDLINE_MAX: usize = 512;
    /// Longest store path (with its NUL).
    pub const PATH_MAX: usize = 400;

    /// Settings read from the semihosting command line.
    pub struct Settings {
        /// NUL-terminated store path, if `store=PATH` was given.
        pub store_path: [u8; PATH_MAX],
        /// `store=PATH` was given.
        pub has_store: bool,
        /// `serial` was given: a host is wired to the UART.
        pub serial: bool,
    }

    /// The user button: the emulated boards have none, so this stub reads as released
    /// (high; active low).
    #[derive(Debug, Default)]
    pub struct Button;

    impl Button {
        /// Whether the button is pressed: never, under QEMU.
        pub fn is_pressed(&mut self) -> bool {
            false
        }
    }

    impl embedded_hal::digital::ErrorType for Button {
        type Error = core::convert::Infallible;
    }

    impl embedded_hal::digital::InputPin for Button {
        fn is_high(&mut self) -> Result<bool, Self::Error> {
            Ok(true)
        }
        fn is_low(&mut self) -> Result<bool, Self::Error> {
            Ok(false)
        }
    }

    /// Reads the settings (none when there is no command line).
    pub fn settings() -> Settings {
        let mut s = Settings {
            store_path: [0; PATH_MAX],
            has_store: false,
            serial: false,
        };
        let Ok(args) = semihosting::experimental::env::args::<CMDLINE_MAX>() else {
            return s;
        };
        for arg in &args {
            let Ok(arg) = arg else { continue };
            if arg == "serial" {
                s.serial = true;
            } else if let Some(path) = arg.strip_prefix("store=") {
                let bytes = path.as_bytes();
                // Room for the NUL, no interior NUL.
                match s.store_path.get_mut(..bytes.len()) {
                    Some(dst) if bytes.len() < PATH_MAX && !bytes.contains(&0) && !bytes.is_empty() => {
                        dst.copy_from_slice(bytes);
                        s.has_store = true;
                    }
                    _ => defmt::warn!("store path ignored: empty or longer than {} bytes", PATH_MAX - 1),
                }
            }
        }
        s
    }
}

#[cfg(feature = "board-qemu")]
pub use regions::take_store_ram;
pub use regions::{model, model_region, store_region};

/// A memory region: `size` bytes from `origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub struct Region {
    /// First address.
    pub origin: u32,
    /// Length in bytes.
    pub size: u32,
}

impl Region {
    /// One past the last address (saturating at 4 GiB).
    pub const fn end(&self) -> u32 {
        self.origin.saturating_add(self.size)
    }
}

/// The memory layout and flash geometry of the selected board, generated from `boards.toml`.
pub mod config {
    include!(concat!(env!("OUT_DIR"), "/board_config.rs"));
}

/// Human-readable name of the selected board.
pub const NAME: &str = config::NAME;

/// The initialised board: the peripherals the app uses.
pub struct Board {
    /// Serial link to the host.
    pub uart: Uart,
    /// The user button (active low).
    pub button: Button,
    /// The enrolled-class store (NorFlash over the STORE region).
    pub store: Store,
    /// Whether a host is wired to [`Board::uart`]. Under QEMU the UART exists even with
    /// `-serial none`, and a read would then block forever; on hardware it is always `true`.
    pub serial_attached: bool,
}
