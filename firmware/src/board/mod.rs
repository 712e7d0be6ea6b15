//! Board layer: everything that differs between the QEMU board and real hardware.
//!
//! The board is chosen by exactly one cargo feature, `board-qemu` (default) or
//! `board-nrf52840dk`; its memory layout comes from `boards.toml` through build.rs
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

#[cfg(feature = "board-nrf52840dk")]
mod nrf52840dk;
#[cfg(feature = "board-nrf52840dk")]
pub use nrf52840dk::{exit, take, Button, Store, Uart};

#[cfg(all(feature = "board-qemu", feature = "board-nrf52840dk"))]
compile_error!("select exactly one board: --no-default-features --features board-<name>");
#[cfg(not(any(feature = "board-qemu", feature = "board-nrf52840dk")))]
compile_error!("select a board feature: board-qemu (default) or board-nrf52840dk");

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
