//! Data-set loaders for the host trainer: MNIST (IDX), Omniglot (zip or folder of PNGs) and
//! generic labelled CSV (including the UEA time-series layout).
//!
//! Every loader returns the same in-memory [`Dataset`] (row-major `f32` features plus a class
//! index per row), so the LDL experiments never care where the samples came from. Loading
//! fails with a [`DataError`] whose message always names the offending file and the problem,
//! because a silently mis-read data set would show up only as a mysteriously bad accuracy.
//!
//! Files are untrusted: every size a header declares (an IDX file's dimensions, a zip
//! entry's length, a PNG's width and height) is checked, with overflow-checked arithmetic,
//! against [`Limits`] and against what the file really holds before anything is allocated
//! or inflated for it, and compressed data is inflated through a bounded reader that stops
//! as soon as it yields more than was declared.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

pub mod args;
pub mod csv;
pub mod image;
pub mod mnist;
pub mod omniglot;

pub use self::args::{default_omniglot, DataArgs, DatasetKind, Loaded, VALIDATION_START};
pub use self::csv::{load_csv, load_csv_split, load_csv_with_classes, CsvOptions};
pub use self::mnist::{load_mnist, load_mnist_with, Split};
pub use self::omniglot::{list_alphabets, load_omniglot, load_omniglot_drawers, OmniglotOptions};

/// Default of [`Limits::input_bytes`] (`--max-input-bytes`): 1 GiB, some 20 times MNIST's
/// training images (47 MB); the features then take 4 GiB as `f32`.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 1 << 30;

/// What the loaders accept before they allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of an MNIST IDX file's content, after decompression (`--max-input-bytes`).
    pub input_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            input_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

/// Everything that can go wrong while loading a data set. Each variant carries the path of the
/// file (or archive) involved, so the message alone tells the user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused to open or read a file.
    #[error("{}: I/O error: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A gzip stream could not be decompressed (corrupt or cut short).
    #[error("{}: cannot decompress gzip data: {source}", .path.display())]
    Gzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A required file does not exist under any of the accepted names.
    #[error("{}: no {what} file found (tried {})", .dir.display(), .tried.join(", "))]
    NotFound { dir: PathBuf, what: String, tried: Vec<String> },
    /// The file does not start with the magic number of the expected format.
    #[error("{}: wrong magic number 0x{found:08x}, expected 0x{expected:08x} ({what})", .path.display())]
    BadMagic {
        path: PathBuf,
        what: &'static str,
        expected: u32,
        found: u32,
    },
    /// The file is shorter than its header says.
    #[error("{}: truncated file: expected {expected} bytes, found {found}", .path.display())]
    Truncated { path: PathBuf, expected: u64, found: u64 },
    /// The file is longer than its header says (probably the wrong file or a corrupt header).
    #[error("{}: unexpected trailing data: expected {expected} bytes, found {found}", .path.display())]
    TrailingData { path: PathBuf, expected: u64, found: u64 },
    /// Compressed data inflates to more than its header says: inflating stopped there (a
    /// corrupt header, or a decompression bomb).
    #[error("{}: unexpected trailing data: decompresses to more than the {expected} bytes its header declares", .path.display())]
    InflatesBeyond { path: PathBuf, expected: u64 },
    /// A declared size is above a limit (or overflows): refused before allocating for it.
    /// `what` says what declared it (with its verb: "the header (...) declares", "the image
    /// file holds"), `limit` names the limit and how to raise it if one can.
    #[error("{}: {what} {declared}, more than {limit}", .path.display())]
    TooLarge {
        path: PathBuf,
        what: String,
        declared: String,
        limit: String,
    },
    /// An image file and its label file disagree on the number of samples.
    #[error(
        "mismatched counts: {} holds {images} images but {} holds {labels} labels",
        .images_path.display(),
        .labels_path.display()
    )]
    CountMismatch {
        images_path: PathBuf,
        labels_path: PathBuf,
        images: usize,
        labels: usize,
    },
    /// A label value outside the known classes.
    #[error("{}: label {value} of sample {index} is out of range (expected < {num_classes})", .path.display())]
    BadLabel {
        path: PathBuf,
        index: usize,
        value: u32,
        num_classes: usize,
    },
    /// The zip archive itself is unreadable (not a zip, corrupt directory, unsupported method).
    #[error("{}: cannot read zip archive: {source}", .path.display())]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    /// One image (named by its path inside the archive or folder) cannot be read or decoded.
    #[error("{}: cannot read image {entry}: {reason}", .path.display())]
    Image { path: PathBuf, entry: String, reason: String },
    /// The CSV reader itself failed (I/O, invalid UTF-8, broken quoting).
    #[error("{}: CSV error: {source}", .path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: ::csv::Error,
    },
    /// A CSV row is well-formed CSV but not a valid sample (ragged, non-numeric, non-finite,
    /// unknown label). `line` is 1-based, as an editor shows it.
    #[error("{}: line {line}: {problem}", .path.display())]
    BadRow { path: PathBuf, line: u64, problem: String },
    /// The input is structurally fine but unusable (empty, nothing matching the layout, bad
    /// option).
    #[error("{}: {problem}", .path.display())]
    Invalid { path: PathBuf, problem: String },
}

impl DataError {
    /// Shorthand for the common "I/O failed on this path" case.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Shorthand for [`DataError::Invalid`].
    pub(crate) fn invalid(path: &Path, problem: impl Into<String>) -> Self {
        DataError::Invalid {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// A labelled data set held in memory.
///
/// Features are one flat row-major `Vec<f32>` (n rows of `dim` values) rather than a
/// `Vec<Vec<f32>>`, so rows are contiguous for the linear-algebra kernels and the whole set is
/// one allocation. Class indices are dense (`0..class_names.len()`), and the names keep the
/// mapping back to the source labels (also across train/test splits).
#[derive(Clone, PartialEq)]
pub struct Dataset {
    /// Row-major features, `len() * dim` values.
    pub features: Vec<f32>,
    /// Class index of each row, `< class_names.len()`.
    pub labels: Vec<u32>,
    /// Class index -> human-readable name (e.g. `"7"`, `"Greek/character03@90"`, `"Walking"`).
    pub class_names: Vec<String>,
    /// Number of features per row.
    pub dim: usize,
    /// `(width, height)` when every row is a row-major grey-scale image, so `dim == w * h`.
    pub image: Option<(usize, usize)>,
}

impl Dataset {
    /// Builds a data set, checking its invariants.
    ///
    /// # Panics
    /// If `features.len() != labels.len() * dim`, a label is `>= class_names.len()`, or
    /// `image` does not multiply out to `dim`: these are programming errors, not bad input
    /// files (the loaders report those as [`DataError`]s before getting here).
    pub fn new(features: Vec<f32>, labels: Vec<u32>, class_names: Vec<String>, dim: usize, image: Option<(usize, usize)>) -> Self {
        assert_eq!(features.len(), labels.len() * dim, "features must be labels.len() x dim");
        assert!(
            labels.iter().all(|&l| (l as usize) < class_names.len()),
            "every label must index class_names"
        );
        if let Some((w, h)) = image {
            assert_eq!(w * h, dim, "image width x height must equal dim");
        }
        Dataset {
            features,
            labels,
            class_names,
            dim,
            image,
        }
    }

    /// Number of rows (samples).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes (including classes that have no rows in this particular split).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The features of row `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }

    /// Iterates over all rows in order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f32]> + '_ {
        // `chunks_exact(0)` panics, so a zero-width set yields empty slices explicitly.
        let dim = self.dim;
        (0..self.len()).map(move |i| &self.features[i * dim..(i + 1) * dim])
    }

    /// Row indices of class `c`, in ascending order (empty if `c` has no rows).
    pub fn indices_of_class(&self, c: usize) -> Vec<usize> {
        self.labels
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l as usize == c)
            .map(|(i, _)| i)
            .collect()
    }

    /// Row indices of every class at once (`[c] -> ascending rows of class c`), in one pass:
    /// what few-shot sampling needs for all classes.
    pub fn class_indices(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.num_classes()];
        for (i, &l) in self.labels.iter().enumerate() {
            out[l as usize].push(i);
        }
        out
    }

    /// Number of rows of each class (the label histogram).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut out = vec![0; self.num_classes()];
        for &l in &self.labels {
            out[l as usize] += 1;
        }
        out
    }

    /// The rows `indices` (in that order, repeats allowed) as a new data set with the same
    /// classes, so labels keep their meaning (e.g. to draw m shots per class).
    ///
    /// # Panics
    /// If an index is `>= len()`.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(indices.len() * self.dim);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(self.row(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            features,
            labels,
            class_names: self.class_names.clone(),
            dim: self.dim,
            image: self.image,
        }
    }

    /// Keeps only the rows of `classes` and renumbers them `0..classes.len()` in the given
    /// order (names follow), e.g. to build an N-way task out of Omniglot's many characters.
    ///
    /// # Panics
    /// If a class index is out of range or listed twice.
    pub fn select_classes(&self, classes: &[usize]) -> Dataset {
        let mut remap = vec![u32::MAX; self.num_classes()];
        for (new, &old) in classes.iter().enumerate() {
            assert!(old < self.num_classes(), "class {old} out of range");
            assert_eq!(remap[old], u32::MAX, "class {old} selected twice");
            remap[old] = new as u32;
        }
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for (i, &l) in self.labels.iter().enumerate() {
            let new = remap[l as usize];
            if new != u32::MAX {
                features.extend_from_slice(self.row(i));
                labels.push(new);
            }
        }
        Dataset {
            features,
            labels,
            class_names: classes.iter().map(|&c| self.class_names[c].clone()).collect(),
            dim: self.dim,
            image: self.image,
        }
    }
}

/// A summary instead of the (possibly 47-million-value) feature dump a derived `Debug` would
/// print.
impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("len", &self.len())
            .field("dim", &self.dim)
            .field("num_classes", &self.num_classes())
            .field("image", &self.image)
            .finish_non_exhaustive()
    }
}

/// Splits a data set into one data set per class (`[c]` holds exactly the rows of class `c`,
/// in their original order). Every part keeps the full `class_names`, so its labels are still
/// `c` and the parts can be fed to the per-class LDL predictors directly.
pub fn split_by_class(ds: &Dataset) -> Vec<Dataset> {
    ds.class_indices().iter().map(|rows| ds.subset(rows)).collect()
}

/// Reads a whole file of at most `limit` bytes (`what` names it and the limit in the error):
/// a larger one is refused from its length before anything is read, and reading stops
/// after `limit + 1` bytes should it grow meanwhile.
pub(crate) fn read_file_limited(path: &Path, limit: u64, what: &str, limit_name: &str) -> Result<Vec<u8>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let too_large = |declared: u64| DataError::TooLarge {
        path: path.to_path_buf(),
        what: format!("{what} holds"),
        declared: format!("{declared} bytes"),
        limit: format!("{limit_name} of {limit} bytes"),
    };
    if len > limit {
        return Err(too_large(len));
    }
    let mut out = Vec::with_capacity(len as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| DataError::io(path, e))?;
    if out.len() as u64 > limit {
        return Err(too_large(out.len() as u64));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Dataset {
        // 5 rows of dim 2; row i = [i, 10 + i]; classes b, a, b, c, a (c = 2 has one row).
        let features = (0..5).flat_map(|i| [i as f32, 10.0 + i as f32]).collect();
        Dataset::new(features, vec![0, 1, 0, 2, 1], vec!["b".into(), "a".into(), "c".into()], 2, None)
    }

    #[test]
    fn accessors() {
        let ds = toy();
        assert_eq!(ds.len(), 5);
        assert!(!ds.is_empty());
        assert_eq!(ds.num_classes(), 3);
        assert_eq!(ds.row(3), &[3.0, 13.0]);
        assert_eq!(ds.rows().count(), 5);
        assert_eq!(ds.rows().nth(4).unwrap(), &[4.0, 14.0]);
        assert_eq!(ds.indices_of_class(0), vec![0, 2]);
        assert_eq!(ds.indices_of_class(1), vec![1, 4]);
        assert_eq!(ds.class_indices(), vec![vec![0, 2], vec![1, 4], vec![3]]);
        assert_eq!(ds.class_counts(), vec![2, 2, 1]);
        assert!(format!("{ds:?}").contains("len: 5"));
    }

    #[test]
    fn subset_keeps_classes_and_order() {
        let ds = toy();
        let s = ds.subset(&[4, 0, 4]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.labels, vec![1, 0, 1]);
        assert_eq!(s.features, vec![4.0, 14.0, 0.0, 10.0, 4.0, 14.0]);
        assert_eq!(s.class_names, ds.class_names);
        assert!(ds.subset(&[]).is_empty());
    }

    #[test]
    fn select_classes_renumbers() {
        let ds = toy();
        let s = ds.select_classes(&[2, 0]);
        assert_eq!(s.class_names, vec!["c".to_string(), "b".to_string()]);
        assert_eq!(s.labels, vec![1, 1, 0]);
        assert_eq!(s.features, vec![0.0, 10.0, 2.0, 12.0, 3.0, 13.0]);
    }

    #[test]
    fn split_by_class_partitions() {
        let ds = toy();
        let parts = split_by_class(&ds);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.iter().map(Dataset::len).sum::<usize>(), ds.len());
        for (c, p) in parts.iter().enumerate() {
            assert!(p.labels.iter().all(|&l| l as usize == c));
        }
        assert_eq!(parts[1].features, vec![1.0, 11.0, 4.0, 14.0]);
    }

    #[test]
    #[should_panic(expected = "every label must index class_names")]
    fn new_rejects_bad_label() {
        Dataset::new(vec![0.0; 2], vec![1], vec!["only".into()], 2, None);
    }

    #[test]
    fn a_file_over_its_limit_is_refused_from_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.png");
        std::fs::write(&p, [7u8; 11]).unwrap();
        let e = read_file_limited(&p, 10, "the image file", "the limit").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: the image file holds 11 bytes, more than the limit of 10 bytes", p.display())
        );
        assert_eq!(read_file_limited(&p, 11, "the image file", "the limit").unwrap(), [7; 11]);
        let e = read_file_limited(&dir.path().join("none"), 11, "the image file", "the limit").unwrap_err();
        assert!(matches!(e, DataError::Io { .. }), "{e}");
    }

    #[test]
    fn error_messages_name_the_file() {
        let e = DataError::Truncated {
            path: "x/train-images".into(),
            expected: 100,
            found: 7,
        };
        assert_eq!(e.to_string(), "x/train-images: truncated file: expected 100 bytes, found 7");
        let e = DataError::BadRow {
            path: "a.csv".into(),
            line: 3,
            problem: "boom".into(),
        };
        assert_eq!(e.to_string(), "a.csv: line 3: boom");
    }
}
