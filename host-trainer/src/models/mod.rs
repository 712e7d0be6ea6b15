//! Models for devices: `ldl train`, `inspect`, `eval` and `predict`, and what they share.
//!
//! # What a device receives (the model's input domain)
//!
//! A model file records the preprocessing ([`Preprocess`]) that turns what the device
//! receives ("raw" input) into what the model was fitted on; the device applies
//! [`Preprocess::apply`] exactly as the host did, and the host trains, evaluates and predicts
//! through the same `apply` on the same raw values, so both see bit-identical inputs.
//!
//! | data set | raw input (what the device receives) | recorded preprocessing |
//! |---|---|---|
//! | MNIST | the 784 pixel bytes as floats `0.0..=255.0` (row-major 28x28, ink high) | `scale = 1/255`, `offset = 0`, image 28x28 (no resize) |
//! | Omniglot | 28x28 ink values in `[0, 1]` (the host's area-averaged 105 -> 28 resize, ink = 1 - grey/255) | `scale = 1`, `offset = 0`, image 28x28 from a 105x105 source (the device does not resize; `predict --png` and `device --model` prepare a 105x105 drawing with the loader's own resize and inversion) |
//! | CSV | the features as written in the file | `scale = 1`, `offset = 0`, no image |
//!
//! `shift` (enrollment augmentation) is the method's shift: 2 for `device` (an enrolling
//! device adds every enrolled image's shifts by up to 2 pixels, as the host did for the
//! support), 0 otherwise.
//!
//! # Labels
//!
//! Model labels are at most [`ldl_core::LABEL_LEN`] (16) bytes. A class name that fits is its
//! own label; a longer one is shortened by [`model_label`] (Omniglot's `/character` becomes
//! `/c`, then, if still too long, the first 11 bytes, `~` and 4 hex digits of a hash of the
//! full name). `eval` matches test classes to model classes through the same function.

pub mod boards;
pub mod eval;
pub mod inspect;
pub mod predict;
pub mod train;

use crate::data::Dataset;
use crate::data::DatasetKind;
use anyhow::{bail, Context, Result};
use ldl_core::{ImageSpec, Preprocess};
use std::path::Path;

/// Omniglot's drawings are 105x105 before the host shrinks them.
pub const OMNIGLOT_SOURCE: u16 = 105;

/// The preprocessing a model trained on `ds` (of kind `kind`) records; see the module doc.
pub fn preprocess_for(kind: DatasetKind, ds: &Dataset, shift: u8) -> Preprocess {
    let image = ds.image.map(|(w, h)| {
        let (sw, sh) = match kind {
            DatasetKind::Omniglot => (OMNIGLOT_SOURCE, OMNIGLOT_SOURCE),
            _ => (0, 0),
        };
        ImageSpec {
            width: w as u16,
            height: h as u16,
            source_width: sw,
            source_height: sh,
        }
    });
    Preprocess {
        scale: match kind {
            DatasetKind::Mnist => 1.0 / 255.0,
            _ => 1.0,
        },
        offset: 0.0,
        image,
        shift: if image.is_some() { shift } else { 0 },
        fill: 0,
        align: 0,
    }
}

/// The raw inputs (what a device receives, see the module doc) of the rows `rows` of `ds`,
/// row-major. MNIST features are `byte / 255` and become the bytes again (exactly: the
/// division is correctly rounded, so rounding `v * 255` recovers the byte).
pub fn raw_rows(kind: DatasetKind, ds: &Dataset, rows: impl IntoIterator<Item = usize>) -> Vec<f32> {
    let mut out = Vec::new();
    for i in rows {
        let r = ds.row(i);
        match kind {
            DatasetKind::Mnist => out.extend(r.iter().map(|v| (v * 255.0).round())),
            _ => out.extend_from_slice(r),
        }
    }
    out
}

/// `raw` after the model's preprocessing, as the device computes it.
pub fn preprocessed(pp: &Preprocess, mut raw: Vec<f32>) -> Result<Vec<f32>> {
    pp.apply(&mut raw).context("preprocessing gave a non-finite value")?;
    Ok(raw)
}

/// The novelty score of `rule` for each row of `dist` (`nc` distances per sample, as
/// [`ldl_core::batch::distances`] gives them) and its preprocessed sample in `xs`: what
/// `ldl_core::classify` compares with the threshold. NaN where the score cannot tell;
/// infinite (unknown) for a sample no class gives a finite distance (`classify` refuses it).
pub fn scores(rule: ldl_core::novelty::Rule, dist: &[f32], xs: &[f32], nc: usize) -> Result<Vec<f32>> {
    let n = dist.len().checked_div(nc).unwrap_or(0);
    if n == 0 {
        return Ok(Vec::new());
    }
    let d = xs.len() / n;
    dist.chunks_exact(nc)
        .zip(xs.chunks_exact(d.max(1)))
        .map(|(row, x)| match rule.score_of(row, ldl_core::linalg::norm2(x)) {
            Err(ldl_core::Error::NonFinite) => Ok(f32::INFINITY),
            s => s.context("computing a novelty score"),
        })
        .collect()
}

/// The model label of a data-set class name (see the module doc).
pub fn model_label(name: &str) -> String {
    let max = ldl_core::LABEL_LEN;
    if name.len() <= max {
        return name.to_string();
    }
    let short = name.replace("/character", "/c");
    if short.len() <= max {
        return short;
    }
    // FNV-1a of the full name, 16 bits shown.
    let h = name.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193));
    let mut cut = max - 5;
    while !short.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{:04x}", &short[..cut], (h ^ (h >> 16)) & 0xffff)
}

/// Parses `--classes`: a comma-separated list of class names, indices and index ranges
/// (`0-7`). A token that is a class name is that class (MNIST's names are its indices).
pub fn parse_classes(spec: Option<&str>, names: &[String]) -> Result<Vec<usize>> {
    let Some(spec) = spec else {
        return Ok((0..names.len()).collect());
    };
    let mut out: Vec<usize> = Vec::new();
    let index = |t: &str| -> Result<usize> {
        let i: usize = t
            .trim()
            .parse()
            .with_context(|| format!("--classes: {t:?} is neither a class name nor an index"))?;
        if i >= names.len() {
            bail!("--classes: index {i} is out of range (the data set has {} classes)", names.len());
        }
        Ok(i)
    };
    for tok in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if let Some(i) = names.iter().position(|n| n == tok) {
            out.push(i);
        } else if let Some((a, b)) = tok.split_once('-') {
            let (a, b) = (index(a)?, index(b)?);
            if a > b {
                bail!("--classes: empty range {tok:?}");
            }
            out.extend(a..=b);
        } else {
            out.push(index(tok)?);
        }
    }
    if out.is_empty() {
        bail!("--classes {spec:?} selects no class");
    }
    for (i, c) in out.iter().enumerate() {
        if out[..i].contains(c) {
            bail!("--classes: class {:?} is listed twice", names[*c]);
        }
    }
    Ok(out)
}

/// Reads a model file, failing with a message that names the file and the problem.
pub fn read_model_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read the model file", path.display()))
}

/// Explains a core error about a model file for a person.
pub fn model_error(path: &Path, e: ldl_core::Error) -> anyhow::Error {
    use ldl_core::Error as E;
    let hint = match e {
        E::Truncated => "the file is shorter than its header says (cut off while copying?)",
        E::BadMagic => "it does not start with \"LDLM\"",
        E::CrcMismatch => "the content does not match its CRC-32 (the file is corrupted)",
        E::Malformed => "its header or layout is inconsistent",
        E::NonFinite => "it holds a NaN or infinite value (a weight, or the threshold)",
        E::InvalidParameter => "a parameter is out of range (a negative novelty threshold?)",
        E::UnsupportedVersion(_) => "written by a newer or older ldl (this one reads format versions 1 to 3)",
        _ => "",
    };
    if hint.is_empty() {
        anyhow::anyhow!("{}: not a valid LDL model file: {e}", path.display())
    } else {
        anyhow::anyhow!("{}: not a valid LDL model file: {e}; {hint}", path.display())
    }
}

/// Reads and decodes a model file.
pub fn load_model(path: &Path) -> Result<ldl_core::Model> {
    let bytes = read_model_bytes(path)?;
    ldl_core::format::decode(&bytes).map_err(|e| model_error(path, e))
}

/// The data set kind's name.
pub fn kind_name(kind: DatasetKind) -> &'static str {
    kind.name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_name_index_and_range() {
        let names: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(parse_classes(Some("0-2"), &names).unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_classes(Some("7,3, 5"), &names).unwrap(), vec![7, 3, 5]);
        assert_eq!(parse_classes(None, &names).unwrap().len(), 10);
        assert!(parse_classes(Some("3,3"), &names).is_err());
        assert!(parse_classes(Some("10"), &names).is_err());
        assert!(parse_classes(Some("5-2"), &names).is_err());
        let words: Vec<String> = ["Walking", "Running", "a-b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(parse_classes(Some("Running,a-b,0"), &words).unwrap(), vec![1, 2, 0]);
        let e = parse_classes(Some("Jumping"), &words).unwrap_err().to_string();
        assert!(e.contains("Jumping"), "{e}");
    }

    #[test]
    fn labels_fit_and_stay_distinct() {
        assert_eq!(model_label("7"), "7");
        assert_eq!(model_label("Greek/character03"), "Greek/c03");
        let a = model_label("Japanese_(hiragana)/character03@90");
        let b = model_label("Japanese_(hiragana)/character04@90");
        assert!(a.len() <= 16 && b.len() <= 16, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.starts_with("Japanese_(h~"), "{a}");
    }

    #[test]
    fn mnist_raw_is_the_bytes() {
        let feats: Vec<f32> = (0..=255u32).map(|p| p as f32 / 255.0).collect();
        let ds = Dataset::new(feats, vec![0], vec!["0".into()], 256, Some((16, 16)));
        let raw = raw_rows(DatasetKind::Mnist, &ds, [0]);
        assert!(raw.iter().enumerate().all(|(i, &v)| v == i as f32));
        let pp = preprocess_for(DatasetKind::Mnist, &ds, 2);
        assert_eq!(pp.scale, 1.0 / 255.0);
        assert_eq!(pp.shift, 2);
        let x = preprocessed(&pp, raw).unwrap();
        assert!(x.iter().enumerate().all(|(i, &v)| (v - i as f32 / 255.0).abs() < 1e-7));
    }
}
