//! `ldl predict`: classifies given inputs with a model file, one at a time through
//! `ldl_core::classify` (the device's own path), after the model's preprocessing.
//!
//! Inputs are raw, as a device receives them (see [`super`]): MNIST test images as pixel
//! bytes 0..255, PNG files prepared as the model's training data was ([`png_raw`]: an
//! Omniglot model's drawings shrunk from 105x105 and inverted by the Omniglot loader's own
//! code; other images as grey levels 0..255, divided by 255 when the model's preprocessing
//! does not scale), CSV rows as written.

use super::{load_model, preprocessed};
use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgGroup, Args};
use ldl_core::{Model, Preprocess};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Arguments of `ldl predict`.
#[derive(Debug, Args, Clone)]
#[command(group(ArgGroup::new("input").required(true).args(["csv", "mnist_test", "png"])))]
pub struct PredictArgs {
    /// The model file.
    #[arg(value_name = "MODEL.ldlm")]
    pub model: PathBuf,
    /// A CSV of raw inputs, one per row: `d` values, or a label (the expected class) then
    /// `d` values. A first row that is not numbers is a header and skipped.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// MNIST test images by index (0..9999), as raw pixel bytes.
    #[arg(long, num_args = 1.., value_name = "INDEX")]
    pub mnist_test: Vec<usize>,
    /// Grey-scale (or colour, converted to luma) PNG images, prepared as the model records:
    /// a model trained on Omniglot takes the drawings as the data set has them (105x105, dark
    /// ink on white), shrunk and inverted exactly as in training; other models take images
    /// of their own size.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub png: Vec<PathBuf>,
    /// PNG: dark ink on light paper: use 255 - grey, so ink is high (models trained on
    /// Omniglot invert as their training did, with or without it).
    #[arg(long)]
    pub invert: bool,
    /// MNIST folder for --mnist-test (default: data/mnist).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print every answer as JSON, with every class's distance.
    #[arg(long)]
    pub json: bool,
}

/// One input to classify.
#[derive(Debug, Clone)]
pub struct Input {
    /// Where it comes from.
    pub name: String,
    /// Its known class, if any.
    pub expected: Option<String>,
    /// Raw values.
    pub raw: Vec<f32>,
}

/// One answer.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The input.
    pub input: String,
    /// Its known class.
    pub expected: Option<String>,
    /// The decision: the class's label, or `None` when unknown.
    pub label: Option<String>,
    /// The closest class (even when unknown); `None` when no class could measure the input.
    pub best: Option<String>,
    /// The novelty score `novelty` is (the model's: `contrast`, `best`, ...).
    pub score: &'static str,
    /// The model's novelty score of the input, compared with its threshold (for `best`, the
    /// closest class's distance).
    pub novelty: f32,
    /// Above the threshold (or every class at the same distance).
    pub unknown: bool,
    /// Ensemble agreement: the fraction of members whose own closest class is `best` (1
    /// for a single model).
    pub agreement: f32,
    /// Every class's distance, by label.
    pub distances: Vec<(String, f32)>,
    /// Why the core refused this input (non-finite values, or values so large that no
    /// class's distance is finite): it is then unknown, and the other inputs still answered.
    pub error: Option<String>,
}

/// Classifies one raw input with `model` (preprocessing, then `classify`).
pub fn classify_raw(model: &Model, raw: Vec<f32>) -> Result<(ldl_core::classify::Classification, Vec<f32>)> {
    if raw.len() != model.inputs() {
        bail!("{} values, the model takes {}", raw.len(), model.inputs());
    }
    let x = preprocessed(&model.preprocess, raw)?;
    let mut scratch = vec![0.0; ldl_core::classify::scratch_len(model)?];
    let mut dist = vec![0.0; model.labels.len()];
    let c = ldl_core::classify(model, &x, model.rule(), &mut scratch, &mut dist)?;
    Ok((c, dist))
}

/// MNIST test images by index, as raw pixel bytes 0..255 (what a device receives).
pub fn mnist_inputs(dir: &Path, idx: &[usize]) -> Result<Vec<Input>> {
    mnist_split_inputs(dir, crate::data::Split::Test, idx)
}

/// Images of one MNIST split by index, as raw pixel bytes 0..255.
pub fn mnist_split_inputs(dir: &Path, split: crate::data::Split, idx: &[usize]) -> Result<Vec<Input>> {
    let test = crate::data::load_mnist(dir, split)?;
    let name = match split {
        crate::data::Split::Train => "mnist-train",
        crate::data::Split::Test => "mnist-test",
    };
    idx.iter()
        .map(|&i| {
            if i >= test.len() {
                bail!("--{name} {i}: the split has {} images (0..{})", test.len(), test.len() - 1);
            }
            Ok(Input {
                name: format!("{name}[{i}]"),
                expected: Some(test.class_names[test.labels[i] as usize].clone()),
                raw: test.row(i).iter().map(|v| (v * 255.0).round()).collect(),
            })
        })
        .collect()
}

/// Decodes a PNG to grey levels 0..255 (alpha composited over the paper: black, or white
/// with `invert`), then inverted with `invert`. A file or image too large is refused before
/// it is read or decoded ([`crate::data::image`]'s limits).
pub fn png_grey(path: &Path, invert: bool) -> Result<(usize, usize, Vec<f32>)> {
    use crate::data::image::{decode_png, MAX_IMAGE_FILE_BYTES};
    let bytes = crate::data::read_file_limited(path, MAX_IMAGE_FILE_BYTES, "the image file", "the limit for an image file")
        .context("cannot read the image")?;
    let png = decode_png(&bytes).map_err(|why| anyhow!("{}: {why}", path.display()))?;
    let (w, h, channels) = (png.width, png.height, png.channels);
    let paper = if invert { 255.0 } else { 0.0 };
    let mut out = Vec::with_capacity(w * h);
    for px in png.pixels() {
        let mut g = match channels {
            1 | 2 => px[0] as f32,
            _ => (0.299 * px[0] as f32 + 0.587 * px[1] as f32 + 0.114 * px[2] as f32).round(),
        };
        if channels == 2 || channels == 4 {
            let a = px[channels - 1] as f32 / 255.0;
            g = (a * g + (1.0 - a) * paper).round();
        }
        out.push(if invert { 255.0 - g } else { g });
    }
    Ok((w, h, out))
}

/// The raw input (what a device receives) of the PNG at `path` for a model with the
/// preprocessing `pp`, prepared as the model's training data was:
///
/// * a recorded source size (a model trained on Omniglot drawings, see [`super`]): the
///   drawing as the Omniglot loader prepares it
///   ([`crate::data::omniglot::prepare_drawing`]: ink = 1 - grey/255, shrunk from the
///   source size by area averaging), whatever `invert`. The PNG is the source size, or
///   already the model's;
/// * otherwise grey levels 0..255 (255 - grey with `invert`) of the model's size, divided
///   by 255 when the preprocessing does not scale.
pub fn png_raw(pp: &Preprocess, path: &Path, invert: bool) -> Result<Vec<f32>> {
    let Some(im) = pp.image else {
        bail!("the model does not take images (its preprocessing has no image size)");
    };
    let (mw, mh) = (im.width as usize, im.height as usize);
    if im.source_width != 0 || im.source_height != 0 {
        let sw = if im.source_width == 0 { mw } else { im.source_width as usize };
        let sh = if im.source_height == 0 { mh } else { im.source_height as usize };
        if mw != mh || mw == 0 {
            bail!("the model takes {mw}x{mh} images resized from {sw}x{sh}: only square ones are resized");
        }
        let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read the image", path.display()))?;
        let (w, h, ink) = crate::data::omniglot::prepare_drawing(&bytes, mw).map_err(|why| anyhow!("{}: {why}", path.display()))?;
        if (w, h) != (sw, sh) && (w, h) != (mw, mh) {
            bail!(
                "{}: the image is {w}x{h}; the model takes drawings of {sw}x{sh} (shrunk to {mw}x{mh} as in training) or of {mw}x{mh}",
                path.display()
            );
        }
        return Ok(ink);
    }
    let (w, h, grey) = png_grey(path, invert)?;
    if (w, h) != (mw, mh) {
        bail!("{}: the image is {w}x{h}, the model takes {mw}x{mh}", path.display());
    }
    Ok(if pp.scale == 1.0 {
        grey.iter().map(|g| g / 255.0).collect()
    } else {
        grey
    })
}

fn png_inputs(model: &Model, paths: &[PathBuf], invert: bool) -> Result<Vec<Input>> {
    paths
        .iter()
        .map(|p| {
            Ok(Input {
                name: p.display().to_string(),
                expected: None,
                raw: png_raw(&model.preprocess, p, invert)?,
            })
        })
        .collect()
}

/// The rows of a CSV of raw inputs: `d` values, or a label then `d` values; a first row
/// that is not numbers is a header.
pub fn csv_inputs(path: &Path, d: usize) -> Result<Vec<Input>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("{}: cannot read the CSV", path.display()))?;
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 1;
        let rec = rec.with_context(|| format!("{}: line {line}: CSV error", path.display()))?;
        let fields: Vec<&str> = rec.iter().map(str::trim).collect();
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        let (expected, values) = match fields.len() {
            n if n == d => (None, &fields[..]),
            n if n == d + 1 => (Some(fields[0].to_string()), &fields[1..]),
            n => bail!(
                "{}: line {line}: {n} fields, the model takes {d} values (or a label and {d} values)",
                path.display()
            ),
        };
        let parsed: Result<Vec<f32>, _> = values.iter().map(|v| v.parse::<f32>()).collect();
        match parsed {
            Ok(raw) => out.push(Input {
                name: format!("{}:{line}", path.display()),
                expected,
                raw,
            }),
            Err(_) if out.is_empty() && i == 0 => continue, // header
            Err(e) => bail!("{}: line {line}: not a number: {e}", path.display()),
        }
    }
    if out.is_empty() {
        bail!("{}: no samples", path.display());
    }
    Ok(out)
}

/// Runs `ldl predict`.
pub fn run(args: PredictArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let inputs = if let Some(csv) = &args.csv {
        csv_inputs(csv, model.inputs())?
    } else if !args.mnist_test.is_empty() {
        let dir = args.data.clone().unwrap_or_else(|| crate::repo_root().join("data/mnist"));
        mnist_inputs(&dir, &args.mnist_test)?
    } else {
        png_inputs(&model, &args.png, args.invert)?
    };
    let labels: Vec<String> = model.labels.iter().map(|l| l.to_string()).collect();
    let mut answers = Vec::with_capacity(inputs.len());
    for inp in inputs {
        if inp.raw.len() != model.inputs() {
            bail!("{}: {} values, the model takes {}", inp.name, inp.raw.len(), model.inputs());
        }
        let answer = match classify_raw(&model, inp.raw) {
            Ok((c, dist)) => Answer {
                input: inp.name,
                expected: inp.expected,
                label: c.class.map(|i| labels[i].clone()),
                best: Some(labels[c.best].clone()),
                score: c.score.name(),
                novelty: c.novelty,
                unknown: c.class.is_none(),
                agreement: c.agreement,
                distances: labels.iter().cloned().zip(dist).collect(),
                error: None,
            },
            // The core refuses what it cannot measure; such an input is no class.
            Err(e) => match e.downcast_ref::<ldl_core::Error>() {
                Some(ldl_core::Error::NonFinite) => Answer {
                    input: inp.name,
                    expected: inp.expected,
                    label: None,
                    best: None,
                    score: model.score.name(),
                    novelty: f32::NAN,
                    unknown: true,
                    agreement: 0.0,
                    distances: Vec::new(),
                    error: Some("no class gives a finite distance (NaN or infinite values, or values too large)".into()),
                },
                _ => return Err(e.context(inp.name)),
            },
        };
        answers.push(answer);
    }
    if args.json {
        let v: Vec<serde_json::Value> = answers
            .iter()
            .map(|a| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                v["distances"] = a
                    .distances
                    .iter()
                    .map(|(l, d)| (l.clone(), serde_json::json!(d)))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let ensemble = model.members.len() > 1;
    println!(
        "{:<28} {:<16} {:<16} {:>12} {:>8}{}",
        "input",
        "label",
        "expected",
        model.score.name(),
        "unknown",
        if ensemble { format!(" {:>9}", "agreement") } else { String::new() }
    );
    for a in &answers {
        let label = match (&a.label, &a.best) {
            (Some(l), _) => l.clone(),
            (None, Some(b)) => format!("unknown ({b})"),
            (None, None) => "unknown (refused)".into(),
        };
        let novelty = if a.novelty.is_finite() {
            format!("{:.6}", a.novelty)
        } else {
            "-".into()
        };
        println!(
            "{:<28} {:<16} {:<16} {:>12} {:>8}{}",
            a.input,
            label,
            a.expected.as_deref().unwrap_or("-"),
            novelty,
            if a.unknown { "yes" } else { "no" },
            if ensemble {
                format!(" {:>9.3}", a.agreement)
            } else {
                String::new()
            }
        );
    }
    for a in &answers {
        if let Some(e) = &a.error {
            eprintln!("note: {}: {e}", a.input);
        }
    }
    Ok(())
}
