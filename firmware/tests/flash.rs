//! On-target tests of the QEMU store: NOR-flash emulation over the STORE region (erase,
//! write, read back, NOR semantics, alignment and bounds errors) and its persistence to a
//! host file through semihosting.
#![no_std]
#![no_main]

use ldl_firmware as _; // board: defmt logger, panic handler

use core::ffi::CStr;
use defmt::unwrap;
use ldl_firmware::board::sim_flash::SimFlash;

/// The STORE region, lent to one `SimFlash` at a time.
pub struct State {
    pub mem: Option<&'static mut [u8]>,
}

impl State {
    pub fn flash(&mut self, path: Option<&CStr>) -> SimFlash {
        SimFlash::new(unwrap!(self.mem.take()), path)
    }
    pub fn put_back(&mut self, f: SimFlash) {
        self.mem = Some(f.release());
    }
}

pub fn pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(7)
}

#[defmt_test::tests]
mod tests {
    use super::{pattern, State};
    use core::ffi::CStr;
    use defmt::{assert, assert_eq, unwrap};
    use embedded_storage::nor_flash::{NorFlash, NorFlashErrorKind, ReadNorFlash};
    use ldl_firmware::board::sim_flash::{Backing, SimFlash};
    use ldl_firmware::board::{config, store_region, take_store_ram};
    use semihosting::fs;
    use semihosting::io::{Read as _, Seek as _, SeekFrom};

    /// Relative to the package root (cargo runs tests there).
    const FILE: &CStr = c"target/flash-test-store.bin";
    const SECTOR: usize = config::ERASE_SIZE;

    #[init]
    fn init() -> State {
        State {
            mem: Some(unwrap!(take_store_ram())),
        }
    }

    #[test]
    fn store_region_comes_from_boards_toml(s: &mut State) {
        let f = s.flash(None);
        assert_eq!(store_region(), config::STORE);
        assert_eq!(f.capacity(), config::STORE.size as usize);
        assert_eq!(<SimFlash as NorFlash>::ERASE_SIZE, 4096);
        assert_eq!(<SimFlash as NorFlash>::WRITE_SIZE, 4);
        assert!(f.capacity() >= 2 * SECTOR);
        assert!(take_store_ram().is_none());
        s.put_back(f);
    }

    #[test]
    fn volatile_store_starts_erased(s: &mut State) {
        let f = s.flash(None);
        assert_eq!(f.backing(), Backing::Volatile);
        assert!(!f.persistent());
        assert!(f.as_bytes().iter().all(|&b| b == 0xFF));
        s.put_back(f);
    }

    #[test]
    fn write_read_erase(s: &mut State) {
        let mut f = s.flash(None);
        let mut data = [0u8; 64];
        for (i, b) in data.iter_mut().enumerate() {
            *b = pattern(i);
        }
        // Last bytes of sector 1 and first of sector 2.
        let off = (2 * SECTOR - 32) as u32;
        assert_eq!(f.write(off, &data), Ok(()));
        let mut back = [0u8; 64];
        assert_eq!(f.read(off, &mut back), Ok(()));
        assert_eq!(back, data);
        // Reads need no alignment.
        let mut one = [0u8; 3];
        assert_eq!(f.read(off + 1, &mut one), Ok(()));
        assert_eq!(one, data[1..4]);

        // Erase sector 1 only: its part goes back to 0xFF, sector 2 keeps its bytes.
        assert_eq!(f.erase(SECTOR as u32, 2 * SECTOR as u32), Ok(()));
        assert_eq!(f.read(off, &mut back), Ok(()));
        assert!(back[..32].iter().all(|&b| b == 0xFF));
        assert_eq!(back[32..], data[32..]);

        // Erase everything.
        let cap = f.capacity() as u32;
        assert_eq!(f.erase(0, cap), Ok(()));
        assert!(f.as_bytes().iter().all(|&b| b == 0xFF));
        s.put_back(f);
    }

    #[test]
    fn writes_only_clear_bits(s: &mut State) {
        let mut f = s.flash(None);
        assert_eq!(f.write(0, &[0x0F, 0xFF, 0x00, 0xAA]), Ok(()));
        assert_eq!(f.write(0, &[0xF0, 0x0F, 0xFF, 0xFF]), Ok(()));
        let mut b = [0u8; 4];
        assert_eq!(f.read(0, &mut b), Ok(()));
        assert_eq!(b, [0x00, 0x0F, 0x00, 0xAA]);
        assert_eq!(f.erase(0, SECTOR as u32), Ok(()));
        assert_eq!(f.read(0, &mut b), Ok(()));
        assert_eq!(b, [0xFF; 4]);
        s.put_back(f);
    }

    #[test]
    fn alignment_and_bounds_errors(s: &mut State) {
        let mut f = s.flash(None);
        let cap = f.capacity() as u32;
        let sector = SECTOR as u32;
        // Writes: offset and length multiples of WRITE_SIZE (4).
        assert_eq!(f.write(1, &[0; 4]), Err(NorFlashErrorKind::NotAligned));
        assert_eq!(f.write(2, &[0; 4]), Err(NorFlashErrorKind::NotAligned));
        assert_eq!(f.write(0, &[0; 3]), Err(NorFlashErrorKind::NotAligned));
        assert_eq!(f.write(cap - 4, &[0; 8]), Err(NorFlashErrorKind::OutOfBounds));
        assert_eq!(f.write(cap, &[0; 4]), Err(NorFlashErrorKind::OutOfBounds));
        assert_eq!(f.write(u32::MAX - 3, &[0; 4]), Err(NorFlashErrorKind::OutOfBounds));
        // Erases: sector boundaries, from <= to <= capacity.
        assert_eq!(f.erase(0, 100), Err(NorFlashErrorKind::NotAligned));
        assert_eq!(f.erase(4, sector), Err(NorFlashErrorKind::NotAligned));
        assert_eq!(f.erase(sector, 0), Err(NorFlashErrorKind::OutOfBounds));
        assert_eq!(f.erase(0, cap + sector), Err(NorFlashErrorKind::OutOfBounds));
        // Reads: bounds only.
        let mut b = [0u8; 8];
        assert_eq!(f.read(cap - 4, &mut b), Err(NorFlashErrorKind::OutOfBounds));
        assert_eq!(f.read(cap, &mut b[..0]), Ok(()));
        // Nothing was changed by the failed calls.
        assert!(f.as_bytes().iter().all(|&b| b == 0xFF));
        s.put_back(f);
    }

    #[test]
    fn persists_to_host_file(s: &mut State) {
        let _ = fs::remove_file(FILE);

        // 1st boot: the file is created erased, with the size of the region.
        let mut f = s.flash(Some(FILE));
        assert_eq!(f.backing(), Backing::Created);
        assert!(f.persistent());
        let cap = f.capacity();
        let mut data = [0u8; 256];
        for (i, b) in data.iter_mut().enumerate() {
            *b = pattern(i);
        }
        let off = 5 * SECTOR as u32 + 64;
        assert_eq!(f.write(off, &data), Ok(()));
        assert_eq!(f.write(0, b"LDL!"), Ok(()));

        // Write-through: the host file has the bytes as soon as write() returns (this is
        // what makes a QEMU kill behave like a power cut), read through a second handle.
        let mut host = unwrap!(fs::File::open(FILE).ok());
        assert_eq!(unwrap!(host.metadata().ok()).len(), cap as u64);
        let mut back = [0u8; 256];
        assert!(host.seek(SeekFrom::Start(off as u64)).is_ok());
        assert!(host.read_exact(&mut back).is_ok());
        assert_eq!(back, data);

        // An erase is mirrored too.
        assert_eq!(f.erase(0, SECTOR as u32), Ok(()));
        let mut head = [0u8; 4];
        assert!(host.seek(SeekFrom::Start(0)).is_ok());
        assert!(host.read_exact(&mut head).is_ok());
        assert_eq!(head, [0xFF; 4]);
        drop(host);
        s.put_back(f);

        // A boot without the file: RAM starts erased (nothing survives in RAM).
        let f = s.flash(None);
        assert!(f.as_bytes().iter().all(|&b| b == 0xFF));
        s.put_back(f);

        // Next boot with the file: the content is back.
        let mut f = s.flash(Some(FILE));
        assert_eq!(f.backing(), Backing::Loaded { bytes: cap });
        let mut back = [0u8; 256];
        assert_eq!(f.read(off, &mut back), Ok(()));
        assert_eq!(back, data);
        assert_eq!(f.read(0, &mut head), Ok(()));
        assert_eq!(head, [0xFF; 4]);
        s.put_back(f);

        let _ = fs::remove_file(FILE);
    }

    #[test]
    fn short_host_file_is_extended_erased(s: &mut State) {
        // A file shorter than the region (e.g. from a smaller layout): loaded, rest erased,
        // and the file grows to the region size.
        assert!(fs::write(FILE, [0x12u8, 0x34, 0x56, 0x78, 0x9A]).is_ok());
        let f = s.flash(Some(FILE));
        assert_eq!(f.backing(), Backing::Loaded { bytes: 5 });
        assert_eq!(f.as_bytes()[..6], [0x12, 0x34, 0x56, 0x78, 0x9A, 0xFF]);
        let file = unwrap!(fs::File::open(FILE).ok());
        assert_eq!(unwrap!(file.metadata().ok()).len(), f.capacity() as u64);
        drop(file);
        s.put_back(f);
        let _ = fs::remove_file(FILE);
    }
}
