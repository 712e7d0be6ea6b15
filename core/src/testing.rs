//! Test doubles shared by the core's, the firmware's and the fuzz targets' tests (feature
//! `testing`): not part of the device path.
// Opts out of the crate's lints against panics: test doubles, where a failure is a broken
// fixture.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects, clippy::expect_used)]

use crate::methods::{fit_compact, ClosedFormConfig};
use crate::model::Model;
use crate::rng::Rng;
use crate::subspace::FitOptions;
use alloc::vec;
use alloc::vec::Vec;
use embedded_storage::nor_flash::{check_erase, check_write, ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};

/// NOR flash in RAM with sectors of `ERASE` bytes and 4-byte words: an erase sets 0xFF, a
/// write clears bits (`old & new`), as real NOR flash does. It can be cut, as by a power
/// loss: after `budget` more operations, the next write programs only its first
/// `tear_words` words and the next erase erases only half its first sector, and every
/// later operation fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamFlash<const ERASE: usize = 256> {
    /// The bytes.
    pub mem: Vec<u8>,
    /// Operations left before the cut (`None`: never cut).
    pub budget: Option<usize>,
    /// Words the cut write still programs.
    pub tear_words: usize,
    /// The power is gone: every operation fails.
    pub dead: bool,
    /// Operations (erases and writes) so far.
    pub ops: usize,
}

impl<const ERASE: usize> RamFlash<ERASE> {
    /// `size` erased bytes.
    pub fn new(size: usize) -> Self {
        RamFlash {
            mem: vec![0xFF; size],
            budget: None,
            tear_words: 0,
            dead: false,
            ops: 0,
        }
    }

    /// Counts an operation: `Ok(true)` to do it whole, `Ok(false)` for the cut one.
    fn step(&mut self) -> Result<bool, NorFlashErrorKind> {
        if self.dead {
            return Err(NorFlashErrorKind::Other);
        }
        self.ops += 1;
        match &mut self.budget {
            Some(0) => {
                self.dead = true;
                Ok(false)
            }
            Some(b) => {
                *b -= 1;
                Ok(true)
            }
            None => Ok(true),
        }
    }
}

impl<const ERASE: usize> ErrorType for RamFlash<ERASE> {
    type Error = NorFlashErrorKind;
}

impl<const ERASE: usize> ReadNorFlash for RamFlash<ERASE> {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        if self.dead {
            return Err(NorFlashErrorKind::Other);
        }
        let o = offset as usize;
        let end = o.checked_add(bytes.len()).ok_or(NorFlashErrorKind::OutOfBounds)?;
        bytes.copy_from_slice(self.mem.get(o..end).ok_or(NorFlashErrorKind::OutOfBounds)?);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl<const ERASE: usize> NorFlash for RamFlash<ERASE> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = ERASE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        check_erase(self, from, to)?;
        let mut s = from as usize;
        while s < to as usize {
            if !self.step()? {
                self.mem[s..s + ERASE / 2].fill(0xFF);
                return Err(NorFlashErrorKind::Other);
            }
            self.mem[s..s + ERASE].fill(0xFF);
            s += ERASE;
        }
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        check_write(self, offset, bytes.len())?;
        let o = offset as usize;
        let full = self.step()?;
        let n = if full {
            bytes.len()
        } else {
            (self.tear_words * 4).min(bytes.len())
        };
        for (d, s) in self.mem[o..o + n].iter_mut().zip(bytes) {
            *d &= *s;
        }
        if full {
            Ok(())
        } else {
            Err(NorFlashErrorKind::Other)
        }
    }
}

/// Width (and height) of [`small_model`]'s images.
pub const SMALL_W: usize = 6;
/// Inputs of [`small_model`]: a `6 x 6` image.
pub const SMALL_D: usize = SMALL_W * SMALL_W;

/// `n` samples of a class (`n x 36`, row-major): a blob of ink away from the border, its
/// values drawn from `seed`.
pub fn blob_samples(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut out = vec![0.0f32; n * SMALL_D];
    for i in 0..n {
        for y in 2..SMALL_W - 2 {
            for x in 1..SMALL_W - 2 {
                out[i * SMALL_D + y * SMALL_W + x] = rng.next_f32() * (1 + (seed as usize + x) % 3) as f32;
            }
        }
    }
    out
}

/// A model of two classes "a" and "b" of `6 x 6` images in the compact form, shift 1, rank
/// at most 5, room for 8 classes: an identity target (`k = 0`, linear subspaces) or a
/// linear target of `k` outputs (affine subspaces). The store's tests and fuzz target and
/// their seed corpus use it.
pub fn small_model(k: usize) -> Model {
    let (a, b) = (blob_samples(1, 3), blob_samples(2, 3));
    let cfg = ClosedFormConfig {
        k,
        fit: FitOptions {
            ridge: 0.5,
            min_weight: 0.02,
            affine: k > 0,
            max_rank: 5,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut m = fit_compact(&[&a, &b], SMALL_D, &["a", "b"], &cfg, Some((SMALL_W, SMALL_W)), 1, 3).expect("the small model fits");
    m.capacity = 8;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_nor_flash_and_can_be_cut() {
        let mut f: RamFlash<8> = RamFlash::new(16);
        f.write(0, &[0x0F, 0xF0, 0xFF, 0x00]).unwrap();
        f.write(0, &[0xFF, 0x0F, 0xFF, 0xFF]).unwrap();
        assert_eq!(&f.mem[..4], &[0x0F, 0x00, 0xFF, 0x00]);
        assert_eq!(f.write(1, &[0; 4]), Err(NorFlashErrorKind::NotAligned));
        assert_eq!(f.write(16, &[0; 4]), Err(NorFlashErrorKind::OutOfBounds));
        let mut b = [0u8; 4];
        assert_eq!(f.read(u32::MAX, &mut b), Err(NorFlashErrorKind::OutOfBounds));
        f.erase(0, 8).unwrap();
        assert_eq!(&f.mem[..8], &[0xFF; 8]);
        // Cut after one more operation: the second write programs one word of two.
        f.budget = Some(1);
        f.tear_words = 1;
        f.write(8, &[0; 4]).unwrap();
        assert_eq!(f.write(8, &[0x11; 8]), Err(NorFlashErrorKind::Other));
        assert!(f.dead);
        assert_eq!(f.read(0, &mut b), Err(NorFlashErrorKind::Other));
        assert_eq!(f.ops, 5); // two writes, one sector erased, two writes
    }
}
