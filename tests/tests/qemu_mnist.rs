//! The firmware in QEMU against the host core, over the real serial protocol (TCP loopback),
//! on every QEMU board (`qemu`: mps2-an386; `stm32f405`: netduinoplus2 with the part's 1 MiB
//! flash and 128 KiB RAM; `LDL_QEMU_BOARDS=qemu,stm32f405` by default):
//!
//! * (a) 1,000 MNIST test images: every device answer (class, distances, novelty score and
//!   which score it is, unknown) equals the host core's on the same model file, every
//!   distance and score to the bit, and the accuracies are equal (the mcu model decides
//!   with the contrast score, the f32 one with the closest distance), with and without
//!   the mcu-align mode's query alignment;
//! * (b) digits 5-9 enrolled on the device (5 shots, shift augmentation) give the same
//!   classes, to the bit, as enrolling them with the core on the host, are judged by the
//!   model's contrast rule as on the host, and survive a QEMU restart with the same store
//!   file;
//! * (c) garbage, truncated, corrupted and overlong frames get an `Error` reply or are
//!   dropped, and the device still answers `Info` and `Classify` correctly afterwards;
//! * (d) rounds of serial chaos (random bytes, truncated and overlong frames, abandoned
//!   enrollments and stray samples, NaN and huge samples, refused enrollments), each
//!   followed by health checks: the device always answers and keeps its classes.
//!
//! The models are the mcu mode's (8-bit classes, `ldl_core::compact`) the boards run; (a)
//! also runs an f32 closed-form model on the board with room for it.
//!
//! Needs `qemu-system-arm` and the `thumbv7em-none-eabihf` target (`test-all.sh` installs
//! both); each board's firmware is built once here (`cargo build --release` in `firmware/`).
//! QEMU's output goes to a log file per boot (printed on failure); every wait is bounded and
//! QEMU is killed when a test ends (and, as a safety net, by `timeout` after a few minutes).

use ldl_core::methods::{fit_closed_form, fit_compact, ClosedFormConfig};
use ldl_core::novelty::Score;
use ldl_core::protocol::{self, ErrorCode, ModelStatus, Request, Response, VERSION};
use ldl_core::{ImageSpec, Model, Preprocess};
use ldl_host::data::{load_mnist, Dataset, Split};
use ldl_host::device::{enroll_like_device, Classification, DeviceError};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;
use common::{boot, client, one_at_a_time};

const D: usize = 784;
/// Reply timeout for one request (QEMU is slow, and two QEMUs may share the cores).
const REPLY: Duration = Duration::from_secs(20);

/// The QEMU boards to run on: `LDL_QEMU_BOARDS` (comma-separated), default every QEMU board.
fn boards() -> Vec<String> {
    std::env::var("LDL_QEMU_BOARDS")
        .unwrap_or_else(|_| "qemu,stm32f405".into())
        .split(',')
        .filter(|b| !b.is_empty())
        .map(String::from)
        .collect()
}

fn root() -> PathBuf {
    ldl_host::repo_root()
}

/// MNIST train and test, loaded once.
fn mnist() -> &'static (Dataset, Dataset) {
    static M: OnceLock<(Dataset, Dataset)> = OnceLock::new();
    M.get_or_init(|| {
        let dir = root().join("data/mnist");
        (load_mnist(&dir, Split::Train).unwrap(), load_mnist(&dir, Split::Test).unwrap())
    })
}

/// The raw form a device receives: pixel bytes as floats 0..255 (the model's Preprocess
/// scales them by 1/255).
fn raw(ds: &Dataset, i: usize) -> Vec<f32> {
    ds.row(i).iter().map(|v| (v * 255.0).round()).collect()
}

fn preprocess(shift: u8) -> Preprocess {
    Preprocess {
        scale: 1.0 / 255.0,
        offset: 0.0,
        image: Some(ImageSpec {
            width: 28,
            height: 28,
            source_width: 0,
            source_height: 0,
        }),
        shift,
        fill: 0,
        align: 0,
    }
}

/// The mcu mode (8-bit classes, identity target, the boards' representation) on `shots`
/// training images per digit of `digits`, MNIST preprocessing.
fn train_model(digits: &[usize], shots: usize, shift: u8, capacity: u16) -> Model {
    let (train, _) = mnist();
    let pp = preprocess(shift);
    let ldl_host::methods::MethodSpec::Compact { cfg, .. } = ldl_host::methods::mcu_mode(None, None) else {
        unreachable!()
    };
    let classes: Vec<Vec<f32>> = digits
        .iter()
        .map(|&c| {
            train
                .indices_of_class(c)
                .into_iter()
                .take(shots)
                .flat_map(|i| {
                    let mut x = raw(train, i);
                    pp.apply(&mut x).unwrap();
                    x
                })
                .collect()
        })
        .collect();
    let refs: Vec<&[f32]> = classes.iter().map(|c| c.as_slice()).collect();
    let names: Vec<String> = digits.iter().map(|d| d.to_string()).collect();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let mut m = fit_compact(&refs, D, &names, &cfg, Some((28, 28)), shift, 7).unwrap();
    m.preprocess = pp;
    m.capacity = capacity;
    m
}

/// The device mode's f32 closed form (identity target) on `shots` training images per digit
/// of `digits`, at most 24 directions per class, MNIST preprocessing: a model for the board
/// with room for f32 classes.
fn train_f32_model(digits: &[usize], shots: usize, shift: u8, capacity: u16) -> Model {
    let (train, _) = mnist();
    let pp = preprocess(shift);
    let ldl_host::methods::MethodSpec::ClosedForm { mut cfg, .. } = ldl_host::methods::device_mode(None) else {
        unreachable!()
    };
    cfg.fit.max_rank = 24;
    let cfg = ClosedFormConfig { k: 0, ..cfg };
    let classes: Vec<Vec<f32>> = digits
        .iter()
        .map(|&c| {
            let rows: Vec<Vec<f32>> = train
                .indices_of_class(c)
                .into_iter()
                .take(shots)
                .map(|i| {
                    let mut x = raw(train, i);
                    pp.apply(&mut x).unwrap();
                    x
                })
                .collect();
            let aug = ldl_host::experiment::augment_support(&rows, Some((28, 28)), shift).unwrap();
            aug.concat()
        })
        .collect();
    let refs: Vec<&[f32]> = classes.iter().map(|c| c.as_slice()).collect();
    let names: Vec<String> = digits.iter().map(|d| d.to_string()).collect();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let mut m = fit_closed_form(&refs, D, &names, &cfg, 7).unwrap();
    m.preprocess = pp;
    m.capacity = capacity;
    m
}

/// The host core's answer for a raw sample (after the model's Preprocess, as the device).
fn host_classify(m: &Model, raw: &[f32]) -> Classification {
    let mut x = raw.to_vec();
    m.preprocess.apply(&mut x).unwrap();
    let mut scratch = vec![0.0f32; ldl_core::classify::scratch_len(m).unwrap()];
    let mut dist = vec![0.0f32; m.labels.len()];
    let c = ldl_core::classify(m, &x, m.rule(), &mut scratch, &mut dist).unwrap();
    Classification {
        index: c.best,
        label: m.labels[c.best].to_string(),
        distances: dist,
        novelty: c.novelty,
        score: c.score,
        unknown: c.class.is_none(),
    }
}

/// Checks that the device's answer is the host's: class, label, unknown, the novelty score
/// (which one, and its value to the bit) and every distance to the bit.
fn check_same(what: &str, host: &Classification, dev: &Classification) {
    assert_eq!(
        dev.index, host.index,
        "{what}: device class {} ({}) vs host {}",
        dev.index, dev.label, host.index
    );
    assert_eq!(dev.label, host.label, "{what}");
    assert_eq!(dev.unknown, host.unknown, "{what}: unknown");
    assert_eq!(dev.distances.len(), host.distances.len(), "{what}: number of distances");
    for (c, (a, b)) in dev.distances.iter().zip(&host.distances).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{what}: class {c} distance {a} on the device vs {b} on the host"
        );
    }
    assert_eq!(dev.score, host.score, "{what}: novelty score");
    assert_eq!(dev.novelty.to_bits(), host.novelty.to_bits(), "{what}: novelty");
}

fn write_model(m: &Model, path: &Path) -> Vec<u8> {
    let bytes = ldl_core::format::encode(m).unwrap();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[test]
fn device_classifies_1000_mnist_images_like_the_host() {
    for board in boards() {
        // The mcu model with the validated contrast score (ldl train's default for it).
        let mut mcu = train_model(&(0..10).collect::<Vec<_>>(), 20, 0, 10);
        mcu.score = Score::Contrast;
        // The same classes with the query alignment of mcu-align (three views per query).
        let mut aligned = mcu.clone();
        aligned.preprocess.align = ldl_host::methods::ALIGN;
        classify_1000(&board, mcu, "mcu, contrast");
        classify_1000(&board, aligned, "mcu with query alignment, contrast");
        if board == "qemu" {
            // The board with room for them also runs f32 classes (closest-distance rule).
            classify_1000(
                &board,
                train_f32_model(&(0..10).collect::<Vec<_>>(), 20, 0, 10),
                "f32 device mode, best",
            );
        }
    }
}

fn classify_1000(board: &str, mut model: Model, kind: &str) {
    let _g = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_, test) = mnist();
    // LDL_QEMU_IMAGES: fewer images for a quick look (the test is specified for 1,000).
    let n = std::env::var("LDL_QEMU_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000usize);
    let raws: Vec<Vec<f32>> = (0..n).map(|i| raw(test, i)).collect();
    // A threshold at the host's median novelty score, so "unknown" is exercised both ways.
    let mut nov: Vec<f32> = raws.iter().map(|r| host_classify(&model, r).novelty).collect();
    nov.sort_by(f32::total_cmp);
    model.threshold = Some(nov[n / 2]);
    let bytes = write_model(&model, &dir.path().join("model.ldlm"));
    let model = ldl_core::format::decode(&bytes).unwrap(); // exactly what the device reads

    let t_boot = Instant::now();
    let mut q = boot(
        board,
        &dir.path().join("model.ldlm"),
        &dir.path().join("store.bin"),
        &dir.path().join("qemu.log"),
    );
    let mut dev = client(&mut q, REPLY);
    let info = dev.info().unwrap();
    assert_eq!(info.protocol, VERSION);
    assert!(matches!(info.model, ModelStatus::Valid { .. }), "{board}: {:?}", info.model);
    assert_eq!((info.inputs as usize, info.classes), (D, 10));
    let boot = t_boot.elapsed();

    let t0 = Instant::now();
    let (mut host_ok, mut dev_ok, mut unknown) = (0, 0, 0);
    for (i, r) in raws.iter().enumerate() {
        let h = host_classify(&model, r);
        let d = dev.classify(r).unwrap_or_else(|e| panic!("{board}: image {i}: {e}"));
        check_same(&format!("{board} ({kind}): test image {i}"), &h, &d);
        let truth = test.labels[i] as usize;
        host_ok += usize::from(h.index == truth);
        dev_ok += usize::from(d.index == truth);
        unknown += usize::from(d.unknown);
    }
    let t = t0.elapsed();
    assert_eq!(dev_ok, host_ok, "device accuracy differs from the host's");
    eprintln!(
        "(a) {board}, {kind} model ({} B): {n} MNIST test images: device accuracy {:.1}% = host {:.1}%, {unknown} unknown, \
         every distance and novelty score equal to the bit; boot+connect {:.2}s, {:.1} ms per classification ({:.1}s)",
        bytes.len(),
        100.0 * dev_ok as f64 / n as f64,
        100.0 * host_ok as f64 / n as f64,
        boot.as_secs_f64(),
        1e3 * t.as_secs_f64() / n as f64,
        t.as_secs_f64()
    );
}

#[test]
fn enrollment_on_the_device_matches_the_host_and_survives_a_restart() {
    for board in boards() {
        enroll_and_restart(&board);
    }
}

fn enroll_and_restart(board: &str) {
    let _g = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = mnist();
    let shift = 2;
    let mut model = train_model(&[0, 1, 2, 3, 4], 20, shift, 10);
    // The contrast rule, recorded in the model: the enrolled classes are judged by it too.
    model.score = Score::Contrast;
    model.threshold = Some(0.8);
    let model_path = dir.path().join("model.ldlm");
    let bytes = write_model(&model, &model_path);
    model = ldl_core::format::decode(&bytes).unwrap();
    let store = dir.path().join("store.bin");

    // Five shots of each new digit (images the model never saw).
    let shots: Vec<(String, Vec<Vec<f32>>)> = (5..10)
        .map(|c| {
            let idx = train.indices_of_class(c);
            (c.to_string(), idx[100..105].iter().map(|&i| raw(train, i)).collect())
        })
        .collect();
    // The host: the same preprocessing and fit as the device, capped at its rank.
    let device_rank = ldl_host::models::boards::board(board).unwrap().sizes.rank;
    for (label, samples) in &shots {
        enroll_like_device(&mut model, label, samples, device_rank).unwrap();
    }
    // 200 test images, all digits.
    let queries: Vec<(usize, Vec<f32>)> = (0..200).map(|i| (test.labels[i] as usize, raw(test, i))).collect();
    let host: Vec<Classification> = queries.iter().map(|(_, r)| host_classify(&model, r)).collect();
    let labels: Vec<String> = (0..10).map(|c| c.to_string()).collect();

    let t0 = Instant::now();
    let first: Vec<Classification> = {
        let mut q = boot(board, &model_path, &store, &dir.path().join("qemu1.log"));
        let mut dev = client(&mut q, REPLY);
        assert_eq!(dev.list().unwrap(), labels[..5]);
        assert_eq!(dev.info().unwrap().max_rank as usize, device_rank);
        for (label, samples) in &shots {
            let refs: Vec<&[f32]> = samples.iter().map(|s| s.as_slice()).collect();
            let rank = dev
                .enroll(label, &refs)
                .unwrap_or_else(|e| panic!("{board}: enrolling {label}: {e}"));
            assert!(rank > 0 && rank as usize <= device_rank, "rank {rank}");
        }
        assert_eq!(dev.list().unwrap(), labels);
        assert_eq!(dev.info().unwrap().enrolled, 5);
        queries.iter().map(|(_, r)| dev.classify(r).unwrap()).collect()
    }; // QEMU killed here
    let t_enroll = t0.elapsed();
    for (i, (h, d)) in host.iter().zip(&first).enumerate() {
        check_same(&format!("{board}: image {i} after enrollment"), h, d);
    }

    // Boot again with the same store file: the classes are back, the answers unchanged.
    let mut q = boot(board, &model_path, &store, &dir.path().join("qemu2.log"));
    let mut dev = client(&mut q, REPLY);
    assert_eq!(dev.list().unwrap(), labels);
    assert_eq!(dev.info().unwrap().enrolled, 5);
    for (i, ((_, r), d1)) in queries.iter().zip(&first).enumerate() {
        let d2 = dev.classify(r).unwrap();
        assert_eq!(&d2, d1, "image {i}: answer changed across the restart");
    }
    let acc = |a: &[Classification]| a.iter().zip(&queries).filter(|(c, (t, _))| c.index == *t).count();
    assert_eq!(acc(&first), acc(&host));
    let unknown = first.iter().filter(|c| c.unknown).count();
    assert!(first.iter().all(|c| c.score == Score::Contrast));
    assert!(
        unknown > 0 && unknown < 200,
        "{unknown} unknown of 200: the contrast rule not exercised"
    );
    eprintln!(
        "(b) {board}: digits 5-9 enrolled on the device (5 shots, shift {shift}): 200 answers equal the host's \
         to the bit, accuracy {}/200, {unknown} unknown (contrast above 0.8, as on the host); survived a \
         restart; first boot + enrollment + 200 classifications {:.1}s",
        acc(&first),
        t_enroll.as_secs_f64()
    );
}

#[test]
fn garbage_frames_are_refused_and_the_device_keeps_working() {
    for board in boards() {
        garbage(&board);
    }
}

fn garbage(board: &str) {
    let _g = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_, test) = mnist();
    let model = train_model(&[0, 1, 2], 10, 0, 3);
    let bytes = write_model(&model, &dir.path().join("model.ldlm"));
    let model = ldl_core::format::decode(&bytes).unwrap();
    let mut q = boot(
        board,
        &dir.path().join("model.ldlm"),
        &dir.path().join("store.bin"),
        &dir.path().join("qemu.log"),
    );
    let mut dev = client(&mut q, REPLY);

    let sample = raw(test, 0);
    let sbytes: Vec<u8> = sample.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut buf = vec![0u8; protocol::MAX_FRAME_LEN];
    let n = protocol::encode(77, &Request::Classify { sample: &sbytes }, &mut buf).unwrap();
    let good = buf[..n].to_vec();
    // A valid-looking frame of another protocol version: COBS([VERSION + 1, 5, 0] ++ crc) ++ 00.
    let payload = [VERSION + 1, 5, 0];
    let mut obuf = [0u8; 32];
    let k = protocol::frame_raw(&payload, &mut obuf).unwrap();
    let other = obuf[..k].to_vec();

    let mut corrupted = good.clone();
    corrupted[100] ^= 0x40;
    if corrupted[100] == 0 {
        corrupted[100] = 1;
    }
    let cases: Vec<(&str, Vec<u8>, Option<ErrorCode>)> = vec![
        ("random bytes", (1..=200u8).chain([0]).collect(), None),
        ("truncated frame", [&good[..good.len() / 2], &[0]].concat(), None),
        ("corrupted byte", corrupted, Some(ErrorCode::FrameCrc)),
        ("other version", other, Some(ErrorCode::FrameVersion)),
        ("overlong frame", [vec![7u8; 5000], vec![0]].concat(), Some(ErrorCode::FrameTooLong)),
        ("lone delimiters", vec![0, 0, 0], None),
    ];
    for (what, frame, want) in &cases {
        dev.send_raw(frame).unwrap();
        match dev.recv(Duration::from_secs(3)) {
            Ok((_, Response::Error { code })) => {
                if let Some(w) = want {
                    assert_eq!(code, *w, "{what}");
                }
            }
            Ok((id, r)) => panic!("{what}: expected an Error reply or none, got id {id}: {r:?}"),
            Err(DeviceError::NoAnswer(_)) => assert!(want.is_none(), "{what}: no answer, expected {want:?}"),
            Err(e) => panic!("{what}: {e}"),
        }
    }
    // Still alive and correct.
    let info = dev.info().unwrap();
    assert_eq!((info.protocol, info.inputs as usize, info.classes), (VERSION, D, 3));
    for i in 0..5 {
        let r = raw(test, i);
        let d = dev.classify(&r).unwrap();
        check_same(&format!("{board}: image {i} after garbage"), &host_classify(&model, &r), &d);
    }
}

/// (d) Serial chaos: rounds of random bytes, truncated and overlong frames, abandoned
/// enrollments and another host's stray samples, NaN and huge samples, refused
/// enrollments, each followed by health checks (`Info`, and a classification equal to the
/// host's to the bit). The device always answers and keeps its classes, across a restart.
#[test]
fn serial_chaos_never_stops_the_device_or_loses_a_class() {
    for board in boards() {
        chaos(&board);
    }
}

fn chaos(board: &str) {
    let _g = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = mnist();
    let mut model = train_model(&[0, 1, 2], 5, 2, 6);
    let model_path = dir.path().join("model.ldlm");
    model = ldl_core::format::decode(&write_model(&model, &model_path)).unwrap();
    let store = dir.path().join("store.bin");
    let device_rank = ldl_host::models::boards::board(board).unwrap().sizes.rank;
    let seven: Vec<Vec<f32>> = train.indices_of_class(7)[..5].iter().map(|&i| raw(train, i)).collect();
    enroll_like_device(&mut model, "7", &seven, device_rank).unwrap();
    let probe: Vec<Vec<f32>> = (0..3).map(|i| raw(test, i)).collect();
    let labels = ["0", "1", "2", "7"];

    let mut q = boot(board, &model_path, &store, &dir.path().join("qemu1.log"));
    let mut dev = client(&mut q, REPLY);
    let refs: Vec<&[f32]> = seven.iter().map(|s| s.as_slice()).collect();
    dev.enroll("7", &refs).unwrap();

    let frame = |id: u32, r: &Request<'_>| {
        let mut buf = vec![0u8; protocol::MAX_FRAME_LEN];
        let n = protocol::encode(id, r, &mut buf).unwrap();
        buf.truncate(n);
        buf
    };
    let u8_sample: Vec<u8> = probe[0].iter().map(|&v| v as u8).collect();
    let f32_bytes = |v: f32| -> Vec<u8> { (0..D).flat_map(|_| v.to_le_bytes()).collect() };
    let mut rng = ldl_core::Rng::new(0xC4A05);
    let mut kinds = [0usize; 7];
    let t0 = Instant::now();
    for round in 0..28u32 {
        let kind = rng.below(7) as usize;
        kinds[kind] += 1;
        let id = 1000 + round;
        let burst: Vec<u8> = match kind {
            // Random bytes, zeros included.
            0 => (0..1 + rng.below(600)).map(|_| rng.below(256) as u8).collect(),
            // A classification cut short, then its delimiter.
            1 => {
                let f = frame(id, &Request::Classify { sample: &u8_sample });
                [&f[..1 + rng.below(f.len() as u32 - 2) as usize], &[0u8]].concat()
            }
            // An overlong frame.
            2 => [vec![0x55u8; 4200 + rng.below(2000) as usize], vec![0]].concat(),
            // A host starts an enrollment, sends one image and goes away; another host's
            // samples carry no valid token.
            3 => {
                let mut b = frame(
                    id,
                    &Request::EnrollStart {
                        label: ldl_core::label(&format!("x{round}")).unwrap(),
                        samples: 3,
                    },
                );
                b.extend(frame(
                    id + 1,
                    &Request::EnrollSample {
                        token: 0,
                        data: &u8_sample,
                    },
                ));
                b.extend(frame(
                    id + 2,
                    &Request::EnrollSample {
                        token: 0xBEEF,
                        data: &u8_sample,
                    },
                ));
                b
            }
            // NaN and huge samples (f32 form).
            4 => [
                frame(
                    id,
                    &Request::Classify {
                        sample: &f32_bytes(f32::NAN),
                    },
                ),
                frame(id + 1, &Request::Classify { sample: &f32_bytes(1e30) }),
                frame(
                    id + 2,
                    &Request::Classify {
                        sample: &f32_bytes(f32::INFINITY),
                    },
                ),
            ]
            .concat(),
            // Enrollments the device refuses: a duplicate label, too many images, none.
            5 => [
                frame(
                    id,
                    &Request::EnrollStart {
                        label: ldl_core::label("7").unwrap(),
                        samples: 2,
                    },
                ),
                frame(
                    id + 1,
                    &Request::EnrollStart {
                        label: ldl_core::label("y").unwrap(),
                        samples: 999,
                    },
                ),
                frame(
                    id + 2,
                    &Request::EnrollStart {
                        label: ldl_core::label("y").unwrap(),
                        samples: 0,
                    },
                ),
            ]
            .concat(),
            // A frame with one flipped bit.
            _ => {
                let mut f = frame(id, &Request::Classify { sample: &u8_sample });
                let at = rng.below(f.len() as u32 - 1) as usize;
                f[at] ^= 1 << rng.below(8);
                if f[at] == 0 {
                    f[at] = 1;
                }
                f
            }
        };
        dev.send_raw(&burst).unwrap();
        // Whatever the device answered, the line is then cleared, and it answers correctly.
        dev.resync().unwrap();
        let info = dev
            .info()
            .unwrap_or_else(|e| panic!("{board}: round {round} (kind {kind}): Info: {e}"));
        assert_eq!(
            info.labels.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
            labels,
            "{board}: round {round}"
        );
        let x = &probe[round as usize % probe.len()];
        let got = dev.classify(x).unwrap_or_else(|e| panic!("{board}: round {round}: classify: {e}"));
        check_same(&format!("{board}: round {round} (kind {kind})"), &host_classify(&model, x), &got);
        if kind == 3 {
            // The abandoned enrollment is visible; a new host drops it.
            assert_eq!(info.enrolling.as_ref().map(|e| e.got), Some(0), "{board}: round {round}");
            dev.abort().unwrap();
            assert_eq!(dev.info().unwrap().enrolling, None);
        }
    }
    let took = t0.elapsed();
    drop(dev);
    drop(q);
    // A restart: the classes are all there, the answers the host's.
    let mut q = boot(board, &model_path, &store, &dir.path().join("qemu2.log"));
    let mut dev = client(&mut q, REPLY);
    assert_eq!(dev.list().unwrap(), labels);
    for x in &probe {
        check_same(
            &format!("{board}: after the restart"),
            &host_classify(&model, x),
            &dev.classify(x).unwrap(),
        );
    }
    eprintln!(
        "(d) {board}: 28 rounds of serial chaos (kinds {kinds:?}) in {:.1}s; the device always answered, kept its 4 classes, and kept them across a restart",
        took.as_secs_f64()
    );
}
