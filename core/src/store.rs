//! The record of a device's enrolled classes, as it is kept in flash (see
//! `core/PROTOCOL.md`, "Store record"): a 20-byte header and a body, all little-endian and
//! in 4-byte units, so that a NOR flash with 4-byte writes takes it as it is.
//!
//! Header: magic `LDLS`, `u16` version (1), `u16` reserved (0), `u32` sequence number, `u32`
//! body length in bytes, `u32` CRC-32 (the model file's, [`crate::format::checksum`]'s
//! algorithm) of header bytes `0..16` followed by the body.
//!
//! Body: `u32` d, `u32` K, `u32` R (the store's const generics), `u32` CRC of the model the
//! classes were fitted for, `u32` class count; then per class: `u32` label length, 16 label
//! bytes (zero padded), `u32` rank, `u32` flags (bit 0 affine, bit 1 linear target), `u32`
//! outputs, then the `f32`s of [`crate::subspace::Subspace`]: mean (d, if affine), basis
//! (rank x d), shrink (rank), and with a linear target proj (outputs x rank) and target mean
//! (outputs).
//!
//! Where the record goes (two slots, power-fail safe) is the firmware's business; this module
//! writes and reads the bytes through callbacks, without allocating.

use crate::enroll::Enrolled;
use crate::error::{Error, Result};
use crate::predictor::Predictor;
use crate::LABEL_LEN;

/// First bytes of a store record.
pub const MAGIC: [u8; 4] = *b"LDLS";
/// Record format version.
pub const VERSION: u16 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 20;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
static CRC32: crc::Crc<u32> = CRC;

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Sequence number: the record with the highest one is the newest.
    pub seq: u32,
    /// Body length in bytes (a multiple of 4).
    pub len: u32,
    /// CRC-32 of header bytes 0..16 and the body.
    pub crc: u32,
}

impl Header {
    /// The 20 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.seq.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..20].copy_from_slice(&self.crc.to_le_bytes());
        b
    }
    /// Reads a header; `None` unless magic, version and reserved are right and the length
    /// is a multiple of 4. (The CRC is checked against the body with [`Crc32`].)
    pub fn parse(b: &[u8; HEADER_LEN]) -> Option<Header> {
        let u32_at = |i: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(b.get(i..i + 4)?);
            Some(u32::from_le_bytes(a))
        };
        if b.get(..4)? != MAGIC || b.get(4..8)? != [VERSION as u8, 0, 0, 0] {
            return None;
        }
        let h = Header {
            seq: u32_at(8)?,
            len: u32_at(12)?,
            crc: u32_at(16)?,
        };
        h.len.is_multiple_of(4).then_some(h)
    }
    /// Whether `self` is newer than `other` (sequence numbers compared modulo 2^32).
    pub fn newer_than(&self, other: &Header) -> bool {
        (self.seq.wrapping_sub(other.seq) as i32) > 0
    }
    /// A CRC started with this header's first 16 bytes: feed it the body, compare with `crc`.
    pub fn crc_start(&self) -> Crc32 {
        let mut c = Crc32(CRC32.digest());
        let b = self.to_bytes();
        c.update(&b[..16]);
        c
    }
}

/// An incremental CRC-32 (CRC-32/ISO-HDLC).
pub struct Crc32(crc::Digest<'static, u32>);

impl Crc32 {
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The CRC of everything added.
    pub fn finish(self) -> u32 {
        self.0.finalize()
    }
}

const FLAG_AFFINE: u32 = 1;
const FLAG_LINEAR: u32 = 2;
const BODY_HEAD: usize = 5 * 4;
const CLASS_HEAD: usize = 4 + LABEL_LEN + 3 * 4;

/// Body length of the record of `e`, in bytes.
pub fn body_len<const D: usize, const K: usize, const R: usize, const C: usize>(e: &Enrolled<D, K, R, C>) -> Result<usize> {
    let mut n = BODY_HEAD;
    for i in 0..e.len() {
        let Predictor::Subspace(s) = e.predictor(i)? else {
            return Err(Error::Malformed);
        };
        let floats = s.mean().map_or(0, <[f32]>::len)
            + s.basis().len()
            + s.shrink().len()
            + s.proj().map_or(0, <[f32]>::len)
            + s.target_mean().map_or(0, <[f32]>::len);
        n += CLASS_HEAD + 4 * floats;
    }
    Ok(n)
}

/// Longest body a store of these sizes can need: every class full, with a linear target of
/// `K` outputs (or the identity) and an affine fit.
pub const fn max_body_len(d: usize, k: usize, r: usize, c: usize) -> usize {
    BODY_HEAD + c * (CLASS_HEAD + 4 * (d + r * d + r + k * r + k))
}

/// Writes the body of the record of `e` (fitted for the model with CRC `model_crc`) as a
/// sequence of byte pieces to `sink`, which also gets them in order for the CRC.
pub fn write_body<const D: usize, const K: usize, const R: usize, const C: usize>(
    e: &Enrolled<D, K, R, C>,
    model_crc: u32,
    sink: &mut impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let u = |v: u32, sink: &mut dyn FnMut(&[u8]) -> Result<()>| sink(&v.to_le_bytes());
    for v in [D as u32, K as u32, R as u32, model_crc, e.len() as u32] {
        u(v, sink)?;
    }
    for (i, l) in e.labels().iter().enumerate() {
        let Predictor::Subspace(s) = e.predictor(i)? else {
            return Err(Error::Malformed);
        };
        u(l.len() as u32, sink)?;
        let mut name = [0u8; LABEL_LEN];
        name.get_mut(..l.len()).ok_or(Error::LabelTooLong)?.copy_from_slice(l.as_bytes());
        sink(&name)?;
        let flags = if s.mean().is_some() { FLAG_AFFINE } else { 0 } | if s.proj().is_some() { FLAG_LINEAR } else { 0 };
        for v in [s.rank() as u32, flags, s.outputs() as u32] {
            u(v, sink)?;
        }
        let parts = [s.mean(), Some(s.basis()), Some(s.shrink()), s.proj(), s.target_mean()];
        for p in parts.into_iter().flatten() {
            for x in p {
                sink(&x.to_le_bytes())?;
            }
        }
    }
    Ok(())
}

/// Why a record was not loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LoadError {
    /// The record is for other sizes (d, K, R) than this store's.
    OtherSizes,
    /// The record was fitted for another model (its CRC differs).
    OtherModel,
    /// The body is inconsistent (or reading it failed).
    Corrupt(Error),
}

/// Reads a record body of `len` bytes through `read(offset, buf)` (offsets from the body
/// start) into `e`, which is cleared first and left empty on error. The caller has checked
/// the CRC already.
pub fn read_body<const D: usize, const K: usize, const R: usize, const C: usize>(
    e: &mut Enrolled<D, K, R, C>,
    model_crc: u32,
    len: usize,
    read: &mut impl FnMut(usize, &mut [u8]) -> Result<()>,
) -> core::result::Result<(), LoadError> {
    e.clear();
    let r = read_inner(e, model_crc, len, read);
    if r.is_err() {
        e.clear();
    }
    r
}

type Next<'n> = dyn FnMut(&mut [u8], &mut usize) -> core::result::Result<(), LoadError> + 'n;

fn read_inner<const D: usize, const K: usize, const R: usize, const C: usize>(
    e: &mut Enrolled<D, K, R, C>,
    model_crc: u32,
    len: usize,
    read: &mut impl FnMut(usize, &mut [u8]) -> Result<()>,
) -> core::result::Result<(), LoadError> {
    let mut at = 0usize;
    let corrupt = LoadError::Corrupt;
    let mut next = |buf: &mut [u8], at: &mut usize| -> core::result::Result<(), LoadError> {
        let end = at.checked_add(buf.len()).ok_or(corrupt(Error::Truncated))?;
        if end > len {
            return Err(corrupt(Error::Truncated));
        }
        read(*at, buf).map_err(corrupt)?;
        *at = end;
        Ok(())
    };
    let word = |at: &mut usize, next: &mut Next<'_>| {
        let mut b = [0u8; 4];
        next(&mut b, at).map(|_| u32::from_le_bytes(b))
    };
    let (d, k, r) = (word(&mut at, &mut next)?, word(&mut at, &mut next)?, word(&mut at, &mut next)?);
    if (d, k, r) != (D as u32, K as u32, R as u32) {
        return Err(LoadError::OtherSizes);
    }
    if word(&mut at, &mut next)? != model_crc {
        return Err(LoadError::OtherModel);
    }
    let n = word(&mut at, &mut next)? as usize;
    if n > C {
        return Err(corrupt(Error::CapacityFull));
    }
    for _ in 0..n {
        let l = word(&mut at, &mut next)? as usize;
        let mut name = [0u8; LABEL_LEN];
        next(&mut name, &mut at)?;
        let name = core::str::from_utf8(name.get(..l).ok_or(corrupt(Error::LabelTooLong))?).map_err(|_| corrupt(Error::Malformed))?;
        let rank = word(&mut at, &mut next)? as usize;
        let flags = word(&mut at, &mut next)?;
        let outputs = word(&mut at, &mut next)? as usize;
        let (affine, linear) = (flags & FLAG_AFFINE != 0, flags & FLAG_LINEAR != 0);
        if flags & !(FLAG_AFFINE | FLAG_LINEAR) != 0 {
            return Err(corrupt(Error::Malformed));
        }
        let mut fail = None;
        let mut fill = |buf: crate::subspace::SubspaceBuf<'_>| -> Result<()> {
            let mean: &mut [f32] = if affine { buf.mean } else { &mut [] };
            for part in [mean, buf.basis, buf.shrink, buf.proj, buf.target_mean] {
                for x in part.iter_mut() {
                    let mut b = [0u8; 4];
                    if let Err(err) = next(&mut b, &mut at) {
                        fail = Some(err);
                        return Err(Error::Truncated);
                    }
                    *x = f32::from_le_bytes(b);
                    if !x.is_finite() {
                        return Err(Error::NonFinite);
                    }
                }
            }
            Ok(())
        };
        let res = e.insert_with(name, rank, affine, linear, outputs, &mut fill);
        if let Some(f) = fail {
            return Err(f);
        }
        res.map_err(corrupt)?;
    }
    if at != len {
        return Err(corrupt(Error::Malformed));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{classify, scratch_len};
    use crate::linear::Target;
    use crate::methods::make_target;
    use crate::rng::Rng;
    use crate::subspace::{fit_scratch_len, FitOptions};
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    const D: usize = 12;

    fn fill<const K: usize>(e: &mut Enrolled<D, K, 4, 3>, target: &Target<Vec<f32>>, affine: bool) {
        let mut rng = Rng::new(5);
        let opts = FitOptions {
            affine,
            ..Default::default()
        };
        for name in ["a", "bb", "sixteen-chars-xx"] {
            let mut s: Vec<f32> = (0..3 * D).map(|_| rng.normal()).collect();
            let mut scratch = vec![0.0; fit_scratch_len(3, D, target.outputs())];
            e.enroll(name, target, &mut s, 3, &opts, &mut scratch).unwrap();
        }
    }

    fn record<const K: usize>(e: &Enrolled<D, K, 4, 3>, crc: u32) -> Vec<u8> {
        let mut out = Vec::new();
        write_body(e, crc, &mut |b: &[u8]| {
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(out.len(), body_len(e).unwrap());
        assert!(out.len() <= max_body_len(D, K, 4, 3));
        out
    }

    fn load<const K: usize>(body: &[u8], crc: u32) -> (Enrolled<D, K, 4, 3>, core::result::Result<(), LoadError>) {
        let mut e = Enrolled::new();
        let r = read_body(&mut e, crc, body.len(), &mut |at, buf: &mut [u8]| {
            buf.copy_from_slice(body.get(at..at + buf.len()).ok_or(Error::Truncated)?);
            Ok(())
        });
        (e, r)
    }

    #[test]
    fn records_round_trip_bit_for_bit() {
        for (linear, affine) in [(true, true), (true, false), (false, true), (false, false)] {
            let target = if linear {
                make_target(D, 5, true, crate::linear::Init::XavierNormal, 1).unwrap()
            } else {
                Target::Identity { dim: D }
            };
            let mut e: Enrolled<D, 5, 4, 3> = Enrolled::new();
            fill(&mut e, &target, affine);
            let body = record(&e, 77);
            let (back, r) = load::<5>(&body, 77);
            r.unwrap();
            assert_eq!(back.labels(), e.labels());
            for i in 0..3 {
                assert_eq!(back.predictor(i).unwrap(), e.predictor(i).unwrap());
            }
            // Same decisions.
            let x: Vec<f32> = (0..D).map(|i| i as f32 * 0.1).collect();
            let mut s = vec![0.0; 64];
            let (mut d1, mut d2) = ([0.0; 3], [0.0; 3]);
            struct Only<'a, const K: usize>(&'a Enrolled<D, K, 4, 3>, &'a Target<Vec<f32>>);
            impl<const K: usize> crate::classify::Classes for Only<'_, K> {
                fn members(&self) -> usize {
                    1
                }
                fn len(&self) -> usize {
                    self.0.len()
                }
                fn target(&self, _: usize) -> Result<Target<&[f32]>> {
                    Ok(self.1.view())
                }
                fn predictor(&self, _: usize, c: usize) -> Result<Predictor<&[f32]>> {
                    self.0.predictor(c)
                }
            }
            let n = scratch_len(&Only(&e, &target)).unwrap();
            assert!(n <= 64);
            let a = classify(&Only(&e, &target), &x, None, &mut s, &mut d1).unwrap();
            let b = classify(&Only(&back, &target), &x, None, &mut s, &mut d2).unwrap();
            assert_eq!(a, b);
            assert_eq!(d1.map(f32::to_bits), d2.map(f32::to_bits));

            // Refusals leave the store empty.
            assert_eq!(load::<5>(&body, 78).1, Err(LoadError::OtherModel));
            assert_eq!(load::<6>(&body, 77).1, Err(LoadError::OtherSizes));
            for cut in [0, 4, 20, 24, body.len() / 2, body.len() - 4] {
                let (e2, r) = load::<5>(&body[..cut], 77);
                assert!(r.is_err(), "cut {cut}");
                assert!(e2.is_empty());
            }
            let mut nan = body.clone();
            let last = nan.len() - 4;
            nan[last..].copy_from_slice(&f32::NAN.to_le_bytes());
            assert_eq!(load::<5>(&nan, 77).1, Err(LoadError::Corrupt(Error::NonFinite)));
            let mut longer = body.clone();
            longer.extend_from_slice(&[0; 4]);
            assert_eq!(load::<5>(&longer, 77).1, Err(LoadError::Corrupt(Error::Malformed)));
        }
    }

    #[test]
    fn header_round_trip_and_order() {
        let h = Header { seq: 7, len: 40, crc: 9 };
        assert_eq!(Header::parse(&h.to_bytes()), Some(h));
        let mut b = h.to_bytes();
        b[0] = b'X';
        assert_eq!(Header::parse(&b), None);
        assert_eq!(Header::parse(&[0xFF; HEADER_LEN]), None);
        let mut b = h.to_bytes();
        b[12] = 41;
        assert_eq!(Header::parse(&b), None);
        assert!(Header { seq: 8, ..h }.newer_than(&h));
        assert!(!h.newer_than(&h));
        assert!(Header { seq: 0, ..h }.newer_than(&Header { seq: u32::MAX, ..h }));
        let mut c = h.crc_start();
        c.update(b"body");
        let mut all = h.to_bytes()[..16].to_vec();
        all.extend_from_slice(b"body");
        assert_eq!(c.finish(), crate::format::checksum(&all));
    }
}
