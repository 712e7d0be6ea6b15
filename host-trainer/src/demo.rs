//! `ldl demo`: the whole product in one command. Train a model on MNIST digits 0-7 on the
//! host, put it on a device (a QEMU board, `--board qemu` or `--board stm32f405`, or a real
//! board with `--chip`/`--port`),
//! classify test images on the device, enroll digits 8 and 9 on the device from five samples
//! each, classify again, reset the device and show that the enrolled classes are still there.
//! The model says "unknown" by its novelty rule (the contrast score, threshold calibrated on
//! held-out training images of 0-7): the first pass counts the 8s and 9s it called unknown
//! before they were enrolled, and the known digits it wrongly rejected.
//!
//! Every device answer is also checked against the host core on a host copy of the model
//! (with the same classes enrolled the same way), so the run shows the device computes what
//! the host does. Writes the model, the device's flash store (QEMU), QEMU's logs and a JSON
//! report into `--out`.

use crate::device::qemu::{build_firmware, Qemu, QemuConfig};
use crate::device::{connect, enroll_like_device, AnyClient, Classification};
use crate::models::train::{fit, CalibrateOn, TrainOptions};
use crate::units::human_bytes;
use anyhow::{bail, Context, Result};
use clap::Args;
use ldl_core::format;
use ldl_core::protocol::ModelStatus;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `ldl demo`.
#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// The QEMU board to run on (firmware/boards.toml): `stm32f405` (netduinoplus2: a real
    /// part's memory, the STM32F405's 1 MiB of flash and 128 KiB of RAM) or `qemu`
    /// (mps2-an386, 4 MiB of RAM: larger enrollments).
    #[arg(long, default_value = "stm32f405", conflicts_with = "chip")]
    pub board: String,
    /// A real board's serial port (with --chip): the model is flashed with probe-rs and the
    /// flow runs on the board instead of QEMU.
    #[arg(long, requires = "chip")]
    pub port: Option<String>,
    /// The real board's chip as probe-rs names it (e.g. nRF52840_xxAA), with --port.
    #[arg(long, requires = "port")]
    pub chip: Option<String>,
    /// Serial line speed of a real board.
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Training images per known digit (0-7) for the host's model. As many as the device
    /// enrolls from by default: the closed form trusts a class's directions more the more
    /// samples it saw, so classes fitted on many more samples than the enrolled ones draw
    /// the new digits' images to themselves (validation split, 5 trials: 8 and 9 at 0.69 and
    /// 0.75 with 5 training images per known digit, 0.33 and 0.38 with 20).
    #[arg(long, default_value_t = 5)]
    pub train_shots: usize,
    /// Images the device enrolls each new digit (8, 9) from.
    #[arg(long, default_value_t = 5)]
    pub enroll_shots: usize,
    /// Test images per digit classified on the device (before and after enrolling).
    #[arg(long, default_value_t = 30)]
    pub per_class: usize,
    /// Seed of every draw (training and enrollment images).
    #[arg(long, default_value_t = 2019)]
    pub seed: u64,
    /// Folder for the model, the device's store, logs and report.json.
    #[arg(long, default_value = "target/ldl-demo")]
    pub out: PathBuf,
    /// Print the report as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// The known digits (in the host's model) and the ones the device learns.
const KNOWN: std::ops::Range<usize> = 0..8;
const NEW: [usize; 2] = [8, 9];

/// One digit's results in one pass.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DigitResult {
    /// The digit.
    pub digit: usize,
    /// Test images.
    pub images: usize,
    /// Classified as this digit.
    pub correct: usize,
    /// Called unknown (novelty above the threshold).
    pub unknown: usize,
    /// What the others were called, most frequent first.
    pub called: Vec<(String, usize)>,
}

/// One pass of classification over the test images.
#[derive(Debug, Clone, Serialize)]
pub struct Pass {
    /// Per digit 0..9.
    pub digits: Vec<DigitResult>,
    /// Images whose device answer equals the host core's: class, unknown, the novelty score
    /// and every distance to the bit.
    pub equal_to_host: usize,
    /// Images classified.
    pub images: usize,
    /// Seconds on the device.
    pub seconds: f64,
}

impl Pass {
    /// Correct answers over all images.
    pub fn correct(&self) -> usize {
        self.digits.iter().map(|d| d.correct).sum()
    }
}

/// Saying "unknown" before the new digits are enrolled: how the model's novelty rule (its
/// threshold, calibrated on held-out training images of 0-7, never on the test images)
/// treats the first pass on the device.
#[derive(Debug, Clone, Serialize)]
pub struct Unknowns {
    /// The novelty score the model's threshold applies to.
    pub score: &'static str,
    /// The threshold.
    pub threshold: Option<f32>,
    /// Where the threshold came from.
    pub threshold_source: String,
    /// Test images of 8 and 9 (no class of the model yet).
    pub new_images: usize,
    /// Of those, called "unknown".
    pub new_unknown: usize,
    /// Test images of the known digits 0-7.
    pub known_images: usize,
    /// Of those, wrongly called "unknown".
    pub known_rejected: usize,
}

impl Unknowns {
    /// The counts of the pass before enrolling.
    fn of(p: &Pass, m: &HostModel) -> Unknowns {
        let count =
            |new: bool, f: fn(&DigitResult) -> usize| -> usize { p.digits.iter().filter(|d| NEW.contains(&d.digit) == new).map(f).sum() };
        Unknowns {
            score: m.host.score.name(),
            threshold: m.host.threshold,
            threshold_source: m.threshold_source.clone(),
            new_images: count(true, |d| d.images),
            new_unknown: count(true, |d| d.unknown),
            known_images: count(false, |d| d.images),
            known_rejected: count(false, |d| d.unknown),
        }
    }

    fn line(&self) -> String {
        format!(
            "   before enrolling them, the 0-7 model called {}/{} of the 8s and 9s \"unknown\" and wrongly rejected {}/{} known digits \
             ({} score above {}, the {})",
            self.new_unknown,
            self.new_images,
            self.known_rejected,
            self.known_images,
            self.score,
            self.threshold.map_or("-".to_string(), |t| format!("{t:.4}")),
            self.threshold_source
        )
    }
}

/// One enrollment on the device.
#[derive(Debug, Clone, Serialize)]
pub struct Enrollment {
    /// The new class.
    pub label: String,
    /// Training-split indices of its samples.
    pub samples: Vec<usize>,
    /// Directions the device kept.
    pub rank: u16,
    /// Seconds on the device.
    pub seconds: f64,
}

/// What `ldl demo` did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The board's name, or the chip and port.
    pub device: String,
    /// The model file.
    pub model: String,
    /// Its size.
    pub model_bytes: usize,
    /// Its CRC-32.
    pub model_crc: String,
    /// Classes in the model.
    pub model_labels: Vec<String>,
    /// Classification before enrolling.
    pub before: Pass,
    /// Of it: the 8s and 9s called "unknown", and the known digits wrongly rejected.
    pub unknown_before: Unknowns,
    /// The enrollments.
    pub enrolled: Vec<Enrollment>,
    /// Classification after enrolling.
    pub after: Pass,
    /// Labels the device lists after a reset.
    pub after_reset_labels: Vec<String>,
    /// Images whose answer after the reset is identical to the one before it.
    pub after_reset_identical: usize,
}

/// The device in use: a QEMU board or a real one.
enum Board {
    Qemu {
        cfg: QemuConfig,
        name: String,
        running: Option<Qemu>,
    },
    Real {
        chip: String,
        port: String,
        baud: u32,
    },
}

const REPLY: Duration = Duration::from_secs(30);

impl Board {
    fn name(&self) -> String {
        match self {
            Board::Qemu { name, .. } => name.clone(),
            Board::Real { chip, port, .. } => format!("{chip} on {port}"),
        }
    }

    /// Starts (QEMU) or connects to (real board) the device.
    fn start(&mut self, boot: usize) -> Result<AnyClient> {
        match self {
            Board::Qemu { cfg, running, .. } => {
                let mut c = cfg.clone();
                c.log = cfg.log.with_file_name(format!("qemu-boot{boot}.log"));
                let q = running.insert(Qemu::boot(&c)?);
                q.client(REPLY)
            }
            Board::Real { port, baud, .. } => Ok(connect(port, *baud, REPLY)?),
        }
    }

    /// Resets the device (QEMU: stopped and booted again on the same flash files; a real
    /// board: reset through the probe) and connects again.
    fn reset(&mut self, boot: usize) -> Result<AnyClient> {
        match self {
            Board::Qemu { running, .. } => {
                if let Some(q) = running.take() {
                    q.stop();
                }
            }
            Board::Real { chip, .. } => {
                crate::flash::reset_chip(chip, None)?;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        self.start(boot)
    }
}

fn say(json: bool, line: impl AsRef<str>) {
    if json {
        eprintln!("{}", line.as_ref());
    } else {
        println!("{}", line.as_ref());
    }
}

/// What step 1 leaves: the model file written, and the host's copy of the model.
struct HostModel {
    path: PathBuf,
    bytes: Vec<u8>,
    crc: u32,
    /// Decoded from the file: exactly what the device reads.
    host: ldl_core::Model,
    labels: Vec<String>,
    /// Where its novelty threshold came from.
    threshold_source: String,
}

/// Runs `ldl demo`: each numbered step of the story is a function below.
pub fn run(a: DemoArgs) -> Result<()> {
    if a.train_shots == 0 || a.enroll_shots == 0 || a.per_class == 0 {
        bail!("--train-shots, --enroll-shots and --per-class must be at least 1");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}: cannot create the folder", a.out.display()))?;
    let out = a.out.canonicalize()?;
    let json = a.json;
    let t_all = Instant::now();
    let data = crate::data::DataArgs {
        dataset: crate::data::DatasetKind::Mnist,
        data: None,
        test: None,
        rotations: false,
        validation: false,
        max_input_bytes: crate::data::DEFAULT_MAX_INPUT_BYTES,
        series: None,
    };
    let loaded = data.load()?;
    let (train, test) = (&loaded.train, loaded.test.as_ref().context("MNIST has a test split")?);

    let mut m = train_on_host(&a, &out, &loaded)?;
    let mut board = put_on_device(&a, &out, &m)?;
    let (mut dev, info) = connect_fresh(&mut board, &m, json)?;
    // The test images: the first `per_class` of each digit.
    let queries: Vec<(usize, Vec<f32>)> = (0..10)
        .flat_map(|c| test.indices_of_class(c).into_iter().take(a.per_class).map(move |i| (c, i)))
        .map(|(c, i)| (c, test.row(i).iter().map(|v| (v * 255.0).round()).collect()))
        .collect();

    // 3. Classify before enrolling.
    let (before, _) = pass(&mut dev, &m.host, &queries, "3. device: classifying test images", json)?;
    say(json, summary_line(&before, "3. device: classified test images: "));
    let unknown_before = Unknowns::of(&before, &m);
    say(json, unknown_before.line());
    let enrolled = enroll_new(&a, &mut dev, &mut m.host, train, info.max_rank as usize)?;
    // 5. Classify again.
    let (after, after_answers) = pass(&mut dev, &m.host, &queries, "5. device: classifying the same images again", json)?;
    say(json, summary_line(&after, "5. device: classified them again: "));
    drop(dev);
    let (labels, identical) = after_reset(&mut board, &queries, &after_answers, json)?;

    let report = Report {
        device: board.name(),
        model: m.path.display().to_string(),
        model_bytes: m.bytes.len(),
        model_crc: format!("{:08x}", m.crc),
        model_labels: m.labels,
        before,
        unknown_before,
        enrolled,
        after,
        after_reset_labels: labels,
        after_reset_identical: identical,
    };
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
        println!(
            "\nreport: {}   ({:.0} s in all)",
            out.join("report.json").display(),
            t_all.elapsed().as_secs_f64()
        );
    }
    if report.after_reset_labels.len() != KNOWN.len() + NEW.len() || report.after_reset_identical != queries.len() {
        bail!("the enrolled classes did not survive the reset unchanged");
    }
    if report.before.equal_to_host != queries.len() || report.after.equal_to_host != queries.len() {
        bail!("the device's answers differ from the host core's (see the report)");
    }
    Ok(())
}

/// Step 1: the host trains a model on digits 0-7 and writes its file.
fn train_on_host(a: &DemoArgs, out: &std::path::Path, loaded: &crate::data::Loaded) -> Result<HostModel> {
    let options = TrainOptions {
        classes: Some(format!("{}-{}", KNOWN.start, KNOWN.end - 1)),
        shots: Some(a.train_shots),
        seed: a.seed,
        capacity: Some((KNOWN.len() + NEW.len()) as u16),
        // "Unknown" past the 0.95-quantile of the novelty score (contrast, the mcu mode's
        // default) of held-out training images of 0-7: about 5% of known digits rejected.
        calibrate_threshold: Some(0.95),
        calibrate_on: CalibrateOn::Heldout,
        ..TrainOptions::new(crate::data::DatasetKind::Mnist, "mcu")
    };
    let path = out.join("model.ldlm");
    let t0 = Instant::now();
    let trained = fit(&options, loaded)?;
    let bytes = format::encode(&trained.model).context("encoding the model")?;
    std::fs::write(&path, &bytes).with_context(|| format!("{}", path.display()))?;
    let crc = format::checksum(&bytes[..bytes.len() - format::CRC_LEN]);
    let host = format::decode(&bytes)?;
    say(
        a.json,
        format!(
            "1. host: trained the mcu mode (8-bit classes) on MNIST digits 0-7 ({} images each) in {:.1} s: {} ({}, CRC {crc:08x})",
            a.train_shots,
            t0.elapsed().as_secs_f64(),
            path.display(),
            human_bytes(bytes.len() as u64)
        ),
    );
    let labels = trained.model.labels.iter().map(|l| l.to_string()).collect();
    Ok(HostModel {
        path,
        bytes,
        crc,
        host,
        labels,
        threshold_source: trained.threshold_source,
    })
}

/// Step 2: the model goes onto the device: flashed to a real board, or QEMU booted with it.
fn put_on_device(a: &DemoArgs, out: &std::path::Path, m: &HostModel) -> Result<Board> {
    let json = a.json;
    Ok(match (&a.chip, &a.port) {
        (Some(chip), Some(port)) => {
            let (plan, bytes) = crate::flash::plan(&m.path, chip, None)?;
            let plan = crate::flash::write(plan, &bytes, None, true, json)?;
            say(
                json,
                format!(
                    "2. device: flashed the model to {:#010x} of {} with probe-rs (verified), reset",
                    plan.address, plan.chip
                ),
            );
            Board::Real {
                chip: chip.clone(),
                port: port.clone(),
                baud: a.baud,
            }
        }
        _ => {
            let b = crate::models::boards::board(&a.board)?;
            if b.qemu_machine().is_none() {
                bail!("--board {}: not a QEMU board; a real board runs with --chip and --port", a.board);
            }
            let elf = build_firmware(&a.board)?;
            let store = out.join("store.bin");
            let _ = std::fs::remove_file(&store); // a fresh device: erased store
            say(
                json,
                format!(
                    "2. device: {} booting the firmware with the model loaded at {:#010x} (its MODEL region: {} of {})",
                    b.name,
                    b.model.origin,
                    human_bytes(m.bytes.len() as u64),
                    human_bytes(b.model.size)
                ),
            );
            Board::Qemu {
                name: b.name.clone(),
                cfg: QemuConfig {
                    board: a.board.clone(),
                    elf,
                    model: Some(m.path.clone()),
                    store,
                    log: out.join("qemu.log"),
                    limit: Duration::from_secs(3600),
                    pty: false,
                },
                running: None,
            }
        }
    })
}

/// Connects, checks the device holds the model just written, and forgets classes a real
/// board kept from an earlier run, so the story starts from the model alone.
fn connect_fresh(board: &mut Board, m: &HostModel, json: bool) -> Result<(AnyClient, ldl_core::protocol::Info)> {
    let mut dev = board.start(1)?;
    let info = dev.info()?;
    if !matches!(info.model, ModelStatus::Valid { crc: c } if c == m.crc) {
        bail!("the device does not hold the model just written: {:?}", info.model);
    }
    for l in dev.list()?.into_iter().skip(m.host.labels.len()) {
        dev.forget(&l)
            .with_context(|| format!("forgetting {l:?} left from an earlier run"))?;
    }
    say(
        json,
        format!(
            "   {}: protocol v{}, model valid (CRC {:08x}), {} inputs, classes {}; enrolls up to {} classes of {} directions from {} images each",
            board.name(),
            info.protocol,
            m.crc,
            info.inputs,
            dev.list()?.join(" "),
            info.capacity,
            info.max_rank,
            info.max_samples
        ),
    );
    Ok((dev, info))
}

/// Step 4: enrolls 8 and 9 on the device from a few training images each, and the same classes
/// in the host's copy, as the device fits them.
fn enroll_new(
    a: &DemoArgs,
    dev: &mut AnyClient,
    host: &mut ldl_core::Model,
    train: &crate::data::Dataset,
    max_rank: usize,
) -> Result<Vec<Enrollment>> {
    let mut enrolled = Vec::new();
    let mut rng = ldl_core::Rng::new(a.seed ^ 0x454e_524f_4c4c);
    for &digit in &NEW {
        let idx = train.indices_of_class(digit);
        let mut pick = Vec::with_capacity(a.enroll_shots);
        while pick.len() < a.enroll_shots.min(idx.len()) {
            let i = idx[rng.below(idx.len() as u32) as usize];
            if !pick.contains(&i) {
                pick.push(i);
            }
        }
        let raws: Vec<Vec<f32>> = pick
            .iter()
            .map(|&i| train.row(i).iter().map(|v| (v * 255.0).round()).collect())
            .collect();
        let refs: Vec<&[f32]> = raws.iter().map(Vec::as_slice).collect();
        let label = digit.to_string();
        let t = Instant::now();
        let rank = dev
            .enroll(&label, &refs)
            .with_context(|| format!("enrolling {label} on the device"))?;
        let secs = t.elapsed().as_secs_f64();
        enroll_like_device(host, &label, &raws, max_rank)?;
        say(
            a.json,
            format!(
                "4. device: enrolled \"{label}\" from {} training images (fitted on the device: {rank} directions, {secs:.1} s)",
                raws.len()
            ),
        );
        enrolled.push(Enrollment {
            label,
            samples: pick,
            rank,
            seconds: secs,
        });
    }
    Ok(enrolled)
}

/// Step 6: resets the device: the enrolled classes must still be there, the answers unchanged.
/// Returns the labels it lists and how many answers are identical.
fn after_reset(
    board: &mut Board,
    queries: &[(usize, Vec<f32>)],
    after_answers: &[Classification],
    json: bool,
) -> Result<(Vec<String>, usize)> {
    let mut dev = board.reset(2)?;
    let labels = dev.list()?;
    let bar = progress(queries.len(), "6. device after a reset: classifying again", json);
    let mut identical = 0;
    for ((_, raw), a1) in queries.iter().zip(after_answers) {
        let a2 = dev.classify(raw)?;
        identical += usize::from(&a2 == a1);
        bar.inc(1);
    }
    bar.finish_and_clear();
    say(
        json,
        format!(
            "6. device: reset ({}); it lists {} and gives the same answers for {identical}/{} images",
            if matches!(board, Board::Qemu { .. }) {
                "QEMU restarted on the same flash"
            } else {
                "through the probe"
            },
            labels.join(" "),
            queries.len()
        ),
    );
    Ok((labels, identical))
}

fn progress(n: usize, msg: &str, json: bool) -> indicatif::ProgressBar {
    let b = crate::progress::bar(n as u64, msg.to_string());
    if json {
        b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    b
}

/// Classifies every query on the device, scores it per digit and checks it against the
/// host core on `host`.
fn pass(
    dev: &mut AnyClient,
    host: &ldl_core::Model,
    queries: &[(usize, Vec<f32>)],
    msg: &str,
    json: bool,
) -> Result<(Pass, Vec<Classification>)> {
    let mut digits: Vec<DigitResult> = (0..10)
        .map(|d| DigitResult {
            digit: d,
            ..Default::default()
        })
        .collect();
    let mut called: Vec<std::collections::BTreeMap<String, usize>> = vec![Default::default(); 10];
    let mut answers = Vec::with_capacity(queries.len());
    let mut equal = 0;
    let bar = progress(queries.len(), msg, json);
    let t = Instant::now();
    let mut scratch = vec![0.0f32; ldl_core::classify::scratch_len(host)?];
    let mut dist = vec![0.0f32; host.labels.len()];
    for (digit, raw) in queries {
        let c = dev.classify(raw)?;
        let r = &mut digits[*digit];
        r.images += 1;
        let name = if c.unknown { "unknown".to_string() } else { c.label.clone() };
        if name == digit.to_string() {
            r.correct += 1;
        } else {
            *called[*digit].entry(name).or_default() += 1;
        }
        r.unknown += usize::from(c.unknown);
        // The host core on the same model.
        let mut x = raw.clone();
        host.preprocess.apply(&mut x)?;
        let h = ldl_core::classify(host, &x, host.rule(), &mut scratch, &mut dist)?;
        let same = h.best == c.index
            && h.class.is_none() == c.unknown
            && h.score == c.score
            && h.novelty.to_bits() == c.novelty.to_bits()
            && dist.len() == c.distances.len()
            && dist.iter().zip(&c.distances).all(|(a, b)| a.to_bits() == b.to_bits());
        equal += usize::from(same);
        answers.push(c);
        bar.inc(1);
    }
    bar.finish_and_clear();
    for (r, m) in digits.iter_mut().zip(called) {
        let mut v: Vec<(String, usize)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        r.called = v;
    }
    Ok((
        Pass {
            digits,
            equal_to_host: equal,
            images: queries.len(),
            seconds: t.elapsed().as_secs_f64(),
        },
        answers,
    ))
}

fn summary_line(p: &Pass, prefix: &str) -> String {
    format!(
        "{prefix}{}/{} correct ({:.1}%), {:.1} ms per image on the device; {}/{} answers equal to the host core's",
        p.correct(),
        p.images,
        100.0 * p.correct() as f64 / p.images as f64,
        1e3 * p.seconds / p.images as f64,
        p.equal_to_host,
        p.images
    )
}

fn cell(r: &DigitResult) -> String {
    let pct = 100.0 * r.correct as f64 / r.images.max(1) as f64;
    let mut s = format!("{:>3}/{:<3} {:>5.1}%", r.correct, r.images, pct);
    if r.correct < r.images {
        let top: Vec<String> = r.called.iter().take(2).map(|(l, n)| format!("{l}:{n}")).collect();
        s += &format!("  (called {})", top.join(" "));
    }
    s
}

fn print_table(r: &Report) {
    println!("\nper digit, on the device       before enrolling 8 and 9              after");
    for (b, a) in r.before.digits.iter().zip(&r.after.digits) {
        let tag = if NEW.contains(&b.digit) { " (new)" } else { "" };
        println!("  {:<9} {:<38} {}", format!("{}{tag}", b.digit), cell(b), cell(a));
    }
    let all = |p: &Pass| {
        format!(
            "{:>3}/{:<3} {:>5.1}%",
            p.correct(),
            p.images,
            100.0 * p.correct() as f64 / p.images as f64
        )
    };
    println!("  {:<9} {:<38} {}", "all", all(&r.before), all(&r.after));
}
