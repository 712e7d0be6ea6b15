//! NOR-flash emulation of the QEMU board's STORE region, persisted to a host file.
//!
//! mps2-an386's "flash" is RAM: what the firmware writes there is lost when QEMU exits. So
//! [`SimFlash`] keeps the store in the STORE region (readable in place, like real flash) and
//! mirrors every change, as it happens, into a host file through semihosting file calls:
//!
//! * at boot, [`SimFlash::new`] with a path opens the file `"r+b"` and loads it into the
//!   region; if it cannot be opened it is created (`"w+b"`) as a freshly erased store
//!   (all 0xFF). Without a path the store is volatile and starts erased.
//! * every [`NorFlash::write`] and every erased sector of [`NorFlash::erase`] is written
//!   through to the file right away (seek + write, one host `write(2)`, which QEMU does not
//!   buffer). So when QEMU is killed, all operations that returned are in the file, and the
//!   one in progress may be partly there: the same as a power cut on real flash.
//!
//! Flash semantics are emulated too: erase sets whole sectors to 0xFF, a write can only clear
//! bits (the result is `old & new`, as NOR flash programs), offsets and lengths must be
//! multiples of `WRITE_SIZE` / `ERASE_SIZE` from boards.toml.

use core::ffi::CStr;
use embedded_storage::nor_flash::{check_erase, check_read, check_write, ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};
use semihosting::fs::{File, OpenOptions};
use semihosting::io::{Read as _, Seek as _, SeekFrom, Write as _};

use super::config;

/// The erased value of a flash byte.
pub const ERASED: u8 = 0xFF;

/// NorFlash over the STORE region (RAM under QEMU), optionally mirrored to a host file.
pub struct SimFlash {
    mem: &'static mut [u8],
    file: Option<File>,
    loaded: usize,
}

/// How the store came up, for the boot log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum Backing {
    /// No host file: RAM only, lost at exit.
    Volatile,
    /// Host file opened and `bytes` loaded from it.
    Loaded {
        /// Bytes read from the file.
        bytes: usize,
    },
    /// Host file did not exist (or could not be opened) and was created erased.
    Created,
}

fn os_error(e: &semihosting::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

impl SimFlash {
    /// Takes the STORE region `mem` and, with `path`, the host file that persists it.
    /// Never fails: if the host file cannot be used the store is volatile (and says so in
    /// the log and in [`SimFlash::persistent`]).
    pub fn new(mem: &'static mut [u8], path: Option<&CStr>) -> Self {
        mem.fill(ERASED);
        let mut flash = SimFlash {
            mem,
            file: None,
            loaded: 0,
        };
        let Some(path) = path else {
            return flash;
        };
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => flash.load(file),
            Err(_) => match OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path) {
                Ok(file) => {
                    flash.file = Some(file);
                    // A new file: write the whole (erased) store so it has its full size.
                    if flash.mirror(0, flash.mem.len()).is_err() {
                        defmt::warn!("store: cannot write the new host file; store is volatile");
                        flash.file = None;
                    }
                }
                Err(e) => {
                    defmt::warn!(
                        "store: cannot open or create the host file (errno {}); store is volatile",
                        os_error(&e)
                    );
                }
            },
        }
        flash
    }

    fn load(&mut self, mut file: File) {
        let mut n = 0;
        while let Some(rest) = self.mem.get_mut(n..) {
            if rest.is_empty() {
                break;
            }
            match file.read(rest) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => {
                    defmt::warn!("store: reading the host file failed after {} bytes (errno {})", n, os_error(&e));
                    break;
                }
            }
        }
        // Bytes the read may have touched past `n` are not store content.
        if let Some(rest) = self.mem.get_mut(n..) {
            rest.fill(ERASED);
        }
        self.loaded = n;
        self.file = Some(file);
        if n < self.mem.len() {
            // Short (or empty) file: extend it with erased bytes so it mirrors the region.
            if self.mirror(n, self.mem.len() - n).is_err() {
                defmt::warn!("store: cannot extend the host file; store is volatile");
                self.file = None;
            }
        } else {
            let mut probe = [0u8; 1];
            if matches!(file_read_more(self.file.as_mut(), &mut probe), Some(1..)) {
                defmt::warn!("store: host file is larger than the STORE region; the excess is ignored");
            }
        }
    }

    /// Gives the region back (closing the host file), e.g. to open it again.
    pub fn release(self) -> &'static mut [u8] {
        self.mem
    }

    /// Whether changes are persisted to a host file.
    pub fn persistent(&self) -> bool {
        self.file.is_some()
    }

    /// How the store came up.
    pub fn backing(&self) -> Backing {
        match (&self.file, self.loaded) {
            (None, _) => Backing::Volatile,
            (Some(_), 0) => Backing::Created,
            (Some(_), bytes) => Backing::Loaded { bytes },
        }
    }

    /// The store as bytes, read in place (as memory-mapped flash would be).
    pub fn as_bytes(&self) -> &[u8] {
        self.mem
    }

    /// Writes `mem[offset..offset + len]` to the host file at the same offset.
    fn mirror(&mut self, offset: usize, len: usize) -> Result<(), NorFlashErrorKind> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let end = offset.checked_add(len).ok_or(NorFlashErrorKind::OutOfBounds)?;
        let bytes = self.mem.get(offset..end).ok_or(NorFlashErrorKind::OutOfBounds)?;
        file.seek(SeekFrom::Start(offset as u64)).map_err(|_| NorFlashErrorKind::Other)?;
        file.write_all(bytes).map_err(|_| NorFlashErrorKind::Other)?;
        Ok(())
    }

    fn range(&self, offset: u32, len: usize) -> Result<core::ops::Range<usize>, NorFlashErrorKind> {
        let start = offset as usize;
        let end = start.checked_add(len).ok_or(NorFlashErrorKind::OutOfBounds)?;
        if end > self.mem.len() {
            return Err(NorFlashErrorKind::OutOfBounds);
        }
        Ok(start..end)
    }
}

fn file_read_more(file: Option<&mut File>, buf: &mut [u8]) -> Option<usize> {
    file.and_then(|f| f.read(buf).ok())
}

impl ErrorType for SimFlash {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for SimFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NorFlashErrorKind> {
        check_read(self, offset, bytes.len())?;
        let range = self.range(offset, bytes.len())?;
        let src = self.mem.get(range).ok_or(NorFlashErrorKind::OutOfBounds)?;
        bytes.copy_from_slice(src);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl NorFlash for SimFlash {
    const WRITE_SIZE: usize = config::WRITE_SIZE;
    const ERASE_SIZE: usize = config::ERASE_SIZE;

    /// Erases the sectors in `[from, to)`, one after the other, each mirrored as it is done.
    fn erase(&mut self, from: u32, to: u32) -> Result<(), NorFlashErrorKind> {
        check_erase(self, from, to)?;
        let mut start = from as usize;
        let end = to as usize;
        while start < end {
            let len = Self::ERASE_SIZE.min(end - start);
            let range = self.range(start as u32, len)?;
            self.mem.get_mut(range).ok_or(NorFlashErrorKind::OutOfBounds)?.fill(ERASED);
            self.mirror(start, len)?;
            start += len;
        }
        Ok(())
    }

    /// Programs `bytes` at `offset`: bits can only go from 1 to 0 (`old & new`).
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NorFlashErrorKind> {
        check_write(self, offset, bytes.len())?;
        let range = self.range(offset, bytes.len())?;
        let dst = self.mem.get_mut(range).ok_or(NorFlashErrorKind::OutOfBounds)?;
        for (d, s) in dst.iter_mut().zip(bytes) {
            *d &= *s;
        }
        self.mirror(offset as usize, bytes.len())
    }
}
