//! Omniglot (Lake et al. 2015) from its zip archive or an extracted folder.
//!
//! Layout: `[<set>/]<alphabet>/<character>/<drawing>.png` (e.g.
//! `images_background_small1/Greek/character03/0396_07.png`): 105x105 black-ink-on-white PNGs,
//! 20 drawings per character. Every character is a class named `"<alphabet>/<character>"`.
//! Images are shrunk by area averaging and inverted so ink = 1 and paper = 0, matching MNIST's
//! "strokes are high" convention that the LDL experiments assume. As in the paper (and the
//! usual few-shot protocol), rotations by 90/180/270 degrees can be added as new classes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::image::{decode_png, MAX_IMAGE_FILE_BYTES};
use super::{read_file_limited, DataError, Dataset};

/// How to turn the drawings into a [`Dataset`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OmniglotOptions {
    /// Output side length in pixels; images become `size x size` (default 28, as in the paper).
    pub size: usize,
    /// Also add each character rotated by 90, 180 and 270 degrees clockwise as three new
    /// classes (`"<alphabet>/<character>@90"` etc.), quadrupling the number of classes.
    pub rotations: bool,
    /// Only load these alphabets (names as given by [`list_alphabets`]); `None` loads all.
    pub alphabets: Option<Vec<String>>,
}

impl Default for OmniglotOptions {
    fn default() -> Self {
        OmniglotOptions {
            size: 28,
            rotations: false,
            alphabets: None,
        }
    }
}

/// The clockwise rotations that become new classes, in class-block order.
pub const ROTATIONS: [u32; 3] = [90, 180, 270];

/// Where the PNGs live: a zip archive (read from the file as needed), or a folder on disk.
enum Source {
    Zip(zip::ZipArchive<BufReader<std::fs::File>>),
    Dir,
}

/// One drawing: its class key and where to read it from.
struct Entry {
    alphabet: String,
    character: String,
    file: String,
    /// Path inside the archive, or path relative to the folder (used in error messages).
    name: String,
    /// Zip index or full path on disk.
    location: Location,
}

enum Location {
    ZipIndex(usize),
    File(PathBuf),
}

/// The sorted, de-duplicated alphabet names found at `path` (a zip archive or a folder).
pub fn list_alphabets(path: &Path) -> Result<Vec<String>, DataError> {
    let (_, entries) = open(path)?;
    let set: BTreeSet<String> = entries.into_iter().map(|e| e.alphabet).collect();
    Ok(set.into_iter().collect())
}

/// Loads the drawings at `path` (a `.zip` archive or a folder, both with the layout in the
/// module docs) as a [`Dataset`] of `size x size` images with ink = 1.
///
/// Classes are ordered by (alphabet, character) name and rows by class then file name, so the
/// result is the same on every machine. With `rotations`, classes `0..n` are the originals in
/// that order, followed by the blocks `@90`, `@180` and `@270` in the same order (so class `c`
/// means the same character with or without rotations).
pub fn load_omniglot(path: &Path, opts: &OmniglotOptions) -> Result<Dataset, DataError> {
    load(path, opts).map(|(ds, _)| ds)
}

/// [`load_omniglot`], with the drawer of each row: the `DD` of its file name `NNNN_DD.png`
/// (what follows the stem's last `_`), rows of rotated classes keeping their original's. A
/// file not named so is refused: Lake's one-shot episodes need the drawers.
pub fn load_omniglot_drawers(path: &Path, opts: &OmniglotOptions) -> Result<(Dataset, Vec<String>), DataError> {
    let (ds, files) = load(path, opts)?;
    let n = files.len();
    let drawers = files
        .iter()
        .map(|(name, file)| {
            let stem = &file[..file.len() - ".png".len()];
            match stem.rsplit_once('_') {
                Some((_, d)) if !d.is_empty() => Ok(d.to_string()),
                _ => Err(DataError::invalid(
                    path,
                    format!("{name}: not named NNNN_DD.png, so its drawer (DD) is unknown"),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let drawers = (0..ds.len()).map(|i| drawers[i % n].clone()).collect();
    Ok((ds, drawers))
}

/// [`load_omniglot`], with the (entry name, file name) of each original row.
fn load(path: &Path, opts: &OmniglotOptions) -> Result<(Dataset, Vec<(String, String)>), DataError> {
    if opts.size == 0 {
        return Err(DataError::invalid(path, "Omniglot image size must be at least 1"));
    }
    let (mut source, mut entries) = open(path)?;
    if let Some(wanted) = &opts.alphabets {
        let available: BTreeSet<&str> = entries.iter().map(|e| e.alphabet.as_str()).collect();
        if let Some(missing) = wanted.iter().find(|a| !available.contains(a.as_str())) {
            let list: Vec<&str> = available.into_iter().collect();
            return Err(DataError::invalid(
                path,
                format!("no alphabet {missing:?} (available: {})", list.join(", ")),
            ));
        }
        entries.retain(|e| wanted.contains(&e.alphabet));
        if entries.is_empty() {
            return Err(DataError::invalid(path, "the alphabet filter selects no alphabet"));
        }
    }

    // Group by class; BTreeMap gives the deterministic (alphabet, character) order.
    let mut classes: BTreeMap<(String, String), Vec<Entry>> = BTreeMap::new();
    for e in entries {
        classes.entry((e.alphabet.clone(), e.character.clone())).or_default().push(e);
    }

    let size = opts.size;
    let dim = size * size;
    let n_images: usize = classes.values().map(Vec::len).sum();
    let copies = if opts.rotations { 1 + ROTATIONS.len() } else { 1 };
    let mut features = Vec::with_capacity(n_images * dim * copies);
    let mut labels = Vec::with_capacity(n_images * copies);
    let mut class_names = Vec::with_capacity(classes.len() * copies);
    let mut resizer = Resizer::default();
    let mut files = Vec::with_capacity(n_images);
    for (class, ((alphabet, character), mut drawings)) in classes.into_iter().enumerate() {
        drawings.sort_by(|a, b| a.file.cmp(&b.file));
        for d in &drawings {
            let bytes = read_entry(path, &mut source, d)?;
            let (_, _, img) = prepare(&bytes, size, &mut resizer).map_err(|reason| DataError::Image {
                path: path.into(),
                entry: d.name.clone(),
                reason,
            })?;
            features.extend(img);
            labels.push(class as u32);
            files.push((d.name.clone(), d.file.clone()));
        }
        class_names.push(format!("{alphabet}/{character}"));
    }

    if opts.rotations {
        let n_originals = labels.len();
        let n_classes = class_names.len();
        for (k, &deg) in ROTATIONS.iter().enumerate() {
            let quarter_turns = k + 1;
            for i in 0..n_originals {
                let mut img = features[i * dim..(i + 1) * dim].to_vec();
                for _ in 0..quarter_turns {
                    img = rotate90_cw(&img, size);
                }
                features.extend_from_slice(&img);
                labels.push(labels[i] + (quarter_turns * n_classes) as u32);
            }
            for c in 0..n_classes {
                class_names.push(format!("{}@{deg}", class_names[c]));
            }
        }
    }
    Ok((Dataset::new(features, labels, class_names, dim, Some((size, size))), files))
}

/// One drawing (PNG bytes) as the loader prepares it: ink = 1 - grey/255, shrunk to
/// `size x size` by area averaging; with the drawing's own width and height. `ldl predict`
/// and `ldl device` prepare a PNG for a model trained on Omniglot through it, so a drawing
/// gets exactly the values training gave it.
pub fn prepare_drawing(bytes: &[u8], size: usize) -> Result<(usize, usize, Vec<f32>), String> {
    prepare(bytes, size, &mut Resizer::default())
}

/// [`prepare_drawing`] with the loader's resizer (its weights cached across drawings).
fn prepare(bytes: &[u8], size: usize, resizer: &mut Resizer) -> Result<(usize, usize, Vec<f32>), String> {
    let (w, h, ink) = decode_png_ink(bytes)?;
    Ok((w, h, resizer.resize(&ink, w, h, size)))
}

/// Rotates a row-major `n x n` image by 90 degrees clockwise (top row becomes right column).
pub fn rotate90_cw(img: &[f32], n: usize) -> Vec<f32> {
    assert_eq!(img.len(), n * n, "rotate90_cw needs a square n x n image");
    let mut out = vec![0.0; n * n];
    for y in 0..n {
        for x in 0..n {
            out[y * n + x] = img[(n - 1 - x) * n + y];
        }
    }
    out
}

/// Opens the archive or folder and lists its drawings (unsorted).
fn open(path: &Path) -> Result<(Source, Vec<Entry>), DataError> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    let (source, entries) = if meta.is_dir() {
        let mut entries = Vec::new();
        walk_dir(path, path, &mut entries)?;
        (Source::Dir, entries)
    } else {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|source| DataError::Zip { path: path.into(), source })?;
        let mut entries = Vec::new();
        for i in 0..archive.len() {
            let name = match archive.name_for_index(i) {
                Some(Ok(name)) => name.into_owned(),
                Some(Err(source)) => return Err(DataError::Zip { path: path.into(), source }),
                None => continue,
            };
            let parts: Vec<&str> = name.split('/').collect();
            if let Some(e) = entry_from_parts(&parts, &name, Location::ZipIndex(i)) {
                entries.push(e);
            }
        }
        (Source::Zip(archive), entries)
    };
    if entries.is_empty() {
        return Err(DataError::invalid(
            path,
            "no Omniglot drawings found (expected <alphabet>/<character>/<drawing>.png)",
        ));
    }
    Ok((source, entries))
}

/// Recursively collects the PNGs under `root`.
fn walk_dir(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> Result<(), DataError> {
    let read = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for item in read {
        let item = item.map_err(|e| DataError::io(dir, e))?;
        let p = item.path();
        let is_dir = item.file_type().map_err(|e| DataError::io(&p, e))?.is_dir();
        if is_dir {
            walk_dir(root, &p, out)?;
            continue;
        }
        let rel = p.strip_prefix(root).unwrap_or(&p);
        // Non-UTF-8 names cannot be class names; they are not Omniglot files anyway.
        let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        if let Some(parts) = parts {
            let name = parts.join("/");
            if let Some(e) = entry_from_parts(&parts, &name, Location::File(p.clone())) {
                out.push(e);
            }
        }
    }
    Ok(())
}

/// Interprets a path as `[...]/<alphabet>/<character>/<file>.png`, skipping anything else
/// (directories, README files, macOS `__MACOSX`/dot-file debris).
fn entry_from_parts(parts: &[&str], name: &str, location: Location) -> Option<Entry> {
    let n = parts.len();
    if n < 3 || parts.iter().any(|p| p.is_empty() || p.starts_with('.') || *p == "__MACOSX") {
        return None;
    }
    let file = parts[n - 1];
    if !file.to_ascii_lowercase().ends_with(".png") {
        return None;
    }
    Some(Entry {
        alphabet: parts[n - 3].to_string(),
        character: parts[n - 2].to_string(),
        file: file.to_string(),
        name: name.to_string(),
        location,
    })
}

fn read_entry(path: &Path, source: &mut Source, e: &Entry) -> Result<Vec<u8>, DataError> {
    let image_err = |reason: String| DataError::Image {
        path: path.into(),
        entry: e.name.clone(),
        reason,
    };
    match (&e.location, source) {
        (Location::ZipIndex(i), Source::Zip(archive)) => {
            let f = archive.by_index(*i).map_err(|err| image_err(err.to_string()))?;
            // The declared size is checked before inflating, and inflating stops past the
            // limit whatever was declared; nothing is reserved from the declared size.
            let too_large = |size: String| {
                image_err(format!(
                    "the entry {size}, more than the {MAX_IMAGE_FILE_BYTES} bytes an image file may have"
                ))
            };
            if f.size() > MAX_IMAGE_FILE_BYTES {
                return Err(too_large(format!("declares {} bytes", f.size())));
            }
            let mut bytes = Vec::new();
            f.take(MAX_IMAGE_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|err| image_err(err.to_string()))?;
            if bytes.len() as u64 > MAX_IMAGE_FILE_BYTES {
                return Err(too_large("inflates to more bytes".into()));
            }
            Ok(bytes)
        }
        (Location::File(p), _) => read_file_limited(p, MAX_IMAGE_FILE_BYTES, "the image file", "the limit for an image file"),
        (Location::ZipIndex(_), Source::Dir) => unreachable!("zip entry listed for a folder"),
    }
}

/// Decodes a PNG of any colour type/bit depth to ink values `1 - grey/255` (width, height,
/// row-major). Transparent pixels are composited over white paper so they count as no ink.
/// An image too large to decode is refused from its header ([`decode_png`]).
fn decode_png_ink(bytes: &[u8]) -> Result<(usize, usize, Vec<f32>), String> {
    let png = decode_png(bytes)?;
    let channels = png.channels;
    let mut ink = Vec::with_capacity(png.width * png.height);
    for px in png.pixels() {
        // ITU-R 601 luma, as PIL's "L" conversion.
        let grey = match channels {
            1 | 2 => px[0] as f32,
            _ => 0.299 * px[0] as f32 + 0.587 * px[1] as f32 + 0.114 * px[2] as f32,
        };
        let grey = match channels {
            2 | 4 => {
                let a = px[channels - 1] as f32 / 255.0;
                a * grey + (1.0 - a) * 255.0
            }
            _ => grey,
        };
        ink.push(1.0 - grey / 255.0);
    }
    Ok((png.width, png.height, ink))
}

/// Area-averaging resizer (each output pixel is the coverage-weighted mean of the source
/// pixels under it), with the per-axis weight tables cached because every Omniglot drawing
/// has the same size. Area averaging keeps thin strokes visible when shrinking 105 -> 28,
/// where point sampling would drop them.
#[derive(Default)]
struct Resizer {
    cache: Vec<((usize, usize), AxisWeights)>,
}

/// For each output index, the `(source index, weight)` pairs; weights sum to 1.
type AxisWeights = Vec<Vec<(usize, f32)>>;

impl Resizer {
    /// Index into `cache` of the weights for `src -> dst`, computing them on first use.
    fn weights(&mut self, src: usize, dst: usize) -> usize {
        if let Some(i) = self.cache.iter().position(|(k, _)| *k == (src, dst)) {
            return i;
        }
        self.cache.push(((src, dst), area_weights(src, dst)));
        self.cache.len() - 1
    }

    fn resize(&mut self, img: &[f32], w: usize, h: usize, size: usize) -> Vec<f32> {
        if w == size && h == size {
            return img.to_vec();
        }
        let (ix, iy) = (self.weights(w, size), self.weights(h, size));
        let (wx, wy) = (&self.cache[ix].1, &self.cache[iy].1);
        // Horizontal pass: h x size.
        let mut tmp = vec![0.0f32; h * size];
        for y in 0..h {
            let src = &img[y * w..(y + 1) * w];
            for (x, taps) in wx.iter().enumerate() {
                tmp[y * size + x] = taps.iter().map(|&(i, wt)| wt * src[i]).sum();
            }
        }
        // Vertical pass: size x size.
        let mut out = vec![0.0f32; size * size];
        for (y, taps) in wy.iter().enumerate() {
            for &(i, wt) in taps {
                let src = &tmp[i * size..(i + 1) * size];
                for (o, &s) in out[y * size..(y + 1) * size].iter_mut().zip(src) {
                    *o += wt * s;
                }
            }
        }
        // Rounding can leave values a hair outside [0, 1]; keep the documented range exact.
        for v in &mut out {
            *v = v.clamp(0.0, 1.0);
        }
        out
    }
}

/// Weights of the box filter that maps `src` samples onto `dst` (also fine for enlarging,
/// where it degenerates to nearest-neighbour with blended borders).
fn area_weights(src: usize, dst: usize) -> AxisWeights {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|o| {
            let (start, end) = (o as f64 * scale, (o + 1) as f64 * scale);
            let first = start.floor() as usize;
            let last = (end.ceil() as usize).min(src);
            (first..last)
                .filter_map(|i| {
                    let overlap = end.min(i as f64 + 1.0) - start.max(i as f64);
                    (overlap > 1e-12).then_some((i, (overlap / scale) as f32))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::OnceLock;

    fn small1() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/omniglot/images_background_small1.zip")
    }

    /// small1 with rotations, loaded once: the rotation-free set is its first quarter.
    fn rotated() -> &'static Dataset {
        static DS: OnceLock<Dataset> = OnceLock::new();
        DS.get_or_init(|| {
            load_omniglot(
                &small1(),
                &OmniglotOptions {
                    rotations: true,
                    ..Default::default()
                },
            )
            .unwrap()
        })
    }

    #[test]
    fn small1_classes_counts_and_values() {
        let ds = load_omniglot(&small1(), &OmniglotOptions::default()).unwrap();
        assert_eq!(ds.num_classes(), 136);
        assert_eq!(ds.len(), 136 * 20);
        assert_eq!(ds.dim, 784);
        assert_eq!(ds.image, Some((28, 28)));
        assert!(ds.class_counts().iter().all(|&c| c == 20));
        assert_eq!(ds.class_names[0], "Balinese/character01");
        assert_eq!(ds.class_names.last().unwrap(), "Latin/character26");
        let mut sorted = ds.class_names.clone();
        sorted.sort();
        assert_eq!(sorted, ds.class_names, "classes sorted by name");
        assert!(ds.features.iter().all(|v| (0.0..=1.0).contains(v)));
        let mean = ds.features.iter().sum::<f32>() / ds.features.len() as f32;
        assert!(mean > 0.02 && mean < 0.3, "mean ink {mean}");
        // Background dominates: most pixels are (almost) no ink, and every image has strokes.
        let blank = ds.features.iter().filter(|&&v| v < 0.05).count() as f32 / ds.features.len() as f32;
        assert!(blank > 0.6, "blank fraction {blank}");
        assert!(ds.rows().all(|r| r.iter().cloned().fold(0.0, f32::max) > 0.5));
        // Identical to the first quarter of the rotated set (same order, same pixels).
        let r = rotated();
        assert_eq!(&r.features[..ds.features.len()], &ds.features[..]);
        assert_eq!(&r.labels[..ds.len()], &ds.labels[..]);
        assert_eq!(&r.class_names[..136], &ds.class_names[..]);
    }

    #[test]
    fn rotations_quadruple_classes() {
        let ds = rotated();
        let n = 136 * 20;
        assert_eq!(ds.num_classes(), 4 * 136);
        assert_eq!(ds.len(), 4 * n);
        assert!(ds.class_counts().iter().all(|&c| c == 20));
        assert_eq!(ds.class_names[136], "Balinese/character01@90");
        assert_eq!(ds.class_names[3 * 136 + 5], format!("{}@270", ds.class_names[5]));
        // Row i + k*n is row i turned k quarter turns, written here as explicit index maps.
        let s = 28;
        for i in [0, 777, n - 1] {
            let orig = ds.row(i);
            assert_eq!(ds.labels[i + n], ds.labels[i] + 136);
            let (r90, r180, r270) = (ds.row(i + n), ds.row(i + 2 * n), ds.row(i + 3 * n));
            for y in 0..s {
                for x in 0..s {
                    // Clockwise: source (row y, col x) lands at (row x, col s-1-y).
                    assert_eq!(r90[x * s + (s - 1 - y)], orig[y * s + x]);
                    assert_eq!(r180[(s - 1 - y) * s + (s - 1 - x)], orig[y * s + x]);
                    assert_eq!(r270[(s - 1 - x) * s + y], orig[y * s + x]);
                }
            }
        }
    }

    #[test]
    fn resize_then_rotate_equals_rotate_then_resize() {
        // Decode one drawing at full resolution, rotate it there, then shrink: must match the
        // loader's @90 image (which shrinks first), since area averaging is rotation-symmetric.
        let bytes = {
            let mut a = zip::ZipArchive::new(std::fs::File::open(small1()).unwrap()).unwrap();
            let mut f = a.by_name("images_background_small1/Balinese/character01/0108_01.png").unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            b
        };
        let (w, h, ink) = decode_png_ink(&bytes).unwrap();
        assert_eq!((w, h), (105, 105));
        let mut resizer = Resizer::default();
        let expected = resizer.resize(&rotate90_cw(&ink, 105), 105, 105, 28);
        let got = rotated().row(136 * 20); // first drawing of Balinese/character01@90
        let max_diff = expected.iter().zip(got).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(max_diff < 1e-5, "max diff {max_diff}");
    }

    #[test]
    fn small2_loads_with_unusual_alphabet_names() {
        let path = small1().with_file_name("images_background_small2.zip");
        let alphabets = list_alphabets(&path).unwrap();
        assert_eq!(alphabets, ["Greek", "Japanese_(katakana)", "Latin", "Sanskrit", "Tagalog"]);
        let ds = load_omniglot(&path, &OmniglotOptions::default()).unwrap();
        assert_eq!(ds.len(), 3120);
        assert_eq!(ds.num_classes(), 156);
        assert!(ds.class_names.contains(&"Japanese_(katakana)/character01".to_string()));
    }

    #[test]
    fn area_weights_sum_to_one_and_preserve_mean() {
        for (src, dst) in [(105, 28), (10, 3), (4, 4), (3, 7)] {
            for taps in area_weights(src, dst) {
                let s: f32 = taps.iter().map(|t| t.1).sum();
                assert!((s - 1.0).abs() < 1e-5, "{src}->{dst}: {s}");
            }
        }
        // A 4x4 image shrunk to 2x2 averages 2x2 blocks exactly.
        let img: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
        let out = Resizer::default().resize(&img, 4, 4, 2);
        let expect = [2.5, 4.5, 10.5, 12.5].map(|v| v / 16.0);
        for (a, b) in out.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn alphabets_listing_and_filter() {
        assert_eq!(
            list_alphabets(&small1()).unwrap(),
            ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]
        );
        let opts = OmniglotOptions {
            alphabets: Some(vec!["Greek".into()]),
            size: 14,
            ..Default::default()
        };
        let ds = load_omniglot(&small1(), &opts).unwrap();
        assert_eq!(ds.num_classes(), 24);
        assert_eq!(ds.dim, 196);
        assert!(ds.class_names.iter().all(|n| n.starts_with("Greek/")));
        let opts = OmniglotOptions {
            alphabets: Some(vec!["Klingon".into()]),
            ..Default::default()
        };
        let e = load_omniglot(&small1(), &opts).unwrap_err();
        assert!(e.to_string().contains("\"Klingon\"") && e.to_string().contains("Greek"), "{e}");
    }

    /// A grey PNG of `w x h` whose pixels are all `value`.
    fn png_bytes(w: u32, h: u32, value: u8) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            let mut wr = enc.write_header().unwrap();
            wr.write_image_data(&vec![value; (w * h) as usize]).unwrap();
        }
        out
    }

    #[test]
    fn extracted_folder_and_corrupt_image() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("set");
        for (alpha, ch, file, v) in [
            ("B", "character02", "b.png", 0u8),
            ("A", "character01", "x.png", 255),
            ("A", "character01", "a.png", 0),
        ] {
            let d = root.join(alpha).join(ch);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(file), png_bytes(6, 6, v)).unwrap();
        }
        std::fs::write(root.join("README.txt"), "not an image").unwrap();
        let opts = OmniglotOptions {
            size: 3,
            rotations: false,
            alphabets: None,
        };
        let ds = load_omniglot(&root, &opts).unwrap();
        assert_eq!(ds.class_names, ["A/character01", "B/character02"]);
        assert_eq!(ds.labels, [0, 0, 1]);
        // a.png (black = full ink) sorts before x.png (white = no ink).
        assert!(ds.row(0).iter().all(|&v| v == 1.0));
        assert!(ds.row(1).iter().all(|&v| v == 0.0));
        // The parent folder works too (the set name is just a prefix).
        assert_eq!(load_omniglot(dir.path(), &opts).unwrap(), ds);

        // A corrupt PNG inside a zip: the error names the archive and the entry.
        let zpath = dir.path().join("bad.zip");
        let mut zw = zip::ZipWriter::new(std::fs::File::create(&zpath).unwrap());
        let zo = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zw.start_file("s/A/character01/good.png", zo).unwrap();
        zw.write_all(&png_bytes(4, 4, 128)).unwrap();
        zw.start_file("s/A/character01/oops.png", zo).unwrap();
        zw.write_all(b"\x89PNG garbage").unwrap();
        zw.finish().unwrap();
        let e = load_omniglot(&zpath, &opts).unwrap_err();
        assert!(matches!(e, DataError::Image { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("bad.zip") && msg.contains("s/A/character01/oops.png"), "{msg}");

        // Not a zip at all.
        let e = load_omniglot(&root.join("README.txt"), &opts).unwrap_err();
        assert!(matches!(e, DataError::Zip { .. }) && e.to_string().contains("README.txt"), "{e}");
    }

    /// A zip of `(name, bytes)` entries, deflated.
    fn zip_of(path: &Path, entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zw = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let zo = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            zw.start_file(*name, zo).unwrap();
            zw.write_all(bytes).unwrap();
        }
        zw.finish().unwrap();
        std::fs::read(path).unwrap()
    }

    #[test]
    fn an_entry_declaring_a_huge_size_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forged.zip");
        let mut bytes = zip_of(&path, &[("s/A/character01/a.png", &png_bytes(4, 4, 0))]);
        // Forge the uncompressed size in the local header (offset 22) and the central
        // directory entry (offset 24): 0xFFFFFFF0 bytes, from a file of a few hundred.
        let le = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        assert_eq!(le(&bytes, 0), 0x0403_4b50);
        let cd = (0..bytes.len() - 4).find(|&i| le(&bytes, i) == 0x0201_4b50).unwrap();
        bytes[22..26].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        bytes[cd + 24..cd + 28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        assert!(bytes.len() < 600, "{}", bytes.len());
        std::fs::write(&path, &bytes).unwrap();
        let e = load_omniglot(&path, &OmniglotOptions::default()).unwrap_err();
        assert!(matches!(e, DataError::Image { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("forged.zip")
                && msg.contains("s/A/character01/a.png")
                && msg.contains("declares 4294967280 bytes")
                && msg.contains("134217728"),
            "{msg}"
        );
    }

    #[test]
    fn a_huge_png_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let huge = crate::data::image::tests::png_claiming(20000, 20000, 3);
        let path = dir.path().join("huge.zip");
        zip_of(
            &path,
            &[("s/A/character01/a.png", &png_bytes(4, 4, 0)), ("s/A/character01/b.png", &huge)],
        );
        let e = load_omniglot(&path, &OmniglotOptions::default()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("huge.zip") && msg.contains("s/A/character01/b.png") && msg.contains("20000x20000"),
            "{msg}"
        );
        // The same in a folder.
        let folder = dir.path().join("set/A/character01");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("b.png"), &huge).unwrap();
        let e = load_omniglot(&dir.path().join("set"), &OmniglotOptions::default()).unwrap_err();
        assert!(
            e.to_string().contains("A/character01/b.png") && e.to_string().contains("20000x20000"),
            "{e}"
        );
    }
}
