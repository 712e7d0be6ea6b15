//! The serial protocol between a host and a device: one frame format, versioned, defined once
//! here so that both sides use the same code (`core/PROTOCOL.md` is the specification).
//!
//! A frame on the wire is `COBS(payload ++ crc32_le(payload)) ++ 0x00`, where `payload` is the
//! postcard encoding of `(version: u8, id: u32, body)`, `body` a [`Request`] (host to device)
//! or a [`Response`] (device to host), and the CRC-32 the one of the model file
//! ([`crate::format::checksum`], CRC-32/ISO-HDLC). COBS (consistent overhead byte stuffing)
//! removes every 0x00 from the frame, so 0x00 only ever ends one: a receiver that loses bytes
//! resynchronises at the next 0x00. Nothing here allocates or panics: decoding any bytes
//! (garbage, truncated, oversized) gives a [`FrameError`].

use crate::error::Error;
use crate::format::{checksum, MAX_CLASSES};
use crate::model::Label;
use crate::novelty::Score;
use serde::{Deserialize, Serialize};

/// Protocol version carried in every frame; a receiver refuses any other.
pub const VERSION: u8 = 3;
/// The byte that ends every frame (and appears nowhere else in one).
pub const DELIMITER: u8 = 0x00;
/// Longest frame on the wire, delimiter included. A receiver may drop longer ones
/// ([`FrameError::TooLong`]).
pub const MAX_FRAME_LEN: usize = 4096;
/// Bytes of the CRC-32 after the payload.
pub const CRC_LEN: usize = 4;
/// Most `f32` values in one sample: what fits a frame of [`MAX_FRAME_LEN`] bytes.
pub const MAX_SAMPLE_VALUES: usize = 1000;

/// What a frame could not be decoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// Longer than [`MAX_FRAME_LEN`] (or than the buffer it is decoded into).
    TooLong,
    /// Not valid COBS (a 0x00 inside, or a code byte running past the end).
    Cobs,
    /// Shorter than the smallest payload plus its CRC.
    Truncated,
    /// The CRC-32 does not match the payload.
    Crc,
    /// A protocol version this build does not speak.
    Version(u8),
    /// The payload is not a valid message (bad tag, length, UTF-8, trailing bytes).
    Malformed,
    /// The output buffer is too small to encode the frame.
    BufferTooSmall,
}

/// A failed decode: what went wrong, and the request id when the frame was intact enough to
/// read it (so that the reply can carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DecodeError {
    /// What went wrong.
    pub kind: FrameError,
    /// The request id, if it could be read.
    pub id: Option<u32>,
}

impl From<FrameError> for DecodeError {
    fn from(kind: FrameError) -> Self {
        DecodeError { kind, id: None }
    }
}

/// Declares a one-byte wire code as an enum whose every known value is a variant, plus
/// `Unknown(u8)` for the codes of a newer peer (after smoltcp's `enum_with_unknown!`): a
/// match on it is exhaustive, with no wildcard, and every byte decodes.
macro_rules! wire_code {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $variant:ident = $value:literal => $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub enum $name {
            $($(#[$vm])* $variant,)+
            /// A code this build does not know (a newer peer's).
            Unknown(u8),
        }

        impl From<u8> for $name {
            fn from(v: u8) -> Self {
                match v {
                    $($value => Self::$variant,)+
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(c: $name) -> u8 {
                match c {
                    $($name::$variant => $value,)+
                    $name::Unknown(v) => v,
                }
            }
        }

        impl $name {
            /// What the code means, in a few words (hosts show it; "unknown code" for
            /// [`Self::Unknown`]).
            pub const fn describe(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Unknown(_) => "unknown code",
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
                s.serialize_u8(u8::from(*self))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
                u8::deserialize(d).map(Self::from)
            }
        }
    };
}

wire_code! {
    /// A stable, message-free error code (one byte on the wire). Codes 1..=31 are the core's
    /// [`Error`] variants, 32..=47 frame errors, 48.. device states. New codes may be added;
    /// a receiver shows one it does not know as [`ErrorCode::Unknown`].
    pub enum ErrorCode {
        /// [`Error::DimensionMismatch`]: e.g. a sample of the wrong length.
        DimensionMismatch = 1 => "dimension mismatch",
        /// [`Error::CapacityFull`]: no room for another class.
        CapacityFull = 2 => "capacity full",
        /// [`Error::EmptyClass`]: no classes to decide between, or no samples.
        EmptyClass = 3 => "empty class",
        /// [`Error::NonFinite`]: NaN or infinity in a sample.
        NonFinite = 4 => "non-finite value",
        /// [`Error::BufferTooSmall`]: the device's buffers cannot hold this.
        BufferTooSmall = 5 => "buffer too small",
        /// [`Error::InvalidParameter`].
        InvalidParameter = 6 => "invalid parameter",
        /// [`Error::UnknownClass`]: no class has this label.
        UnknownClass = 7 => "unknown class",
        /// [`Error::DuplicateLabel`]: a class with this label exists.
        DuplicateLabel = 8 => "duplicate label",
        /// [`Error::LabelTooLong`].
        LabelTooLong = 9 => "label too long",
        /// [`Error::BadMagic`]: the model region holds no model file.
        BadMagic = 10 => "bad magic",
        /// [`Error::UnsupportedVersion`]: model file of another format version.
        UnsupportedVersion = 11 => "unsupported version",
        /// [`Error::CrcMismatch`]: the model (or store) is corrupted.
        CrcMismatch = 12 => "CRC mismatch",
        /// [`Error::Truncated`].
        Truncated = 13 => "truncated",
        /// [`Error::Malformed`].
        Malformed = 14 => "malformed",
        /// [`Error::Misaligned`].
        Misaligned = 15 => "misaligned",
        /// A core error this build has no code for.
        Other = 31 => "other core error",
        /// [`FrameError::TooLong`].
        FrameTooLong = 32 => "frame too long",
        /// [`FrameError::Cobs`].
        FrameCobs = 33 => "frame: bad COBS",
        /// [`FrameError::Truncated`].
        FrameTruncated = 34 => "frame truncated",
        /// [`FrameError::Crc`].
        FrameCrc = 35 => "frame CRC mismatch",
        /// [`FrameError::Version`].
        FrameVersion = 36 => "frame version",
        /// [`FrameError::Malformed`].
        FrameMalformed = 37 => "frame body malformed",
        /// [`FrameError::BufferTooSmall`].
        FrameBuffer = 38 => "reply too large",
        /// The device has no valid model: it answers `Info` but refuses to classify or enroll.
        NoModel = 48 => "no valid model",
        /// `EnrollSample` or `EnrollAbort` without an enrollment in progress.
        NotEnrolling = 49 => "not enrolling",
        /// The enrolled classes could not be saved to (or read from) flash.
        Storage = 50 => "storage failed",
        /// The request is valid but this device cannot do it (e.g. shift augmentation for
        /// more samples than its buffer holds, or an ensemble model with enrolled classes).
        Unsupported = 51 => "unsupported on this device",
        /// `EnrollSample` whose token is not the enrollment in progress (another host's, or
        /// one replaced since): the sample is not taken.
        WrongEnrollment = 52 => "sample for another enrollment",
    }
}

impl From<Error> for ErrorCode {
    fn from(e: Error) -> Self {
        match e {
            Error::DimensionMismatch { .. } => Self::DimensionMismatch,
            Error::CapacityFull => Self::CapacityFull,
            Error::EmptyClass => Self::EmptyClass,
            Error::NonFinite => Self::NonFinite,
            Error::BufferTooSmall => Self::BufferTooSmall,
            Error::InvalidParameter => Self::InvalidParameter,
            Error::UnknownClass => Self::UnknownClass,
            Error::DuplicateLabel => Self::DuplicateLabel,
            Error::LabelTooLong => Self::LabelTooLong,
            Error::BadMagic => Self::BadMagic,
            Error::UnsupportedVersion(_) => Self::UnsupportedVersion,
            Error::CrcMismatch => Self::CrcMismatch,
            Error::Truncated => Self::Truncated,
            Error::Malformed => Self::Malformed,
            Error::Misaligned => Self::Misaligned,
            Error::Storage => Self::Storage,
        }
    }
}

impl From<FrameError> for ErrorCode {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLong => Self::FrameTooLong,
            FrameError::Cobs => Self::FrameCobs,
            FrameError::Truncated => Self::FrameTruncated,
            FrameError::Crc => Self::FrameCrc,
            FrameError::Version(_) => Self::FrameVersion,
            FrameError::Malformed => Self::FrameMalformed,
            FrameError::BufferTooSmall => Self::FrameBuffer,
        }
    }
}

/// Host to device. Samples are raw (before the model's preprocessing), as little-endian
/// `f32` bytes, borrowed from the frame buffer (no copy while decoding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Request<'a> {
    /// What the device holds.
    Info,
    /// Classify one sample: `d` values, `4 d` bytes.
    Classify {
        /// The sample, `f32` little-endian.
        sample: &'a [u8],
    },
    /// Start enrolling a new class from `samples` [`Request::EnrollSample`]s that carry
    /// the token of the reply. Replaces an enrollment in progress.
    EnrollStart {
        /// The new class's label (unique).
        label: Label,
        /// How many samples form the class (>= 1).
        samples: u16,
    },
    /// One sample of the class being enrolled (as [`Request::Classify`]'s).
    EnrollSample {
        /// The enrollment's token, from the [`Response::EnrollProgress`] that started it:
        /// a sample meant for another enrollment is refused, not taken.
        token: u16,
        /// The sample.
        data: &'a [u8],
    },
    /// The labels of every class (the model's, then the enrolled ones).
    List,
    /// Remove an enrolled class (the model's own classes cannot be removed).
    Forget {
        /// Its label.
        label: Label,
    },
    /// Drop the enrollment in progress (whoever started it), e.g. one a host abandoned.
    EnrollAbort,
}

/// Whether the device has a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ModelStatus {
    /// The model region is erased.
    Absent,
    /// The model region holds something that is not a valid model.
    Invalid {
        /// Why it was refused.
        code: ErrorCode,
    },
    /// A valid model.
    Valid {
        /// Its CRC-32 (the last four bytes of the file).
        crc: u32,
    },
}

/// Answer to [`Request::Info`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Info {
    /// The device's protocol version ([`VERSION`]).
    pub protocol: u8,
    /// The model.
    pub model: ModelStatus,
    /// Input dimension `d` (0 without a model).
    pub inputs: u32,
    /// Target outputs `k` (0 without a model).
    pub outputs: u32,
    /// Number of classes (model and enrolled).
    pub classes: u16,
    /// Most classes the device can enroll.
    pub capacity: u16,
    /// Classes enrolled on the device.
    pub enrolled: u16,
    /// Most directions an enrolled class keeps.
    pub max_rank: u16,
    /// Most samples one enrollment takes (after augmentation, divided by its factor).
    pub max_samples: u16,
    /// Every class's label, the model's first.
    pub labels: heapless::Vec<Label, MAX_CLASSES>,
    /// The enrollment in progress, if any.
    pub enrolling: Option<Enrolling>,
}

/// An enrollment in progress, as [`Info`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Enrolling {
    /// The class being enrolled.
    pub label: Label,
    /// Samples taken so far.
    pub got: u16,
    /// Samples it needs.
    pub of: u16,
}

/// Answer to [`Request::Classify`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Classified {
    /// Index of the closest class.
    pub class: u16,
    /// Its label.
    pub label: Label,
    /// Every class's distance, in class order.
    pub distances: heapless::Vec<f32, MAX_CLASSES>,
    /// The model's novelty score of the sample (`score` says which: for
    /// [`Score::Best`], the closest class's distance), what its threshold is compared with;
    /// NaN when the score cannot tell ([`crate::classify::Classification::novelty`]).
    pub novelty: f32,
    /// "Unknown": the novelty is above the model's threshold (the sample is new to every
    /// class), or every class is at the same distance (nothing tells them apart).
    pub unknown: bool,
    /// Which novelty score `novelty` is: the model file's (version 3 on).
    pub score: Score,
}

/// Device to host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Response {
    /// Answer to `Info`.
    Info(Info),
    /// Answer to `Classify`.
    Classified(Classified),
    /// An enrollment started (`got` 0), or a sample of it was taken.
    EnrollProgress {
        /// The enrollment's token, which its samples carry.
        token: u16,
        /// Samples taken so far.
        got: u16,
        /// Samples the enrollment needs.
        of: u16,
    },
    /// The enrollment is done: the class is usable (and stored).
    Enrolled {
        /// Its label.
        label: Label,
        /// The rank of its fit.
        rank: u16,
    },
    /// Answer to `List`.
    Listed {
        /// Every class's label, the model's first.
        labels: heapless::Vec<Label, MAX_CLASSES>,
    },
    /// The class was removed.
    Forgotten,
    /// The request failed.
    Error {
        /// Why.
        code: ErrorCode,
    },
    /// The enrollment in progress was dropped.
    EnrollAborted {
        /// The class it was enrolling.
        label: Label,
    },
}

#[derive(Serialize)]
struct FrameOut<'b, T> {
    version: u8,
    id: u32,
    body: &'b T,
}

#[derive(Deserialize)]
struct FrameIn<T> {
    version: u8,
    id: u32,
    body: T,
}

/// Most bytes COBS adds to `n` bytes of data.
pub const fn cobs_overhead(n: usize) -> usize {
    (n / 254).saturating_add(1)
}

/// Encodes `body` with request id `id` as one complete frame (delimiter included) into
/// `buf`; returns its length. Works in `buf` alone: the payload is written at the end of
/// the space it needs and COBS-encoded forward in place.
pub fn encode<T: Serialize>(id: u32, body: &T, buf: &mut [u8]) -> Result<usize, FrameError> {
    let frame = FrameOut {
        version: VERSION,
        id,
        body,
    };
    let n = postcard::serialize_with_flavor(&frame, postcard::ser_flavors::Size::default()).map_err(|_| FrameError::Malformed)?;
    let raw = n.checked_add(CRC_LEN).ok_or(FrameError::BufferTooSmall)?;
    let ovh = cobs_overhead(raw);
    let total = ovh.saturating_add(raw).saturating_add(1);
    if total > buf.len() {
        return Err(FrameError::BufferTooSmall);
    }
    let payload = buf.get_mut(ovh..ovh.saturating_add(n)).ok_or(FrameError::BufferTooSmall)?;
    let used = postcard::to_slice(&frame, payload).map_err(|_| FrameError::BufferTooSmall)?.len();
    if used != n {
        return Err(FrameError::Malformed);
    }
    finish_frame(buf, ovh, n)
}

/// Frames arbitrary payload bytes (CRC-32, COBS, delimiter) into `buf`; returns the frame's
/// length. [`encode`] is this after postcard; a host uses it directly to send deliberately
/// odd frames (another protocol version, a payload that is not a message) in tests; so it
/// exists only with the `testing` feature.
#[cfg(any(test, feature = "testing"))]
pub fn frame_raw(payload: &[u8], buf: &mut [u8]) -> Result<usize, FrameError> {
    let n = payload.len();
    let ovh = cobs_overhead(n.saturating_add(CRC_LEN));
    buf.get_mut(ovh..ovh.saturating_add(n))
        .ok_or(FrameError::BufferTooSmall)?
        .copy_from_slice(payload);
    finish_frame(buf, ovh, n)
}

/// Appends the CRC to the `n` payload bytes at `buf[ovh..]`, COBS-encodes them to the front
/// of `buf` in place and adds the delimiter; returns the frame's length.
fn finish_frame(buf: &mut [u8], ovh: usize, n: usize) -> Result<usize, FrameError> {
    // Every sum below is at most buf.len() + 1 once this check passed; saturation turns
    // an absurd `ovh` or `n` into a refusal instead of a wrap.
    let raw = n.saturating_add(CRC_LEN);
    let (data_end, raw_end) = (ovh.saturating_add(n), ovh.saturating_add(raw));
    if raw_end.saturating_add(1) > buf.len() {
        return Err(FrameError::BufferTooSmall);
    }
    let crc = checksum(buf.get(ovh..data_end).ok_or(FrameError::BufferTooSmall)?);
    buf.get_mut(data_end..raw_end)
        .ok_or(FrameError::BufferTooSmall)?
        .copy_from_slice(&crc.to_le_bytes());
    let len = cobs_encode_in_place(buf, ovh, raw)?;
    *buf.get_mut(len).ok_or(FrameError::BufferTooSmall)? = DELIMITER;
    Ok(len.saturating_add(1))
}

/// COBS-encodes `buf[src..src + n]` into `buf[0..]`, in place (`src >= cobs_overhead(n)`);
/// returns the encoded length. The writer never overtakes the reader: before input byte
/// `i` at most `1 + i / 254` code bytes have been written.
///
/// Written here rather than taken from postcard's `Cobs` flavour and `CobsAccumulator`:
/// those encode into a second buffer and decode from their own, and the CRC-32 goes inside
/// the COBS block after postcard's bytes; in place, one frame buffer per direction is all the
/// firmware holds (`budget::TX_BYTES`). The frames are plain COBS either way (a test checks
/// them against a reference encoder).
fn cobs_encode_in_place(buf: &mut [u8], src: usize, n: usize) -> Result<usize, FrameError> {
    if src < cobs_overhead(n) || src.saturating_add(n) > buf.len() {
        return Err(FrameError::BufferTooSmall);
    }
    let mut code_at = 0usize; // where the current block's code byte goes
    let mut out = 1usize; // next data byte position
    let mut code = 1u8;
    for i in 0..n {
        // Positions stay below buf.len() (checked by each get); saturating keeps it so.
        let b = *buf.get(src.saturating_add(i)).ok_or(FrameError::BufferTooSmall)?;
        if b == 0 {
            *buf.get_mut(code_at).ok_or(FrameError::BufferTooSmall)? = code;
            code_at = out;
            out = out.saturating_add(1);
            code = 1;
        } else {
            *buf.get_mut(out).ok_or(FrameError::BufferTooSmall)? = b;
            out = out.saturating_add(1);
            code = code.saturating_add(1);
            if code == 0xFF {
                *buf.get_mut(code_at).ok_or(FrameError::BufferTooSmall)? = code;
                code_at = out;
                out = out.saturating_add(1);
                code = 1;
            }
        }
    }
    *buf.get_mut(code_at).ok_or(FrameError::BufferTooSmall)? = code;
    Ok(out)
}

/// Decodes COBS in place (`data` without the delimiter); returns the decoded length.
fn cobs_decode_in_place(data: &mut [u8]) -> Result<usize, FrameError> {
    let n = data.len();
    let (mut r, mut w) = (0usize, 0usize);
    while r < n {
        let code = *data.get(r).ok_or(FrameError::Cobs)?;
        if code == 0 {
            return Err(FrameError::Cobs);
        }
        // r and w stay at most n (each byte is read or written through a checked get).
        r = r.saturating_add(1);
        let run = usize::from(code.saturating_sub(1));
        if r.saturating_add(run) > n {
            return Err(FrameError::Cobs);
        }
        for _ in 0..run {
            let b = *data.get(r).ok_or(FrameError::Cobs)?;
            if b == 0 {
                return Err(FrameError::Cobs);
            }
            *data.get_mut(w).ok_or(FrameError::Cobs)? = b;
            r = r.saturating_add(1);
            w = w.saturating_add(1);
        }
        // A block shorter than 254 data bytes stands for a zero, except at the very end.
        if code != 0xFF && r < n {
            *data.get_mut(w).ok_or(FrameError::Cobs)? = 0;
            w = w.saturating_add(1);
        }
    }
    Ok(w)
}

/// Decodes one frame in place: `frame` is the bytes up to the delimiter (a trailing
/// delimiter is allowed). The body borrows from `frame` (e.g. a sample's bytes). Returns the
/// request id and the body.
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a mut [u8]) -> Result<(u32, T), DecodeError> {
    let mut len = frame.len();
    if frame.last() == Some(&DELIMITER) {
        len = len.saturating_sub(1);
    }
    if len.saturating_add(1) > MAX_FRAME_LEN {
        return Err(FrameError::TooLong.into());
    }
    let data = frame.get_mut(..len).ok_or(FrameError::Truncated)?;
    let n = cobs_decode_in_place(data)?;
    // version (1) + id (>= 1) + crc.
    if n < 2 + CRC_LEN {
        return Err(FrameError::Truncated.into());
    }
    let data: &'a [u8] = data;
    let (payload, crc) = data
        .get(..n)
        .and_then(|d| d.split_at_checked(n.checked_sub(CRC_LEN)?))
        .ok_or(FrameError::Truncated)?;
    let mut c = [0u8; 4];
    c.copy_from_slice(crc);
    if checksum(payload) != u32::from_le_bytes(c) {
        return Err(FrameError::Crc.into());
    }
    let version = *payload.first().ok_or(FrameError::Truncated)?;
    let id = postcard::take_from_bytes::<(u8, u32)>(payload).ok().map(|((_, id), _)| id);
    if version != VERSION {
        return Err(DecodeError {
            kind: FrameError::Version(version),
            id,
        });
    }
    let malformed = DecodeError {
        kind: FrameError::Malformed,
        id,
    };
    let (f, rest) = postcard::take_from_bytes::<FrameIn<T>>(payload).map_err(|_| malformed)?;
    if !rest.is_empty() || f.version != VERSION {
        return Err(malformed);
    }
    Ok((f.id, f.body))
}

/// Reads a sample into `out`: `4 * out.len()` bytes of little-endian `f32`, or `out.len()`
/// bytes of 8-bit values (0..=255, as many sensors and images give them: a quarter of the
/// bytes on the wire). Any other length is `DimensionMismatch`.
pub fn read_sample(bytes: &[u8], out: &mut [f32]) -> Result<(), Error> {
    if bytes.len() == out.len() {
        for (o, &b) in out.iter_mut().zip(bytes) {
            *o = f32::from(b);
        }
        return Ok(());
    }
    if !bytes.len().is_multiple_of(4) || bytes.len() / 4 != out.len() {
        return Err(Error::DimensionMismatch {
            expected: out.len() as u32,
            found: (bytes.len() / 4) as u32,
        });
    }
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        let mut a = [0u8; 4];
        a.copy_from_slice(c);
        *o = f32::from_le_bytes(a);
    }
    Ok(())
}

/// A sample's wire bytes into `out`: one byte per value when every value is an integer in
/// 0..=255 (read back as the same `f32`s), else 4 bytes of little-endian `f32` per value.
/// Returns the bytes written.
pub fn sample_bytes<'b>(values: &[f32], out: &'b mut [u8]) -> Result<&'b [u8], Error> {
    let small = values
        .iter()
        .all(|&v| (0.0..=255.0).contains(&v) && v == (v as u8) as f32 && v.to_bits() != (-0.0f32).to_bits());
    if small {
        let dst = out.get_mut(..values.len()).ok_or(Error::BufferTooSmall)?;
        for (d, &v) in dst.iter_mut().zip(values) {
            *d = v as u8;
        }
        return Ok(dst);
    }
    write_sample(values, out)
}

/// Writes `values` as little-endian `f32` bytes into `out` (exactly `4 * values.len()`);
/// returns the bytes written.
pub fn write_sample<'b>(values: &[f32], out: &'b mut [u8]) -> Result<&'b [u8], Error> {
    let n = values.len().checked_mul(4).ok_or(Error::BufferTooSmall)?;
    let dst = out.get_mut(..n).ok_or(Error::BufferTooSmall)?;
    for (c, v) in dst.chunks_exact_mut(4).zip(values) {
        c.copy_from_slice(&v.to_le_bytes());
    }
    Ok(dst)
}

/// Collects frames from a byte stream: bytes go in one at a time, a complete frame (up to
/// its delimiter) comes out. An overlong frame is dropped up to its delimiter and reported
/// once as [`FrameError::TooLong`].
#[derive(Debug)]
pub struct FrameReader<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
}

/// What [`FrameReader::push`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// More bytes are needed.
    Pending,
    /// A frame of this many bytes (delimiter excluded) is in [`FrameReader::frame`].
    Frame(usize),
    /// A frame longer than the buffer ended here; it was dropped.
    Overflow,
}

impl<const N: usize> Default for FrameReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameReader<N> {
    /// An empty reader.
    pub const fn new() -> Self {
        FrameReader {
            buf: [0; N],
            len: 0,
            overflow: false,
        }
    }
    /// Takes one byte. After `Push::Frame(n)`, read the frame with [`FrameReader::frame`]
    /// before the next push (which starts a new frame).
    pub fn push(&mut self, b: u8) -> Push {
        if b == DELIMITER {
            let n = self.len;
            let over = self.overflow;
            self.len = 0;
            self.overflow = false;
            if over {
                return Push::Overflow;
            }
            if n == 0 {
                return Push::Pending; // empty frame: ignored (e.g. a leading delimiter)
            }
            return Push::Frame(n);
        }
        match self.buf.get_mut(self.len) {
            Some(slot) if !self.overflow => {
                *slot = b;
                self.len = self.len.saturating_add(1); // at most buf.len()
            }
            _ => self.overflow = true,
        }
        Push::Pending
    }
    /// The frame announced by the last `Push::Frame(n)` (valid until the next push).
    pub fn frame(&mut self, n: usize) -> &mut [u8] {
        let n = n.min(N);
        self.buf.get_mut(..n).unwrap_or(&mut [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::label;
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    /// The reference COBS encoder (separate buffers), to check the in-place one.
    fn cobs_ref(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8];
        let mut code_at = 0;
        let mut code = 1u8;
        for &b in data {
            if b == 0 {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            } else {
                out.push(b);
                code += 1;
                if code == 0xFF {
                    out[code_at] = code;
                    code_at = out.len();
                    out.push(0);
                    code = 1;
                }
            }
        }
        out[code_at] = code;
        out
    }

    fn frame_of<T: Serialize>(id: u32, body: &T) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let n = encode(id, body, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn cobs_matches_the_reference_and_round_trips() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![1, 0, 2],
            (1..=254).collect(),
            (1..=255).collect(),
            (0..=255).collect(),
            (0..1000).map(|i| (i % 7) as u8).collect(),
            vec![5; 600],
        ];
        for data in cases {
            let want = cobs_ref(&data);
            let ovh = cobs_overhead(data.len());
            let mut buf = vec![0xAAu8; ovh + data.len()];
            buf[ovh..].copy_from_slice(&data);
            let n = cobs_encode_in_place(&mut buf, ovh, data.len()).unwrap();
            assert_eq!(&buf[..n], &want[..], "len {}", data.len());
            assert!(!buf[..n].contains(&0));
            let mut enc = want.clone();
            let m = cobs_decode_in_place(&mut enc).unwrap();
            assert_eq!(&enc[..m], &data[..]);
        }
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let sample: Vec<u8> = (0..784 * 4).map(|i| (i % 251) as u8).collect();
        let reqs = [
            Request::Info,
            Request::Classify { sample: &sample },
            Request::EnrollStart {
                label: label("btn1").unwrap(),
                samples: 5,
            },
            Request::EnrollSample {
                token: 7,
                data: &sample[..8],
            },
            Request::List,
            Request::Forget {
                label: label("x").unwrap(),
            },
            Request::EnrollAbort,
        ];
        for (i, r) in reqs.iter().enumerate() {
            let mut f = frame_of(i as u32 * 1000, r);
            assert_eq!(*f.last().unwrap(), 0);
            assert!(!f[..f.len() - 1].contains(&0));
            assert!(f.len() <= MAX_FRAME_LEN);
            let (id, back): (u32, Request<'_>) = decode(&mut f).unwrap();
            assert_eq!((id, &back), (i as u32 * 1000, r));
        }
        let mut labels = heapless::Vec::new();
        for i in 0..MAX_CLASSES {
            labels.push(label(&std::format!("class-{i:010}")).unwrap()).unwrap();
        }
        let resps = [
            Response::Info(Info {
                protocol: VERSION,
                model: ModelStatus::Valid { crc: 0xDEAD_BEEF },
                inputs: 784,
                outputs: 784,
                classes: 64,
                capacity: 10,
                enrolled: 3,
                max_rank: 32,
                max_samples: 5,
                labels: labels.clone(),
                enrolling: Some(Enrolling {
                    label: label("class-0000000009").unwrap(),
                    got: 3,
                    of: 5,
                }),
            }),
            Response::Classified(Classified {
                class: 3,
                label: label("3").unwrap(),
                distances: (0..MAX_CLASSES).map(|i| i as f32 * 0.5).collect(),
                novelty: 1.5,
                unknown: true,
                score: Score::Contrast,
            }),
            Response::EnrollProgress { token: 9, got: 1, of: 5 },
            Response::Enrolled {
                label: label("a").unwrap(),
                rank: 20,
            },
            Response::Listed { labels },
            Response::Forgotten,
            Response::Error { code: ErrorCode::NoModel },
            Response::EnrollAborted {
                label: label("9").unwrap(),
            },
            Response::Info(Info {
                protocol: VERSION,
                model: ModelStatus::Invalid {
                    code: ErrorCode::CrcMismatch,
                },
                inputs: 0,
                outputs: 0,
                classes: 0,
                capacity: 0,
                enrolled: 0,
                max_rank: 0,
                max_samples: 0,
                labels: heapless::Vec::new(),
                enrolling: None,
            }),
        ];
        for r in &resps {
            let mut f = frame_of(u32::MAX, r);
            // Every reply, the largest Info and Classified included, fits a device's reply buffer.
            assert!(f.len() <= crate::budget::TX_BYTES, "{}", f.len());
            let (id, back): (u32, Response) = decode(&mut f).unwrap();
            assert_eq!((id, &back), (u32::MAX, r));
        }
    }

    #[test]
    fn the_largest_classify_request_fits_a_frame() {
        let sample = vec![0xFFu8; MAX_SAMPLE_VALUES * 4];
        let f = frame_of(u32::MAX, &Request::Classify { sample: &sample });
        assert!(f.len() <= MAX_FRAME_LEN, "{}", f.len());
    }

    #[test]
    fn the_wire_format_is_pinned() {
        // Info, id 7: payload 02 07 00, CRC-32 LE, COBS, 00.
        let f = frame_of(7, &Request::Info);
        let crc = checksum(&[3, 7, 0]).to_le_bytes();
        let mut raw = vec![3, 7, 0];
        raw.extend_from_slice(&crc);
        let mut want = cobs_ref(&raw);
        want.push(0);
        assert_eq!(f, want);
        assert_eq!(&f[..3], &[3, 3, 7]);
        // Forget "ab", id 300: 02 AC 02 05 02 61 62.
        let f = frame_of(
            300,
            &Request::Forget {
                label: label("ab").unwrap(),
            },
        );
        let mut g = f.clone();
        let n = cobs_decode_in_place(&mut g[..f.len() - 1]).unwrap();
        assert_eq!(&g[..n - 4], &[3, 0xAC, 2, 5, 2, b'a', b'b']);
    }

    #[test]
    fn every_decode_error_is_typed() {
        let good = frame_of(9, &Request::List);
        let err = |b: &[u8]| {
            let mut v = b.to_vec();
            decode::<Request<'_>>(&mut v).unwrap_err()
        };
        assert_eq!(err(&[]).kind, FrameError::Truncated);
        assert_eq!(err(&[0]).kind, FrameError::Truncated);
        assert_eq!(err(&[1, 1, 1]).kind, FrameError::Truncated);
        assert_eq!(err(&[5, 1]).kind, FrameError::Cobs);
        assert_eq!(err(&[3, 1, 0, 1]).kind, FrameError::Cobs);
        assert_eq!(err(&vec![1u8; MAX_FRAME_LEN + 1]).kind, FrameError::TooLong);
        // A flipped bit: CRC (or COBS when it hits a code byte).
        for i in 0..good.len() - 1 {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                let e = err(&b);
                assert!(
                    matches!(e.kind, FrameError::Crc | FrameError::Cobs | FrameError::Truncated),
                    "{i} {bit} {e:?}"
                );
            }
        }
        // Truncated frames.
        for n in 0..good.len() - 1 {
            assert!(decode::<Request<'_>>(&mut good[..n].to_vec()).is_err());
        }
        // A valid frame of another version: the id is still reported.
        let mut raw = vec![1u8, 42, 4];
        raw.extend_from_slice(&checksum(&raw).to_le_bytes());
        let mut f = cobs_ref(&raw);
        let e = decode::<Request<'_>>(&mut f).unwrap_err();
        assert_eq!(
            e,
            DecodeError {
                kind: FrameError::Version(1),
                id: Some(42)
            }
        );
        assert_eq!(ErrorCode::from(e.kind), ErrorCode::FrameVersion);
        // Intact frame, bad body: enum tag 9, trailing bytes, a response where a request is due.
        for body in [&[3u8, 42, 9][..], &[3, 42, 4, 0], &[3, 42]] {
            let mut raw = body.to_vec();
            raw.extend_from_slice(&checksum(body).to_le_bytes());
            let mut f = cobs_ref(&raw);
            let e = decode::<Request<'_>>(&mut f).unwrap_err();
            assert_eq!(e.kind, FrameError::Malformed, "{body:?}");
        }
        let mut f = frame_of(5, &Response::Forgotten);
        assert_eq!(decode::<Response>(&mut f.clone()).unwrap(), (5, Response::Forgotten));
        assert!(decode::<Request<'_>>(&mut f).is_err());
        // Encoding into a buffer too small.
        assert_eq!(encode(1, &Request::List, &mut [0u8; 4]), Err(FrameError::BufferTooSmall));
    }

    #[test]
    fn error_codes_are_one_byte_and_every_byte_decodes() {
        for b in 0..=255u8 {
            let c = ErrorCode::from(b);
            assert_eq!(u8::from(c), b);
            let mut buf = [0u8; 2];
            assert_eq!(postcard::to_slice(&c, &mut buf).unwrap(), &[b][..], "one byte on the wire");
            assert_eq!(postcard::from_bytes::<ErrorCode>(&[b]).unwrap(), c);
            assert_eq!(matches!(c, ErrorCode::Unknown(_)), c.describe() == "unknown code", "{b}");
        }
        assert_eq!(ErrorCode::from(52), ErrorCode::WrongEnrollment);
        assert_eq!(ErrorCode::from(200), ErrorCode::Unknown(200));
        assert_eq!(ErrorCode::NonFinite.describe(), "non-finite value");
    }

    #[test]
    fn samples_and_error_codes() {
        let v = [1.5f32, -0.0, f32::MAX];
        let mut b = [0u8; 12];
        let bytes = write_sample(&v, &mut b).unwrap().to_vec();
        let mut back = [0.0f32; 3];
        read_sample(&bytes, &mut back).unwrap();
        assert_eq!(back.map(f32::to_bits), v.map(f32::to_bits));
        assert!(matches!(read_sample(&bytes[..8], &mut back), Err(Error::DimensionMismatch { .. })));
        assert!(matches!(
            read_sample(&bytes[..7], &mut back[..2]),
            Err(Error::DimensionMismatch { .. })
        ));
        assert_eq!(write_sample(&v, &mut [0u8; 11]), Err(Error::BufferTooSmall));
        // 8-bit samples: one byte per value when every value is an integer 0..=255.
        let px = [0.0f32, 1.0, 255.0, 17.0];
        let mut w = [0u8; 16];
        let b8 = sample_bytes(&px, &mut w).unwrap().to_vec();
        assert_eq!(b8, [0, 1, 255, 17]);
        let mut back = [9.0f32; 4];
        read_sample(&b8, &mut back).unwrap();
        assert_eq!(back.map(f32::to_bits), px.map(f32::to_bits));
        for odd in [
            [0.5f32, 1.0, 2.0, 3.0],
            [256.0, 1.0, 2.0, 3.0],
            [-1.0, 0.0, 0.0, 0.0],
            [-0.0, 0.0, 0.0, 0.0],
        ] {
            let b = sample_bytes(&odd, &mut w).unwrap().to_vec();
            assert_eq!(b.len(), 16, "{odd:?} goes as f32");
            read_sample(&b, &mut back).unwrap();
            assert_eq!(back.map(f32::to_bits), odd.map(f32::to_bits));
        }
        assert_eq!(ErrorCode::from(Error::CapacityFull), ErrorCode::CapacityFull);
        assert_eq!(ErrorCode::from(Error::UnsupportedVersion(3)), ErrorCode::UnsupportedVersion);
        assert_eq!(u8::from(ErrorCode::from(FrameError::TooLong)), 32);
    }

    #[test]
    fn frame_reader_splits_a_stream() {
        let a = frame_of(1, &Request::Info);
        let b = frame_of(2, &Request::List);
        let mut stream = vec![0u8]; // a leading delimiter is ignored
        stream.extend_from_slice(&a);
        stream.extend(std::iter::repeat_n(7u8, 100)); // overlong garbage
        stream.push(0);
        stream.extend_from_slice(&b);
        let mut r: FrameReader<64> = FrameReader::new();
        let mut got = Vec::new();
        for &x in &stream {
            match r.push(x) {
                Push::Pending => {}
                Push::Overflow => got.push(None),
                Push::Frame(n) => {
                    let f = r.frame(n);
                    let (id, req): (u32, Request<'_>) = decode(f).unwrap();
                    got.push(Some((id, std::format!("{req:?}"))));
                }
            }
        }
        assert_eq!(got, vec![Some((1, "Info".into())), None, Some((2, "List".into()))]);
    }
}
