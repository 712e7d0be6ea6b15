//! Driver for the STM32F2/F4 USART as QEMU emulates it (`stm32f2xx-usart`), USART1 of the
//! netduinoplus2 board at 0x4001_1000.
//!
//! Registers (RM0090, section 30.6; QEMU implements SR, DR, BRR and CR1-CR3):
//!
//! | offset | name | bits used |
//! |---|---|---|
//! | 0x00 | SR | 7 TXE (data register empty), 6 TC (transmission complete), 5 RXNE (a byte is waiting), 3 ORE (overrun) |
//! | 0x04 | DR | 8:0 received byte (read, clears RXNE) / byte to send (write) |
//! | 0x08 | BRR | baud divider (mantissa 15:4, fraction 3:0 of APB clock / (16 baud)) |
//! | 0x0C | CR1 | 13 UE (USART enable), 3 TE (transmitter enable), 2 RE (receiver enable) |
//!
//! QEMU delivers the next received byte only after DR has been read (RXNE clear), and sends
//! a written byte at once. The clock (RCC) and the pins' alternate function, which a real
//! STM32F405 needs first, are not modelled by QEMU; this driver writes the RCC enable bit
//! anyway (QEMU ignores it) and leaves the pins to a real board's port.
//!
//! `unsafe` is allowed in this module only: register accesses are volatile reads/writes
//! through `volatile-register` on a `#[repr(C)]` block at the peripheral's address.
#![allow(unsafe_code)]

use core::convert::Infallible;
use core::sync::atomic::{AtomicBool, Ordering};
use volatile_register::RW;

/// Base address of USART1.
pub const USART1_BASE: usize = 0x4001_1000;
/// RCC APB2 peripheral clock enable register (bit 4: USART1EN).
const RCC_APB2ENR: usize = 0x4002_3844;
/// APB2 clock after reset (the 16 MHz HSI; QEMU does not care).
pub const APB2_HZ: u32 = 16_000_000;

/// SR: transmit data register empty.
pub const SR_TXE: u32 = 1 << 7;
/// SR: transmission complete.
pub const SR_TC: u32 = 1 << 6;
/// SR: read data register not empty.
pub const SR_RXNE: u32 = 1 << 5;
/// SR: overrun error (a byte was lost).
pub const SR_ORE: u32 = 1 << 3;
/// CR1: USART enable.
pub const CR1_UE: u32 = 1 << 13;
/// CR1: transmitter enable.
pub const CR1_TE: u32 = 1 << 3;
/// CR1: receiver enable.
pub const CR1_RE: u32 = 1 << 2;

/// The register block of one USART.
#[repr(C)]
pub struct RegisterBlock {
    /// 0x00 SR.
    pub sr: RW<u32>,
    /// 0x04 DR.
    pub dr: RW<u32>,
    /// 0x08 BRR.
    pub brr: RW<u32>,
    /// 0x0C CR1.
    pub cr1: RW<u32>,
    /// 0x10 CR2.
    pub cr2: RW<u32>,
    /// 0x14 CR3.
    pub cr3: RW<u32>,
    /// 0x18 GTPR.
    pub gtpr: RW<u32>,
}

/// A polling driver for USART1, 8N1, as a blocking `embedded_io` byte stream.
pub struct Stm32Usart {
    regs: &'static RegisterBlock,
    overruns: u32,
}

static USART1_TAKEN: AtomicBool = AtomicBool::new(false);

impl Stm32Usart {
    /// Takes USART1 (once; `None` afterwards): clock enabled, `baud` 8N1, TX and RX on.
    pub fn usart1(baud: u32) -> Option<Self> {
        if USART1_TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: RCC_APB2ENR is the RCC's APB2 clock enable register; setting USART1EN
        // (bit 4) with a read-modify-write only turns that peripheral's clock on.
        unsafe {
            let rcc = &*(RCC_APB2ENR as *const RW<u32>);
            rcc.modify(|v| v | 1 << 4);
        }
        // SAFETY: USART1_BASE is the address of USART1's register block on the STM32F405,
        // device memory valid for the whole program; RegisterBlock matches its layout. The
        // USART1_TAKEN flag makes this the only driver instance for it.
        let regs = unsafe { &*(USART1_BASE as *const RegisterBlock) };
        let div = APB2_HZ / baud.max(1);
        // SAFETY: volatile writes of documented values to this USART's registers.
        unsafe {
            regs.cr1.write(0);
            regs.brr.write(div & 0xFFFF);
            regs.cr2.write(0);
            regs.cr3.write(0);
            regs.cr1.write(CR1_UE | CR1_TE | CR1_RE);
        }
        Some(Stm32Usart { regs, overruns: 0 })
    }

    /// The SR register.
    pub fn status(&self) -> u32 {
        self.regs.sr.read()
    }

    /// The CR1 register.
    pub fn cr1(&self) -> u32 {
        self.regs.cr1.read()
    }

    /// Received bytes lost to overruns so far.
    pub fn overruns(&self) -> u32 {
        self.overruns
    }

    /// A received byte, if one is waiting.
    pub fn try_read_byte(&mut self) -> Option<u8> {
        let sr = self.status();
        if sr & SR_ORE != 0 {
            self.overruns = self.overruns.wrapping_add(1);
        }
        if sr & SR_RXNE != 0 {
            Some(self.regs.dr.read() as u8)
        } else {
            None
        }
    }

    /// Sends `byte` if the data register is empty (TXE; or TC, which implies it: some QEMU
    /// versions clear TXE on a write and never set it again); `false` otherwise.
    pub fn try_write_byte(&mut self, byte: u8) -> bool {
        if self.status() & (SR_TXE | SR_TC) == 0 {
            return false;
        }
        // SAFETY: volatile write of one byte to DR of this USART, data register empty.
        unsafe { self.regs.dr.write(u32::from(byte)) };
        true
    }
}

impl embedded_io::ErrorType for Stm32Usart {
    type Error = Infallible;
}

impl embedded_io::Read for Stm32Usart {
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

impl embedded_io::ReadReady for Stm32Usart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.status() & SR_RXNE != 0)
    }
}

impl embedded_io::Write for Stm32Usart {
    /// Blocks until the first byte is sent, then sends as many as go without waiting.
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

    /// Waits until the last byte has left (TC).
    fn flush(&mut self) -> Result<(), Infallible> {
        while self.status() & SR_TC == 0 {
            core::hint::spin_loop();
        }
        Ok(())
    }
}

impl embedded_io::WriteReady for Stm32Usart {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.status() & (SR_TXE | SR_TC) != 0)
    }
}
