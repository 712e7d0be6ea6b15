//! MNIST in LeCun's IDX format, gzip'd or raw.
//!
//! Pixels become `value / 255` in `[0, 1]` with no mean/std normalisation, exactly what the
//! LDL paper feeds its linear maps (d = 784). The same files layout also fits Fashion-MNIST,
//! whose classes are then still named `"0"`..`"9"`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Limits};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// MNIST has the ten digits.
const NUM_CLASSES: usize = 10;

/// Which of the two MNIST files pairs to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// `train-*`: 60,000 samples.
    Train,
    /// `t10k-*`: 10,000 samples.
    Test,
}

impl Split {
    /// The file-name prefix LeCun's distribution uses for this split.
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// The contents of an IDX3 image file: `count` images of `rows x cols` bytes, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

/// Loads one MNIST split from `dir` (e.g. `data/mnist`), with the default [`Limits`].
///
/// Looks for `<prefix>-images-idx3-ubyte` and `<prefix>-labels-idx1-ubyte`, each with or
/// without `.gz` (the `.idx3-ubyte` spelling of some mirrors is accepted too); whether a file
/// is gzip'd is decided by its content (magic `1f 8b`), not its name.
pub fn load_mnist(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    load_mnist_with(dir, split, &Limits::default())
}

/// [`load_mnist`] with the given limits: a file whose header declares more than
/// `limits.input_bytes` of content is refused before anything is allocated or inflated.
pub fn load_mnist_with(dir: &Path, split: Split, limits: &Limits) -> Result<Dataset, DataError> {
    let images_path = find_file(dir, split.prefix(), "images", "idx3")?;
    let labels_path = find_file(dir, split.prefix(), "labels", "idx1")?;
    let images = read_idx_images_with(&images_path, limits)?;
    let labels = read_idx_labels_with(&labels_path, limits)?;
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path,
            labels_path,
            images: images.count,
            labels: labels.len(),
        });
    }
    if let Some(index) = labels.iter().position(|&l| l as usize >= NUM_CLASSES) {
        return Err(DataError::BadLabel {
            path: labels_path,
            index,
            value: labels[index] as u32,
            num_classes: NUM_CLASSES,
        });
    }
    // Division (not multiplication by 1/255) so values match torchvision's ToTensor bit for bit.
    let features = images.pixels.iter().map(|&p| p as f32 / 255.0).collect();
    Ok(Dataset::new(
        features,
        labels.into_iter().map(u32::from).collect(),
        (0..NUM_CLASSES).map(|c| c.to_string()).collect(),
        images.rows * images.cols,
        Some((images.cols, images.rows)),
    ))
}

/// Finds the first existing spelling of an MNIST file name in `dir`.
fn find_file(dir: &Path, prefix: &str, kind: &str, idx: &str) -> Result<PathBuf, DataError> {
    let tried: Vec<String> = [
        format!("{prefix}-{kind}-{idx}-ubyte.gz"),
        format!("{prefix}-{kind}-{idx}-ubyte"),
        format!("{prefix}-{kind}.{idx}-ubyte.gz"),
        format!("{prefix}-{kind}.{idx}-ubyte"),
    ]
    .into();
    for name in &tried {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::NotFound {
        dir: dir.to_path_buf(),
        what: format!("MNIST {prefix} {kind}"),
        tried,
    })
}

/// Reads an IDX3 unsigned-byte image file (gzip'd or raw), checking magic and length, with
/// the default [`Limits`].
pub fn read_idx_images(path: &Path) -> Result<IdxImages, DataError> {
    read_idx_images_with(path, &Limits::default())
}

/// [`read_idx_images`] with the given limits.
pub fn read_idx_images_with(path: &Path, limits: &Limits) -> Result<IdxImages, DataError> {
    let (dims, pixels) = read_idx(path, IMAGES_MAGIC, "IDX3 unsigned-byte images", limits)?;
    let [count, rows, cols] = dims;
    if rows == 0 || cols == 0 {
        return Err(DataError::invalid(
            path,
            format!("the header declares images of {rows}x{cols} pixels: an image needs at least one"),
        ));
    }
    Ok(IdxImages { count, rows, cols, pixels })
}

/// Reads an IDX1 unsigned-byte label file (gzip'd or raw), checking magic and length, with
/// the default [`Limits`].
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    read_idx_labels_with(path, &Limits::default())
}

/// [`read_idx_labels`] with the given limits.
pub fn read_idx_labels_with(path: &Path, limits: &Limits) -> Result<Vec<u8>, DataError> {
    let ([_count], labels) = read_idx(path, LABELS_MAGIC, "IDX1 unsigned-byte labels", limits)?;
    Ok(labels)
}

/// Reads an IDX file of unsigned bytes with `N` dimensions, gzip'd (decided by its first
/// two bytes, `1f 8b`) or raw: its dimensions and the bytes after the header.
///
/// The order of the checks is the point: the magic, then the size the dimensions declare
/// (their product, overflow-checked) against `limits.input_bytes`, then, for a raw file,
/// against the file's real length, all before the body is read. A gzip'd body is inflated
/// through a reader that stops one byte past the declared size, so a short file is
/// [`DataError::Truncated`] and a longer (or bomb) stream is [`DataError::InflatesBeyond`]
/// without inflating the rest.
fn read_idx<const N: usize>(path: &Path, magic: u32, what: &'static str, limits: &Limits) -> Result<([usize; N], Vec<u8>), DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let mut file = BufReader::new(file);
    let gzip = file.fill_buf().map_err(|e| DataError::io(path, e))?.starts_with(&[0x1f, 0x8b]);
    // Errors while reading are the file's own (raw) or the decompressor's (gzip).
    let read_err = |source: std::io::Error| {
        if gzip {
            DataError::Gzip {
                path: path.to_path_buf(),
                source,
            }
        } else {
            DataError::io(path, source)
        }
    };
    let mut reader: Box<dyn Read> = if gzip {
        Box::new(flate2::bufread::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };

    let header_len = 4 * (1 + N);
    let mut header = vec![0u8; header_len];
    let got = read_up_to(&mut reader, &mut header).map_err(read_err)?;
    if got >= 4 && be_u32(&header[..4]) != magic {
        return Err(DataError::BadMagic {
            path: path.into(),
            what,
            expected: magic,
            found: be_u32(&header[..4]),
        });
    }
    if got < header_len {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: header_len as u64,
            found: got as u64,
        });
    }
    let mut dims = [0usize; N];
    let mut declared = Some(1u64);
    for (i, d) in dims.iter_mut().enumerate() {
        let v = be_u32(&header[4 + 4 * i..8 + 4 * i]);
        *d = v as usize;
        declared = declared.and_then(|n| n.checked_mul(u64::from(v)));
    }
    let shape = dims.map(|d| d.to_string()).join(" x ");
    let limit = limits.input_bytes;
    let body_len = match declared {
        Some(n) if n <= limit => n,
        _ => {
            return Err(DataError::TooLarge {
                path: path.into(),
                what: format!("the header ({what}, {shape}) declares"),
                declared: declared.map_or_else(|| "over 2^64 bytes".to_string(), |n| format!("{n} bytes")),
                limit: format!("--max-input-bytes {limit}"),
            })
        }
    };
    let expected = header_len as u64 + body_len;
    if !gzip {
        check_length(path, file_len, expected)?;
    }
    // A raw body is exactly `body_len` bytes (checked); gzip compresses MNIST about 5:1, and
    // no more than 1032:1, so reserve no more than that bound allows.
    let reserve = if gzip { body_len.min(file_len.saturating_mul(8)) } else { body_len };
    let mut body = Vec::with_capacity(reserve as usize);
    reader.take(body_len + 1).read_to_end(&mut body).map_err(read_err)?;
    let found = header_len as u64 + body.len() as u64;
    if found < expected {
        return Err(DataError::Truncated {
            path: path.into(),
            expected,
            found,
        });
    }
    if found > expected {
        return Err(DataError::InflatesBeyond {
            path: path.into(),
            expected,
        });
    }
    Ok((dims, body))
}

/// Reads into `buf` until it is full or the stream ends; the number of bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn check_length(path: &Path, found: u64, expected: u64) -> Result<(), DataError> {
    if found < expected {
        Err(DataError::Truncated {
            path: path.into(),
            expected,
            found,
        })
    } else if found > expected {
        Err(DataError::TrailingData {
            path: path.into(),
            expected,
            found,
        })
    } else {
        Ok(())
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::OnceLock;

    fn mnist_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
    }

    /// The 60,000-image set is ~190 MB as f32: load it once for all tests.
    fn train() -> &'static Dataset {
        static TRAIN: OnceLock<Dataset> = OnceLock::new();
        TRAIN.get_or_init(|| load_mnist(&mnist_dir(), Split::Train).expect("load MNIST train"))
    }

    fn check_real(ds: &Dataset, n: usize, counts: [usize; 10], first: [u32; 5]) {
        assert_eq!(ds.len(), n);
        assert_eq!(ds.dim, 784);
        assert_eq!(ds.image, Some((28, 28)));
        assert_eq!(ds.features.len(), n * 784);
        assert_eq!(ds.num_classes(), 10);
        assert_eq!(ds.class_names, (0..10).map(|c| c.to_string()).collect::<Vec<_>>());
        assert_eq!(ds.class_counts(), counts.to_vec());
        assert_eq!(&ds.labels[..5], &first);
        let (lo, hi) = ds.features.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert_eq!((lo, hi), (0.0, 1.0));
        // Every value is k/255 for an integer k: scaled, not normalised.
        assert!(ds.row(0).iter().all(|&v| (v * 255.0 - (v * 255.0).round()).abs() < 1e-4));
        // MNIST digits are white strokes on black: mostly zeros, mean intensity ~0.13.
        let mean = ds.features.iter().map(|&v| v as f64).sum::<f64>() / ds.features.len() as f64;
        assert!((0.12..0.14).contains(&mean), "mean pixel {mean}");
    }

    #[test]
    fn real_train_split() {
        check_real(
            train(),
            60_000,
            [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
            [5, 0, 4, 1, 9],
        );
    }

    #[test]
    fn real_test_split() {
        let ds = load_mnist(&mnist_dir(), Split::Test).unwrap();
        check_real(
            &ds,
            10_000,
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
            [7, 2, 1, 0, 4],
        );
    }

    #[test]
    fn first_train_image_is_a_five() {
        // The first image's known statistics: a "5" covering 166 non-zero pixels, with its top
        // row and left column blank.
        let img = train().row(0);
        assert_eq!(img.iter().filter(|&&v| v > 0.0).count(), 166);
        assert!(img[..28].iter().all(|&v| v == 0.0));
        assert!((0..28).all(|r| img[r * 28] == 0.0));
    }

    // ---- synthetic files for the error paths ----

    fn images_bytes(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [IMAGES_MAGIC, count, rows, cols] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(pixels);
        b
    }

    fn labels_bytes(labels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        b.extend_from_slice(labels);
        b
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn tiny_raw_and_gzip_files_load() {
        let dir = tempfile::tempdir().unwrap();
        // Two 2x3 images; the test split is raw, the train split gzip'd under a raw name
        // (detection is by content).
        let px: Vec<u8> = (0..12).map(|i| (i * 20) as u8).collect();
        write(dir.path(), "t10k-images-idx3-ubyte", &images_bytes(2, 2, 3, &px));
        write(dir.path(), "t10k-labels-idx1-ubyte", &labels_bytes(&[3, 9]));
        write(dir.path(), "train-images-idx3-ubyte", &gzip(&images_bytes(2, 2, 3, &px)));
        write(dir.path(), "train-labels-idx1-ubyte.gz", &gzip(&labels_bytes(&[3, 9])));
        for split in [Split::Test, Split::Train] {
            let ds = load_mnist(dir.path(), split).unwrap();
            assert_eq!(ds.len(), 2);
            assert_eq!(ds.dim, 6);
            assert_eq!(ds.image, Some((3, 2)));
            assert_eq!(ds.labels, vec![3, 9]);
            assert_eq!(ds.row(1)[5], 220.0 / 255.0);
        }
    }

    #[test]
    fn wrong_magic_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        // A label file where an image file is expected.
        let p = write(dir.path(), "x", &labels_bytes(&[1, 2, 3, 4, 5, 6, 7, 8, 9]));
        let e = read_idx_images(&p).unwrap_err();
        assert!(matches!(
            e,
            DataError::BadMagic {
                expected: IMAGES_MAGIC,
                found: LABELS_MAGIC,
                ..
            }
        ));
        let msg = e.to_string();
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains("wrong magic number 0x00000801"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "imgs.gz", &gzip(&images_bytes(3, 2, 2, &[0; 10])));
        let e = read_idx_images(&p).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Truncated {
                    expected: 28,
                    found: 26,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("expected 28 bytes, found 26"));
        // Cut inside the header.
        let p = write(dir.path(), "short", &LABELS_MAGIC.to_be_bytes()[..]);
        assert!(matches!(
            read_idx_labels(&p).unwrap_err(),
            DataError::Truncated { expected: 8, found: 4, .. }
        ));
        // A gzip stream cut short is a decompression error naming the file.
        let gz = gzip(&images_bytes(3, 2, 2, &[7; 12]));
        let p = write(dir.path(), "cut.gz", &gz[..gz.len() / 2]);
        let e = read_idx_images(&p).unwrap_err();
        assert!(matches!(e, DataError::Gzip { .. }) && e.to_string().contains("cut.gz"), "{e}");
        // Trailing bytes are not silently ignored either.
        let p = write(
            dir.path(),
            "long",
            &labels_bytes(&[1, 2]).into_iter().chain([0]).collect::<Vec<_>>(),
        );
        assert!(matches!(
            read_idx_labels(&p).unwrap_err(),
            DataError::TrailingData {
                expected: 10,
                found: 11,
                ..
            }
        ));
    }

    /// The image header of `count` images of `rows x cols`, then `body` bytes.
    fn header_only(count: u32, rows: u32, cols: u32) -> Vec<u8> {
        images_bytes(count, rows, cols, &[])
    }

    #[test]
    fn declared_sizes_are_checked_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        // 2^22 x 2^21 x 2^21 = 2^64 bytes: the product overflows a u64 (it wrapped to 0,
        // which matched a 16-byte file).
        let p = write(dir.path(), "huge", &header_only(1 << 22, 1 << 21, 1 << 21));
        let e = read_idx_images(&p).unwrap_err();
        assert!(matches!(e, DataError::TooLarge { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("huge")
                && msg.contains("4194304 x 2097152 x 2097152")
                && msg.contains("declares over 2^64 bytes, more than --max-input-bytes"),
            "{msg}"
        );
        // A product that fits but is above the limit names the limit and its option, raw or
        // gzip'd, whatever the file really holds.
        for name in ["big", "big.gz"] {
            let bytes = header_only(60_000, 28, 28);
            let p = write(dir.path(), name, &if name.ends_with("gz") { gzip(&bytes) } else { bytes });
            let limits = Limits { input_bytes: 1 << 20 };
            let e = read_idx_images_with(&p, &limits).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("47040000 bytes") && msg.contains("--max-input-bytes 1048576"), "{msg}");
            // Under the default limit it is the real length that is short.
            let e = read_idx_images(&p).unwrap_err();
            assert!(
                matches!(
                    e,
                    DataError::Truncated {
                        expected: 47_040_016,
                        found: 16,
                        ..
                    }
                ),
                "{e}"
            );
        }
        // Labels too.
        let mut b = LABELS_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        let p = write(dir.path(), "labels", &b);
        let e = read_idx_labels_with(&p, &Limits { input_bytes: 1000 }).unwrap_err();
        assert!(e.to_string().contains("4294967295 bytes, more than --max-input-bytes 1000"), "{e}");
    }

    #[test]
    fn images_of_no_pixels_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (rows, cols) in [(0, 0), (28, 0), (0, 28)] {
            write(dir.path(), "train-images-idx3-ubyte", &header_only(2, rows, cols));
            write(dir.path(), "train-labels-idx1-ubyte", &labels_bytes(&[0, 1]));
            let e = load_mnist(dir.path(), Split::Train).unwrap_err();
            assert!(matches!(e, DataError::Invalid { .. }), "{e}");
            assert!(e.to_string().contains(&format!("images of {rows}x{cols} pixels")), "{e}");
        }
    }

    /// A gzip stream that inflates to `mib` MiB more than its header declares: gzip members
    /// (each 1 MiB of zeros) concatenated after a member holding a valid 2-image file, as
    /// `MultiGzDecoder` reads them, so the test writes a few hundred KB, not `mib` MiB.
    fn gzip_bomb(mib: usize) -> Vec<u8> {
        let mut out = gzip(&images_bytes(2, 28, 28, &[9; 2 * 784]));
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 1 << 20]).unwrap();
        let zeros = e.finish().unwrap();
        for _ in 0..mib {
            out.extend_from_slice(&zeros);
        }
        out
    }

    #[test]
    fn a_gzip_bomb_is_not_inflated_past_the_declared_size() {
        let dir = tempfile::tempdir().unwrap();
        // 4 GiB once inflated (it used to be inflated in full before the length check).
        let bomb = gzip_bomb(4096);
        assert!(bomb.len() < 8 << 20, "{}", bomb.len());
        let p = write(dir.path(), "bomb.gz", &bomb);
        let e = read_idx_images(&p).unwrap_err();
        assert!(matches!(e, DataError::InflatesBeyond { expected: 1584, .. }), "{e}");
        assert!(e.to_string().contains("more than the 1584 bytes its header declares"), "{e}");
        // The valid part alone loads.
        let p = write(dir.path(), "fine.gz", &gzip_bomb(0));
        assert_eq!(read_idx_images(&p).unwrap().pixels, vec![9; 2 * 784]);
    }

    #[test]
    fn mismatched_counts_and_bad_labels_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "train-images-idx3-ubyte", &images_bytes(3, 1, 1, &[0, 1, 2]));
        write(dir.path(), "train-labels-idx1-ubyte", &labels_bytes(&[0, 1]));
        let e = load_mnist(dir.path(), Split::Train).unwrap_err();
        assert!(matches!(e, DataError::CountMismatch { images: 3, labels: 2, .. }), "{e}");
        assert!(e.to_string().contains("train-labels-idx1-ubyte"));

        write(dir.path(), "train-labels-idx1-ubyte", &labels_bytes(&[0, 12, 1]));
        let e = load_mnist(dir.path(), Split::Train).unwrap_err();
        assert!(matches!(e, DataError::BadLabel { index: 1, value: 12, .. }), "{e}");

        let e = load_mnist(dir.path(), Split::Test).unwrap_err();
        assert!(matches!(e, DataError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("t10k-images-idx3-ubyte.gz"));
    }
}
