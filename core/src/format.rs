//! The model file: versioned, checked, and read in place.
//!
//! A model file is a 16-byte fixed prefix, a postcard-encoded [`Header`] (method, sizes,
//! labels, preprocessing and one entry per target and per class pointing into the weights),
//! zero padding to a 16-byte boundary, the weights as little-endian `f32`, and a CRC-32 of
//! everything before it. The exact layout, the header encoding and the validation rules are
//! specified in `core/FORMAT.md`; this module is the reference implementation.
//!
//! [`ModelView::parse`] validates a file completely (sizes, CRC, header, every entry's
//! bounds, finiteness of every `f32` weight) without allocating or copying the weights: on a
//! device the weights are used where they lie, e.g. in flash, as long as the file starts on a
//! 4-byte boundary. A view then classifies like any other [`Classes`].
//!
//! On the host (feature `alloc`), `encode` writes a `Model` and `decode` reads one back from
//! bytes at any alignment.

#[cfg(target_endian = "big")]
compile_error!("ldl_core::format reads the little-endian f32 weights of a model file in place: big-endian targets are not supported");

use crate::classify::{Classes, MAX_MEMBERS};
use crate::compact::{Compact, Shape};
use crate::error::{Error, Result};
use crate::linear::{Linear, Target};
use crate::model::{Label, Method, Preprocess};
use crate::novelty::{Rule, Score};
use crate::predictor::Predictor;
use crate::subspace::{FitOptions, Subspace};
use core::fmt;
use serde::{Deserialize, Serialize};

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"LDLM";
/// The newest format version this build writes. Version 2 added the [`ClassForm::Compact`]
/// class (8-bit directions); version 3 the novelty score the threshold applies to
/// ([`Header::score`]); version 4 [`Preprocess::fill`] (the warped copies of enrolled
/// images); version 5 [`Preprocess::align`] (the query alignment). A file is written as the
/// oldest version that holds it (`version_for`): a model without an alignment as version 4,
/// without copies either as version 3, so readers of those keep reading it. This build reads
/// versions 1 to 5 (see [`READS`]); in versions 1 and 2 the threshold applies to the
/// closest class's distance ([`Score::Best`]).
pub const VERSION: u16 = 5;
/// Every version this build reads.
pub const READS: [u16; 5] = [1, 2, 3, 4, 5];

/// The version a file with this preprocessing is written as: 5 with a query alignment, 4
/// with warped copies, else 3.
#[cfg(feature = "alloc")]
fn version_for(p: &Preprocess) -> u16 {
    if p.align > 0 {
        VERSION
    } else if p.fill > 0 {
        4
    } else {
        3
    }
}
/// Byte offset of the postcard-encoded header (the end of the fixed prefix).
pub const HEADER_OFFSET: usize = 16;
/// The weights start at the first multiple of this many bytes (from the file start) after
/// the header.
pub const WEIGHTS_ALIGN: usize = 16;
/// Size of the trailing CRC-32.
pub const CRC_LEN: usize = 4;
/// The shortest possible file: the fixed prefix and the CRC.
pub const MIN_FILE_LEN: usize = HEADER_OFFSET + CRC_LEN;
/// Most classes (labels) a model file holds.
pub const MAX_CLASSES: usize = 64;
/// Most class entries (ensemble members x classes) a model file holds.
pub const MAX_ENTRIES: usize = 128;

/// CRC-32/ISO-HDLC (the zlib / PNG / Ethernet CRC): polynomial 0x04C11DB7 reflected, init and
/// final XOR 0xFFFFFFFF.
/// CRC-32/ISO-HDLC: the model file's, and the store record's.
pub(crate) const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The CRC-32 of a model file (CRC-32/ISO-HDLC, the zlib/PNG CRC): computed over every byte
/// before the last four, and stored there little-endian.
pub fn checksum(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}

/// How a member's target is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TargetKind {
    /// `Q(x) = x` (requires `inputs == outputs`); no weights.
    Identity,
    /// `Q(x) = A x (+ a)`: `A` (`outputs x inputs`, row-major), then `a` (`outputs`) if `bias`.
    Linear {
        /// The target has a bias vector.
        bias: bool,
    },
}

/// Where a member's target lies in the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TargetEntry {
    /// The target's form.
    pub kind: TargetKind,
    /// Offset of its first weight, in `f32` units from the start of the weights.
    pub offset: u32,
}

/// How a class's predictor is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClassForm {
    /// A dense map: weight (`outputs x inputs`, row-major), then bias (`outputs`) if `bias`.
    Dense {
        /// The predictor has a bias vector.
        bias: bool,
    },
    /// The closed-form fit ([`Subspace`]): mean (`inputs`) if `affine`, basis
    /// (`rank x inputs`), shrink weights (`rank`), then, when the member's target is linear,
    /// proj (`outputs x rank`) and target mean (`outputs`).
    Subspace {
        /// The class is an affine subspace (a mean is stored).
        affine: bool,
        /// Dimension of the class's span (`<= inputs`).
        rank: u32,
    },
    /// The closed-form fit with 8-bit directions over the class's live inputs
    /// ([`crate::compact`]; version 2 on): its words follow from these sizes, `d`, `k` and
    /// the member's target.
    Compact {
        /// A mean is kept.
        affine: bool,
        /// Directions.
        rank: u32,
        /// Runs of live inputs.
        runs: u32,
        /// Live inputs.
        live: u32,
    },
}

impl ClassForm {
    /// The compact class's shape, for inputs `d`, outputs `k` and whether the member's
    /// target is linear (`None` for the other forms).
    pub fn compact_shape(&self, d: usize, k: usize, linear: bool) -> Result<Option<Shape>> {
        let ClassForm::Compact { affine, rank, runs, live } = *self else {
            return Ok(None);
        };
        let shape = Shape {
            inputs: d,
            outputs: k,
            rank: to_usize(rank)?,
            runs: to_usize(runs)?,
            live: to_usize(live)?,
            affine,
            linear,
        };
        shape.validate()?;
        Ok(Some(shape))
    }
}

/// Where a class's predictor (in one member) lies in the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClassEntry {
    /// The predictor's form.
    pub form: ClassForm,
    /// Offset of its first weight, in `f32` units from the start of the weights.
    pub offset: u32,
}

/// The model file's header: everything but the weights. Postcard-encoded, field by field in
/// this order (see `core/FORMAT.md`). Any change to its shape, or to the shape of a type it
/// contains ([`Method`], [`Preprocess`], [`FitOptions`], [`Score`], [`Label`]), is a new [`VERSION`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// How the model was trained.
    pub method: Method,
    /// Input dimension `d` (>= 1).
    pub inputs: u32,
    /// Target outputs `k` (>= 1).
    pub outputs: u32,
    /// Most classes the model may hold (>= the number of labels).
    pub capacity: u16,
    /// Novelty threshold (finite; from version 3 on, >= 0), if any.
    pub threshold: Option<f32>,
    /// The novelty score the threshold applies to (version 3 on; [`Score::Best`] before,
    /// where the file has no such field). Only the scores that need nothing per class.
    pub score: Score,
    /// Input preprocessing (finite scale and offset).
    pub preprocess: Preprocess,
    /// How enrolled classes are fitted (finite ridge, rank tolerance and minimum weight).
    pub fit: FitOptions,
    /// One unique label per class.
    pub labels: heapless::Vec<Label, MAX_CLASSES>,
    /// One target per ensemble member (at least one).
    pub members: heapless::Vec<TargetEntry, MAX_MEMBERS>,
    /// One entry per member and class: member `i`, class `c` at index `i * labels + c`.
    pub classes: heapless::Vec<ClassEntry, MAX_ENTRIES>,
}

/// Classes whose byte offset in the header [`ModelView`] remembers: every `CLASS_STRIDE`-th
/// class entry, so that finding an entry decodes at most `CLASS_STRIDE - 1` others.
const CLASS_STRIDE: usize = 8;

/// The entry counts of a header, each checked against its capacity by [`ModelView::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    labels: u16,
    members: u16,
    classes: u16,
}

/// A model file validated and read in place: nothing is copied but a few scalars of the
/// header (sizes, preprocessing, fit options) and where its lists start. The labels and the
/// target and class entries are decoded from the file's bytes when asked for, and the
/// weights are borrowed from the file as `&[f32]` (no copy, no allocation), so a view is a
/// little over 100 bytes whatever the model (a decoded [`Header`] is about 3 KB: see
/// [`ModelView::header`]). Classifies through [`Classes`].
#[derive(Clone)]
pub struct ModelView<'a> {
    /// The postcard-encoded header, in place.
    header: &'a [u8],
    method: Method,
    inputs: u32,
    outputs: u32,
    capacity: u16,
    threshold: Option<f32>,
    score: Score,
    preprocess: Preprocess,
    fit: FitOptions,
    /// How many labels, target entries (members) and class entries the header holds.
    counts: Counts,
    /// Byte offsets in `header` of the first label and of the first target entry.
    labels_at: u16,
    members_at: u16,
    /// Byte offset in `header` of class entry `i * CLASS_STRIDE`.
    classes_at: [u16; MAX_ENTRIES.div_ceil(CLASS_STRIDE)],
    weights: &'a [f32],
    file_len: usize,
    crc: u32,
    /// The file's format version (one of [`READS`]).
    version: u16,
}

impl fmt::Debug for ModelView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelView")
            .field("header", &self.header())
            .field("weights", &self.weights.len())
            .field("file_len", &self.file_len)
            .field("crc", &self.crc)
            .finish()
    }
}

/// Reads a little-endian `u16` at `at`.
fn read_u16(bytes: &[u8], at: usize) -> Result<u16> {
    let b = bytes.get(at..at.checked_add(2).ok_or(Error::Truncated)?).ok_or(Error::Truncated)?;
    let mut a = [0u8; 2];
    a.copy_from_slice(b);
    Ok(u16::from_le_bytes(a))
}

/// Reads a little-endian `u32` at `at`.
fn read_u32(bytes: &[u8], at: usize) -> Result<u32> {
    let b = bytes.get(at..at.checked_add(4).ok_or(Error::Truncated)?).ok_or(Error::Truncated)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    Ok(u32::from_le_bytes(a))
}

/// Where the weights start and how long the file is, for a header and weights of these
/// lengths in bytes; `None` on overflow.
fn layout(header_len: usize, weights_len: usize) -> Option<(usize, usize)> {
    let end = HEADER_OFFSET.checked_add(header_len)?;
    let start = end.checked_next_multiple_of(WEIGHTS_ALIGN)?;
    let total = start.checked_add(weights_len)?.checked_add(CRC_LEN)?;
    Some((start, total))
}

/// The length of the model file at the start of `bytes` from its fixed prefix alone (its
/// header and weights lengths), without checking anything else: how much of a larger
/// region (a device's MODEL flash) to hand to [`ModelView::parse`]. `None` when the prefix
/// is cut short or the lengths overflow.
pub fn file_len(bytes: &[u8]) -> Option<usize> {
    let h = usize::try_from(read_u32(bytes, 8).ok()?).ok()?;
    let w = usize::try_from(read_u32(bytes, 12).ok()?).ok()?;
    layout(h, w).map(|(_, total)| total)
}

fn to_usize(v: u32) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::Malformed)
}

fn mul(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(Error::Malformed)
}

/// Decodes one postcard value from the front of `bytes` and advances past it. The header is
/// a postcard struct, i.e. its fields one after the other with nothing in between, and a
/// list is its length then its elements: decoding it piece by piece with this reads exactly
/// what decoding a whole [`Header`] reads.
fn take<'b, T: Deserialize<'b>>(bytes: &mut &'b [u8]) -> Result<T> {
    let (v, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|_| Error::Malformed)?;
    *bytes = rest;
    Ok(v)
}

/// The length of a postcard list (as `heapless::Vec` reads it: postcard's `deserialize_seq`),
/// leaving the elements unread.
struct ListLen(usize);

impl<'de> Deserialize<'de> for ListLen {
    fn deserialize<De: serde::Deserializer<'de>>(de: De) -> core::result::Result<Self, De::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ListLen;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> core::result::Result<ListLen, A::Error> {
                // postcard gives the exact length, or none when fewer bytes are left than
                // elements announced: each element here takes at least one byte, so such a
                // list does not decode anyway.
                seq.size_hint()
                    .map(ListLen)
                    .ok_or_else(|| serde::de::Error::custom("list longer than the input"))
            }
        }
        de.deserialize_seq(V)
    }
}

/// Reads a list's length (at most `max` elements, as a `heapless::Vec<_, max>` accepts).
fn take_len(bytes: &mut &[u8], max: usize) -> Result<u16> {
    let ListLen(n) = take(bytes)?;
    if n > max {
        return Err(Error::Malformed);
    }
    u16::try_from(n).map_err(|_| Error::Malformed)
}

/// The elements of a postcard list in place, decoded one by one. Ends early (never in a
/// validated view) at an element that does not decode.
#[derive(Clone)]
pub struct Entries<'a, T> {
    bytes: &'a [u8],
    left: usize,
    _t: core::marker::PhantomData<T>,
}

impl<'a, T: Deserialize<'a>> Iterator for Entries<'a, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.left = self.left.checked_sub(1)?;
        take(&mut self.bytes).inspect_err(|_| self.left = 0).ok()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// A model's labels, in class order, decoded from the file ([`ModelView::labels`]).
pub type Labels<'a> = Entries<'a, Label>;

/// Consecutive parts of the weights from an entry's offset.
struct Cursor<'w>(&'w [f32]);

impl<'w> Cursor<'w> {
    fn at(weights: &'w [f32], offset: u32) -> Result<Self> {
        weights.get(to_usize(offset)?..).map(Cursor).ok_or(Error::Malformed)
    }
    fn take(&mut self, n: usize) -> Result<&'w [f32]> {
        let (part, rest) = self.0.split_at_checked(n).ok_or(Error::Malformed)?;
        self.0 = rest;
        Ok(part)
    }
}

/// The target of `entry` (inputs `d`, outputs `k`), its weights borrowed from `weights`.
fn target_view<'w>(d: usize, k: usize, entry: &TargetEntry, weights: &'w [f32]) -> Result<Target<&'w [f32]>> {
    match entry.kind {
        TargetKind::Identity if d == k => Ok(Target::Identity { dim: d }),
        TargetKind::Identity => Err(Error::Malformed),
        TargetKind::Linear { bias } => {
            let mut c = Cursor::at(weights, entry.offset)?;
            let w = c.take(mul(k, d)?)?;
            let b = if bias { Some(c.take(k)?) } else { None };
            Linear::from_parts(d, k, w, b).map(Target::Linear).map_err(|_| Error::Malformed)
        }
    }
}

/// The predictor of `entry` (inputs `d`, outputs `k`) in the member whose target is `target`.
fn predictor_view<'w>(d: usize, k: usize, target: &TargetEntry, entry: &ClassEntry, weights: &'w [f32]) -> Result<Predictor<&'w [f32]>> {
    let mut c = Cursor::at(weights, entry.offset)?;
    match entry.form {
        ClassForm::Dense { bias } => {
            let w = c.take(mul(k, d)?)?;
            let b = if bias { Some(c.take(k)?) } else { None };
            Linear::from_parts(d, k, w, b).map(Predictor::Dense).map_err(|_| Error::Malformed)
        }
        ClassForm::Subspace { affine, rank } => {
            let r = to_usize(rank)?;
            if r > d {
                return Err(Error::Malformed);
            }
            let mean = if affine { Some(c.take(d)?) } else { None };
            let basis = c.take(mul(r, d)?)?;
            let shrink = c.take(r)?;
            let (proj, tmean) = match target.kind {
                TargetKind::Linear { .. } => (Some(c.take(mul(k, r)?)?), Some(c.take(k)?)),
                TargetKind::Identity => (None, None),
            };
            Subspace::from_parts(d, k, r, mean, basis, shrink, proj, tmean)
                .map(Predictor::Subspace)
                .map_err(|_| Error::Malformed)
        }
        ClassForm::Compact { .. } => {
            let linear = matches!(target.kind, TargetKind::Linear { .. });
            let shape = entry.form.compact_shape(d, k, linear)?.ok_or(Error::Malformed)?;
            let words = c.take(shape.checked_words()?)?;
            Compact::from_parts(shape, words)
                .map(Predictor::Compact)
                .map_err(|_| Error::Malformed)
        }
    }
}

/// Fails with `NonFinite` when a weight the predictor uses as an `f32` is NaN or infinite.
fn check_finite_predictor(p: &Predictor<&[f32]>) -> Result<()> {
    match p {
        Predictor::Dense(l) => {
            crate::error::check_finite(l.weight())?;
            crate::error::check_finite(l.bias().unwrap_or(&[]))
        }
        Predictor::Subspace(s) => {
            for part in [s.mean(), Some(s.basis()), Some(s.shrink()), s.proj(), s.target_mean()]
                .into_iter()
                .flatten()
            {
                crate::error::check_finite(part)?;
            }
            Ok(())
        }
        Predictor::Compact(c) => c.check_finite(),
    }
}

impl<'a> ModelView<'a> {
    /// Decodes a postcard-encoded [`Header`] of format `version` in place (FORMAT.md
    /// section 6, rule 9: it decodes and uses exactly its bytes), keeping its scalars and
    /// where its lists start; no weights yet. Before version 3 the header has no `score`
    /// (it is [`Score::Best`]), before version 4 no `fill` (it is 0), before version 5 no
    /// `align` (it is 0). `Malformed` when it does not decode.
    fn scan(header: &'a [u8], version: u16) -> Result<Self> {
        let mut rest = header;
        let at = |rest: &[u8]| {
            header
                .len()
                .checked_sub(rest.len())
                .and_then(|a| u16::try_from(a).ok())
                .ok_or(Error::Malformed)
        };
        let method = take(&mut rest)?;
        let inputs = take(&mut rest)?;
        let outputs = take(&mut rest)?;
        let capacity = take(&mut rest)?;
        let threshold = take(&mut rest)?;
        let score = if version >= 3 { take(&mut rest)? } else { Score::Best };
        // Version 4 added `fill` after `shift`; before, it is 0.
        let mut preprocess: Preprocess = take::<crate::model::PreprocessV2>(&mut rest)?.into();
        if version >= 4 {
            preprocess.fill = take(&mut rest)?;
            if version == 4 && preprocess.fill == 0 {
                // Version 4 holds only models with warped copies (`version_for`).
                return Err(Error::Malformed);
            }
        }
        if version >= 5 {
            preprocess.align = take(&mut rest)?;
            // Version 5 holds only aligned models (`version_for`), of a known alignment of
            // images.
            if preprocess.align == 0 || preprocess.alignment().is_err() {
                return Err(Error::Malformed);
            }
        }
        let fit = take(&mut rest)?;
        let n_labels = take_len(&mut rest, MAX_CLASSES)?;
        let labels_at = at(rest)?;
        for _ in 0..n_labels {
            take::<Label>(&mut rest)?;
        }
        let n_members = take_len(&mut rest, MAX_MEMBERS)?;
        let members_at = at(rest)?;
        for _ in 0..n_members {
            take::<TargetEntry>(&mut rest)?;
        }
        let n_classes = take_len(&mut rest, MAX_ENTRIES)?;
        let mut classes_at = [0u16; MAX_ENTRIES.div_ceil(CLASS_STRIDE)];
        for i in 0..usize::from(n_classes) {
            if i % CLASS_STRIDE == 0 {
                *classes_at.get_mut(i / CLASS_STRIDE).ok_or(Error::Malformed)? = at(rest)?;
            }
            take::<ClassEntry>(&mut rest)?;
        }
        if !rest.is_empty() {
            return Err(Error::Malformed);
        }
        Ok(ModelView {
            header,
            method,
            inputs,
            outputs,
            capacity,
            threshold,
            score,
            preprocess,
            fit,
            counts: Counts {
                labels: n_labels,
                members: n_members,
                classes: n_classes,
            },
            labels_at,
            members_at,
            classes_at,
            weights: &[],
            file_len: 0,
            crc: 0,
            version,
        })
    }

    /// The list of `n` elements starting at byte `at` of the header.
    fn entries<T>(&self, at: u16, n: u16) -> Entries<'a, T> {
        Entries {
            bytes: self.header.get(usize::from(at)..).unwrap_or(&[]),
            left: usize::from(n),
            _t: core::marker::PhantomData,
        }
    }

    /// The target entries, one per member.
    fn member_entries(&self) -> Entries<'a, TargetEntry> {
        self.entries(self.members_at, self.counts.members)
    }

    /// Class entry `i` (member `i / len`, class `i % len`).
    fn class_entry(&self, i: usize) -> Option<ClassEntry> {
        if i >= usize::from(self.counts.classes) {
            return None;
        }
        let at = *self.classes_at.get(i / CLASS_STRIDE)?;
        let left = u16::try_from(usize::from(self.counts.classes).checked_sub((i / CLASS_STRIDE).checked_mul(CLASS_STRIDE)?)?).ok()?;
        self.entries(at, left).nth(i % CLASS_STRIDE)
    }

    /// `(inputs, outputs)` as `usize`.
    fn dims(&self) -> Result<(usize, usize)> {
        Ok((to_usize(self.inputs)?, to_usize(self.outputs)?))
    }

    /// Checks the header against the weights (FORMAT.md section 6, rules 11 to 14): sizes,
    /// counts, unique labels, every entry inside the weights with the sizes the dimensions
    /// imply, finite parameters, and every weight finite.
    fn validate(&self) -> Result<()> {
        let (d, k) = self.dims()?;
        let n = self.len();
        let members = usize::from(self.counts.members);
        if d == 0 || k == 0 || members == 0 || n > usize::from(self.capacity) {
            return Err(Error::Malformed);
        }
        if members.checked_mul(n) != Some(usize::from(self.counts.classes)) {
            return Err(Error::Malformed);
        }
        let mut labels = self.labels();
        while let Some(l) = labels.next() {
            if labels.clone().any(|o| o == l) {
                return Err(Error::Malformed);
            }
        }
        let mut entries_finite = Ok(());
        for (m, t) in self.member_entries().enumerate() {
            if let Target::Linear(l) = target_view(d, k, &t, self.weights)? {
                entries_finite = entries_finite
                    .and(crate::error::check_finite(l.weight()))
                    .and(crate::error::check_finite(l.bias().unwrap_or(&[])));
            }
            for c in 0..n {
                let e = self
                    .class_entry(mul(m, n)?.checked_add(c).ok_or(Error::Malformed)?)
                    .ok_or(Error::Malformed)?;
                if self.version == 1 && matches!(e.form, ClassForm::Compact { .. }) {
                    return Err(Error::Malformed);
                }
                let p = predictor_view(d, k, &t, &e, self.weights)?;
                entries_finite = entries_finite.and(check_finite_predictor(&p));
            }
        }
        let p = &self.preprocess;
        let params = [
            self.threshold.unwrap_or(0.0),
            p.scale,
            p.offset,
            self.fit.ridge,
            self.fit.rank_tol,
            self.fit.min_weight,
        ];
        crate::error::check_finite(&params)?;
        if self.version >= 3 {
            // Version 3: the score needs nothing per class (the file holds no spreads), and
            // the threshold is not negative (every score is >= 0).
            if self.score.needs_spreads() {
                return Err(Error::Malformed);
            }
            self.rule().check()?;
        }
        if let Some(al) = p.alignment()? {
            // Version 5: an alignment warps the model's input as an image, and classifies
            // with one member.
            if al.width.checked_mul(al.height) != Some(d) || members != 1 {
                return Err(Error::Malformed);
            }
        }
        if self.version == 1 {
            // Version 1: every weight, referenced or not.
            crate::error::check_finite(self.weights)
        } else {
            // Version 2: every weight an entry reads as an f32 (compact classes hold bytes).
            entries_finite
        }
    }

    /// Validates a model file and reads it in place.
    ///
    /// Fails with `Truncated` when the data is shorter than the fixed prefix or than the
    /// sizes it announces, `BadMagic`, `UnsupportedVersion(v)`, `Malformed` for inconsistent
    /// sizes, non-zero reserved or padding bytes, a header that does not decode or does not
    /// use exactly its length (an unknown score tag included), or a header inconsistent
    /// with itself or the weights (a score that needs per-class spreads), `CrcMismatch`
    /// (checked before the header is decoded), `NonFinite` for a NaN or infinite weight or
    /// parameter, `InvalidParameter` for a negative threshold (version 3 on; before, it was
    /// read as it was written), and `Misaligned` when the weights are not on a 4-byte
    /// boundary in memory (the file itself is not 4-byte aligned). Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<ModelView<'a>> {
        if bytes.len() < MIN_FILE_LEN {
            return Err(Error::Truncated);
        }
        if bytes.get(..4) != Some(&MAGIC[..]) {
            return Err(Error::BadMagic);
        }
        let version = read_u16(bytes, 4)?;
        if !READS.contains(&version) {
            return Err(Error::UnsupportedVersion(version));
        }
        if read_u16(bytes, 6)? != 0 {
            return Err(Error::Malformed);
        }
        let header_len = usize::try_from(read_u32(bytes, 8)?).map_err(|_| Error::Truncated)?;
        let weights_len = usize::try_from(read_u32(bytes, 12)?).map_err(|_| Error::Truncated)?;
        if weights_len % 4 != 0 {
            return Err(Error::Malformed);
        }
        let (start, total) = layout(header_len, weights_len).ok_or(Error::Truncated)?;
        if total > bytes.len() {
            return Err(Error::Truncated);
        }
        if total < bytes.len() {
            return Err(Error::Malformed);
        }
        let crc_at = total.checked_sub(CRC_LEN).ok_or(Error::Truncated)?;
        let crc = read_u32(bytes, crc_at)?;
        let body = bytes.get(..crc_at).ok_or(Error::Truncated)?;
        if checksum(body) != crc {
            return Err(Error::CrcMismatch);
        }
        let header_end = HEADER_OFFSET.checked_add(header_len).ok_or(Error::Truncated)?; // <= start
        let header_bytes = bytes.get(HEADER_OFFSET..header_end).ok_or(Error::Truncated)?;
        let padding = bytes.get(header_end..start).ok_or(Error::Truncated)?;
        if padding.iter().any(|&b| b != 0) {
            return Err(Error::Malformed);
        }
        let mut view = ModelView::scan(header_bytes, version)?;
        let weight_bytes = bytes.get(start..crc_at).ok_or(Error::Truncated)?;
        view.weights = bytemuck::try_cast_slice(weight_bytes).map_err(|_| Error::Misaligned)?;
        view.validate()?;
        view.file_len = total;
        view.crc = crc;
        Ok(view)
    }

    /// The header, decoded from the file: a copy of about 3 KB (the view keeps only a few
    /// scalars; the accessors below read the rest in place without it).
    pub fn header(&self) -> Header {
        let mut h = Header {
            method: self.method,
            inputs: self.inputs,
            outputs: self.outputs,
            capacity: self.capacity,
            threshold: self.threshold,
            score: self.score,
            preprocess: self.preprocess,
            fit: self.fit,
            labels: heapless::Vec::new(),
            members: heapless::Vec::new(),
            classes: heapless::Vec::new(),
        };
        // The counts were checked against these capacities by `parse`: no push fails.
        for l in self.labels() {
            let _ = h.labels.push(l);
        }
        for t in self.member_entries() {
            let _ = h.members.push(t);
        }
        for i in 0..usize::from(self.counts.classes) {
            if let Some(e) = self.class_entry(i) {
                let _ = h.classes.push(e);
            }
        }
        h
    }
    /// The class labels, in class order, decoded from the file one by one.
    pub fn labels(&self) -> Labels<'a> {
        self.entries(self.labels_at, self.counts.labels)
    }
    /// The label of class `i`.
    pub fn label(&self, i: usize) -> Option<Label> {
        self.labels().nth(i)
    }
    /// Index of a label.
    pub fn class_index(&self, label: &str) -> Option<usize> {
        self.labels().position(|l| l.as_str() == label)
    }
    /// How the model was trained.
    pub fn method(&self) -> Method {
        self.method
    }
    /// Input dimension `d`.
    pub fn inputs(&self) -> usize {
        self.inputs as usize
    }
    /// Target outputs `k`.
    pub fn outputs(&self) -> usize {
        self.outputs as usize
    }
    /// Most classes the model may hold.
    pub fn capacity(&self) -> u16 {
        self.capacity
    }
    /// Novelty threshold.
    pub fn threshold(&self) -> Option<f32> {
        self.threshold
    }
    /// The novelty score the threshold applies to ([`Score::Best`] in a file before
    /// version 3).
    pub fn score(&self) -> Score {
        self.score
    }
    /// How the model says "unknown": its score and threshold, for [`crate::classify()`].
    pub fn rule(&self) -> Rule {
        Rule {
            score: self.score,
            threshold: self.threshold,
        }
    }
    /// Input preprocessing.
    pub fn preprocess(&self) -> Preprocess {
        self.preprocess
    }
    /// Options for fitting enrolled classes.
    pub fn fit(&self) -> FitOptions {
        self.fit
    }
    /// All weights of the file, in place.
    pub fn weights(&self) -> &'a [f32] {
        self.weights
    }
    /// Length of the file in bytes.
    pub fn file_len(&self) -> usize {
        self.file_len
    }
    /// The file's CRC-32.
    pub fn crc(&self) -> u32 {
        self.crc
    }
    /// The file's format version.
    pub fn version(&self) -> u16 {
        self.version
    }
}

impl Classes for ModelView<'_> {
    fn members(&self) -> usize {
        usize::from(self.counts.members)
    }
    fn len(&self) -> usize {
        usize::from(self.counts.labels)
    }
    fn target(&self, member: usize) -> Result<Target<&[f32]>> {
        let t = self.member_entries().nth(member).ok_or(Error::InvalidParameter)?;
        let (d, k) = self.dims()?;
        target_view(d, k, &t, self.weights)
    }
    fn predictor(&self, member: usize, class: usize) -> Result<Predictor<&[f32]>> {
        let n = self.len();
        if class >= n {
            return Err(Error::UnknownClass);
        }
        let t = self.member_entries().nth(member).ok_or(Error::UnknownClass)?;
        let i = member
            .checked_mul(n)
            .and_then(|i| i.checked_add(class))
            .ok_or(Error::UnknownClass)?;
        let e = self.class_entry(i).ok_or(Error::UnknownClass)?;
        let (d, k) = self.dims()?;
        predictor_view(d, k, &t, &e, self.weights)
    }
    fn alignment(&self) -> Result<Option<crate::augment::Alignment>> {
        self.preprocess().alignment()
    }
}

#[cfg(feature = "alloc")]
pub use owned::{decode, encode, encoded_len};

/// A copy of bytes starting on a 4-byte boundary, so that [`ModelView::parse`] reads the
/// weights in place wherever the bytes came from (a file read into a `Vec<u8>` promises no
/// alignment). Derefs to the bytes.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aligned {
    words: alloc::vec::Vec<u32>,
    len: usize,
}

#[cfg(feature = "alloc")]
impl Aligned {
    /// Copies `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = alloc::vec![0u32; bytes.len().div_ceil(4)];
        let all: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        if let Some(dst) = all.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        Self { words, len: bytes.len() }
    }
}

#[cfg(feature = "alloc")]
impl core::ops::Deref for Aligned {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let all: &[u8] = bytemuck::cast_slice(&self.words);
        all.get(..self.len).unwrap_or(all)
    }
}

#[cfg(feature = "alloc")]
mod owned {
    use super::*;
    use crate::model::{Member, Model};
    use alloc::vec;
    use alloc::vec::Vec;

    /// Counts the weights laid out so far and, when writing, collects them.
    struct Sink<'v> {
        len: usize,
        out: Option<&'v mut Vec<f32>>,
    }

    impl Sink<'_> {
        fn offset(&self) -> Result<u32> {
            u32::try_from(self.len).map_err(|_| Error::CapacityFull)
        }
        fn put(&mut self, xs: &[f32]) -> Result<()> {
            self.len = self.len.checked_add(xs.len()).ok_or(Error::CapacityFull)?;
            if let Some(out) = self.out.as_mut() {
                out.extend_from_slice(xs);
            }
            Ok(())
        }
    }

    /// The header of `model`, laying out its weights into `sink` (member 0's target, member
    /// 0's classes, member 1's target, ...). Checks that the model fits the format.
    fn build_header(model: &Model, sink: &mut Sink<'_>) -> Result<Header> {
        model.validate()?;
        model.rule().check()?;
        let n = model.labels.len();
        if n > MAX_CLASSES || model.members.len().checked_mul(n).is_none_or(|e| e > MAX_ENTRIES) {
            return Err(Error::CapacityFull);
        }
        for (i, l) in model.labels.iter().enumerate() {
            if model.labels.iter().skip(i.saturating_add(1)).any(|o| o == l) {
                return Err(Error::DuplicateLabel);
            }
        }
        let (d, k) = (model.inputs(), model.outputs());
        if d == 0 || k == 0 {
            return Err(Error::InvalidParameter);
        }
        let dim = |v: usize| u32::try_from(v).map_err(|_| Error::CapacityFull);
        let mut header = Header {
            method: model.method,
            inputs: dim(d)?,
            outputs: dim(k)?,
            capacity: model.capacity,
            threshold: model.threshold,
            score: model.score,
            preprocess: model.preprocess,
            fit: model.fit,
            labels: heapless::Vec::new(),
            members: heapless::Vec::new(),
            classes: heapless::Vec::new(),
        };
        for l in &model.labels {
            header.labels.push(l.clone()).map_err(|_| Error::CapacityFull)?;
        }
        for mem in &model.members {
            let offset = sink.offset()?;
            let kind = match &mem.target {
                Target::Identity { .. } => TargetKind::Identity,
                Target::Linear(l) => {
                    sink.put(l.weight())?;
                    if let Some(b) = l.bias() {
                        sink.put(b)?;
                    }
                    TargetKind::Linear { bias: l.bias().is_some() }
                }
            };
            let linear = matches!(kind, TargetKind::Linear { .. });
            header.members.push(TargetEntry { kind, offset }).map_err(|_| Error::CapacityFull)?;
            for p in &mem.predictors {
                let offset = sink.offset()?;
                let form = match p {
                    Predictor::Dense(l) => {
                        sink.put(l.weight())?;
                        if let Some(b) = l.bias() {
                            sink.put(b)?;
                        }
                        ClassForm::Dense { bias: l.bias().is_some() }
                    }
                    Predictor::Subspace(s) => {
                        // The file derives proj / target mean from the target's kind.
                        if s.proj().is_some() != linear {
                            return Err(Error::InvalidParameter);
                        }
                        if let Some(m) = s.mean() {
                            sink.put(m)?;
                        }
                        sink.put(s.basis())?;
                        sink.put(s.shrink())?;
                        if let (Some(pr), Some(tm)) = (s.proj(), s.target_mean()) {
                            sink.put(pr)?;
                            sink.put(tm)?;
                        }
                        ClassForm::Subspace {
                            affine: s.mean().is_some(),
                            rank: dim(s.rank())?,
                        }
                    }
                    Predictor::Compact(c) => {
                        let sh = c.shape();
                        if sh.linear != linear || sh.inputs != d || sh.outputs != k {
                            return Err(Error::InvalidParameter);
                        }
                        sink.put(c.words())?;
                        ClassForm::Compact {
                            affine: sh.affine,
                            rank: dim(sh.rank)?,
                            runs: dim(sh.runs)?,
                            live: dim(sh.live)?,
                        }
                    }
                };
                header.classes.push(ClassEntry { form, offset }).map_err(|_| Error::CapacityFull)?;
            }
        }
        Ok(header)
    }

    /// Copies `src` into `out` at `at`.
    fn put_bytes(out: &mut [u8], at: usize, src: &[u8]) -> Result<()> {
        let end = at.checked_add(src.len()).ok_or(Error::BufferTooSmall)?;
        out.get_mut(at..end).ok_or(Error::BufferTooSmall)?.copy_from_slice(src);
        Ok(())
    }

    /// Assembles a file from an encoded header and the weights (no validation of their
    /// content): prefix, header, zero padding, weights, CRC.
    pub(super) fn write_file(header: &[u8], weights: &[f32], version: u16) -> Result<Vec<u8>> {
        let weights_len = weights.len().checked_mul(4).ok_or(Error::CapacityFull)?;
        let (start, total) = layout(header.len(), weights_len).ok_or(Error::CapacityFull)?;
        let header_len32 = u32::try_from(header.len()).map_err(|_| Error::CapacityFull)?;
        let weights_len32 = u32::try_from(weights_len).map_err(|_| Error::CapacityFull)?;
        let mut out = vec![0u8; total];
        put_bytes(&mut out, 0, &MAGIC)?;
        put_bytes(&mut out, 4, &version.to_le_bytes())?;
        put_bytes(&mut out, 8, &header_len32.to_le_bytes())?;
        put_bytes(&mut out, 12, &weights_len32.to_le_bytes())?;
        put_bytes(&mut out, HEADER_OFFSET, header)?;
        let end = start.checked_add(weights_len).ok_or(Error::CapacityFull)?;
        let dst = out.get_mut(start..end).ok_or(Error::BufferTooSmall)?;
        for (chunk, w) in dst.chunks_exact_mut(4).zip(weights) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        let crc_at = total.checked_sub(CRC_LEN).ok_or(Error::BufferTooSmall)?;
        let crc = checksum(out.get(..crc_at).ok_or(Error::BufferTooSmall)?);
        put_bytes(&mut out, crc_at, &crc.to_le_bytes())?;
        Ok(out)
    }

    /// Length of a header's postcard encoding.
    fn header_len(header: &Header) -> Result<usize> {
        postcard::serialize_with_flavor(header, postcard::ser_flavors::Size::default()).map_err(|_| Error::InvalidParameter)
    }

    /// Postcard-encodes a header.
    pub(super) fn header_bytes(header: &Header) -> Result<Vec<u8>> {
        let len = header_len(header)?;
        let mut buf = vec![0u8; len];
        let used = postcard::to_slice(header, &mut buf).map_err(|_| Error::InvalidParameter)?.len();
        buf.truncate(used);
        Ok(buf)
    }

    /// Writes `model` as a model file (format [`VERSION`]).
    ///
    /// Fails when the model is inconsistent (`model.validate()`), has more than
    /// [`MAX_CLASSES`] labels or [`MAX_ENTRIES`] class entries or more weights than a file
    /// can address (`CapacityFull`), has duplicate labels (`DuplicateLabel`), a non-finite
    /// weight, threshold, preprocessing or fit parameter (`NonFinite`), a negative threshold
    /// or a score that needs per-class spreads ([`Rule::check`]: `InvalidParameter`), or a
    /// subspace predictor whose form does not match its member's target (`InvalidParameter`). A file
    /// `encode` returns always decodes (and parses wherever it lies 4-byte aligned).
    pub fn encode(model: &Model) -> Result<Vec<u8>> {
        let mut weights = Vec::new();
        let header = build_header(
            model,
            &mut Sink {
                len: 0,
                out: Some(&mut weights),
            },
        )?;
        let bytes = header_bytes(&header)?;
        let version = version_for(&header.preprocess);
        // The checks `parse` makes, on the header as it will be read back.
        let check = || {
            let mut view = ModelView::scan(&bytes, version)?;
            view.weights = &weights;
            view.validate()
        };
        check().map_err(|e| if e == Error::Malformed { Error::InvalidParameter } else { e })?;
        write_file(&bytes, &weights, version)
    }

    /// The length in bytes of the file [`encode`] would write for `model` (without copying
    /// its weights or checking that they are finite).
    pub fn encoded_len(model: &Model) -> Result<usize> {
        let mut sink = Sink { len: 0, out: None };
        let header = build_header(model, &mut sink)?;
        let header_len = header_len(&header)?;
        let weights_len = sink.len.checked_mul(4).ok_or(Error::CapacityFull)?;
        layout(header_len, weights_len).map(|(_, total)| total).ok_or(Error::CapacityFull)
    }

    /// Reads a model file into an owned [`Model`], whatever the alignment of `bytes` (they
    /// are copied into an aligned buffer first). Fails as [`ModelView::parse`] does, except
    /// never with `Misaligned`.
    pub fn decode(bytes: &[u8]) -> Result<Model> {
        ModelView::parse(&Aligned::new(bytes))?.to_model()
    }

    fn owned_linear(l: &Linear<&[f32]>) -> Result<Linear<Vec<f32>>> {
        Linear::from_parts(l.inputs(), l.outputs(), l.weight().to_vec(), l.bias().map(<[f32]>::to_vec))
    }

    impl ModelView<'_> {
        /// Copies the model onto the heap, exactly (every field and weight bit for bit).
        pub fn to_model(&self) -> Result<Model> {
            let mut members = Vec::with_capacity(self.members());
            for m in 0..self.members() {
                let target = match self.target(m)? {
                    Target::Identity { dim } => Target::Identity { dim },
                    Target::Linear(l) => Target::Linear(owned_linear(&l)?),
                };
                let mut predictors = Vec::with_capacity(self.len());
                for c in 0..self.len() {
                    predictors.push(match self.predictor(m, c)? {
                        Predictor::Dense(l) => Predictor::Dense(owned_linear(&l)?),
                        Predictor::Subspace(s) => Predictor::Subspace(Subspace::from_parts(
                            s.inputs(),
                            s.outputs(),
                            s.rank(),
                            s.mean().map(<[f32]>::to_vec),
                            s.basis().to_vec(),
                            s.shrink().to_vec(),
                            s.proj().map(<[f32]>::to_vec),
                            s.target_mean().map(<[f32]>::to_vec),
                        )?),
                        Predictor::Compact(c) => Predictor::Compact(Compact::from_parts(*c.shape(), c.words().to_vec())?),
                    });
                }
                members.push(Member { target, predictors });
            }
            Ok(Model {
                method: self.method,
                labels: self.labels().collect(),
                members,
                threshold: self.threshold,
                score: self.score,
                preprocess: self.preprocess,
                capacity: self.capacity,
                fit: self.fit,
            })
        }
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::owned::{header_bytes, write_file};
    use super::*;
    use crate::augment::ALIGNS;
    use crate::classify::{classify, scratch_len};
    use crate::methods::{self, ClosedFormConfig, GradientConfig, GradientTrainer};
    use crate::model::{label, ImageSpec, Model};
    use crate::rng::Rng;
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    const D: usize = 8;
    const LABELS: [&str; 3] = ["zero", "one", "two"];

    /// Three classes of 5 samples in R^8 around distinct centres.
    fn support(seed: u64) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(seed);
        (0..3)
            .map(|c| {
                let centre: Vec<f32> = (0..D).map(|j| if j % 3 == c { 2.0 } else { rng.normal() * 0.2 }).collect();
                (0..5)
                    .flat_map(|_| centre.iter().map(|m| m + 0.3 * rng.normal()).collect::<Vec<_>>())
                    .collect()
            })
            .collect()
    }

    fn closed(k: usize, target_bias: bool, affine: bool, ridge: f32, seed: u64) -> Model {
        let data = support(seed);
        let views: Vec<&[f32]> = data.iter().map(|v| v.as_slice()).collect();
        let cfg = ClosedFormConfig {
            k,
            target_bias,
            fit: FitOptions {
                ridge,
                affine,
                ..Default::default()
            },
            ..Default::default()
        };
        methods::fit_closed_form(&views, D, &LABELS, &cfg, seed).unwrap()
    }

    fn gradient(cfg: GradientConfig, seed: u64) -> Model {
        let data = support(seed);
        let views: Vec<&[f32]> = data.iter().map(|v| v.as_slice()).collect();
        let mut t = GradientTrainer::new(&views, D, &LABELS, &cfg, seed).unwrap();
        t.epoch().unwrap();
        t.into_model()
    }

    /// Every kind of model the host builds, named.
    fn models() -> Vec<(&'static str, Model)> {
        let mut rich = closed(6, true, true, 0.0, 1);
        rich.threshold = Some(0.25);
        rich.score = Score::Contrast;
        rich.capacity = 10;
        rich.preprocess = Preprocess {
            scale: 1.0 / 255.0,
            offset: -0.5,
            image: Some(ImageSpec {
                width: 4,
                height: 2,
                source_width: 8,
                source_height: 4,
            }),
            shift: 1,
            fill: 0,
            align: 0,
        };
        let mut enrolled = rich.clone();
        let extra = support(9);
        enrolled.enroll("extra", &extra[0], 5).unwrap();
        // Warped copies of enrolled images (format version 3): one sample fills four slots.
        let mut filled = rich.clone();
        filled.preprocess.fill = 4;
        filled.enroll("warped", &extra[0][..D], 1).unwrap();
        // A query alignment (format version 5), with and without copies.
        let mut aligned = rich.clone();
        aligned.preprocess.align = 1;
        let mut aligned_filled = filled.clone();
        aligned_filled.preprocess.align = 1;
        let mut empty = closed(6, true, true, 0.0, 2);
        for l in LABELS {
            empty.forget(l).unwrap();
        }
        let data = support(3);
        let views: Vec<&[f32]> = data.iter().map(|v| v.as_slice()).collect();
        let cfg = ClosedFormConfig {
            k: 6,
            ..Default::default()
        };
        let ensemble = methods::ensemble(&views, D, 3, 7, |c, s| methods::fit_closed_form(c, D, &LABELS, &cfg, s)).unwrap();
        vec![
            ("closed linear affine", rich),
            ("closed linear, no target bias, not affine", closed(5, false, false, 0.0, 4)),
            ("closed identity affine ridge", closed(0, false, true, 0.5, 5)),
            ("closed identity not affine", closed(0, false, false, 0.0, 6)),
            ("o2md", gradient(GradientConfig::o2md_paper(5), 7)),
            ("bd", gradient(GradientConfig::bd_paper(4), 8)),
            ("naive", gradient(GradientConfig::naive_paper(), 9)),
            ("ensemble", ensemble),
            ("enrolled", enrolled),
            ("filled", filled),
            ("aligned", aligned),
            ("aligned and filled", aligned_filled),
            ("no classes", empty),
        ]
    }

    /// Parses an aligned copy and decodes `bytes`; both must agree. Returns the error.
    fn error_of(bytes: &[u8]) -> Error {
        let buf = Aligned::new(bytes);
        let a = ModelView::parse(&buf).map(|_| ()).unwrap_err();
        let b = decode(bytes).map(|_| ()).unwrap_err();
        assert_eq!(a, b);
        a
    }

    /// Rewrites the CRC after an edit.
    fn reseal(bytes: &mut [u8]) {
        let n = bytes.len() - CRC_LEN;
        let crc = checksum(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }

    fn header_len_of(bytes: &[u8]) -> usize {
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize
    }

    /// The header and weights of a valid file.
    fn split(bytes: &[u8]) -> (Header, Vec<f32>) {
        let buf = Aligned::new(bytes);
        let view = ModelView::parse(&buf).unwrap();
        (view.header(), view.weights().to_vec())
    }

    /// A file from a (possibly invalid) header and weights.
    fn file(header: &Header, weights: &[f32]) -> Vec<u8> {
        write_file(&header_bytes(header).unwrap(), weights, version_for(&header.preprocess)).unwrap()
    }

    fn valid() -> (Model, Vec<u8>) {
        let m = models().swap_remove(0).1;
        let bytes = encode(&m).unwrap();
        (m, bytes)
    }

    #[test]
    fn a_view_fits_a_device_stack() {
        // A view keeps the header in place, not decoded (a `Header` is about 3 KB): keep it
        // small for a microcontroller (less with 32-bit usize).
        assert!(
            core::mem::size_of::<ModelView<'_>>() <= 192,
            "{}",
            core::mem::size_of::<ModelView<'_>>()
        );
    }

    /// `ModelView::scan` decodes the header piece by piece; it must accept exactly the bytes
    /// that decoding a whole `Header` with postcard accepts (all of them used), and read the
    /// same header from them.
    #[test]
    fn header_read_in_place_equals_the_decoded_header() {
        let check = |hb: &[u8]| {
            let whole = postcard::take_from_bytes::<Header>(hb)
                .ok()
                .filter(|(_, rest)| rest.is_empty())
                .map(|(h, _)| h);
            let piecewise = ModelView::scan(hb, 3).ok().map(|v| v.header());
            // Compared re-encoded: bit for bit, NaNs included.
            let bytes = |h: &Option<Header>| h.as_ref().map(|h| header_bytes(h).unwrap());
            assert_eq!(bytes(&piecewise), bytes(&whole), "{hb:?}");
            if let Some(h) = whole {
                let v = ModelView::scan(hb, 3).unwrap();
                assert_eq!(v.labels().collect::<Vec<_>>(), h.labels.to_vec());
                assert_eq!((v.members(), v.len()), (h.members.len(), h.labels.len()));
                for (i, e) in h.classes.iter().enumerate() {
                    assert_eq!(v.class_entry(i), Some(*e));
                }
                assert_eq!(v.class_entry(h.classes.len()), None);
            }
        };
        let mut headers: Vec<Header> = models().into_iter().map(|(_, m)| split(&encode(&m).unwrap()).0).collect();
        // 64 labels and 128 entries (2 members): every list full, and past the index stride.
        let mut big = headers[0].clone();
        big.labels.clear();
        big.classes.clear();
        for i in 0..MAX_CLASSES {
            big.labels.push(label(&std::format!("c{i}")).unwrap()).unwrap();
        }
        let member = headers[0].members[0];
        big.members.clear();
        big.members.push(member).unwrap();
        big.members.push(TargetEntry { offset: 70_000, ..member }).unwrap();
        for i in 0..MAX_ENTRIES {
            let form = if i % 3 == 0 {
                ClassForm::Dense { bias: i % 2 == 0 }
            } else {
                ClassForm::Subspace {
                    affine: i % 2 == 0,
                    rank: i as u32 * 1000,
                }
            };
            big.classes
                .push(ClassEntry {
                    form,
                    offset: (i as u32) << 20,
                })
                .unwrap();
        }
        headers.push(big);
        let mut rng = Rng::new(5);
        for h in &headers {
            let hb = header_bytes(h).unwrap();
            check(&hb);
            // Every truncation and extension, and byte-level damage.
            for n in 0..hb.len() {
                check(&hb[..n]);
            }
            let mut longer = hb.clone();
            longer.push(0);
            check(&longer);
            for _ in 0..2000 {
                let mut d = hb.clone();
                for _ in 0..1 + rng.next_u32() % 3 {
                    let at = rng.next_u32() as usize % d.len();
                    d[at] = match rng.next_u32() % 4 {
                        0 => d[at] ^ (1 << (rng.next_u32() % 8)),
                        1 => 0x80 | d[at],
                        2 => 0xFF,
                        _ => rng.next_u32() as u8,
                    };
                }
                check(&d);
            }
        }
    }

    #[test]
    fn crc_is_the_zlib_crc() {
        assert_eq!(checksum(b"123456789"), 0xCBF4_3926);
        assert_eq!(checksum(b""), 0);
    }

    #[test]
    fn header_encoding_is_pinned() {
        // The example of FORMAT.md: any change here is a format change (a new VERSION).
        let mut h = Header {
            method: Method::ClosedForm,
            inputs: 300,
            outputs: 2,
            capacity: 5,
            threshold: Some(1.5),
            score: Score::Contrast,
            preprocess: Preprocess {
                scale: 1.0,
                offset: 0.0,
                image: Some(ImageSpec {
                    width: 28,
                    height: 28,
                    source_width: 0,
                    source_height: 0,
                }),
                shift: 2,
                fill: 0,
                align: 0,
            },
            fit: FitOptions {
                ridge: 0.0,
                affine: true,
                rank_tol: 0.5,
                min_weight: 0.25,
                max_rank: 300,
            },
            labels: heapless::Vec::new(),
            members: heapless::Vec::new(),
            classes: heapless::Vec::new(),
        };
        h.labels.push(label("a").unwrap()).unwrap();
        h.labels.push(label("bc").unwrap()).unwrap();
        h.members
            .push(TargetEntry {
                kind: TargetKind::Linear { bias: true },
                offset: 0,
            })
            .unwrap();
        h.classes
            .push(ClassEntry {
                form: ClassForm::Dense { bias: false },
                offset: 604,
            })
            .unwrap();
        h.classes
            .push(ClassEntry {
                form: ClassForm::Subspace { affine: true, rank: 130 },
                offset: 200,
            })
            .unwrap();
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x03,                   // method: ClosedForm
            0xAC, 0x02,             // inputs: 300
            0x02,                   // outputs: 2
            0x05,                   // capacity: 5
            0x01, 0x00, 0x00, 0xC0, 0x3F, // threshold: Some(1.5)
            0x02,                   // score: Contrast
            0x00, 0x00, 0x80, 0x3F, // preprocess.scale: 1.0
            0x00, 0x00, 0x00, 0x00, // preprocess.offset: 0.0
            0x01, 0x1C, 0x1C, 0x00, 0x00, // preprocess.image: Some(28, 28, 0, 0)
            0x02,                   // preprocess.shift: 2
            0x00, 0x00, 0x00, 0x00, // fit.ridge: 0.0
            0x01,                   // fit.affine: true
            0x00, 0x00, 0x00, 0x3F, // fit.rank_tol: 0.5
            0x00, 0x00, 0x80, 0x3E, // fit.min_weight: 0.25
            0xAC, 0x02,             // fit.max_rank: 300
            0x02, 0x01, b'a', 0x02, b'b', b'c', // labels
            0x01, 0x01, 0x01, 0x00, // members: [Linear { bias: true } @ 0]
            0x02,                   // classes:
            0x00, 0x00, 0xDC, 0x04, //   Dense { bias: false } @ 604
            0x01, 0x01, 0x82, 0x01, 0xC8, 0x01, // Subspace { affine: true, rank: 130 } @ 200
        ];
        assert_eq!(header_bytes(&h).unwrap(), want);
        assert_eq!(postcard::from_bytes::<Header>(want).unwrap(), h);
        // Decoding rules of FORMAT.md.
        let with = |at: usize, b: u8| {
            let mut v = want.to_vec();
            v[at] = b;
            postcard::from_bytes::<Header>(&v)
        };
        assert!(with(0, 4).is_err(), "method tag out of range");
        assert!(with(5, 2).is_err(), "Option tag other than 0/1");
        assert!(with(10, 6).is_err(), "score tag out of range");
        for (tag, score) in [(0, Score::Best), (1, Score::Ratio), (5, Score::Relative)] {
            assert_eq!(with(10, tag).unwrap().score, score);
        }
        assert!(with(29, 2).is_err(), "bool other than 0/1");
        assert!(with(42, 0xFF).is_err(), "label not UTF-8");
        assert!(with(47, 2).is_err(), "target kind tag out of range");
        assert!(with(51, 2).is_err(), "class form tag out of range");
        assert!(with(52, 2).is_err(), "bool other than 0/1");
        let mut long = want[..41].to_vec();
        long.push(17);
        long.extend_from_slice(&[b'a'; 17]);
        long.extend_from_slice(&want[43..]);
        assert!(postcard::from_bytes::<Header>(&long).is_err(), "label longer than 16 bytes");
        let mut max16 = want[..41].to_vec();
        max16.push(16);
        max16.extend_from_slice(&[b'a'; 16]);
        max16.extend_from_slice(&want[43..]);
        assert_eq!(
            postcard::from_bytes::<Header>(&max16).unwrap().labels[0].as_str(),
            "aaaaaaaaaaaaaaaa"
        );
        // A non-canonical varint (300 as AC 82 00) is read by postcard; writers never emit it.
        let mut noncanon = want.to_vec();
        noncanon.splice(1..3, [0xAC, 0x82, 0x00]);
        assert_eq!(postcard::from_bytes::<Header>(&noncanon).unwrap().inputs, 300);
        // Too many members for MAX_MEMBERS.
        let mut many = want[..46].to_vec();
        many.push(MAX_MEMBERS as u8 + 1);
        for _ in 0..=MAX_MEMBERS {
            many.extend_from_slice(&[0x00, 0x00]);
        }
        many.push(0);
        assert!(postcard::from_bytes::<Header>(&many).is_err());
    }

    /// The smallest example of FORMAT.md: one class, identity target, rank-1 subspace.
    fn tiny() -> Model {
        let s = Subspace::from_parts(2, 2, 1, None, vec![0.6, 0.8], vec![1.0], None, None).unwrap();
        Model {
            method: Method::ClosedForm,
            labels: vec![label("x").unwrap()],
            members: vec![crate::model::Member {
                target: Target::Identity { dim: 2 },
                predictors: vec![Predictor::Subspace(s)],
            }],
            threshold: None,
            score: Score::Best,
            preprocess: Preprocess::default(),
            capacity: 4,
            fit: FitOptions::default(),
        }
    }

    #[test]
    fn file_encoding_is_pinned() {
        // The complete example file of FORMAT.md (its CRC checked with Python's zlib.crc32).
        #[rustfmt::skip]
        let want: &[u8] = &[
            b'L', b'D', b'L', b'M', 0x03, 0x00, 0x00, 0x00, // magic, version 3, reserved
            0x29, 0x00, 0x00, 0x00, 0x0C, 0x00, 0x00, 0x00, // header_len 41, weights_len 12
            0x03, 0x02, 0x02, 0x04, 0x00,                   // ClosedForm, d 2, k 2, capacity 4, no threshold
            0x00,                                           // score Best
            0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x00, // scale 1.0, offset 0.0
            0x00, 0x00,                                     // image None, shift 0
            0x00, 0x00, 0x00, 0x00, 0x01, 0x6F, 0x12, 0x83, 0x3A, // ridge 0, affine, rank_tol 1e-3
            0x00, 0x00, 0x00, 0x00, 0x00,                   // min_weight 0, max_rank 0
            0x01, 0x01, b'x',                               // labels ["x"]
            0x01, 0x00, 0x00,                               // members [Identity @ 0]
            0x01, 0x01, 0x00, 0x01, 0x00,                   // classes [Subspace { affine: false, rank: 1 } @ 0]
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,       // padding to 64
            0x9A, 0x99, 0x19, 0x3F, 0xCD, 0xCC, 0x4C, 0x3F, // basis [0.6, 0.8]
            0x00, 0x00, 0x80, 0x3F,                         // shrink [1.0]
            0xA1, 0x67, 0x25, 0xB6,                         // CRC-32 0xB62567A1
        ];
        assert_eq!(encode(&tiny()).unwrap(), want);
        assert_eq!(encoded_len(&tiny()).unwrap(), want.len());
        assert_eq!(decode(want).unwrap(), tiny());
        // The same model as version 2 wrote it (no score byte; FORMAT.md's example then),
        // and as version 1 did: still read, the threshold on the closest distance.
        let mut v2 = want[..21].to_vec();
        v2.extend_from_slice(&want[22..]);
        v2[4] = 2;
        v2[8] = 0x28; // header_len 40
        v2.insert(56, 0x00); // one more byte of padding
        let n = v2.len() - 4;
        v2[n..].copy_from_slice(&[0xEB, 0xBC, 0x94, 0xD2]); // CRC-32 0xD294BCEB
        assert_eq!(decode(&v2).unwrap(), tiny());
        let mut v1 = v2.clone();
        v1[4] = 1;
        v1[n..].copy_from_slice(&[0x16, 0x4E, 0xF8, 0xFB]); // CRC-32 0xFBF84E16
        assert_eq!(decode(&v1).unwrap(), tiny());
        for (file, v) in [(&v1, 1), (&v2, 2), (&want.to_vec(), 3)] {
            let buf = Aligned::new(file);
            let view = ModelView::parse(&buf).unwrap();
            assert_eq!((view.version(), view.rule()), (v, Rule::best(None)));
        }
    }

    /// A version 2 file of `m` (no score byte), as that version wrote it.
    fn as_version_2(m: &Model) -> Vec<u8> {
        let (h, w) = split(&encode(m).unwrap());
        let mut hb = header_bytes(&h).unwrap();
        // The score's byte: where another score's header differs.
        let mut other = h.clone();
        other.score = if h.score == Score::Best { Score::Ratio } else { Score::Best };
        let ob = header_bytes(&other).unwrap();
        let at = hb.iter().zip(&ob).position(|(a, b)| a != b).unwrap();
        hb.remove(at);
        write_file(&hb, &w, 2).unwrap()
    }

    #[test]
    fn older_versions_read_with_their_threshold_on_the_closest_distance() {
        let (mut m, _) = valid();
        assert_eq!(m.score, Score::Contrast);
        let old = as_version_2(&m);
        let buf = Aligned::new(&old);
        let view = ModelView::parse(&buf).unwrap();
        assert_eq!((view.version(), view.rule()), (2, Rule::best(m.threshold)));
        m.score = Score::Best;
        assert_eq!(decode(&old).unwrap(), m);
        // A negative threshold was a valid (if useless) version 2 file: still read so; a
        // version 3 file refuses it.
        m.threshold = Some(-1.0);
        let mut neg = m.clone();
        neg.threshold = Some(1.0);
        let mut f = as_version_2(&neg);
        // Method, d, k, capacity: one byte each here; then Some(threshold).
        assert_eq!((f[HEADER_OFFSET + 4], &f[21..25]), (1, &1.0f32.to_le_bytes()[..]));
        f[21..25].copy_from_slice(&(-1.0f32).to_le_bytes());
        reseal(&mut f);
        assert_eq!(decode(&f).unwrap(), m);
        assert_eq!(encode(&m).unwrap_err(), Error::InvalidParameter);
    }

    /// Version 4 is written only for a model with warped copies (`fill` > 0), one byte after
    /// `shift`; without them the file is the version 3 one. A version 4 file whose `fill` is 0,
    /// or a version 3 reader's view of the extra byte, is refused.
    #[test]
    fn fill_is_version_4_and_only_then() {
        let mut m = tiny();
        let v3 = encode(&m).unwrap();
        assert_eq!(ModelView::parse(&Aligned::new(&v3)).unwrap().version(), 3);
        m.preprocess.fill = 5;
        let v4 = encode(&m).unwrap();
        assert_eq!(v4.len(), v3.len(), "the byte fits in the padding");
        let buf = Aligned::new(&v4);
        let view = ModelView::parse(&buf).unwrap();
        assert_eq!((view.version(), view.preprocess().fill), (4, 5));
        assert_eq!(decode(&v4).unwrap(), m);
        // header_len grew by one; the byte after shift (offset 16 + 6 + 8 + 2: method, d, k,
        // capacity, threshold, score, then scale, offset, image, shift) is fill.
        assert_eq!(v4[8], v3[8] + 1);
        let at = HEADER_OFFSET + 16;
        assert_eq!(v4[at], 5);
        let mut zero = v4.clone();
        zero[at] = 0;
        let n = zero.len() - 4;
        let crc = checksum(&zero[..n]);
        zero[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(error_of(&zero), Error::Malformed);
        // The same bytes called version 3: the header no longer decodes to its length.
        let mut as3 = v4.clone();
        as3[4] = 3;
        let crc = checksum(&as3[..n]);
        as3[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(error_of(&as3), Error::Malformed);
    }

    /// Version 5 is written only for a model with a query alignment (`align` > 0): `fill`
    /// (0 here) then `align` after `shift`. A version 5 file whose `align` is 0 or unknown,
    /// or that calls itself version 4, is refused; so is an alignment without an image.
    #[test]
    fn align_is_version_5_and_only_then() {
        let mut m = tiny();
        m.preprocess.image = Some(ImageSpec {
            width: 2,
            height: 1,
            source_width: 0,
            source_height: 0,
        });
        let v3 = encode(&m).unwrap();
        m.preprocess.align = 1;
        let v5 = encode(&m).unwrap();
        let buf = Aligned::new(&v5);
        let view = ModelView::parse(&buf).unwrap();
        assert_eq!((view.version(), view.preprocess().fill, view.preprocess().align), (5, 0, 1));
        assert_eq!(decode(&v5).unwrap(), m);
        assert_eq!(v5[8], v3[8] + 2);
        let at = HEADER_OFFSET + 16 + 4;
        assert_eq!(&v5[at..at + 2], &[0, 1], "fill, align");
        let resealed = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = v5.clone();
            f(&mut b);
            let n = b.len() - 4;
            let crc = checksum(&b[..n]);
            b[n..].copy_from_slice(&crc.to_le_bytes());
            error_of(&b)
        };
        assert_eq!(resealed(&|b| b[at + 1] = 0), Error::Malformed);
        assert_eq!(resealed(&|b| b[at + 1] = ALIGNS.len() as u8), Error::Malformed);
        assert_eq!(resealed(&|b| b[4] = 4), Error::Malformed);
        // No image: no alignment to write, and none to read.
        let mut blind = m.clone();
        blind.preprocess.image = None;
        assert_eq!(encode(&blind).unwrap_err(), Error::InvalidParameter);
    }

    #[test]
    fn round_trip_preserves_models_and_their_decisions() {
        for (name, m) in models() {
            let bytes = encode(&m).unwrap();
            assert_eq!(bytes.len(), encoded_len(&m).unwrap(), "{name}");
            assert_eq!(decode(&bytes).unwrap(), m, "{name}");

            // Fixed prefix and layout.
            let hl = header_len_of(&bytes);
            let wl = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
            assert_eq!(&bytes[..4], b"LDLM");
            let version = match (m.preprocess.fill, m.preprocess.align) {
                (_, 1..) => 5,
                (1.., 0) => 4,
                _ => 3,
            };
            assert_eq!(&bytes[4..8], &[version, 0, 0, 0], "{name}");
            let start = (HEADER_OFFSET + hl).div_ceil(16) * 16;
            assert_eq!(bytes.len(), start + wl + 4, "{name}");
            assert!(bytes[HEADER_OFFSET + hl..start].iter().all(|&b| b == 0));

            let buf = Aligned::new(&bytes);
            let view = ModelView::parse(&buf).unwrap();
            assert_eq!(view.file_len(), bytes.len());
            assert_eq!(view.crc(), u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap()));
            assert_eq!(view.weights().len() * 4, wl);
            assert_eq!(view.labels().collect::<Vec<_>>(), m.labels);
            assert_eq!(view.label(0), m.labels.first().cloned());
            assert_eq!(view.header().labels.as_slice(), m.labels.as_slice());
            assert_eq!(
                (view.method(), view.rule(), view.preprocess(), view.fit(), view.capacity()),
                (m.method, m.rule(), m.preprocess, m.fit, m.capacity)
            );
            assert_eq!((view.inputs(), view.outputs()), (m.inputs(), m.outputs()));
            assert_eq!((view.members(), view.len()), (m.members.len(), m.labels.len()));
            assert_eq!(view.to_model().unwrap(), m);
            // The encoder lays the weights out contiguously in member / class order.
            let mut next = 0u32;
            for (i, t) in view.header().members.iter().enumerate() {
                assert_eq!(t.offset, next);
                next += weights_of_target(&view, i) as u32;
                for c in 0..view.len() {
                    let e = view.header().classes[i * view.len() + c];
                    assert_eq!(e.offset, next);
                    next += weights_of_predictor(&view, i, c) as u32;
                }
            }
            assert_eq!(next as usize, view.weights().len());
            if let Some(l) = m.labels.first() {
                assert_eq!(view.class_index(l), Some(0));
            }
            assert_eq!(view.class_index("nope"), None);
            assert_eq!(view.target(view.members()).unwrap_err(), Error::InvalidParameter);
            assert_eq!(view.predictor(0, view.len()).unwrap_err(), Error::UnknownClass);
            assert_eq!(view.predictor(view.members(), 0).unwrap_err(), Error::UnknownClass);

            // Classification through the view equals the owned model's, bit for bit.
            let mut rng = Rng::new(42);
            let mut inputs: Vec<Vec<f32>> = (0..4).map(|_| (0..D).map(|_| rng.normal()).collect()).collect();
            inputs.extend(support(1).iter().map(|c| c[..D].to_vec()));
            for x in &inputs {
                if m.labels.is_empty() {
                    assert_eq!(classify(&view, x, m.rule(), &mut [], &mut []).unwrap_err(), Error::EmptyClass);
                    continue;
                }
                let n = scratch_len(&m).unwrap();
                assert_eq!(n, scratch_len(&view).unwrap());
                let (mut s1, mut s2) = (vec![0.0; n], vec![0.0; n]);
                let (mut d1, mut d2) = (vec![0.0; m.labels.len()], vec![0.0; m.labels.len()]);
                let a = classify(&m, x, m.rule(), &mut s1, &mut d1).unwrap();
                let b = classify(&view, x, view.rule(), &mut s2, &mut d2).unwrap();
                assert_eq!((a.best, a.class, a.score), (b.best, b.class, b.score), "{name}");
                assert_eq!(
                    (a.novelty.to_bits(), a.agreement.to_bits()),
                    (b.novelty.to_bits(), b.agreement.to_bits()),
                    "{name}"
                );
                assert!(d1.iter().zip(&d2).all(|(u, v)| u.to_bits() == v.to_bits()), "{name}");
            }
        }
    }

    fn weights_of_target(view: &ModelView<'_>, m: usize) -> usize {
        match view.target(m).unwrap() {
            Target::Identity { .. } => 0,
            Target::Linear(l) => l.weight().len() + l.bias().map_or(0, |b| b.len()),
        }
    }

    fn weights_of_predictor(view: &ModelView<'_>, m: usize, c: usize) -> usize {
        match view.predictor(m, c).unwrap() {
            Predictor::Dense(l) => l.weight().len() + l.bias().map_or(0, |b| b.len()),
            Predictor::Subspace(s) => {
                let opt = |o: Option<&[f32]>| o.map_or(0, |v| v.len());
                opt(s.mean()) + s.basis().len() + s.shrink().len() + opt(s.proj()) + opt(s.target_mean())
            }
            Predictor::Compact(c) => c.words().len(),
        }
    }

    #[test]
    fn decoder_does_not_rely_on_contiguity() {
        // Classes stored in reverse order after a gap, and two entries sharing weights.
        let (m, bytes) = valid();
        let (mut h, w) = split(&bytes);
        let mut shuffled = vec![0.0f32; 3]; // a gap before the first entry
        let mut entries: Vec<(usize, Vec<f32>)> = Vec::new();
        let view_bytes = Aligned::new(&bytes);
        let view = ModelView::parse(&view_bytes).unwrap();
        for c in (0..view.len()).rev() {
            let e = h.classes[c];
            let n = weights_of_predictor(&view, 0, c);
            entries.push((c, w[e.offset as usize..e.offset as usize + n].to_vec()));
        }
        for (c, part) in &entries {
            h.classes[*c].offset = shuffled.len() as u32;
            shuffled.extend_from_slice(part);
        }
        let t = weights_of_target(&view, 0);
        h.members[0].offset = shuffled.len() as u32;
        shuffled.extend_from_slice(&w[..t]);
        let moved = file(&h, &shuffled);
        assert_eq!(decode(&moved).unwrap(), m);
        // Aliased: class 1 reads class 0's weights.
        h.classes[1] = h.classes[0];
        let mut aliased = m.clone();
        aliased.members[0].predictors[1] = aliased.members[0].predictors[0].clone();
        assert_eq!(decode(&file(&h, &shuffled)).unwrap(), aliased);
    }

    #[test]
    fn every_decode_error_is_reachable() {
        let (_, good) = valid();
        let hl = header_len_of(&good);
        let (h, w) = split(&good);
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            error_of(&b)
        };

        // Prefix.
        assert_eq!(with(&|b| b[0] = b'X'), Error::BadMagic);
        assert_eq!(with(&|b| b[4] = 6), Error::UnsupportedVersion(6));
        assert_eq!(
            with(&|b| b[4..6].copy_from_slice(&0u16.to_le_bytes())),
            Error::UnsupportedVersion(0)
        );
        assert_eq!(
            with(&|b| {
                b[6] = 1;
                reseal(b)
            }),
            Error::Malformed
        );

        // Sizes.
        for n in [0, 3, 19, 20, hl, good.len() - 5, good.len() - 1] {
            assert_eq!(error_of(&good[..n]), Error::Truncated, "cut at {n}");
        }
        assert_eq!(
            with(&|b| {
                b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
                reseal(b)
            }),
            Error::Truncated
        );
        assert_eq!(
            with(&|b| {
                b[12..16].copy_from_slice(&(u32::MAX - 3).to_le_bytes());
                reseal(b)
            }),
            Error::Truncated
        );
        assert_eq!(
            with(&|b| {
                b[12] = b[12].wrapping_add(2);
                reseal(b)
            }),
            Error::Malformed
        );
        assert_eq!(
            with(&|b| {
                b.extend_from_slice(&[0; 4]);
                reseal(b)
            }),
            Error::Malformed
        );

        // CRC.
        let last = good.len() - 1;
        assert_eq!(with(&|b| b[last] ^= 1), Error::CrcMismatch);
        assert_eq!(with(&|b| b[last - 4] ^= 0x80), Error::CrcMismatch);
        assert_eq!(with(&|b| b[HEADER_OFFSET] = 9), Error::CrcMismatch);

        // Header.
        assert_eq!(
            with(&|b| {
                b[HEADER_OFFSET] = 9;
                reseal(b)
            }),
            Error::Malformed,
            "bad method tag"
        );
        let hb = header_bytes(&h).unwrap();
        let mut extra = hb.clone();
        extra.push(0);
        assert_eq!(
            error_of(&write_file(&extra, &w, 2).unwrap()),
            Error::Malformed,
            "leftover header byte"
        );
        assert_eq!(
            error_of(&write_file(&hb[..hb.len() - 1], &w, 2).unwrap()),
            Error::Malformed,
            "header cut short"
        );
        // Non-zero padding.
        let pad_file = |hbytes: &[u8]| {
            let mut f = write_file(hbytes, &w, 2).unwrap();
            let end = HEADER_OFFSET + hbytes.len();
            f[end] = 1;
            reseal(&mut f);
            f
        };
        assert_ne!((HEADER_OFFSET + hb.len()) % 16, 0, "the fixture's header leaves no padding");
        assert_eq!(error_of(&pad_file(&hb)), Error::Malformed, "non-zero padding");

        let bad = |f: &dyn Fn(&mut Header)| {
            let mut h2 = h.clone();
            f(&mut h2);
            error_of(&file(&h2, &w))
        };
        let nw = w.len() as u32;
        assert_eq!(bad(&|h| h.classes[0].offset = nw), Error::Malformed, "entry past the end");
        assert_eq!(bad(&|h| h.classes[2].offset = nw - 1), Error::Malformed, "entry overruns the end");
        assert_eq!(bad(&|h| h.classes[0].offset = u32::MAX), Error::Malformed);
        assert_eq!(bad(&|h| h.members[0].offset = nw - 1), Error::Malformed);
        assert_eq!(
            bad(&|h| h.classes[0].form = ClassForm::Subspace {
                affine: true,
                rank: D as u32 + 1
            }),
            Error::Malformed,
            "rank > d"
        );
        assert_eq!(
            bad(&|h| h.classes[0].form = ClassForm::Subspace {
                affine: true,
                rank: u32::MAX
            }),
            Error::Malformed
        );
        assert_eq!(
            bad(&|h| h.members[0].kind = TargetKind::Identity),
            Error::Malformed,
            "identity with d != k"
        );
        assert_eq!(bad(&|h| h.labels[1] = h.labels[0].clone()), Error::Malformed, "duplicate label");
        assert_eq!(
            bad(&|h| h.labels.push(label("more").unwrap()).unwrap()),
            Error::Malformed,
            "labels != classes"
        );
        assert_eq!(
            bad(&|h| {
                h.classes.pop();
            }),
            Error::Malformed,
            "entries != members * classes"
        );
        assert_eq!(
            bad(&|h| {
                h.members.clear();
                h.classes.clear();
            }),
            Error::Malformed,
            "no member"
        );
        assert_eq!(bad(&|h| h.capacity = 2), Error::Malformed, "more labels than capacity");
        assert_eq!(bad(&|h| h.inputs = 0), Error::Malformed);
        assert_eq!(bad(&|h| h.outputs = u32::MAX), Error::Malformed);

        // Non-finite weights and parameters.
        let start = (HEADER_OFFSET + hl).div_ceil(16) * 16;
        assert_eq!(
            with(&|b| {
                b[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
                reseal(b)
            }),
            Error::NonFinite
        );
        let end = good.len() - 8;
        assert_eq!(
            with(&|b| {
                b[end..end + 4].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes());
                reseal(b)
            }),
            Error::NonFinite
        );
        assert_eq!(bad(&|h| h.threshold = Some(f32::NAN)), Error::NonFinite);
        assert_eq!(bad(&|h| h.threshold = Some(f32::INFINITY)), Error::NonFinite);
        assert_eq!(bad(&|h| h.threshold = Some(f32::NEG_INFINITY)), Error::NonFinite);
        assert_eq!(bad(&|h| h.threshold = Some(-0.5)), Error::InvalidParameter, "negative threshold");
        assert!(decode(&file(
            &Header {
                threshold: Some(0.0),
                ..h.clone()
            },
            &w
        ))
        .is_ok());
        // The score: one of the tags, and none that needs per-class spreads (no file holds
        // them yet); the tag is the byte after the threshold (header byte 9 here).
        for score in [Score::Normalized, Score::NormalizedMin] {
            assert_eq!(bad(&|h| h.score = score), Error::Malformed, "{score:?}");
        }
        assert_eq!((h.score, good[HEADER_OFFSET + 9]), (Score::Contrast, 2));
        for tag in [6, 0x80, 0xFF] {
            assert_eq!(
                with(&|b| {
                    b[HEADER_OFFSET + 9] = tag;
                    reseal(b)
                }),
                Error::Malformed,
                "score tag {tag}"
            );
        }
        assert_eq!(
            error_of(&write_file(&header_bytes(&h).unwrap()[..10], &w, 3).unwrap()),
            Error::Malformed,
            "cut after the score"
        );
        assert_eq!(bad(&|h| h.preprocess.scale = f32::INFINITY), Error::NonFinite);
        assert_eq!(bad(&|h| h.fit.rank_tol = f32::NAN), Error::NonFinite);
    }

    #[test]
    fn misaligned_files_are_refused_in_place_but_decoded() {
        let (m, good) = valid();
        let mut buf = vec![0u32; good.len() / 4 + 2];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
        for shift in 1..4 {
            bytes[shift..shift + good.len()].copy_from_slice(&good);
            let at = &bytes[shift..shift + good.len()];
            assert_eq!(ModelView::parse(at).unwrap_err(), Error::Misaligned);
            assert_eq!(decode(at).unwrap(), m);
        }
        bytes[4..4 + good.len()].copy_from_slice(&good);
        assert!(ModelView::parse(&bytes[4..4 + good.len()]).is_ok());
    }

    #[test]
    fn encode_refuses_what_the_format_cannot_hold() {
        let (m, _) = valid();
        let mut dup = m.clone();
        dup.labels[1] = dup.labels[0].clone();
        assert_eq!(encode(&dup).unwrap_err(), Error::DuplicateLabel);
        let mut nan = m.clone();
        nan.threshold = Some(f32::NAN);
        assert_eq!(encode(&nan).unwrap_err(), Error::NonFinite);
        let mut nan_w = m.clone();
        if let Target::Linear(l) = &mut nan_w.members[0].target {
            l.weight_mut()[3] = f32::INFINITY;
        }
        assert_eq!(encode(&nan_w).unwrap_err(), Error::NonFinite);
        let mut none = m.clone();
        none.members.clear();
        assert_eq!(encode(&none).unwrap_err(), Error::InvalidParameter);
        let mut over = m.clone();
        over.capacity = 2;
        assert_eq!(encode(&over).unwrap_err(), Error::CapacityFull);

        // 65 classes; then 3 members x 50 classes = 150 entries.
        let d = 2;
        let names: Vec<std::string::String> = (0..65).map(|i| std::format!("c{i}")).collect();
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let data: Vec<Vec<f32>> = (0..65).map(|i| vec![i as f32, 1.0]).collect();
        let views: Vec<&[f32]> = data.iter().map(|v| v.as_slice()).collect();
        let cfg = ClosedFormConfig {
            k: 3,
            ..Default::default()
        };
        let big = methods::fit_closed_form(&views, d, &names, &cfg, 1).unwrap();
        assert_eq!(encode(&big).unwrap_err(), Error::CapacityFull);
        assert_eq!(encoded_len(&big).unwrap_err(), Error::CapacityFull);
        let mut wide = methods::fit_closed_form(&views[..50], d, &names[..50], &cfg, 1).unwrap();
        assert!(encode(&wide).is_ok());
        let mem = wide.members[0].clone();
        wide.members.push(mem.clone());
        wide.members.push(mem);
        assert_eq!(encode(&wide).unwrap_err(), Error::CapacityFull);
    }
}
