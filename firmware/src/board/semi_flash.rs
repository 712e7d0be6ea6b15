//! NOR-flash emulation of the STM32F405 board's STORE region, in a host file.
//!
//! QEMU's netduinoplus2 maps the internal flash as ROM and emulates no flash controller, so
//! CPU writes to it do nothing. The store is therefore a NOR flash kept in a host file
//! through semihosting file calls, with the geometry of the STORE region (its 128 KiB
//! sectors, `boards.toml`), and nothing of it in RAM: every read is a seek and a read of the
//! host file, as a driver of external SPI/QSPI flash reads a page. A board with 128 KiB of
//! RAM has no room for a copy of a 512 KiB store, and the store code reads enrolled classes
//! a direction at a time anyway (`ldl_core::store`).
//!
//! Flash semantics: erase sets whole sectors to 0xFF; a write can only clear bits
//! (`old & new`, read back from the file first); offsets and lengths must be multiples of
//! `WRITE_SIZE` / `ERASE_SIZE`. Every operation goes to the host file as it happens (QEMU
//! does not buffer semihosting writes), so killing QEMU is a power cut: operations that
//! returned are in the file, the one in progress may be partly there.
//!
//! Without a host file (no `store=PATH` from the runner) every operation fails, and the
//! firmware reports the store as unusable.

use core::ffi::CStr;
use embedded_storage::nor_flash::{check_erase, check_read, check_write, ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};
use semihosting::fs::{File, OpenOptions};
use semihosting::io::{Read as _, Seek as _, SeekFrom, Write as _};

use super::config;

/// The erased value of a flash byte.
pub const ERASED: u8 = 0xFF;
/// Bytes moved per semihosting call.
const CHUNK: usize = 256;

/// How the store came up, for the boot log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum Backing {
    /// No host file: every operation fails.
    None,
    /// Host file opened, `bytes` long (shorter files are extended with erased bytes).
    Opened {
        /// Its length before any extension.
        bytes: u64,
    },
    /// Host file created erased.
    Created,
}

/// NorFlash of `len` bytes in a host file.
pub struct SemiFlash {
    file: Option<File>,
    len: usize,
    backing: Backing,
}

impl SemiFlash {
    /// The store of `len` bytes in the host file `path` (created erased if missing, extended
    /// with erased bytes if shorter). Never fails: without a usable file, every operation
    /// does (and [`SemiFlash::persistent`] says so).
    pub fn new(len: usize, path: Option<&CStr>) -> Self {
        let mut f = SemiFlash {
            file: None,
            len,
            backing: Backing::None,
        };
        let Some(path) = path else {
            return f;
        };
        let (file, backing) = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => {
                let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
                (file, Backing::Opened { bytes })
            }
            Err(_) => match OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path) {
                Ok(file) => (file, Backing::Created),
                Err(_) => {
                    defmt::warn!("store: cannot open or create the host file; no store");
                    return f;
                }
            },
        };
        f.file = Some(file);
        f.backing = backing;
        let have = match backing {
            Backing::Opened { bytes } => (bytes as usize).min(len),
            _ => 0,
        };
        if have < len && f.fill(have, len - have).is_err() {
            defmt::warn!("store: cannot extend the host file; no store");
            f.file = None;
            f.backing = Backing::None;
        }
        f
    }

    /// Whether the store has a host file (and so persists across boots).
    pub fn persistent(&self) -> bool {
        self.file.is_some()
    }

    /// How the store came up.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    fn file(&mut self) -> Result<&mut File, NorFlashErrorKind> {
        self.file.as_mut().ok_or(NorFlashErrorKind::Other)
    }

    /// Writes `len` erased bytes from `offset`.
    fn fill(&mut self, offset: usize, len: usize) -> Result<(), NorFlashErrorKind> {
        let ones = [ERASED; CHUNK];
        let file = self.file()?;
        file.seek(SeekFrom::Start(offset as u64)).map_err(|_| NorFlashErrorKind::Other)?;
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            file.write_all(ones.get(..n).ok_or(NorFlashErrorKind::Other)?)
                .map_err(|_| NorFlashErrorKind::Other)?;
            left -= n;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` (bytes past the file's end read as erased).
    fn read_at(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), NorFlashErrorKind> {
        let file = self.file()?;
        file.seek(SeekFrom::Start(offset as u64)).map_err(|_| NorFlashErrorKind::Other)?;
        let mut n = 0;
        while let Some(rest) = buf.get_mut(n..) {
            if rest.is_empty() {
                break;
            }
            match file.read(rest) {
                Ok(0) => {
                    rest.fill(ERASED);
                    break;
                }
                Ok(k) => n += k,
                Err(_) => return Err(NorFlashErrorKind::Other),
            }
        }
        Ok(())
    }

    fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<(), NorFlashErrorKind> {
        let file = self.file()?;
        file.seek(SeekFrom::Start(offset as u64)).map_err(|_| NorFlashErrorKind::Other)?;
        file.write_all(bytes).map_err(|_| NorFlashErrorKind::Other)
    }
}

impl ErrorType for SemiFlash {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for SemiFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NorFlashErrorKind> {
        check_read(self, offset, bytes.len())?;
        self.read_at(offset as usize, bytes)
    }

    fn capacity(&self) -> usize {
        self.len
    }
}

impl NorFlash for SemiFlash {
    const WRITE_SIZE: usize = config::WRITE_SIZE;
    const ERASE_SIZE: usize = config::ERASE_SIZE;

    /// Erases the sectors in `[from, to)`, one after the other.
    fn erase(&mut self, from: u32, to: u32) -> Result<(), NorFlashErrorKind> {
        check_erase(self, from, to)?;
        let mut start = from as usize;
        while start < to as usize {
            self.fill(start, Self::ERASE_SIZE)?;
            start += Self::ERASE_SIZE;
        }
        Ok(())
    }

    /// Programs `bytes` at `offset`: bits can only go from 1 to 0 (`old & new`).
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NorFlashErrorKind> {
        check_write(self, offset, bytes.len())?;
        let mut buf = [0u8; CHUNK];
        let mut at = 0;
        for piece in bytes.chunks(CHUNK) {
            let old = buf.get_mut(..piece.len()).ok_or(NorFlashErrorKind::Other)?;
            self.read_at(offset as usize + at, old)?;
            for (o, n) in old.iter_mut().zip(piece) {
                *o &= *n;
            }
            self.write_at(offset as usize + at, old)?;
            at += piece.len();
        }
        Ok(())
    }
}
