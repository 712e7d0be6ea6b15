//! On-target tests (Cortex-M4F under QEMU) of the core paths the firmware runs: the
//! hand-written Arm kernels against the portable summation order, bit for bit; a model file
//! built here byte by byte and validated in place (good, truncated, corrupted, wrong version
//! or magic: typed errors, also through the firmware's `check_model`); classification of that
//! small model with known answers; enrollment (the compact closed-form fit on the device,
//! written to a store in RAM flash) of a new class, then its classification together with
//! the model's classes.
//!
//! The model: d = 16, identity target, two classes through the origin, "a" = span{e0, e1}
//! and "b" = span{e2, e3} (shrink weights 1). With an identity target the distance of `x` to
//! a class is `(||x||^2 - ||U x||^2) / d`; the test points have small integer coordinates,
//! so every distance is exact in f32 and asserted to the bit.
#![no_std]
#![no_main]

use ldl_firmware as _; // board: defmt logger, panic handler

use ldl_core::format::{checksum, ClassEntry, ClassForm, Header, TargetEntry, TargetKind, CRC_LEN, HEADER_OFFSET, MAGIC};
use ldl_core::novelty::Rule;
use ldl_core::subspace::FitOptions;
use ldl_core::{Method, Preprocess};

/// Input dimension of the test model.
pub const D: usize = 16;
/// Rank of each model class.
pub const RANK: usize = 2;
/// f32s of the weights: per class a basis (RANK x D) and its shrink weights (RANK).
pub const WEIGHTS: usize = 2 * (RANK * D + RANK);

/// A buffer for a model file, aligned like flash (the weights are read in place as f32).
#[repr(C, align(16))]
pub struct File {
    pub bytes: [u8; 1024],
    pub len: usize,
}

/// Unit vector `e_i` of R^D.
pub fn e(i: usize) -> [f32; D] {
    let mut v = [0.0; D];
    v[i] = 1.0;
    v
}

/// `sum_i c_i e_{idx_i}`.
pub fn vec_of(terms: &[(usize, f32)]) -> [f32; D] {
    let mut v = [0.0; D];
    for &(i, c) in terms {
        v[i] += c;
    }
    v
}

/// Writes the test model file (format version 3: a novelty rule, no warped copies) into
/// `f`, with the novelty `rule`.
pub fn build(f: &mut File, rule: Rule) {
    let mut weights = [0.0f32; WEIGHTS];
    // Class "a": basis e0, e1; class "b": basis e2, e3; shrink 1, 1.
    for (c, first) in [(0usize, 0usize), (1, 2)] {
        let at = c * (RANK * D + RANK);
        for r in 0..RANK {
            weights[at + r * D..at + (r + 1) * D].copy_from_slice(&e(first + r));
        }
        weights[at + RANK * D..at + RANK * D + RANK].fill(1.0);
    }
    let mut labels = heapless::Vec::new();
    let mut classes = heapless::Vec::new();
    for (c, l) in ["a", "b"].iter().enumerate() {
        defmt::unwrap!(labels.push(defmt::unwrap!(ldl_core::label(l).ok())).ok());
        defmt::unwrap!(classes
            .push(ClassEntry {
                form: ClassForm::Subspace {
                    affine: false,
                    rank: RANK as u32
                },
                offset: (c * (RANK * D + RANK)) as u32,
            })
            .ok());
    }
    let mut members = heapless::Vec::new();
    defmt::unwrap!(members
        .push(TargetEntry {
            kind: TargetKind::Identity,
            offset: 0
        })
        .ok());
    let header = Header {
        method: Method::ClosedForm,
        inputs: D as u32,
        outputs: D as u32,
        capacity: 4,
        threshold: rule.threshold,
        score: rule.score,
        preprocess: Preprocess::default(),
        fit: FitOptions {
            affine: false,
            ..FitOptions::default()
        },
        labels,
        members,
        classes,
    };
    let b = &mut f.bytes;
    b.fill(0);
    let header_len = defmt::unwrap!(postcard::to_slice(&header, &mut b[HEADER_OFFSET..]).ok()).len();
    let start = (HEADER_OFFSET + header_len).div_ceil(16) * 16;
    for (i, w) in weights.iter().enumerate() {
        b[start + 4 * i..start + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    let crc_at = start + 4 * WEIGHTS;
    b[..4].copy_from_slice(&MAGIC);
    // A model with a novelty score and without warped copies (`Preprocess::fill` 0) is a
    // version 3 file.
    b[4..6].copy_from_slice(&3u16.to_le_bytes());
    b[8..12].copy_from_slice(&(header_len as u32).to_le_bytes());
    b[12..16].copy_from_slice(&((4 * WEIGHTS) as u32).to_le_bytes());
    let crc = checksum(&b[..crc_at]);
    b[crc_at..crc_at + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
    f.len = crc_at + CRC_LEN;
}

/// NOR flash in RAM for the store (erase sets 0xFF, writes clear bits; 256-byte sectors).
pub struct RamFlash(pub [u8; 2048]);

impl embedded_storage::nor_flash::ErrorType for RamFlash {
    type Error = embedded_storage::nor_flash::NorFlashErrorKind;
}

impl embedded_storage::nor_flash::ReadNorFlash for RamFlash {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let o = offset as usize;
        let src = self.0.get(o..o + bytes.len()).ok_or(Self::Error::OutOfBounds)?;
        bytes.copy_from_slice(src);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.0.len()
    }
}

impl embedded_storage::nor_flash::NorFlash for RamFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 256;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        embedded_storage::nor_flash::check_erase(self, from, to)?;
        self.0
            .get_mut(from as usize..to as usize)
            .ok_or(Self::Error::OutOfBounds)?
            .fill(0xFF);
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        embedded_storage::nor_flash::check_write(self, offset, bytes.len())?;
        let o = offset as usize;
        let dst = self.0.get_mut(o..o + bytes.len()).ok_or(Self::Error::OutOfBounds)?;
        for (d, s) in dst.iter_mut().zip(bytes) {
            *d &= *s;
        }
        Ok(())
    }
}

/// The portable `ldl_core::linalg::dot` (the host's): 8 interleaved accumulators, pairwise
/// sum, then the tail.
pub fn dot_ref(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [0.0f32; 8];
    let blocks = n / 8;
    for j in 0..blocks {
        for i in 0..8 {
            acc[i] += a[8 * j + i] * b[8 * j + i];
        }
    }
    let mut tail = 0.0f32;
    for t in 8 * blocks..n {
        tail += a[t] * b[t];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[defmt_test::tests]
mod tests {
    use super::{build, dot_ref, e, vec_of, File, D};
    use defmt::{assert, assert_eq, unwrap};
    use ldl_core::classify::{classify, scratch_len, Classes};
    use ldl_core::fit::{fit_scratch_len, Samples};
    use ldl_core::format::ModelView;
    use ldl_core::linalg::{axpy, dot};
    use ldl_core::novelty::{Rule, Score};
    use ldl_core::protocol::{ErrorCode, ModelStatus};
    use ldl_core::store::{classify_joined, joined_scratch_len, Loaded, ModelKey, Store};
    use ldl_core::subspace::FitOptions;
    use ldl_core::{Error, Rng, Target};

    /// No threshold.
    const NONE: Rule = Rule::best(None);
    use ldl_firmware::device::check_model;

    #[init]
    fn init() -> File {
        let mut f = File { bytes: [0; 1024], len: 0 };
        build(&mut f, NONE);
        f
    }

    #[test]
    fn dot_kernel_has_the_portable_bits(_f: &mut File) {
        let mut rng = Rng::new(5);
        let mut a = [0.0f32; 203];
        let mut b = [0.0f32; 203];
        for (x, y) in a.iter_mut().zip(b.iter_mut()) {
            *x = rng.normal();
            *y = rng.normal() * 1e-3;
        }
        // Every length around the 8-wide blocks, and offsets that are not block-aligned.
        for n in (0..=41).chain([200, 203]) {
            for off in [0usize, 1, 3] {
                let (x, y) = (&a[off..], &b[..a.len() - off]);
                let m = n.min(x.len());
                assert_eq!(
                    dot(&x[..m], &y[..m]).to_bits(),
                    dot_ref(&x[..m], &y[..m]).to_bits(),
                    "n {} off {}",
                    m,
                    off
                );
            }
        }
        // Uneven lengths: the shorter slice decides.
        assert_eq!(dot(&a[..17], &b[..9]).to_bits(), dot_ref(&a[..9], &b[..9]).to_bits());
        // Exact small case: 1 + 2 + ... 19^2.
        let v: [f32; 19] = core::array::from_fn(|i| (i + 1) as f32);
        assert_eq!(dot(&v, &v), 2470.0);
        // Signed zero: all-zero products summed from +0.0.
        assert_eq!(dot(&[-0.0; 16], &[1.0; 16]).to_bits(), 0.0f32.to_bits());
    }

    #[test]
    fn axpy_kernel_has_the_portable_bits(_f: &mut File) {
        let mut rng = Rng::new(6);
        for n in [0usize, 1, 7, 8, 9, 16, 23, 100] {
            let mut x = [0.0f32; 100];
            let mut y = [0.0f32; 100];
            for (a, b) in x.iter_mut().zip(y.iter_mut()) {
                *a = rng.normal();
                *b = rng.normal();
            }
            let alpha = rng.normal();
            let mut want = y;
            for i in 0..n {
                want[i] += alpha * x[i];
            }
            axpy(alpha, &x[..n], &mut y[..n]);
            for i in 0..100 {
                assert_eq!(y[i].to_bits(), want[i].to_bits(), "n {} i {}", n, i);
            }
        }
        // A shorter y: only its elements change.
        let mut y = [1.0f32; 10];
        axpy(2.0, &[1.0; 12], &mut y[..9]);
        assert_eq!(y, [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 1.0]);
    }

    #[test]
    fn good_model_parses_in_place(f: &mut File) {
        let file = &f.bytes[..f.len];
        let v = unwrap!(ModelView::parse(file).ok());
        assert_eq!(v.inputs(), D);
        assert_eq!(v.outputs(), D);
        assert_eq!(v.len(), 2);
        assert_eq!(v.members(), 1);
        assert_eq!(v.label(0).as_deref(), Some("a"));
        assert_eq!(v.label(1).as_deref(), Some("b"));
        assert_eq!(v.file_len(), f.len);
        let crc = u32::from_le_bytes(unwrap!(file[f.len - 4..].try_into().ok()));
        assert_eq!(v.crc(), crc);
        // In place: the weights are the file's bytes, not a copy.
        let w = v.weights();
        assert!(file.as_ptr_range().contains(&w.as_ptr().cast::<u8>()));
        assert_eq!(w.len(), super::WEIGHTS);
        assert_eq!(&w[..D], &e(0));
        // The firmware's check of the MODEL region: the file, then erased flash.
        let mut region = File {
            bytes: [0xFF; 1024],
            len: 0,
        };
        region.bytes[..f.len].copy_from_slice(file);
        let ok = check_model(&region.bytes, D);
        assert!(ok.is_ok());
        assert_eq!(unwrap!(ok.ok()).crc(), crc);
        assert_eq!(
            check_model(&region.bytes, 784).err(),
            Some(ModelStatus::Invalid {
                code: ErrorCode::DimensionMismatch
            })
        );
        region.bytes.fill(0xFF);
        assert_eq!(check_model(&region.bytes, D).err(), Some(ModelStatus::Absent));
    }

    #[test]
    fn truncated_model_is_refused(f: &mut File) {
        let file = &f.bytes[..f.len];
        assert_eq!(ModelView::parse(&file[..f.len - 1]).err(), Some(Error::Truncated));
        assert_eq!(ModelView::parse(&file[..f.len - 4]).err(), Some(Error::Truncated));
        assert_eq!(ModelView::parse(&file[..10]).err(), Some(Error::Truncated));
        assert_eq!(ModelView::parse(&[]).err(), Some(Error::Truncated));
        // The region check reads the length from the prefix: a region shorter than that.
        assert_eq!(
            check_model(&file[..f.len - 1], D).err(),
            Some(ModelStatus::Invalid {
                code: ErrorCode::from(Error::Truncated)
            })
        );
    }

    #[test]
    fn corrupted_model_fails_its_crc(f: &mut File) {
        let len = f.len;
        // A flipped bit in a weight, in the header, and in the CRC itself.
        for at in [len - 40, HEADER_AT, len - 1] {
            f.bytes[at] ^= 0x10;
            assert_eq!(ModelView::parse(&f.bytes[..len]).err(), Some(Error::CrcMismatch), "byte {}", at);
            f.bytes[at] ^= 0x10;
        }
        assert!(ModelView::parse(&f.bytes[..len]).is_ok());
    }

    /// A byte inside the postcard header.
    const HEADER_AT: usize = ldl_core::format::HEADER_OFFSET + 3;

    #[test]
    fn wrong_version_or_magic_is_refused(f: &mut File) {
        let len = f.len;
        f.bytes[4..6].copy_from_slice(&(ldl_core::format::VERSION + 1).to_le_bytes());
        assert_eq!(
            ModelView::parse(&f.bytes[..len]).err(),
            Some(Error::UnsupportedVersion(ldl_core::format::VERSION + 1))
        );
        f.bytes[4..6].copy_from_slice(&3u16.to_le_bytes());
        f.bytes[0] = b'X';
        assert_eq!(ModelView::parse(&f.bytes[..len]).err(), Some(Error::BadMagic));
        f.bytes[0] = ldl_core::format::MAGIC[0];
        assert!(ModelView::parse(&f.bytes[..len]).is_ok());
    }

    #[test]
    fn classification_gives_known_answers(f: &mut File) {
        let v = unwrap!(ModelView::parse(&f.bytes[..f.len]).ok());
        let mut scratch = [0.0f32; 64];
        assert!(unwrap!(scratch_len(&v).ok()) <= scratch.len());
        let mut dist = [0.0f32; 2];
        // x = 3 e0 + 4 e1 + e2: ||x||^2 = 26; in "a" 25 of it, in "b" 1.
        let x = vec_of(&[(0, 3.0), (1, 4.0), (2, 1.0)]);
        let c = unwrap!(classify(&v, &x, v.rule(), &mut scratch, &mut dist).ok());
        assert_eq!(c.best, 0);
        assert_eq!(c.class, Some(0));
        assert_eq!(dist, [1.0 / 16.0, 25.0 / 16.0]);
        assert_eq!(c.novelty, 1.0 / 16.0);
        assert_eq!(c.agreement, 1.0);
        // x = e0 + 2 e2 + 2 e3: "b" holds 8 of 9.
        let x = vec_of(&[(0, 1.0), (2, 2.0), (3, 2.0)]);
        let c = unwrap!(classify(&v, &x, NONE, &mut scratch, &mut dist).ok());
        assert_eq!((c.best, c.class), (1, Some(1)));
        assert_eq!(dist, [8.0 / 16.0, 1.0 / 16.0]);
        // Errors: wrong length, non-finite input, no room for the distances.
        assert!(matches!(
            classify(&v, &x[..15], NONE, &mut scratch, &mut dist).err(),
            Some(Error::DimensionMismatch { .. })
        ));
        let mut bad = x;
        bad[5] = f32::NAN;
        assert_eq!(classify(&v, &bad, NONE, &mut scratch, &mut dist).err(), Some(Error::NonFinite));
        assert_eq!(
            classify(&v, &x, NONE, &mut scratch, &mut dist[..1]).err(),
            Some(Error::BufferTooSmall)
        );
    }

    #[test]
    fn threshold_makes_far_samples_unknown(f: &mut File) {
        build(f, Rule::best(Some(1.0)));
        let v = unwrap!(ModelView::parse(&f.bytes[..f.len]).ok());
        assert_eq!(v.threshold(), Some(1.0));
        let (mut scratch, mut dist) = ([0.0f32; 64], [0.0f32; 2]);
        // 10 e5 is in neither class: distance 100 / 16 to both, above the threshold.
        let c = unwrap!(classify(&v, &(vec_of(&[(5, 10.0)])), v.rule(), &mut scratch, &mut dist).ok());
        assert_eq!(c.class, None);
        assert_eq!(c.novelty, 6.25);
        // Close to "a": known.
        let c = unwrap!(classify(&v, &vec_of(&[(0, 2.0), (7, 1.0)]), v.rule(), &mut scratch, &mut dist).ok());
        assert_eq!(c.class, Some(0));
        assert_eq!(c.novelty, 1.0 / 16.0);
        // 2 e0 + e2 + e5 (norm 6): 4 of it in "a", 1 in "b": distances 2/16 and 5/16. Close
        // by distance, but "a" explains it not much better than "b": contrast 2 / 3.5.
        let x = vec_of(&[(0, 2.0), (2, 1.0), (5, 1.0)]);
        let c = unwrap!(classify(&v, &x, v.rule(), &mut scratch, &mut dist).ok());
        assert_eq!((c.class, c.score, c.novelty), (Some(0), Score::Best, 2.0 / 16.0));
        build(
            f,
            Rule {
                score: Score::Contrast,
                threshold: Some(0.5),
            },
        );
        let v = unwrap!(ModelView::parse(&f.bytes[..f.len]).ok());
        assert_eq!(
            v.rule(),
            Rule {
                score: Score::Contrast,
                threshold: Some(0.5)
            }
        );
        let c = unwrap!(classify(&v, &x, v.rule(), &mut scratch, &mut dist).ok());
        assert_eq!((c.best, c.class, c.score, c.novelty), (0, None, Score::Contrast, 2.0 / 3.5));
        let c = unwrap!(classify(&v, &vec_of(&[(0, 3.0), (1, 4.0), (2, 1.0)]), v.rule(), &mut scratch, &mut dist).ok());
        assert_eq!((c.class, c.novelty), (Some(0), 1.0 / 13.0));
        build(f, NONE);
    }

    #[test]
    fn enrolled_class_is_fitted_on_device_and_classified(f: &mut File) {
        let v = unwrap!(ModelView::parse(&f.bytes[..f.len]).ok());
        let target = unwrap!(v.target(0).ok());
        assert!(matches!(target, Target::Identity { dim: D }));
        let key = unwrap!(ModelKey::of(&v, v.crc()).ok());
        let opts = FitOptions {
            affine: false,
            ..FitOptions::default()
        };
        let mut flash = super::RamFlash([0xFF; 2048]);
        let mut store: Store<2> = unwrap!(Store::new(&flash, 1024).ok());
        let mut scratch = [0.0f32; 256];
        assert_eq!(store.load(&mut flash, &key, &mut scratch), Ok(Loaded::Empty));
        // Three samples spanning {e4, e5}.
        let mut samples = [0.0f32; 3 * D];
        samples[..D].copy_from_slice(&vec_of(&[(4, 2.0), (5, 1.0)]));
        samples[D..2 * D].copy_from_slice(&vec_of(&[(4, 1.0), (5, -1.0)]));
        samples[2 * D..].copy_from_slice(&vec_of(&[(4, 3.0), (5, 2.0)]));
        fn smp(data: &[f32]) -> Samples<'_> {
            Samples {
                data,
                n: data.len() / D,
                d: D,
                image: None,
                shift: 0,
            }
        }
        let mut fs = [0.0f32; fit_scratch_len(3, D, D, 0, 0, 4)];
        let shape = unwrap!(store.enroll(&mut flash, &key, "c", &target, &smp(&samples), &opts, 4, &mut fs).ok());
        assert_eq!(shape.rank, 2);
        assert_eq!((shape.runs, shape.live), (1, 2), "the class lives on e4 and e5 only");
        assert_eq!(store.len(), 1);
        assert_eq!(store.entries()[0].label.as_str(), "c");

        // Classified with the model's classes: the enrolled one is index 2.
        let mut scr = [0.0f32; 128];
        assert!(unwrap!(joined_scratch_len(&v, &store).ok()) <= scr.len());
        let mut dist = [0.0f32; 3];
        let x = vec_of(&[(4, 1.0), (5, 5.0)]);
        let c = unwrap!(classify_joined(&v, &store, &mut flash, &x, NONE, &mut scr, &mut dist).ok());
        assert_eq!(c.best, 2);
        // 8-bit directions: close to 0 against 26 / 16 for the others.
        assert!(dist[2] < 0.01, "{}", dist[2]);
        assert_eq!(dist[0], 26.0 / 16.0);
        assert_eq!(dist[1], 26.0 / 16.0);
        // Every training sample is in the class.
        for t in 0..3 {
            let c = unwrap!(classify_joined(&v, &store, &mut flash, &samples[t * D..(t + 1) * D], NONE, &mut scr, &mut dist).ok());
            assert_eq!(c.best, 2);
            assert!(dist[2] < 0.01);
        }
        // The model's classes still win their own samples.
        let c = unwrap!(classify_joined(&v, &store, &mut flash, &vec_of(&[(1, 1.0)]), NONE, &mut scr, &mut dist).ok());
        assert_eq!(c.best, 0);

        // Typed refusals: a duplicate label, too little scratch, no samples, no room.
        assert_eq!(
            store.enroll(&mut flash, &key, "c", &target, &smp(&samples), &opts, 4, &mut fs),
            Err(Error::DuplicateLabel)
        );
        let mut tiny = [0.0f32; 4];
        assert_eq!(
            store.enroll(&mut flash, &key, "d", &target, &smp(&samples), &opts, 4, &mut tiny),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(
            store.enroll(&mut flash, &key, "d", &target, &smp(&[]), &opts, 4, &mut fs),
            Err(Error::EmptyClass)
        );
        assert_eq!(
            unwrap!(store.enroll(&mut flash, &key, "d", &target, &smp(&e(9)), &opts, 4, &mut fs).ok()).rank,
            1
        );
        assert_eq!(
            store.enroll(&mut flash, &key, "e", &target, &smp(&e(10)), &opts, 4, &mut fs),
            Err(Error::CapacityFull)
        );
        assert_eq!(store.len(), 2);
        // Forgetting "c" leaves "d" as enrolled class 0, after a reboot too.
        assert_eq!(store.forget(&mut flash, &key, "c"), Ok(()));
        let mut again: Store<2> = unwrap!(Store::new(&flash, 1024).ok());
        assert!(matches!(
            again.load(&mut flash, &key, &mut scratch),
            Ok(Loaded::Classes { count: 1, .. })
        ));
        assert_eq!(again.entries()[0].label.as_str(), "d");
        let c = unwrap!(classify_joined(&v, &again, &mut flash, &vec_of(&[(9, 2.0)]), NONE, &mut scr, &mut dist).ok());
        assert_eq!(c.best, 2);
        assert!(dist[2] < 1e-6);
    }

    /// The compact classes' integer dot product on the target (the DSP kernel for aligned
    /// groups of 8, then the rest) equals the exact sum, extremes included.
    #[test]
    fn integer_dot_is_exact_on_the_target(_f: &mut File) {
        #[repr(C, align(4))]
        struct Bytes([u8; 312]);
        #[repr(C, align(4))]
        struct Halves([i16; 312]);
        let mut rng = Rng::new(11);
        let (mut a, mut b) = (Bytes([0; 312]), Halves([0; 312]));
        for (x, y) in a.0.iter_mut().zip(b.0.iter_mut()) {
            *x = (rng.next_u32() % 256) as u8;
            *y = (rng.next_u32() % 65536) as i32 as i16;
        }
        a.0[..8].fill(0x80); // -128
        b.0[..8].fill(i16::MIN);
        let exact = |a: &[u8], b: &[i16]| -> i64 { a.iter().zip(b).map(|(&x, &y)| x as i8 as i64 * y as i64).sum() };
        // Aligned starts (the kernel), and offsets that are not (the portable code).
        for off in [0usize, 2, 4, 1] {
            for n in [0usize, 1, 7, 8, 9, 16, 17, 256, 263, 300] {
                let (x, y) = (&a.0[off..off + n], &b.0[off..off + n]);
                assert_eq!(ldl_core::compact::dot_i8_i16(x, y), exact(x, y), "off {} n {}", off, n);
            }
        }
    }

    /// The hardware square root gives libm's bits.
    #[test]
    fn sqrt_is_libms(_f: &mut File) {
        let mut rng = Rng::new(12);
        for _ in 0..2000 {
            let x = rng.uniform(0.0, 1e6) * rng.next_f32();
            assert_eq!(ldl_core::linalg::sqrt(x).to_bits(), libm::sqrtf(x).to_bits(), "sqrt {}", x);
        }
        for x in [0.0f32, 1.0, 2.0, f32::MIN_POSITIVE, 1e-40, f32::MAX] {
            assert_eq!(ldl_core::linalg::sqrt(x).to_bits(), libm::sqrtf(x).to_bits());
        }
    }
}
