//! `ldl device`: talks to a device over a serial port (or QEMU's UART on TCP) with the
//! framed protocol of `core/PROTOCOL.md`: info, classify, enroll, abort, list, forget.
//!
//! Samples are sent raw, as the device's sensor would give them: the device applies the
//! model's preprocessing itself (MNIST images as pixel levels 0..255, CSV rows as written).
//! PNGs given with the model file (`--model`) are prepared as `ldl predict` prepares them
//! (an Omniglot model's drawings shrunk and inverted as in training).

use super::{connect, AnyClient, Classification};
use crate::models::predict::{csv_inputs, mnist_split_inputs, png_grey, png_raw, Input};
use crate::models::{model_error, read_model_bytes};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ldl_core::protocol::{Info, ModelStatus};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `ldl device`.
#[derive(Debug, Args, Clone)]
pub struct DeviceArgs {
    /// The device: a serial port (`/dev/ttyACM0`, `COM3`) or `tcp:HOST:PORT` (a UART on TCP,
    /// e.g. QEMU's `-serial tcp:127.0.0.1:4555,server,nowait`).
    #[arg(long, short = 'p', value_name = "SERIAL")]
    pub port: String,
    /// Serial line speed (8N1).
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Seconds to wait for a reply (20 times as long for an enrollment's fit and for forget,
    /// which write flash).
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Print the answers as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: DeviceCommand,
}

/// What to ask the device.
#[derive(Debug, Subcommand, Clone)]
pub enum DeviceCommand {
    /// The device's protocol version, model state, dimensions, classes and capacity.
    Info,
    /// Every class's label (the model's, then the enrolled ones).
    List,
    /// Classifies samples on the device: label, every class's distance, unknown.
    Classify(SampleArgs),
    /// Enrolls a new class on the device from a few samples (the device fits it and keeps
    /// it in flash).
    Enroll {
        /// The new class's label (at most 16 bytes).
        label: String,
        #[command(flatten)]
        samples: SampleArgs,
    },
    /// Removes a class enrolled on the device.
    Forget {
        /// The class's label.
        label: String,
    },
    /// Drops the enrollment in progress on the device (e.g. one another host abandoned;
    /// `info` shows it).
    Abort,
}

/// Where samples come from (any mix).
#[derive(Debug, Args, Clone, Default)]
pub struct SampleArgs {
    /// CSV files (one sample per row: the values, or a label then the values) or PNG images.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// MNIST test images by index (0..9999), as pixel levels 0..255.
    #[arg(long, num_args = 1.., value_name = "INDEX")]
    pub mnist_test: Vec<usize>,
    /// MNIST training images by index (0..59999), as pixel levels 0..255.
    #[arg(long, num_args = 1.., value_name = "INDEX")]
    pub mnist_train: Vec<usize>,
    /// The model file the device runs (its CRC is checked against the device's): PNGs are
    /// prepared as it records, as `ldl predict` does (a model trained on Omniglot takes the
    /// drawings at 105x105, shrunk and inverted exactly as in training). Without it, PNGs
    /// are sent as grey levels of the device's input size (--invert, --unit).
    #[arg(long, value_name = "MODEL.ldlm")]
    pub model: Option<PathBuf>,
    /// PNG: dark ink on light paper: send 255 - grey.
    #[arg(long)]
    pub invert: bool,
    /// PNG without --model: send grey levels divided by 255 (for models whose preprocessing
    /// does not scale) instead of 0..255.
    #[arg(long, conflicts_with = "model")]
    pub unit: bool,
    /// MNIST folder (default: data/mnist).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

impl SampleArgs {
    /// Loads the samples; `d` is the device's input dimension and `crc` its model's CRC
    /// (which --model must have).
    pub fn load(&self, d: usize, crc: u32) -> Result<Vec<Input>> {
        let model = self.model.as_deref().map(|p| device_model(p, d, crc)).transpose()?;
        let mut out = Vec::new();
        for f in &self.files {
            let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            match ext.as_str() {
                "png" => {
                    let raw = match &model {
                        Some(m) => png_raw(&m.preprocess, f, self.invert)?,
                        None => {
                            let (w, h, grey) = png_grey(f, self.invert)?;
                            if w * h != d {
                                bail!(
                                    "{}: {w}x{h} = {} pixels, the device takes {d} values (give --model MODEL.ldlm \
                                     to prepare it as the model records, e.g. an Omniglot drawing shrunk from 105x105)",
                                    f.display(),
                                    w * h
                                );
                            }
                            if self.unit {
                                grey.iter().map(|g| g / 255.0).collect()
                            } else {
                                grey
                            }
                        }
                    };
                    out.push(Input {
                        name: f.display().to_string(),
                        expected: None,
                        raw,
                    });
                }
                _ => out.extend(csv_inputs(f, d)?),
            }
        }
        let dir = self.data.clone().unwrap_or_else(|| crate::repo_root().join("data/mnist"));
        if !self.mnist_test.is_empty() {
            out.extend(mnist_split_inputs(&dir, crate::data::Split::Test, &self.mnist_test)?);
        }
        if !self.mnist_train.is_empty() {
            out.extend(mnist_split_inputs(&dir, crate::data::Split::Train, &self.mnist_train)?);
        }
        if out.is_empty() {
            bail!("no samples: give CSV/PNG files, --mnist-test or --mnist-train");
        }
        for s in &out {
            if s.raw.len() != d {
                bail!("{}: {} values, the device takes {d}", s.name, s.raw.len());
            }
        }
        Ok(out)
    }
}

/// The model file at `path`, which must be the device's model (`d` inputs, CRC `crc`).
fn device_model(path: &std::path::Path, d: usize, crc: u32) -> Result<ldl_core::Model> {
    let bytes = read_model_bytes(path)?;
    let model = ldl_core::format::decode(&bytes).map_err(|e| model_error(path, e))?;
    let file_crc = ldl_core::format::checksum(&bytes[..bytes.len() - ldl_core::format::CRC_LEN]);
    if file_crc != crc || model.inputs() != d {
        bail!(
            "{}: not the device's model (the file: CRC {file_crc:08x}, {} inputs; the device: CRC {crc:08x}, {d} inputs)",
            path.display(),
            model.inputs()
        );
    }
    Ok(model)
}

/// One classification, for printing.
#[derive(Debug, Serialize)]
struct Answer<'a> {
    input: &'a str,
    expected: Option<&'a str>,
    /// The decision, `None` when unknown.
    label: Option<&'a str>,
    best: &'a str,
    class: usize,
    /// The model's novelty score (`score` names it) and whether it called the sample unknown.
    novelty: f32,
    score: &'static str,
    unknown: bool,
    distances: serde_json::Map<String, serde_json::Value>,
}

fn model_state(i: &Info) -> String {
    match i.model {
        ModelStatus::Valid { crc } => format!("valid (CRC {crc:08x})"),
        ModelStatus::Absent => "absent (the MODEL region is erased)".into(),
        ModelStatus::Invalid { code } => format!("invalid: {} (code {})", code.describe(), u8::from(code)),
    }
}

/// Runs `ldl device`.
pub fn run(a: DeviceArgs) -> Result<()> {
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let timeout = Duration::from_secs_f64(a.timeout);
    let mut dev = connect(&a.port, a.baud, timeout).with_context(|| format!("device at {}", a.port))?;
    match &a.command {
        DeviceCommand::Info => info(&mut dev, a.json),
        DeviceCommand::List => {
            let labels = dev.list()?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&labels)?);
            } else {
                for l in labels {
                    println!("{l}");
                }
            }
            Ok(())
        }
        DeviceCommand::Classify(s) => classify(&mut dev, s, a.json),
        DeviceCommand::Enroll { label, samples } => enroll(&mut dev, label, samples, a.json),
        DeviceCommand::Forget { label } => {
            dev.forget(label).with_context(|| format!("forgetting {label:?}"))?;
            if a.json {
                println!("{}", serde_json::json!({ "forgotten": label }));
            } else {
                println!("forgot {label:?}");
            }
            Ok(())
        }
        DeviceCommand::Abort => {
            let label = dev.abort().context("aborting the enrollment in progress")?;
            if a.json {
                println!("{}", serde_json::json!({ "aborted": label }));
            } else {
                println!("dropped the enrollment of {label:?} in progress");
            }
            Ok(())
        }
    }
}

fn info(dev: &mut AnyClient, json: bool) -> Result<()> {
    let i = dev.info()?;
    let labels: Vec<&str> = i.labels.iter().map(|l| l.as_str()).collect();
    if json {
        let v = serde_json::json!({
            "protocol": i.protocol,
            "model": model_state(&i),
            "model_valid": matches!(i.model, ModelStatus::Valid { .. }),
            "inputs": i.inputs,
            "outputs": i.outputs,
            "classes": i.classes,
            "capacity": i.capacity,
            "enrolled": i.enrolled,
            "max_rank": i.max_rank,
            "max_samples": i.max_samples,
            "labels": labels,
            "enrolling": i.enrolling.as_ref().map(|e| serde_json::json!({
                "label": e.label.as_str(),
                "got": e.got,
                "of": e.of,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("protocol    v{}", i.protocol);
        println!("model       {}", model_state(&i));
        println!("inputs      {}", i.inputs);
        println!("outputs     {}", i.outputs);
        println!(
            "classes     {} ({} enrolled on the device, capacity {})",
            i.classes, i.enrolled, i.capacity
        );
        println!("enrollment  at most {} samples, {} directions per class", i.max_samples, i.max_rank);
        println!("labels      {}", labels.join(", "));
        if let Some(e) = &i.enrolling {
            println!(
                "enrolling   {:?} in progress: {} of {} samples (`ldl device abort` drops it)",
                e.label.as_str(),
                e.got,
                e.of
            );
        }
    }
    Ok(())
}

/// The device's input dimension and its model's CRC, or an error when it has no valid model.
fn inputs_of(dev: &mut AnyClient) -> Result<(usize, u32)> {
    let i = dev.info()?;
    match i.model {
        ModelStatus::Valid { crc } => Ok((i.inputs as usize, crc)),
        _ => bail!("the device has no valid model: {}", model_state(&i)),
    }
}

fn classify(dev: &mut AnyClient, s: &SampleArgs, json: bool) -> Result<()> {
    let (d, crc) = inputs_of(dev)?;
    let inputs = s.load(d, crc)?;
    let labels = dev.list()?;
    let bar = (!json && inputs.len() > 20).then(|| crate::progress::bar(inputs.len() as u64, "classifying on the device".into()));
    let mut answers: Vec<(&Input, Classification)> = Vec::with_capacity(inputs.len());
    for inp in &inputs {
        let c = dev.classify(&inp.raw).with_context(|| inp.name.clone())?;
        answers.push((inp, c));
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let rows: Vec<Answer> = answers
        .iter()
        .map(|(inp, c)| Answer {
            input: &inp.name,
            expected: inp.expected.as_deref(),
            label: (!c.unknown).then_some(c.label.as_str()),
            best: &c.label,
            class: c.index,
            novelty: c.novelty,
            score: c.score.name(),
            unknown: c.unknown,
            distances: labels
                .iter()
                .zip(&c.distances)
                .map(|(l, d)| (l.clone(), serde_json::json!(d)))
                .collect(),
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let score = rows.first().map_or("novelty", |r| r.score);
    println!("{:<28} {:<20} {:<10} {:>12} {:>8}", "input", "label", "expected", score, "unknown");
    let (mut known, mut right, mut unknown) = (0, 0, 0);
    for r in &rows {
        let label = r.label.map(str::to_string).unwrap_or_else(|| format!("unknown ({})", r.best));
        println!(
            "{:<28} {:<20} {:<10} {:>12.6} {:>8}",
            r.input,
            label,
            r.expected.unwrap_or("-"),
            r.novelty,
            if r.unknown { "yes" } else { "no" }
        );
        unknown += usize::from(r.unknown);
        if let Some(e) = r.expected {
            known += 1;
            right += usize::from(r.label == Some(e));
        }
    }
    if known > 0 {
        println!("{right}/{known} correct ({:.1}%)", 100.0 * right as f64 / known as f64);
    }
    println!(
        "{unknown}/{} called unknown (the model's threshold on the {score} score)",
        rows.len()
    );
    Ok(())
}

fn enroll(dev: &mut AnyClient, label: &str, s: &SampleArgs, json: bool) -> Result<()> {
    let (d, crc) = inputs_of(dev)?;
    let inputs = s.load(d, crc)?;
    let refs: Vec<&[f32]> = inputs.iter().map(|i| i.raw.as_slice()).collect();
    let t0 = Instant::now();
    let rank = dev.enroll(label, &refs).with_context(|| format!("enrolling {label:?}"))?;
    let secs = t0.elapsed().as_secs_f64();
    if json {
        let v = serde_json::json!({ "enrolled": label, "samples": refs.len(), "rank": rank, "seconds": secs });
        println!("{v}");
    } else {
        println!(
            "enrolled {label:?} from {} samples on the device: {rank} directions, {secs:.1} s",
            refs.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// With --model, a PNG for a device whose model was trained on Omniglot is prepared as
    /// `ldl predict` prepares it: an original 105x105 drawing becomes the loader's 28x28 ink
    /// image. The model file must be the device's.
    #[test]
    fn pngs_with_the_model_are_prepared_as_it_records() {
        let zip = crate::repo_root().join("data/omniglot/images_background_small1.zip");
        let opts = crate::data::OmniglotOptions {
            alphabets: Some(vec!["Greek".into()]),
            ..Default::default()
        };
        let ds = crate::data::load_omniglot(&zip, &opts).unwrap();
        // A model of two Greek characters, from the library as `ldl train` makes it.
        let kind = crate::data::DatasetKind::Omniglot;
        let support: Vec<Vec<f32>> = (0..2).map(|c| crate::models::raw_rows(kind, &ds, ds.indices_of_class(c))).collect();
        let views: Vec<&[f32]> = support.iter().map(Vec::as_slice).collect();
        let cfg = ldl_core::methods::ClosedFormConfig::default();
        let mut m = ldl_core::methods::fit_closed_form(&views, 784, &["a", "b"], &cfg, 1).unwrap();
        m.preprocess = crate::models::preprocess_for(kind, &ds, 0);
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.ldlm");
        let bytes = ldl_core::format::encode(&m).unwrap();
        std::fs::write(&model, &bytes).unwrap();
        let crc = ldl_core::format::checksum(&bytes[..bytes.len() - ldl_core::format::CRC_LEN]);

        // The first drawing of Greek/character01 (rows go by class, then file name).
        let mut a = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
        let mut names: Vec<String> = a
            .file_names()
            .filter_map(Result::ok)
            .filter(|n| n.starts_with("images_background_small1/Greek/character01/") && n.ends_with(".png"))
            .map(|n| n.into_owned())
            .collect();
        names.sort();
        let mut png = Vec::new();
        a.by_name(&names[0]).unwrap().read_to_end(&mut png).unwrap();
        let file = dir.path().join("drawing.png");
        std::fs::write(&file, &png).unwrap();

        let mut s = SampleArgs {
            files: vec![file.clone()],
            model: Some(model.clone()),
            ..Default::default()
        };
        let got = s.load(784, crc).unwrap();
        assert_eq!(got[0].raw, ds.row(0));
        // Another device model: refused, nothing sent.
        let e = s.load(784, crc ^ 1).unwrap_err().to_string();
        assert!(e.contains("not the device's model"), "{e}");
        // Without the model: grey levels of the device's size only, and the way out named.
        s.model = None;
        let e = s.load(784, crc).unwrap_err().to_string();
        assert!(e.contains("105x105") && e.contains("--model"), "{e}");
    }
}
