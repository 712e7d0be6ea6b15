//! On-target tests of the STM32F405 board's store under QEMU (netduinoplus2): NOR-flash
//! emulation in a host file with the STORE region's 128 KiB sectors (erase, write, read
//! back, NOR semantics, alignment and bounds errors, persistence), and the sector layout of
//! the part from `boards.toml`.
#![no_std]
#![no_main]

use ldl_firmware as _; // board: defmt logger, panic handler

use core::ffi::CStr;
use ldl_firmware::board::config;
use ldl_firmware::board::semi_flash::SemiFlash;

/// The host file of the tests' store, relative to the package root (cargo runs tests there).
pub const FILE: &CStr = c"target/semi-flash-test-store.bin";

pub fn pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(7)
}

/// A store in a new host file.
pub fn fresh() -> SemiFlash {
    let _ = semihosting::fs::remove_file(FILE);
    SemiFlash::new(config::STORE.size as usize, Some(FILE))
}

#[defmt_test::tests]
mod tests {
    use super::{fresh, pattern, FILE};
    use defmt::{assert, assert_eq, unwrap};
    use embedded_storage::nor_flash::{NorFlash, NorFlashErrorKind, ReadNorFlash};
    use ldl_firmware::board::config;
    use ldl_firmware::board::semi_flash::{Backing, SemiFlash};
    use semihosting::fs;
    use semihosting::io::{Read as _, Seek as _, SeekFrom};

    const SECTOR: usize = config::ERASE_SIZE;

    #[test]
    fn layout_is_the_stm32f405s() {
        // 4 x 16 KiB, 1 x 64 KiB, 7 x 128 KiB from 0x0800_0000; the store is sectors 8-11.
        assert_eq!(config::SECTORS, &[(4, 0x4000), (1, 0x1_0000), (7, 0x2_0000)]);
        assert_eq!(config::FLASH.origin, 0x0800_0000);
        assert_eq!(config::FLASH.size, 1 << 20);
        assert_eq!(config::RAM.size, 128 << 10);
        assert_eq!(config::STORE.origin, 0x0808_0000);
        assert_eq!(<SemiFlash as NorFlash>::ERASE_SIZE, 128 << 10);
        assert_eq!(<SemiFlash as NorFlash>::WRITE_SIZE, 4);
        let f = SemiFlash::new(config::STORE.size as usize, None);
        assert_eq!(f.backing(), Backing::None);
        assert!(!f.persistent());
    }

    #[test]
    fn without_a_file_every_operation_fails() {
        let mut f = SemiFlash::new(config::STORE.size as usize, None);
        let mut b = [0u8; 4];
        assert_eq!(f.read(0, &mut b), Err(NorFlashErrorKind::Other));
        assert_eq!(f.write(0, &[0; 4]), Err(NorFlashErrorKind::Other));
        assert_eq!(f.erase(0, SECTOR as u32), Err(NorFlashErrorKind::Other));
    }

    #[test]
    fn created_erased_then_write_read_erase() {
        let mut f = fresh();
        assert_eq!(f.backing(), Backing::Created);
        assert!(f.persistent());
        let mut b = [0u8; 16];
        assert_eq!(f.read(3 * SECTOR as u32 + 8, &mut b), Ok(()));
        assert_eq!(b, [0xFF; 16]);
        let mut data = [0u8; 600];
        for (i, v) in data.iter_mut().enumerate() {
            *v = pattern(i);
        }
        // Across the boundary of sectors 0 and 1 of the store.
        let off = (SECTOR - 300) as u32;
        assert_eq!(f.write(off, &data), Ok(()));
        let mut back = [0u8; 600];
        assert_eq!(f.read(off, &mut back), Ok(()));
        assert_eq!(back, data);
        // Erase store sector 0 only.
        assert_eq!(f.erase(0, SECTOR as u32), Ok(()));
        assert_eq!(f.read(off, &mut back), Ok(()));
        assert!(back[..300].iter().all(|&v| v == 0xFF));
        assert_eq!(back[300..], data[300..]);
        // Writes only clear bits.
        assert_eq!(f.write(0, &[0x0F, 0xFF, 0x00, 0xAA]), Ok(()));
        assert_eq!(f.write(0, &[0xF0, 0x0F, 0xFF, 0xFF]), Ok(()));
        assert_eq!(f.read(0, &mut b[..4]), Ok(()));
        assert_eq!(b[..4], [0x00, 0x0F, 0x00, 0xAA]);
    }

    #[test]
    fn alignment_and_bounds_errors() {
        let mut f = fresh();
        let cap = f.capacity() as u32;
        let sector = SECTOR as u32;
        assert_eq!(f.write(2, &[0; 4]), Err(NorFlashErrorKind::NotAligned));
        assert_eq!(f.write(0, &[0; 3]), Err(NorFlashErrorKind::NotAligned));
        assert_eq!(f.write(cap - 4, &[0; 8]), Err(NorFlashErrorKind::OutOfBounds));
        assert_eq!(f.erase(0, 4096), Err(NorFlashErrorKind::NotAligned));
        assert_eq!(f.erase(sector, 0), Err(NorFlashErrorKind::OutOfBounds));
        assert_eq!(f.erase(0, cap + sector), Err(NorFlashErrorKind::OutOfBounds));
        let mut b = [0u8; 8];
        assert_eq!(f.read(cap - 4, &mut b), Err(NorFlashErrorKind::OutOfBounds));
    }

    #[test]
    fn persists_across_boots_and_writes_through() {
        let mut f = fresh();
        let cap = f.capacity();
        assert_eq!(f.write(5 * 1024, b"LDL!"), Ok(()));
        // The host file has the bytes as soon as write() returns (a QEMU kill is a power cut).
        let mut host = unwrap!(fs::File::open(FILE).ok());
        assert_eq!(unwrap!(host.metadata().ok()).len(), cap as u64);
        let mut head = [0u8; 4];
        assert!(host.seek(SeekFrom::Start(5 * 1024)).is_ok());
        assert!(host.read_exact(&mut head).is_ok());
        assert_eq!(&head, b"LDL!");
        drop(host);
        drop(f);
        // Next boot: the content is back.
        let mut f = SemiFlash::new(config::STORE.size as usize, Some(FILE));
        assert_eq!(f.backing(), Backing::Opened { bytes: cap as u64 });
        assert_eq!(f.read(5 * 1024, &mut head), Ok(()));
        assert_eq!(&head, b"LDL!");
        // A short file (another layout) is extended with erased bytes.
        drop(f);
        assert!(fs::write(FILE, [0x12u8, 0x34, 0x56]).is_ok());
        let mut f = SemiFlash::new(config::STORE.size as usize, Some(FILE));
        assert_eq!(f.backing(), Backing::Opened { bytes: 3 });
        let mut b = [0u8; 4];
        assert_eq!(f.read(0, &mut b), Ok(()));
        assert_eq!(b, [0x12, 0x34, 0x56, 0xFF]);
        let file = unwrap!(fs::File::open(FILE).ok());
        assert_eq!(unwrap!(file.metadata().ok()).len(), cap as u64);
        drop(file);
        drop(f);
        let _ = fs::remove_file(FILE);
    }
}
