//! Classes enrolled on a device, kept in flash and read from there: the store record, the
//! two A/B slots that make a save power-fail safe, and classification over a model's classes
//! and the stored ones.
//!
//! Nothing of a stored class is copied into RAM but its label, its shape and where it lies
//! ([`Entry`], a few dozen bytes): a distance reads the class's head and then one direction
//! at a time through [`ReadNorFlash`] ([`Store::distance`]), which is how external SPI/QSPI
//! flash is read and works as well for flash that is memory-mapped. An enrollment writes the
//! new record while the class is being fitted: the earlier classes copied from the current
//! slot, then the new class one direction at a time, as [`crate::fit::fit`] hands it out.
//!
//! # Record (version 2), in the slot not currently used
//!
//! All little-endian, in 4-byte units (a NOR flash with 4-byte writes takes it as it is):
//!
//! * header, 20 bytes: magic `LDLS`, `u16` version 2, `u16` 0, `u32` sequence number, `u32`
//!   body length in bytes, `u32` CRC-32 ([`crate::format::checksum`]'s) of the body followed
//!   by header bytes `0..16`. Written last: until it is complete the slot is invalid.
//! * body: `u32` d, `u32` k, `u32` flags (bit 0: linear target), `u32` CRC of the model the
//!   classes were fitted for, `u32` class count; then per class `u32` label length, 16 label
//!   bytes (zero padded), `u32` rank, `u32` runs, `u32` live, `u32` flags (bit 0 affine, bit 1
//!   linear), and the class's words ([`crate::compact`]'s layout).
//!
//! A save erases the other slot sector by sector as the writing reaches it, writes the body
//! and then the header; the slot with the highest sequence number whose CRC matches is the
//! current one at boot. A power cut at any step leaves the previous record loadable.

use crate::augment::Alignment;
use crate::classify::{closest, decide, or_nan, Classes, Classification};
use crate::compact::{self, Directions, Shape};
use crate::error::{check_len, Error, Result};
use crate::fit::{self, Samples};
use crate::linear::Target;
use crate::model::{label, Label};
use crate::novelty::Rule;
use crate::subspace::FitOptions;
use crate::LABEL_LEN;
use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};

/// First bytes of a store record.
pub const MAGIC: [u8; 4] = *b"LDLS";
/// Record format version.
pub const VERSION: u16 = 2;
/// Bytes of the record header.
pub const HEADER_LEN: usize = 20;
/// Bytes of the body before the classes.
pub const BODY_HEAD: usize = 5 * 4;
/// Bytes of a class before its words.
pub const CLASS_HEAD: usize = 4 + LABEL_LEN + 4 * 4;
/// Bytes buffered per flash write or copy.
const CHUNK: usize = 256;

static CRC32: crc::Crc<u32> = crate::format::CRC;

/// Bytes of a class of this shape in a record.
pub const fn class_len(shape: &Shape) -> usize {
    shape.words().saturating_mul(4).saturating_add(CLASS_HEAD)
}

/// Bytes of the largest class of `rank` directions over `d` inputs and `k` outputs
/// ([`Shape::max_words`]: every input live, and a mean).
pub const fn max_class_len(d: usize, k: usize, rank: usize, linear: bool) -> usize {
    Shape::max_words(d, k, rank, linear).saturating_mul(4).saturating_add(CLASS_HEAD)
}

/// Bytes of a class of the device mode's kind (identity target, no mean) at its largest.
pub const fn max_plain_class_len(d: usize, rank: usize) -> usize {
    worst_class_len(d, d, rank, false, false)
}

/// Bytes of the largest class of `rank` directions over `d` inputs for a target of `k`
/// outputs (linear or not), with or without a mean: every input live, in one run.
pub const fn worst_class_len(d: usize, k: usize, rank: usize, affine: bool, linear: bool) -> usize {
    let s = Shape {
        inputs: d,
        outputs: k,
        rank,
        runs: 1,
        live: d,
        affine,
        linear,
    };
    class_len(&s)
}

/// Bytes of one slot that holds `classes` classes of at most `class_len` bytes each, in
/// whole erase sectors of `erase` bytes.
pub const fn slot_len(classes: usize, class_len: usize, erase: usize) -> usize {
    let bytes = classes.saturating_mul(class_len).saturating_add(HEADER_LEN + BODY_HEAD);
    match bytes.checked_div(erase) {
        Some(_) => bytes.div_ceil(erase).saturating_mul(erase),
        None => usize::MAX,
    }
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Sequence number: the valid record with the highest one is the newest.
    pub seq: u32,
    /// Body length in bytes (a multiple of 4).
    pub len: u32,
    /// CRC-32 of the body and header bytes `0..16`.
    pub crc: u32,
}

impl Header {
    /// The 20 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let words = [u32::from_le_bytes(MAGIC), VERSION as u32, self.seq, self.len, self.crc];
        for (dst, v) in b.chunks_exact_mut(4).zip(words) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        b
    }
    /// Reads a header: `None` unless magic, version and reserved are right and the length
    /// is a multiple of 4 (the CRC is checked against the body by the caller).
    pub fn parse(b: &[u8; HEADER_LEN]) -> Option<Header> {
        let w = |i: usize| word(b, i.checked_mul(4)?);
        if w(0)? != u32::from_le_bytes(MAGIC) || w(1)? != VERSION as u32 {
            return None;
        }
        let h = Header {
            seq: w(2)?,
            len: w(3)?,
            crc: w(4)?,
        };
        h.len.is_multiple_of(4).then_some(h)
    }
    /// Whether `self` is newer than `other` (sequence numbers compared modulo 2^32).
    pub fn newer_than(&self, other: &Header) -> bool {
        (self.seq.wrapping_sub(other.seq) as i32) > 0
    }
}

/// `base + offset` as a flash address; `Malformed` past 4 GiB (a valid record's offsets
/// never get there: `open` keeps both slots below it).
fn addr(base: u32, offset: usize) -> Result<u32> {
    u32::try_from(offset).ok().and_then(|o| base.checked_add(o)).ok_or(Error::Malformed)
}

fn word(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_le_bytes(a))
}

/// A stored class: what a device keeps of it in RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Entry {
    /// Its label.
    pub label: Label,
    /// Its sizes.
    pub shape: Shape,
    /// Where its words start, in bytes from the start of its slot.
    pub at: u32,
}

/// What [`Store::load`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Loaded {
    /// No valid record: the store starts empty.
    Empty,
    /// Classes loaded from slot `slot`, sequence `seq`.
    Classes {
        /// The slot (0 or 1).
        slot: u8,
        /// Its sequence number.
        seq: u32,
        /// Classes loaded.
        count: usize,
    },
    /// The newest valid record was not loaded; the store starts empty and the next save
    /// replaces it.
    Refused(LoadError),
}

/// Why a valid record was not loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LoadError {
    /// The record is for other dimensions (d, k, target kind) than the model's.
    OtherSizes,
    /// The record was fitted for another model (its CRC differs).
    OtherModel,
    /// More classes than this store holds.
    TooMany,
    /// The body is inconsistent, or a value is not finite.
    Corrupt(Error),
}

/// The model the stored classes belong to: what a record must match to be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ModelKey {
    /// Inputs `d`.
    pub inputs: usize,
    /// Target outputs `k`.
    pub outputs: usize,
    /// The target is linear.
    pub linear: bool,
    /// The model file's CRC.
    pub crc: u32,
}

impl ModelKey {
    /// The key of a (single-member) model.
    pub fn of(model: &impl Classes, crc: u32) -> Result<Self> {
        let t = model.target(0)?;
        Ok(ModelKey {
            inputs: t.inputs(),
            outputs: t.outputs(),
            linear: matches!(t, Target::Linear(_)),
            crc,
        })
    }
}

/// Up to `C` enrolled classes in two A/B slots of a NorFlash (offsets 0 and `slot_size`).
#[derive(Debug, Clone)]
pub struct Store<const C: usize> {
    slot_size: u32,
    current: Option<(u8, u32)>,
    body_len: u32,
    entries: heapless::Vec<Entry, C>,
}

fn flash_err<E>(_: E) -> Error {
    Error::Storage
}

impl<const C: usize> Default for Store<C> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<const C: usize> Store<C> {
    /// A store with no slots yet ([`Store::open`]); `const`, so a device can keep it in a
    /// static rather than on its stack.
    pub const fn empty() -> Self {
        Store {
            slot_size: 0,
            current: None,
            body_len: 0,
            entries: heapless::Vec::new(),
        }
    }

    /// Two slots of `slot_size` bytes (a multiple of the erase size) at offsets 0 and
    /// `slot_size` of `flash`; empty until [`Store::load`].
    pub fn new<F: NorFlash>(flash: &F, slot_size: u32) -> Result<Self> {
        let mut s = Self::empty();
        s.open(flash, slot_size)?;
        Ok(s)
    }

    /// Uses two slots of `slot_size` bytes of `flash` (see [`Store::new`]); forgets any
    /// index. `InvalidParameter` when the geometry does not allow it.
    pub fn open<F: NorFlash>(&mut self, flash: &F, slot_size: u32) -> Result<()> {
        let s = slot_size as usize;
        let ok = s > HEADER_LEN + BODY_HEAD
            && s.is_multiple_of(F::ERASE_SIZE)
            && s.checked_mul(2).is_some_and(|t| t <= flash.capacity())
            && slot_size.checked_mul(2).is_some()
            && CHUNK.is_multiple_of(F::WRITE_SIZE)
            && 4usize.is_multiple_of(F::READ_SIZE)
            && HEADER_LEN.is_multiple_of(F::WRITE_SIZE);
        self.slot_size = 0;
        self.current = None;
        self.unload();
        if !ok {
            return Err(Error::InvalidParameter);
        }
        self.slot_size = slot_size;
        Ok(())
    }

    /// The stored classes, in enrollment order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    /// Number of stored classes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// Whether no class is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Index of a label.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.label.as_str() == name)
    }
    /// Bytes a record may take.
    pub fn capacity(&self) -> usize {
        (self.slot_size as usize).saturating_sub(HEADER_LEN)
    }
    /// Bytes of the current record's body.
    pub fn used(&self) -> usize {
        self.body_len as usize
    }

    fn base(&self, slot: u8) -> u32 {
        // `open` keeps both slots below 4 GiB, so this never saturates for slot 0 or 1.
        self.slot_size.saturating_mul(slot as u32)
    }

    /// The valid header of a slot, if any (magic, version, length, CRC).
    fn valid<F: ReadNorFlash>(&self, flash: &mut F, slot: u8) -> Result<Option<Header>> {
        let base = self.base(slot);
        let mut hb = [0u8; HEADER_LEN];
        flash.read(base, &mut hb).map_err(flash_err)?;
        let Some(h) = Header::parse(&hb) else {
            return Ok(None);
        };
        if h.len as usize > self.capacity() || (h.len as usize) < BODY_HEAD {
            return Ok(None);
        }
        let mut crc = CRC32.digest();
        let mut buf = [0u8; CHUNK];
        let mut at = 0usize;
        while at < h.len as usize {
            let n = CHUNK.min((h.len as usize).saturating_sub(at));
            let b = buf.get_mut(..n).ok_or(Error::BufferTooSmall)?;
            flash.read(addr(base, HEADER_LEN.saturating_add(at))?, b).map_err(flash_err)?;
            crc.update(b);
            at = at.saturating_add(n);
        }
        crc.update(hb.get(..16).ok_or(Error::BufferTooSmall)?);
        Ok((crc.finalize() == h.crc).then_some(h))
    }

    /// Finds the newest valid record and loads its index, for the model `key`; a newest
    /// record that cannot be loaded gives way to the other slot's. `scratch` (checks of the
    /// classes' values) needs [`Store::load_scratch_len`]`(d, k)` f32s.
    pub fn load<F: ReadNorFlash>(&mut self, flash: &mut F, key: &ModelKey, scratch: &mut [f32]) -> Result<Loaded> {
        self.entries.clear();
        self.body_len = 0;
        let a = self.valid(flash, 0)?;
        let b = self.valid(flash, 1)?;
        let order: [Option<(u8, Header)>; 2] = match (a, b) {
            (Some(a), Some(b)) if b.newer_than(&a) => [Some((1, b)), Some((0, a))],
            (Some(a), Some(b)) => [Some((0, a)), Some((1, b))],
            (Some(a), None) => [Some((0, a)), None],
            (None, Some(b)) => [Some((1, b)), None],
            (None, None) => [None, None],
        };
        // The newest valid slot is current whatever happens: the next save goes to the other.
        self.current = order[0].map(|(s, h)| (s, h.seq));
        let mut refused = None;
        for (slot, h) in order.into_iter().flatten() {
            match self.index(flash, slot, h.len, key, Some(&mut *scratch))? {
                Ok(()) => {
                    return Ok(Loaded::Classes {
                        slot,
                        seq: h.seq,
                        count: self.entries.len(),
                    })
                }
                Err(e) => {
                    self.entries.clear();
                    self.body_len = 0;
                    refused.get_or_insert(e);
                }
            }
        }
        Ok(refused.map_or(Loaded::Empty, Loaded::Refused))
    }

    /// Scratch (f32s) that [`Store::load`] needs for classes over `d` inputs and `k`
    /// outputs: one class head and one direction.
    pub const fn load_scratch_len(d: usize, k: usize) -> usize {
        let head = compact::max_runs(d).saturating_add(d).saturating_add(k);
        let direction = d.saturating_add(1).saturating_add(k).saturating_add(d.div_ceil(4));
        head.saturating_add(direction)
    }

    /// Reads the body of the record in `slot` into the index, checking it, and with
    /// `scratch` every class's runs and values too.
    fn index<F: ReadNorFlash>(
        &mut self,
        flash: &mut F,
        slot: u8,
        len: u32,
        key: &ModelKey,
        mut scratch: Option<&mut [f32]>,
    ) -> Result<core::result::Result<(), LoadError>> {
        self.entries.clear();
        let base = addr(self.base(slot), HEADER_LEN)?;
        let len = len as usize;
        let corrupt = |e| Ok(Err(LoadError::Corrupt(e)));
        let mut head = [0u8; BODY_HEAD];
        flash.read(base, &mut head).map_err(flash_err)?;
        let w = |i: usize| i.checked_mul(4).and_then(|a| word(&head, a)).unwrap_or(u32::MAX);
        if (w(0) as usize, w(1) as usize, w(2) & 1 == 1) != (key.inputs, key.outputs, key.linear) || w(2) > 1 {
            return Ok(Err(LoadError::OtherSizes));
        }
        if w(3) != key.crc {
            return Ok(Err(LoadError::OtherModel));
        }
        let count = w(4) as usize;
        if count > C {
            return Ok(Err(LoadError::TooMany));
        }
        let mut at = BODY_HEAD;
        for _ in 0..count {
            let mut ch = [0u8; CLASS_HEAD];
            if at.saturating_add(CLASS_HEAD) > len {
                return corrupt(Error::Truncated);
            }
            flash.read(addr(base, at)?, &mut ch).map_err(flash_err)?;
            let cw = |i: usize| {
                let at = i.checked_mul(4).and_then(|o| o.checked_add(4 + LABEL_LEN));
                at.and_then(|a| word(&ch, a)).unwrap_or(u32::MAX) as usize
            };
            let l = word(&ch, 0).unwrap_or(u32::MAX) as usize;
            let Some(name) = ch
                .get(4..l.min(LABEL_LEN + 1).saturating_add(4))
                .and_then(|b| core::str::from_utf8(b).ok())
            else {
                return corrupt(Error::LabelTooLong);
            };
            let Ok(lab) = label(name) else {
                return corrupt(Error::LabelTooLong);
            };
            if self.index_of(name).is_some() {
                return corrupt(Error::DuplicateLabel);
            }
            let flags = cw(3);
            let shape = Shape {
                inputs: key.inputs,
                outputs: key.outputs,
                rank: cw(0),
                runs: cw(1),
                live: cw(2),
                affine: flags & 1 == 1,
                linear: flags & 2 == 2,
            };
            if flags > 3 || shape.linear != key.linear {
                return corrupt(Error::Malformed);
            }
            let words = match shape.checked_words() {
                Ok(n) => n,
                Err(e) => return corrupt(e),
            };
            let start = at.saturating_add(CLASS_HEAD);
            let end = match words.checked_mul(4).and_then(|b| b.checked_add(start)) {
                Some(e) if e <= len => e,
                _ => return corrupt(Error::Truncated),
            };
            let Ok(at_in_slot) = u32::try_from(HEADER_LEN.saturating_add(start)) else {
                return corrupt(Error::Truncated);
            };
            let entry = Entry {
                label: lab,
                shape,
                at: at_in_slot,
            };
            if let Some(sc) = scratch.as_deref_mut() {
                if let Err(e) = self.check_class(flash, slot, &entry, sc) {
                    return if e == Error::Storage { Err(e) } else { corrupt(e) };
                }
            }
            if self.entries.push(entry).is_err() {
                return Ok(Err(LoadError::TooMany));
            }
            at = end;
        }
        if at != len {
            return corrupt(Error::Malformed);
        }
        self.body_len = len as u32;
        Ok(Ok(()))
    }

    /// Reads a class's head and directions back: runs well formed, values finite.
    fn check_class<F: ReadNorFlash>(&self, flash: &mut F, slot: u8, e: &Entry, scratch: &mut [f32]) -> Result<()> {
        let (head, buf) = scratch.split_at_mut_checked(e.shape.head_words()).ok_or(Error::BufferTooSmall)?;
        let base = self.base(slot).checked_add(e.at).ok_or(Error::Malformed)?;
        flash.read(base, bytemuck::cast_slice_mut(head)).map_err(flash_err)?;
        compact::check_runs(head.get(..e.shape.runs).ok_or(Error::Malformed)?, e.shape.inputs, e.shape.live)?;
        let mut dirs = FlashDirections {
            flash,
            at: addr(base, e.shape.head_words().saturating_mul(4))?,
            stride: e.shape.direction_words(),
        };
        compact::check_finite_parts(&e.shape, head, &mut dirs, buf)
    }

    fn slot_of_current(&self) -> u8 {
        self.current.map_or(1, |(s, _)| s)
    }

    /// Scratch (f32s) that [`Store::distance`] needs for class `i`.
    pub fn distance_scratch_len(&self, i: usize) -> usize {
        self.entries
            .get(i)
            .map_or(0, |e| e.shape.head_words().saturating_add(compact::distance_scratch_len(&e.shape)))
    }

    /// Class `i`'s distance for `x` (`qx = Q(x)`, read only for a linear target), reading
    /// the class from flash in pieces into `scratch`.
    pub fn distance<F: ReadNorFlash>(&self, flash: &mut F, i: usize, x: &[f32], qx: &[f32], scratch: &mut [f32]) -> Result<f32> {
        let e = self.entries.get(i).ok_or(Error::UnknownClass)?;
        let (head, rest) = scratch.split_at_mut_checked(e.shape.head_words()).ok_or(Error::BufferTooSmall)?;
        let base = self.base(self.slot_of_current()).checked_add(e.at).ok_or(Error::Malformed)?;
        flash.read(base, bytemuck::cast_slice_mut(head)).map_err(flash_err)?;
        let mut dirs = FlashDirections {
            flash,
            at: addr(base, e.shape.head_words().saturating_mul(4))?,
            stride: e.shape.direction_words(),
        };
        compact::distance(&e.shape, head, &mut dirs, x, qx, rest)
    }

    /// Enrolls a class: fits it from `samples` against `target` (at most `cap` directions;
    /// [`crate::fit::fit`]) while writing the new record, with every stored class, to the
    /// other slot, which becomes current once complete. Nothing changes on error:
    /// `LabelTooLong`, `DuplicateLabel`, `CapacityFull` (`C` classes, or the largest class
    /// this enrollment could give does not fit the slot), the fit's errors, `Storage`.
    /// The caller checks the label against the model's own. `scratch` needs
    /// [`crate::fit::fit_scratch_len`] f32s. Returns the class's shape.
    #[allow(clippy::too_many_arguments)]
    pub fn enroll<F: NorFlash, T: AsRef<[f32]>>(
        &mut self,
        flash: &mut F,
        key: &ModelKey,
        name: &str,
        target: &Target<T>,
        samples: &Samples<'_>,
        opts: &FitOptions,
        cap: usize,
        scratch: &mut [f32],
    ) -> Result<Shape> {
        let lab = label(name)?;
        if self.index_of(name).is_some() {
            return Err(Error::DuplicateLabel);
        }
        check_len(key.inputs, target.inputs())?;
        check_len(key.outputs, target.outputs())?;
        if matches!(target, Target::Linear(_)) != key.linear {
            return Err(Error::InvalidParameter);
        }
        let rank = if opts.max_rank == 0 { cap } else { cap.min(opts.max_rank as usize) };
        self.room_for(key, rank, opts.affine)?;
        let mut w = self.begin(flash, key, self.entries.len().saturating_add(1))?;
        self.copy_classes(&mut w, None)?;
        let mut sink = ClassSink { w: &mut w, label: &lab };
        let shape = fit::fit(target, samples, opts, cap, scratch, &mut sink)?;
        self.finish(w, key)?;
        Ok(shape)
    }

    /// `Ok` when one more class of at most `rank` directions (with a mean or not) fits: fewer
    /// than `C` classes, and room in the slot for such a class at its largest. Else
    /// `CapacityFull`.
    pub fn room_for(&self, key: &ModelKey, rank: usize, affine: bool) -> Result<()> {
        if self.entries.is_full() {
            return Err(Error::CapacityFull);
        }
        let worst = worst_class_len(key.inputs, key.outputs, rank.min(key.inputs), affine, key.linear);
        if self.used().max(BODY_HEAD).saturating_add(worst) > self.capacity() {
            return Err(Error::CapacityFull);
        }
        Ok(())
    }

    /// Removes a class: the new record, without it, goes to the other slot. Nothing changes
    /// on error (`UnknownClass`, `Storage`).
    pub fn forget<F: NorFlash>(&mut self, flash: &mut F, key: &ModelKey, name: &str) -> Result<()> {
        let i = self.index_of(name).ok_or(Error::UnknownClass)?;
        let mut w = self.begin(flash, key, self.entries.len().saturating_sub(1))?;
        self.copy_classes(&mut w, Some(i))?;
        self.finish(w, key)
    }

    /// Forgets the index of the loaded classes without touching the flash: the store reads as
    /// empty, and the next save replaces the record (as for a record [`Store::load`]
    /// refuses), e.g. when the device cannot classify with the stored classes.
    pub fn unload(&mut self) {
        self.entries.clear();
        self.body_len = 0;
    }

    /// Removes every class (an empty record becomes current).
    pub fn clear<F: NorFlash>(&mut self, flash: &mut F, key: &ModelKey) -> Result<()> {
        let w = self.begin(flash, key, 0)?;
        self.finish(w, key)
    }

    /// Starts a record of `count` classes in the slot that is not current.
    fn begin<'f, F: NorFlash>(&self, flash: &'f mut F, key: &ModelKey, count: usize) -> Result<Writer<'f, F>> {
        let slot = if self.slot_of_current() == 0 { 1 } else { 0 };
        let base = self.base(slot);
        let mut w = Writer {
            flash,
            slot,
            base,
            end: base.checked_add(self.slot_size).ok_or(Error::InvalidParameter)?,
            at: addr(base, HEADER_LEN)?,
            erased: base,
            buf: [0; CHUNK],
            n: 0,
            crc: CRC32.digest(),
            len: 0,
        };
        for v in [key.inputs as u32, key.outputs as u32, key.linear as u32, key.crc, count as u32] {
            w.put(&v.to_le_bytes())?;
        }
        Ok(w)
    }

    /// Copies every stored class but `skip` from the current slot into `w`.
    fn copy_classes<F: NorFlash>(&self, w: &mut Writer<'_, F>, skip: Option<usize>) -> Result<()> {
        let base = self.base(self.slot_of_current());
        let mut buf = [0u8; CHUNK];
        for (i, e) in self.entries.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            let mut at = e.at.checked_sub(CLASS_HEAD as u32).ok_or(Error::Malformed)?;
            let end = addr(e.at, e.shape.words().saturating_mul(4))?;
            while at < end {
                let n = CHUNK.min(end.saturating_sub(at) as usize);
                let b = buf.get_mut(..n).ok_or(Error::BufferTooSmall)?;
                w.flash.read(base.checked_add(at).ok_or(Error::Malformed)?, b).map_err(flash_err)?;
                w.put(b)?;
                at = addr(at, n)?;
            }
        }
        Ok(())
    }

    /// Writes the header of the record `w` holds and makes it current; reads its index back.
    fn finish<F: NorFlash>(&mut self, mut w: Writer<'_, F>, key: &ModelKey) -> Result<()> {
        w.flush()?;
        let seq = self.current.map_or(1, |(_, s)| s.wrapping_add(1));
        let h = Header { seq, len: w.len, crc: 0 };
        let mut crc = w.crc.clone();
        crc.update(h.to_bytes().get(..16).ok_or(Error::BufferTooSmall)?);
        let h = Header { crc: crc.finalize(), ..h };
        w.ensure_erased(w.base, HEADER_LEN as u32)?;
        w.flash.write(w.base, &h.to_bytes()).map_err(flash_err)?;
        let slot = w.slot;
        self.current = Some((slot, seq));
        // The index of what was just written (no value checks: it was just fitted). The new
        // record is current in flash now; if it cannot be read back the store reads as
        // empty until the next boot reads it again.
        match self.index(w.flash, slot, h.len, key, None) {
            Ok(Ok(())) => Ok(()),
            r => {
                self.unload();
                Err(match r {
                    Err(e) | Ok(Err(LoadError::Corrupt(e))) => e,
                    Ok(_) => Error::Malformed,
                })
            }
        }
    }
}

/// Directions read from flash one at a time.
struct FlashDirections<'f, F> {
    flash: &'f mut F,
    at: u32,
    stride: usize,
}

impl<F: ReadNorFlash> Directions for FlashDirections<'_, F> {
    fn direction<'s>(&'s mut self, i: usize, buf: &'s mut [f32]) -> Result<&'s [f32]> {
        let dst = buf.get_mut(..self.stride).ok_or(Error::BufferTooSmall)?;
        let off = i
            .checked_mul(self.stride.checked_mul(4).ok_or(Error::Malformed)?)
            .and_then(|o| u32::try_from(o).ok())
            .and_then(|o| self.at.checked_add(o))
            .ok_or(Error::Malformed)?;
        self.flash.read(off, bytemuck::cast_slice_mut(dst)).map_err(flash_err)?;
        Ok(dst)
    }
}

/// Writes a record body in order, in aligned chunks, erasing each sector as it is reached,
/// and keeps the body's CRC and length.
struct Writer<'f, F> {
    flash: &'f mut F,
    slot: u8,
    base: u32,
    end: u32,
    at: u32,
    erased: u32,
    buf: [u8; CHUNK],
    n: usize,
    crc: crc::Digest<'static, u32>,
    len: u32,
}

impl<F: NorFlash> Writer<'_, F> {
    fn put(&mut self, mut bytes: &[u8]) -> Result<()> {
        self.crc.update(bytes);
        self.len = self.len.checked_add(bytes.len() as u32).ok_or(Error::CapacityFull)?;
        while !bytes.is_empty() {
            // self.n < CHUNK here (a full buffer is flushed below), so n + k <= CHUNK.
            let k = CHUNK.saturating_sub(self.n).min(bytes.len());
            let (head, tail) = bytes.split_at_checked(k).ok_or(Error::BufferTooSmall)?;
            let filled = self.n.saturating_add(k);
            self.buf.get_mut(self.n..filled).ok_or(Error::BufferTooSmall)?.copy_from_slice(head);
            self.n = filled;
            bytes = tail;
            if self.n == CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Erases every sector up to the one holding byte `at + len - 1` not erased yet.
    fn ensure_erased(&mut self, at: u32, len: u32) -> Result<()> {
        let need = at.checked_add(len).ok_or(Error::CapacityFull)?;
        if need > self.end {
            return Err(Error::CapacityFull);
        }
        let erase = F::ERASE_SIZE as u32;
        while self.erased < need {
            let to = self.erased.checked_add(erase).ok_or(Error::CapacityFull)?;
            self.flash.erase(self.erased, to).map_err(flash_err)?;
            self.erased = to;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.n == 0 {
            return Ok(());
        }
        let n = self.n.checked_next_multiple_of(F::WRITE_SIZE).ok_or(Error::InvalidParameter)?;
        if let Some(pad) = self.buf.get_mut(self.n..n) {
            pad.fill(0xFF);
        }
        self.ensure_erased(self.at, n as u32)?;
        let data = self.buf.get(..n).ok_or(Error::BufferTooSmall)?;
        self.flash.write(self.at, data).map_err(flash_err)?;
        self.at = addr(self.at, n)?;
        self.n = 0;
        Ok(())
    }
}

/// Hands a fitted class to the record: its head when the shape is known, then its words.
struct ClassSink<'w, 'f, F> {
    w: &'w mut Writer<'f, F>,
    label: &'w Label,
}

impl<F: NorFlash> fit::Sink for ClassSink<'_, '_, F> {
    fn shape(&mut self, s: &Shape) -> Result<()> {
        let mut name = [0u8; LABEL_LEN];
        name.get_mut(..self.label.len())
            .ok_or(Error::LabelTooLong)?
            .copy_from_slice(self.label.as_bytes());
        self.w.put(&(self.label.len() as u32).to_le_bytes())?;
        self.w.put(&name)?;
        let flags = s.affine as u32 | (s.linear as u32) << 1;
        for v in [s.rank as u32, s.runs as u32, s.live as u32, flags] {
            self.w.put(&v.to_le_bytes())?;
        }
        Ok(())
    }
    fn words(&mut self, words: &[f32]) -> Result<()> {
        for &v in words {
            self.w.put(&v.to_bits().to_le_bytes())?;
        }
        Ok(())
    }
}

/// Scratch (f32s) that [`classify_joined`] needs: the model's classification scratch, and
/// `k` plus the largest stored class's distance scratch (with an alignment, a warped input
/// and one view's distances of every class more).
pub fn joined_scratch_len<const C: usize>(model: &impl Classes, store: &Store<C>) -> Result<usize> {
    let k = model.target(0)?.outputs();
    let need = crate::classify::scratch_len(model)?;
    let mut stored = 0;
    for i in 0..store.len() {
        stored = stored.max(k.saturating_add(store.distance_scratch_len(i)));
    }
    if model.alignment()?.is_some() {
        let d = model.target(0)?.inputs();
        stored = stored.saturating_add(Alignment::scratch_len(d, model.len().saturating_add(store.len())));
    }
    Ok(need.max(stored))
}

/// Classifies `x` over a model's classes followed by the stored ones (as [`crate::classify()`]
/// does for a model alone; `distances` gets the model's classes first). With stored classes
/// the model must have one member (`InvalidParameter` otherwise): they were fitted against
/// its one target. A model's query alignment ([`Classes::alignment`]) applies to its
/// classes and the stored ones alike.
pub fn classify_joined<const C: usize, F: ReadNorFlash>(
    model: &impl Classes,
    store: &Store<C>,
    flash: &mut F,
    x: &[f32],
    rule: Rule,
    scratch: &mut [f32],
    distances: &mut [f32],
) -> Result<Classification> {
    if store.is_empty() {
        return crate::classify(model, x, rule, scratch, distances);
    }
    if model.members() != 1 {
        return Err(Error::InvalidParameter);
    }
    let nb = model.len();
    let n = nb.saturating_add(store.len());
    let distances = distances.get_mut(..n).ok_or(Error::BufferTooSmall)?;
    crate::error::check_finite(x)?;
    let target = model.target(0)?;
    check_len(target.inputs(), x.len())?;
    let k = target.outputs();
    // Every class's distance of one view of the sample.
    let mut pass = |x: &[f32], scratch: &mut [f32], distances: &mut [f32]| -> Result<()> {
        let (qx, rest) = scratch.split_at_mut_checked(k).ok_or(Error::BufferTooSmall)?;
        target.forward(x, qx)?;
        let (own, stored) = distances.split_at_mut_checked(nb).ok_or(Error::BufferTooSmall)?;
        for (c, dist) in own.iter_mut().enumerate() {
            *dist = or_nan(model.predictor(0, c)?.distance(x, qx, rest))?;
        }
        for (i, dist) in stored.iter_mut().enumerate() {
            *dist = or_nan(store.distance(flash, i, x, qx, rest))?;
        }
        Ok(())
    };
    match model.alignment()? {
        Some(al) => al.least(x, scratch, distances, pass)?,
        None => pass(x, scratch, distances)?,
    }
    let best = closest(distances).unwrap_or(0) as u16;
    decide(distances, &[best], rule, x)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    /// The store's tests cut the power of a RAM flash of 256-byte sectors.
    pub type CutFlash = crate::testing::RamFlash<256>;

    use crate::novelty::Score;
    use crate::testing::{blob_samples as class, small_model as model, SMALL_D as D, SMALL_W as W};

    fn key(m: &crate::model::Model) -> ModelKey {
        ModelKey::of(m, 0xC0FFEE).unwrap()
    }

    const SLOT: u32 = 16 * 256;

    fn samples(data: &[f32]) -> Samples<'_> {
        Samples {
            data,
            n: data.len() / D,
            d: D,
            image: Some((W, W)),
            shift: 1,
        }
    }

    /// Enrolls `name` in the store and in a host copy of the model.
    fn enroll_both(st: &mut Store<4>, f: &mut CutFlash, host: &mut crate::model::Model, name: &str, seed: u64) -> Result<Shape> {
        let data = class(seed, 2);
        let t = host.members[0].target.clone();
        let s = samples(&data);
        let mut scratch = vec![0.0; fit::fit_scratch_len(s.rows(), D, W, 1, fit::linear_outputs(&t), 5)];
        let fit = host.fit;
        let shape = st.enroll(f, &key(host), name, &t, &s, &fit, 5, &mut scratch)?;
        host.enroll(name, &data, 2).unwrap();
        Ok(shape)
    }

    /// Stored classes give the host's distances bit for bit, next to the model's classes,
    /// with and without a query alignment; they survive a reload; forget and the refusals
    /// work.
    #[test]
    fn stored_classes_classify_like_the_host_model_and_reload() {
        for (k, align) in [(0usize, 0u8), (4, 0), (0, 1), (4, 1)] {
            let mut host = model(k);
            host.preprocess.align = align;
            let base = host.clone();
            let mut f = CutFlash::new(2 * SLOT as usize);
            let mut st: Store<4> = Store::new(&f, SLOT).unwrap();
            let mut ls = vec![0.0; Store::<4>::load_scratch_len(D, host.outputs())];
            assert_eq!(st.load(&mut f, &key(&host), &mut ls).unwrap(), Loaded::Empty);
            for (i, name) in ["c", "dd", "sixteen-chars-xx"].iter().enumerate() {
                let shape = enroll_both(&mut st, &mut f, &mut host, name, 10 + i as u64).unwrap();
                assert!(shape.rank >= 1 && shape.rank <= 5);
            }
            assert_eq!(
                enroll_both(&mut st, &mut f, &mut host.clone(), "c", 1).unwrap_err(),
                Error::DuplicateLabel
            );
            let check = |st: &Store<4>, f: &mut CutFlash, host: &crate::model::Model| {
                let mut scratch = vec![0.0; joined_scratch_len(&base, st).unwrap()];
                let mut hs = vec![0.0; crate::classify::scratch_len(host).unwrap()];
                for seed in 30..36 {
                    let x = &class(seed, 1);
                    let (mut d1, mut d2) = (vec![0.0; host.labels.len()], vec![0.0; host.labels.len()]);
                    // Every score a model file holds decides the same over enrolled classes.
                    for score in [Score::Best, Score::Ratio, Score::Contrast, Score::Relative] {
                        let rule = Rule {
                            score,
                            threshold: Some(0.6),
                        };
                        let a = classify_joined(&base, st, f, x, rule, &mut scratch, &mut d1).unwrap();
                        let b = crate::classify(host, x, rule, &mut hs, &mut d2).unwrap();
                        assert_eq!(a, b);
                        assert_eq!(a.novelty.to_bits(), b.novelty.to_bits());
                        assert_eq!(
                            d1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                            d2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                        );
                    }
                }
            };
            check(&st, &mut f, &host);
            // Reload from flash.
            let mut again: Store<4> = Store::new(&f, SLOT).unwrap();
            assert!(matches!(
                again.load(&mut f, &key(&host), &mut ls).unwrap(),
                Loaded::Classes { count: 3, .. }
            ));
            assert_eq!(again.entries(), st.entries());
            check(&again, &mut f, &host);
            // Forget the middle class.
            again.forget(&mut f, &key(&host), "dd").unwrap();
            host.forget("dd").unwrap();
            check(&again, &mut f, &host);
            assert_eq!(again.forget(&mut f, &key(&host), "dd"), Err(Error::UnknownClass));
            // Another model, other sizes: refused at load.
            let mut other: Store<4> = Store::new(&f, SLOT).unwrap();
            let k2 = ModelKey { crc: 1, ..key(&host) };
            assert_eq!(other.load(&mut f, &k2, &mut ls).unwrap(), Loaded::Refused(LoadError::OtherModel));
            let k3 = ModelKey {
                inputs: D + 1,
                ..key(&host)
            };
            assert_eq!(other.load(&mut f, &k3, &mut ls).unwrap(), Loaded::Refused(LoadError::OtherSizes));
            assert!(other.is_empty());
            let mut small: Store<1> = Store::new(&f, SLOT).unwrap();
            assert_eq!(
                small.load(&mut f, &key(&host), &mut ls).unwrap(),
                Loaded::Refused(LoadError::TooMany)
            );
        }
    }

    #[test]
    fn full_stores_and_bad_samples_are_refused_and_change_nothing() {
        let mut host = model(0);
        let mut f = CutFlash::new(2 * SLOT as usize);
        let mut st: Store<4> = Store::new(&f, SLOT).unwrap();
        for i in 0..4 {
            enroll_both(&mut st, &mut f, &mut host, ["p", "q", "r", "s"][i], 40 + i as u64).unwrap();
        }
        let before = (st.entries().to_vec(), f.mem.clone());
        assert_eq!(
            enroll_both(&mut st, &mut f, &mut host.clone(), "t", 50).unwrap_err(),
            Error::CapacityFull
        );
        st.forget(&mut f, &key(&host), "p").unwrap();
        let mut nan = class(60, 2);
        nan[7] = f32::NAN;
        let t = host.members[0].target.clone();
        let mut scratch = vec![0.0; fit::fit_scratch_len(18, D, W, 1, 0, 5)];
        let entries = st.entries().to_vec();
        assert_eq!(
            st.enroll(&mut f, &key(&host), "n", &t, &samples(&nan), &host.fit, 5, &mut scratch),
            Err(Error::NonFinite)
        );
        // Huge but finite samples overflow the fit: refused, not stored.
        let huge = vec![3e38f32; 2 * D];
        assert_eq!(
            st.enroll(&mut f, &key(&host), "h", &t, &samples(&huge), &host.fit, 5, &mut scratch),
            Err(Error::NonFinite)
        );
        assert_eq!(st.entries(), entries.as_slice());
        let mut ls = vec![0.0; Store::<4>::load_scratch_len(D, D)];
        let mut again: Store<4> = Store::new(&f, SLOT).unwrap();
        again.load(&mut f, &key(&host), &mut ls).unwrap();
        assert_eq!(again.entries(), entries.as_slice());
        // A slot too small for the largest class refuses before writing anything.
        let mut tiny_f = CutFlash::new(2 * 256);
        let mut tiny: Store<4> = Store::new(&tiny_f, 256).unwrap();
        let mem = tiny_f.mem.clone();
        assert_eq!(
            enroll_both(&mut tiny, &mut tiny_f, &mut host.clone(), "x", 1).unwrap_err(),
            Error::CapacityFull
        );
        assert_eq!(tiny_f.mem, mem);
        drop(before);
        assert_eq!(Store::<4>::new(&f, 100).unwrap_err(), Error::InvalidParameter);
    }

    /// Cuts the power at every flash operation of an enrollment and of a forget (tearing
    /// the cut write at several word counts): a reboot gives the classes before or after,
    /// never anything else, and the device goes on.
    #[test]
    fn a_cut_at_any_step_keeps_the_old_or_the_new_classes() {
        let mut host = model(0);
        let mut base = CutFlash::new(2 * SLOT as usize);
        let mut st: Store<4> = Store::new(&base, SLOT).unwrap();
        enroll_both(&mut st, &mut base, &mut host, "e", 1).unwrap();
        enroll_both(&mut st, &mut base, &mut host, "f", 2).unwrap();
        let old = st.entries().to_vec();
        let mut ls = vec![0.0; Store::<4>::load_scratch_len(D, D)];
        for op in ["enroll", "forget"] {
            let run = |st: &mut Store<4>, f: &mut CutFlash| -> Result<()> {
                if op == "enroll" {
                    enroll_both(st, f, &mut host.clone(), "c", 3).map(|_| ())
                } else {
                    st.forget(f, &key(&host), "e")
                }
            };
            let mut probe = CutFlash {
                mem: base.mem.clone(),
                ..CutFlash::new(0)
            };
            let mut ps = st.clone();
            run(&mut ps, &mut probe).unwrap();
            let (ops, new) = (probe.ops, ps.entries().to_vec());
            let (mut saw_old, mut saw_new) = (0, 0);
            for cut in 0..=ops {
                for tear in [0usize, 1, 7] {
                    let mut f = CutFlash {
                        mem: base.mem.clone(),
                        budget: Some(cut),
                        tear_words: tear,
                        ..CutFlash::new(0)
                    };
                    let mut s2 = st.clone();
                    let r = run(&mut s2, &mut f);
                    assert_eq!(r.is_ok(), cut >= ops, "{op} cut {cut}");
                    f.dead = false;
                    f.budget = None;
                    let mut back: Store<4> = Store::new(&f, SLOT).unwrap();
                    let loaded = back.load(&mut f, &key(&host), &mut ls).unwrap();
                    assert!(matches!(loaded, Loaded::Classes { .. }), "{op} cut {cut} tear {tear}: {loaded:?}");
                    let labels = |e: &[Entry]| e.iter().map(|x| x.label.clone()).collect::<Vec<_>>();
                    if labels(back.entries()) == labels(&new) {
                        saw_new += 1;
                    } else {
                        assert_eq!(labels(back.entries()), labels(&old), "{op} cut {cut} tear {tear}");
                        saw_old += 1;
                    }
                    // The device goes on: an enrollment works after the reboot.
                    enroll_both(&mut back, &mut f, &mut host.clone(), "z", 9).unwrap();
                }
            }
            assert!(saw_old > 0 && saw_new > 0, "{op}");
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
        assert_eq!(max_plain_class_len(784, 32), CLASS_HEAD + 4 * (1 + 32 + 32 * 197));
        assert_eq!(slot_len(10, 1000, 4096), 12288);
    }
}
