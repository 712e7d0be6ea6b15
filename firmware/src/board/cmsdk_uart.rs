//! Driver for the ARM CMSDK APB UART (UART0 of the QEMU mps2-an386 board at 0x4000_4000).
//!
//! Registers (ARM DDI 0479, "Cortex-M System Design Kit"):
//!
//! | offset | name | bits used |
//! |---|---|---|
//! | 0x000 | DATA | 7:0 received byte (read) / byte to send (write) |
//! | 0x004 | STATE | 0 TX buffer full, 1 RX buffer full, 2 TX overrun, 3 RX overrun (write 1 to clear) |
//! | 0x008 | CTRL | 0 TX enable, 1 RX enable |
//! | 0x00C | INTSTATUS / INTCLEAR | not used (polling driver) |
//! | 0x010 | BAUDDIV | baud divider, must be >= 16 |
//! | 0xFD0..0xFFC | PID4..7, PID0..3, CID0..3 | identification |
//!
//! This is the one place of the QEMU board that touches hardware registers, so `unsafe` is
//! allowed here only: every register access is a volatile read/write through the
//! `volatile-register` crate on a `#[repr(C)]` block placed at the peripheral's address.
#![allow(unsafe_code)]

use core::convert::Infallible;
use core::sync::atomic::{AtomicBool, Ordering};
use volatile_register::{RO, RW};

/// Base address of UART0 on mps2-an386.
pub const UART0_BASE: usize = 0x4000_4000;
/// The UART clock of mps2-an386 (the APB clock, 25 MHz).
pub const CLOCK_HZ: u32 = 25_000_000;
/// Smallest legal BAUDDIV.
pub const MIN_BAUDDIV: u32 = 16;

/// STATE: transmit buffer full.
pub const STATE_TX_FULL: u32 = 1 << 0;
/// STATE: receive buffer full (a byte is waiting).
pub const STATE_RX_FULL: u32 = 1 << 1;
/// STATE: transmit overrun (write 1 to clear).
pub const STATE_TX_OVERRUN: u32 = 1 << 2;
/// STATE: receive overrun, a byte was lost (write 1 to clear).
pub const STATE_RX_OVERRUN: u32 = 1 << 3;
/// CTRL: transmitter enable.
pub const CTRL_TX_EN: u32 = 1 << 0;
/// CTRL: receiver enable.
pub const CTRL_RX_EN: u32 = 1 << 1;

/// The register block of one CMSDK APB UART.
#[repr(C)]
pub struct RegisterBlock {
    /// 0x000 DATA.
    pub data: RW<u32>,
    /// 0x004 STATE.
    pub state: RW<u32>,
    /// 0x008 CTRL.
    pub ctrl: RW<u32>,
    /// 0x00C INTSTATUS (read) / INTCLEAR (write).
    pub intstatus: RW<u32>,
    /// 0x010 BAUDDIV.
    pub bauddiv: RW<u32>,
    _reserved: [u32; (0xFD0 - 0x014) / 4],
    /// 0xFD0..0xFFC: PID4, PID5, PID6, PID7, PID0, PID1, PID2, PID3, CID0, CID1, CID2, CID3.
    pub id: [RO<u32>; 12],
}

const _: () = assert!(core::mem::size_of::<RegisterBlock>() == 0x1000);

/// A polling driver for one CMSDK APB UART, 8N1, as a blocking `embedded_io` byte stream.
pub struct CmsdkUart {
    regs: &'static RegisterBlock,
    rx_overruns: u32,
}

static UART0_TAKEN: AtomicBool = AtomicBool::new(false);

impl CmsdkUart {
    /// Takes UART0 (once; `None` afterwards), enables TX and RX with the given baud divider
    /// (`CLOCK_HZ / baud`; raised to [`MIN_BAUDDIV`] if lower).
    pub fn uart0(bauddiv: u32) -> Option<Self> {
        if UART0_TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: UART0_BASE is the address of the CMSDK UART0 register block on mps2-an386,
        // 4 KiB of device memory, valid for the whole program; RegisterBlock matches its
        // layout. The UART0_TAKEN flag makes this the only driver instance for it.
        let regs = unsafe { &*(UART0_BASE as *const RegisterBlock) };
        let mut uart = CmsdkUart { regs, rx_overruns: 0 };
        uart.configure(bauddiv);
        Some(uart)
    }

    /// Reconfigures: disables, sets BAUDDIV (at least [`MIN_BAUDDIV`]), clears the overrun
    /// flags, enables TX and RX.
    pub fn configure(&mut self, bauddiv: u32) {
        let div = bauddiv.max(MIN_BAUDDIV);
        // SAFETY: plain volatile writes of documented values to this UART's registers,
        // which this driver owns.
        unsafe {
            self.regs.ctrl.write(0);
            self.regs.bauddiv.write(div);
            self.regs.state.write(STATE_TX_OVERRUN | STATE_RX_OVERRUN);
            self.regs.ctrl.write(CTRL_TX_EN | CTRL_RX_EN);
        }
    }

    /// The STATE register.
    pub fn state(&self) -> u32 {
        self.regs.state.read()
    }

    /// The CTRL register.
    pub fn ctrl(&self) -> u32 {
        self.regs.ctrl.read()
    }

    /// The BAUDDIV register.
    pub fn bauddiv(&self) -> u32 {
        self.regs.bauddiv.read()
    }

    /// The 12 identification registers (PID4..7, PID0..3, CID0..3), low byte of each.
    pub fn id_bytes(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        for (o, r) in out.iter_mut().zip(self.regs.id.iter()) {
            *o = r.read() as u8;
        }
        out
    }

    /// The CoreSight part number from PID0/PID1 (0x821 for the CMSDK APB UART).
    pub fn part_number(&self) -> u16 {
        let id = self.id_bytes();
        let (pid0, pid1) = (id[4], id[5]);
        u16::from(pid0) | (u16::from(pid1 & 0x0F) << 8)
    }

    /// How many received bytes were lost to RX overruns so far.
    pub fn rx_overruns(&self) -> u32 {
        self.rx_overruns
    }

    /// A received byte, if one is waiting.
    pub fn try_read_byte(&mut self) -> Option<u8> {
        let state = self.state();
        if state & STATE_RX_OVERRUN != 0 {
            self.rx_overruns = self.rx_overruns.wrapping_add(1);
            // SAFETY: write-1-to-clear of the RX overrun flag of this UART.
            unsafe { self.regs.state.write(STATE_RX_OVERRUN) };
        }
        if state & STATE_RX_FULL != 0 {
            Some(self.regs.data.read() as u8)
        } else {
            None
        }
    }

    /// Queues `byte` for sending if the TX buffer has room; `false` if it is full.
    pub fn try_write_byte(&mut self, byte: u8) -> bool {
        if self.state() & STATE_TX_FULL != 0 {
            return false;
        }
        // SAFETY: volatile write of one byte to DATA of this UART, TX buffer not full.
        unsafe { self.regs.data.write(u32::from(byte)) };
        true
    }
}

impl embedded_io::ErrorType for CmsdkUart {
    type Error = Infallible;
}

impl embedded_io::Read for CmsdkUart {
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

impl embedded_io::ReadReady for CmsdkUart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.state() & STATE_RX_FULL != 0)
    }
}

impl embedded_io::Write for CmsdkUart {
    /// Blocks until the first byte is queued, then queues as many as fit without waiting.
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        let mut n = 0;
        for &byte in buf {
            if n == 0 {
                while !self.try_write_byte(byte) {
                    core::hint::spin_loop();
                }
            } else if !self.try_write_byte(byte) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Waits until the TX buffer has drained into the shift register (the CMSDK UART has no
    /// "transmitter idle" flag).
    fn flush(&mut self) -> Result<(), Infallible> {
        while self.state() & STATE_TX_FULL != 0 {
            core::hint::spin_loop();
        }
        Ok(())
    }
}

impl embedded_io::WriteReady for CmsdkUart {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.state() & STATE_TX_FULL == 0)
    }
}
