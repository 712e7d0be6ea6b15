//! The nRF52840 DK (PCA10056): nRF52840, 1 MiB flash, 256 KiB RAM. Run with probe-rs.
//!
//! * log: defmt over RTT (`defmt-rtt`, read by `probe-rs run`)
//! * panic: panic-probe (prints the panic with defmt, then a breakpoint)
//! * UART: the legacy UART0 (byte registers, no EasyDMA) on the interface MCU's virtual COM
//!   port: TXD P0.06, RXD P0.08, 115200 8N1, no flow control
//! * button: Button 1, P0.11, pull-up, active low
//! * store: the STORE region of the internal flash through the NVMC (4 KiB pages, 32-bit
//!   word writes)
//! * exit: logs the code, then a breakpoint (`probe-rs run` stops there) if a debugger is
//!   attached, and sleeps
//!
//! Minimal PAC-level code (nrf52840-pac) rather than nrf52840-hal: a few registers suffice.
//! `unsafe` is allowed in this module only: the PAC marks raw field writes (pin numbers, the
//! TXD byte, the page address) unsafe, and the NVMC programs flash through plain stores to
//! flash addresses.
#![allow(unsafe_code)]

use core::convert::Infallible;
use core::sync::atomic::{AtomicBool, Ordering};

use defmt_rtt as _; // global defmt logger over RTT
use embedded_storage::nor_flash::{check_erase, check_read, check_write, ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};
use nrf52840_pac as pac;
use panic_probe as _; // panic handler

use super::{config, regions, Board};

/// VCOM pins of the DK (to the interface MCU).
const UART_TXD_PIN: usize = 6;
const UART_RXD_PIN: usize = 8;
/// Button 1 of the DK.
const BUTTON_PIN: usize = 11;
/// Upper bound of polling loops that wait for hardware (HFXO start, NVMC ready).
const SPIN_LIMIT: u32 = 10_000_000;

/// Serial link to the host: UART0 on the DK's virtual COM port.
pub struct Uart {
    uart: pac::UART0,
}

/// Button 1 (P0.11, active low).
pub struct Button {
    p0: pac::P0,
}

/// The enrolled-class store: NorFlash over the STORE region through the NVMC.
pub struct Store {
    nvmc: pac::NVMC,
    base: usize,
    len: usize,
}

/// Initialises the board, once (`None` afterwards).
// Not inlined: its temporaries (the command line, on QEMU) would stay in `main`'s frame.
#[inline(never)]
pub fn take() -> Option<Board> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let p = pac::Peripherals::take()?;

    // The crystal (HFXO) for an accurate baud rate; bounded wait.
    p.CLOCK.events_hfclkstarted.write(|w| w.events_hfclkstarted().clear_bit());
    p.CLOCK.tasks_hfclkstart.write(|w| w.tasks_hfclkstart().set_bit());
    let mut n = 0;
    while p.CLOCK.events_hfclkstarted.read().events_hfclkstarted().bit_is_clear() && n < SPIN_LIMIT {
        n += 1;
    }

    // Button: input, pull-up.
    p.P0.pin_cnf[BUTTON_PIN].write(|w| w.dir().input().input().connect().pull().pullup());

    // UART0: pins, 115200 8N1, no flow control, RX and TX started.
    let u = &p.UART0;
    u.enable.write(|w| w.enable().disabled());
    p.P0.pin_cnf[UART_TXD_PIN].write(|w| w.dir().output().input().disconnect());
    p.P0.outset.write(|w| unsafe { w.bits(1 << UART_TXD_PIN) }); // idle high
    p.P0.pin_cnf[UART_RXD_PIN].write(|w| w.dir().input().input().connect().pull().disabled());
    // SAFETY (PAC): pin numbers 6 and 8 of port 0 are valid PSEL values.
    u.psel
        .txd
        .write(|w| unsafe { w.pin().bits(UART_TXD_PIN as u8) }.port().clear_bit().connect().connected());
    u.psel
        .rxd
        .write(|w| unsafe { w.pin().bits(UART_RXD_PIN as u8) }.port().clear_bit().connect().connected());
    u.psel.rts.write(|w| w.connect().disconnected());
    u.psel.cts.write(|w| w.connect().disconnected());
    u.baudrate.write(|w| w.baudrate().baud115200());
    u.config.write(|w| w.hwfc().disabled().parity().excluded());
    u.enable.write(|w| w.enable().enabled());
    u.events_rxdrdy.write(|w| w.events_rxdrdy().clear_bit());
    u.events_txdrdy.write(|w| w.events_txdrdy().clear_bit());
    u.tasks_startrx.write(|w| w.tasks_startrx().set_bit());
    u.tasks_starttx.write(|w| w.tasks_starttx().set_bit());

    let store_r = regions::store_region();
    let store = Store {
        nvmc: p.NVMC,
        base: store_r.origin as usize,
        len: store_r.size as usize,
    };
    Some(Board {
        uart: Uart { uart: p.UART0 },
        button: Button { p0: p.P0 },
        store,
        serial_attached: true,
    })
}

/// Ends the program: logs `code`, stops at a breakpoint when a debugger is attached (so
/// `probe-rs run` returns), then sleeps forever.
pub fn exit(code: i32) -> ! {
    defmt::info!("exit({=i32})", code);
    if cortex_m::peripheral::DCB::is_debugger_attached() {
        cortex_m::asm::bkpt();
    }
    loop {
        cortex_m::asm::wfi();
    }
}

// ---- UART -------------------------------------------------------------------------------

/// TX state: the legacy UART raises TXDRDY after each byte; the first byte needs no wait.
static TX_BUSY: AtomicBool = AtomicBool::new(false);

impl Uart {
    fn try_read_byte(&mut self) -> Option<u8> {
        if self.uart.events_rxdrdy.read().events_rxdrdy().bit_is_set() {
            self.uart.events_rxdrdy.write(|w| w.events_rxdrdy().clear_bit());
            Some(self.uart.rxd.read().rxd().bits())
        } else {
            None
        }
    }

    fn tx_ready(&self) -> bool {
        !TX_BUSY.load(Ordering::Relaxed) || self.uart.events_txdrdy.read().events_txdrdy().bit_is_set()
    }

    fn write_byte(&mut self, byte: u8) {
        while !self.tx_ready() {
            core::hint::spin_loop();
        }
        self.uart.events_txdrdy.write(|w| w.events_txdrdy().clear_bit());
        // SAFETY (PAC): any byte is a valid TXD value.
        self.uart.txd.write(|w| unsafe { w.txd().bits(byte) });
        TX_BUSY.store(true, Ordering::Relaxed);
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io::Read for Uart {
    /// Blocks until at least one byte has arrived, then returns what is waiting.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let mut n = 0;
        for slot in buf.iter_mut() {
            let byte = if n == 0 {
                loop {
                    if let Some(b) = self.try_read_byte() {
                        break b;
                    }
                    core::hint::spin_loop();
                }
            } else {
                match self.try_read_byte() {
                    Some(b) => b,
                    None => break,
                }
            };
            *slot = byte;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.uart.events_rxdrdy.read().events_rxdrdy().bit_is_set())
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            self.write_byte(b);
        }
        Ok(buf.len())
    }

    /// Waits until the last byte has left the transmitter.
    fn flush(&mut self) -> Result<(), Infallible> {
        while !self.tx_ready() {
            core::hint::spin_loop();
        }
        Ok(())
    }
}

impl embedded_io::WriteReady for Uart {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.tx_ready())
    }
}

// ---- Button -----------------------------------------------------------------------------

impl Button {
    /// Whether Button 1 is pressed (pin low).
    pub fn is_pressed(&mut self) -> bool {
        self.p0.in_.read().bits() & (1 << BUTTON_PIN) == 0
    }
}

impl embedded_hal::digital::ErrorType for Button {
    type Error = Infallible;
}

impl embedded_hal::digital::InputPin for Button {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(!self.is_pressed())
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(self.is_pressed())
    }
}

// ---- Store (NVMC) -----------------------------------------------------------------------

impl Store {
    /// Changes are persisted: this is real flash.
    pub fn persistent(&self) -> bool {
        true
    }

    fn wait_ready(&self) -> Result<(), NorFlashErrorKind> {
        let mut n = 0;
        while self.nvmc.ready.read().ready().is_busy() {
            n += 1;
            if n > SPIN_LIMIT {
                return Err(NorFlashErrorKind::Other);
            }
        }
        Ok(())
    }

    fn addr(&self, offset: usize) -> usize {
        self.base.wrapping_add(offset)
    }
}

impl ErrorType for Store {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for Store {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NorFlashErrorKind> {
        check_read(self, offset, bytes.len())?;
        for (i, b) in bytes.iter_mut().enumerate() {
            let p = core::ptr::with_exposed_provenance::<u8>(self.addr(offset as usize + i));
            // SAFETY: check_read keeps [offset, offset + len) inside the STORE region, which is
            // mapped, readable flash; volatile because the NVMC changes it behind the compiler.
            *b = unsafe { p.read_volatile() };
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.len
    }
}

impl NorFlash for Store {
    const WRITE_SIZE: usize = config::WRITE_SIZE;
    const ERASE_SIZE: usize = config::ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), NorFlashErrorKind> {
        check_erase(self, from, to)?;
        let mut page = from as usize;
        while page < to as usize {
            self.nvmc.config.write(|w| w.wen().een());
            // SAFETY (PAC): the address of a page inside the STORE region (check_erase).
            self.nvmc
                .erasepage()
                .write(|w| unsafe { w.erasepage().bits(self.addr(page) as u32) });
            let r = self.wait_ready();
            self.nvmc.config.write(|w| w.wen().ren());
            r?;
            page += Self::ERASE_SIZE;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NorFlashErrorKind> {
        check_write(self, offset, bytes.len())?;
        self.nvmc.config.write(|w| w.wen().wen());
        let mut result = Ok(());
        // check_write made the length a multiple of WRITE_SIZE (4): no remainder.
        let (words, _) = bytes.as_chunks::<4>();
        for (i, chunk) in words.iter().enumerate() {
            let word = u32::from_le_bytes(*chunk);
            let p = core::ptr::with_exposed_provenance_mut::<u32>(self.addr(offset as usize + 4 * i));
            // SAFETY: check_write keeps the word inside the STORE region and 4-byte aligned
            // (region start and offset are multiples of 4); with CONFIG.WEN set, a word store
            // to flash programs it (bits 1 -> 0).
            unsafe { p.write_volatile(word) };
            result = self.wait_ready();
            if result.is_err() {
                break;
            }
        }
        self.nvmc.config.write(|w| w.wen().ren());
        result
    }
}
