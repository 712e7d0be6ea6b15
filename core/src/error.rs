//! The one error type of the core: every fallible operation returns `Result<T, Error>`.

use core::fmt;

/// Everything that can go wrong in the core. Nothing in the core panics on bad input:
/// it returns one of these instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// A vector or matrix has a different size than the model expects.
    DimensionMismatch {
        /// The size the model expects.
        expected: u32,
        /// The size that was given.
        found: u32,
    },
    /// No room for another class (or another ensemble member, or another sample).
    CapacityFull,
    /// A class was given no samples, or a model has no classes to decide between.
    EmptyClass,
    /// An input or a parameter is NaN or infinite, or training diverged to NaN/inf.
    NonFinite,
    /// A caller-provided buffer is too small for the result or the scratch space.
    BufferTooSmall,
    /// A hyper-parameter or option is out of its valid range (e.g. zero outputs, lr <= 0).
    InvalidParameter,
    /// No class has this label (or index).
    UnknownClass,
    /// A class with this label already exists.
    DuplicateLabel,
    /// A label is longer than [`crate::LABEL_LEN`] bytes.
    LabelTooLong,
    /// Model file: the first bytes are not the model magic number.
    BadMagic,
    /// Model file or frame: a format version this build does not read.
    UnsupportedVersion(u16),
    /// Model file or frame: the CRC-32 does not match the content.
    CrcMismatch,
    /// Model file or frame: the data ends before the structure it announces.
    Truncated,
    /// Model file or frame: the structure is inconsistent (bad header, offsets, enum tags).
    Malformed,
    /// Model file: the weights do not start on a 4-byte boundary in memory, so they
    /// cannot be read in place.
    Misaligned,
    /// The flash holding enrolled classes failed to read, erase or write.
    Storage,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::DimensionMismatch { expected, found } => {
                write!(f, "dimension mismatch: expected {expected}, found {found}")
            }
            Error::CapacityFull => f.write_str("capacity full"),
            Error::EmptyClass => f.write_str("empty class: no samples"),
            Error::NonFinite => f.write_str("non-finite value (NaN or infinity)"),
            Error::BufferTooSmall => f.write_str("buffer too small"),
            Error::InvalidParameter => f.write_str("invalid parameter"),
            Error::UnknownClass => f.write_str("unknown class"),
            Error::DuplicateLabel => f.write_str("duplicate label"),
            Error::LabelTooLong => f.write_str("label too long"),
            Error::BadMagic => f.write_str("bad magic number: not an LDL model file"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Error::CrcMismatch => f.write_str("CRC mismatch: data corrupted"),
            Error::Truncated => f.write_str("truncated data"),
            Error::Malformed => f.write_str("malformed data"),
            Error::Misaligned => f.write_str("weights not 4-byte aligned in memory"),
            Error::Storage => f.write_str("flash storage failed"),
        }
    }
}

impl core::error::Error for Error {}

/// Result with the core's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

/// Checks that a length matches what is expected.
pub(crate) fn check_len(expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::DimensionMismatch {
            expected: expected as u32,
            found: found as u32,
        })
    }
}

/// Checks that every value is finite.
pub(crate) fn check_finite(xs: &[f32]) -> Result<()> {
    if xs.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::NonFinite)
    }
}
