//! End-to-end tests of the model commands through the built `ldl` binary: train -> file ->
//! inspect / eval / predict, bad files, the budget check, tune.

use ldl_host::data::{DataArgs, DatasetKind};
use ldl_host::models::train::{fit, TrainOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};

mod common;
use common::{fails_with, ldl, ldl_with_backtraces, ok_json, s};

fn mnist() -> DataArgs {
    DataArgs {
        dataset: DatasetKind::Mnist,
        data: None,
        test: None,
        rotations: false,
        validation: false,
        max_input_bytes: ldl_host::data::DEFAULT_MAX_INPUT_BYTES,
        series: None,
    }
}

#[test]
fn train_file_inspect_eval_predict_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.ldlm");
    let t = ok_json(&[
        "train",
        "--classes",
        "0-2",
        "--shots",
        "5",
        "--method",
        "device",
        "--seed",
        "7",
        "--out",
        s(&path),
        "--json",
    ]);
    assert_eq!(t["labels"], serde_json::json!(["0", "1", "2"]));
    assert_eq!(t["samples_per_class"], serde_json::json!([5, 5, 5]));
    // The method as typed, what it resolved to beside it.
    assert_eq!((&t["method"], &t["settings"]), (&"device".into(), &"closed-id-shift2".into()));

    // The same model in memory, from the library: the file holds exactly it.
    let loaded = mnist().load().unwrap();
    let options = TrainOptions {
        classes: Some("0-2".into()),
        shots: Some(5),
        seed: 7,
        ..TrainOptions::new(DatasetKind::Mnist, "device")
    };
    let trained = fit(&options, &loaded).unwrap();
    let model = trained.model;
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(ldl_core::format::decode(&bytes).unwrap(), model);
    assert!(trained.indices.iter().flatten().all(|&i| i < loaded.train.len()));

    // The documented preprocessing: raw MNIST bytes 0..255, scale 1/255, 28x28, shift 2.
    let pp = model.preprocess;
    assert_eq!(pp.scale, 1.0 / 255.0);
    assert_eq!(pp.offset, 0.0);
    assert_eq!(
        pp.image,
        Some(ldl_core::ImageSpec {
            width: 28,
            height: 28,
            source_width: 0,
            source_height: 0
        })
    );
    assert_eq!(pp.shift, 2);
    assert_eq!(model.capacity, 13); // room to enroll ten more
    match ldl_host::methods::device_mode(None) {
        ldl_host::methods::MethodSpec::ClosedForm { cfg, .. } => assert_eq!(model.fit, cfg.fit),
        _ => unreachable!(),
    }

    // inspect: header, labels, dims, size, CRC.
    let i = ok_json(&["inspect", s(&path), "--json", "--flash", "16M", "--ram", "64M"]);
    assert_eq!(i["labels"], serde_json::json!(["0", "1", "2"]));
    assert_eq!(i["inputs"], 784);
    assert_eq!(i["outputs"], 784);
    assert_eq!(i["target"], "identity");
    assert_eq!(i["format_version"], 3);
    assert_eq!(i["bytes"], bytes.len());
    let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
    assert_eq!(i["crc32"], format!("{crc:08x}"));
    assert_eq!(i["preprocess"]["shift"], 2);
    assert_eq!(i["entries"].as_array().unwrap().len(), 3);
    assert!(i["entries"][0]["rank"].as_u64().unwrap() > 5);
    assert_eq!(i["budget"]["fits"], true);

    // eval equals the accuracy computed directly with the in-memory model on the test split.
    let test = loaded.test.as_ref().unwrap();
    let (mut xs, mut truth) = (Vec::new(), Vec::new());
    for r in 0..test.len() {
        let l = test.labels[r] as usize;
        if l <= 2 {
            xs.extend(test.row(r).iter().map(|v| (v * 255.0).round() * (1.0f32 / 255.0)));
            truth.push(l);
        }
    }
    let pred = ldl_core::batch::predict(&model, &xs, truth.len()).unwrap();
    let correct = pred.iter().zip(&truth).filter(|(a, b)| a == b).count();
    let e = ok_json(&["eval", s(&path), "--json"]);
    assert_eq!(e["known"], truth.len());
    assert_eq!(e["correct"], correct);
    assert_eq!(e["unknown_expected"], 10_000 - truth.len());
    assert!((e["accuracy"].as_f64().unwrap() - correct as f64 / truth.len() as f64).abs() < 1e-12);
    assert!(e["accuracy"].as_f64().unwrap() > 0.85, "{}", e["accuracy"]);
    let per: usize = e["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["correct"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(per, correct);

    // The batch path equals one-at-a-time classify (the device's path) on a few samples.
    let d = 784;
    let mut scratch = vec![0.0; ldl_core::classify::scratch_len(&model).unwrap()];
    let mut dist = vec![0.0; 3];
    let mut bd = vec![0.0; 3];
    for j in (0..truth.len()).step_by(97) {
        let x = &xs[j * d..(j + 1) * d];
        let c = ldl_core::classify(&model, x, ldl_core::novelty::Rule::default(), &mut scratch, &mut dist).unwrap();
        assert_eq!(c.best, pred[j], "sample {j}");
        ldl_core::batch::distances(&model, x, 1, &mut bd).unwrap();
        for (a, b) in dist.iter().zip(&bd) {
            assert!((a - b).abs() <= 1e-4 * a.abs().max(1e-3), "{a} vs {b}");
        }
    }

    // predict: the first test images, as the device would see them.
    let p = ok_json(&["predict", s(&path), "--mnist-test", "1", "2", "--json"]);
    let p = p.as_array().unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[0]["expected"], "2");
    assert_eq!(p[0]["distances"].as_object().unwrap().len(), 3);
    assert_eq!(p[0]["unknown"], false);
    let first = test
        .row(1)
        .iter()
        .map(|v| (v * 255.0).round() * (1.0f32 / 255.0))
        .collect::<Vec<_>>();
    let c = ldl_core::classify(&model, &first, model.rule(), &mut scratch, &mut dist).unwrap();
    assert_eq!(p[0]["best"], model.labels[c.best].as_str());
    assert_eq!(p[0]["novelty"].as_f64().unwrap() as f32, c.novelty);
    assert_eq!(p[0]["score"], model.score.name());
    assert_eq!(model.score, ldl_core::novelty::Score::Contrast, "the device method's default");
}

/// A small valid model file, made in process: two classes of three samples, the boards'
/// 784 inputs, a linear target of 4 outputs.
fn small_model(dir: &Path) -> PathBuf {
    const D: usize = 784;
    let xs: Vec<f32> = (0..6 * D).map(|i| (i as f32 * 0.37).sin()).collect();
    let cfg = ldl_core::methods::ClosedFormConfig {
        k: 4,
        ..Default::default()
    };
    let m = ldl_core::methods::fit_closed_form(&[&xs[..3 * D], &xs[3 * D..]], D, &["a", "b"], &cfg, 1).unwrap();
    let p = dir.join("small.ldlm");
    std::fs::write(&p, ldl_core::format::encode(&m).unwrap()).unwrap();
    p
}

#[test]
fn bad_model_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = small_model(dir.path());
    assert!(ldl(&["inspect", s(&good)]).status.success());
    let bytes = std::fs::read(&good).unwrap();

    let corrupt = dir.path().join("corrupt.ldlm");
    let mut b = bytes.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&corrupt, &b).unwrap();
    let truncated = dir.path().join("truncated.ldlm");
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, b"these are not the weights you are looking for").unwrap();
    let missing = dir.path().join("missing.ldlm");

    for cmd in [&["inspect"][..], &["eval"][..], &["predict", "--mnist-test", "0"][..]] {
        let with = |p: &Path| {
            let mut a: Vec<&str> = vec![cmd[0]];
            a.push(s(p));
            a.extend_from_slice(&cmd[1..]);
            a.iter().map(|x| x.to_string()).collect::<Vec<_>>()
        };
        let run = |p: &Path, needles: &[&str]| {
            let a = with(p);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            fails_with(&a, needles);
        };
        run(&corrupt, &[s(&corrupt), "CRC"]);
        run(&truncated, &[s(&truncated), "truncated"]);
        run(&other, &[s(&other), "magic"]);
        run(&missing, &[s(&missing), "cannot read"]);
    }
}

/// A wrong file is not a bug: with `RUST_BACKTRACE=1` in the environment, `ldl` prints the
/// error and its causes, and no backtrace.
#[test]
fn user_errors_print_their_causes_and_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let good = small_model(dir.path());
    let mut b = std::fs::read(&good).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    let corrupt = dir.path().join("corrupt.ldlm");
    std::fs::write(&corrupt, &b).unwrap();
    let missing = dir.path().join("missing.ldlm");
    let cases: [(&Path, &[&str]); 2] = [
        (&corrupt, &["not a valid LDL model file: CRC mismatch", "corrupted"]),
        (&missing, &["cannot read the model file", "Caused by:", "No such file"]),
    ];
    for (path, needles) in cases {
        let out = ldl_with_backtraces(&["inspect", s(path)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.starts_with(&format!("Error: {}", s(path))), "{err}");
        for n in needles {
            assert!(err.contains(n), "{n:?} not in: {err}");
        }
        assert!(!err.to_lowercase().contains("backtrace"), "{err}");
        assert!(err.lines().count() <= 4, "{err}");
    }
}

/// Ten digits at rank 24, full capacity: about 750 KB, more than the nRF52840 DK's 384 KiB
/// MODEL region.
fn big_model(dir: &Path) -> PathBuf {
    let path = dir.join("big.ldlm");
    ok_json(&[
        "train",
        "--classes",
        "0-9",
        "--shots",
        "10",
        "--capacity",
        "10",
        "--out",
        s(&path),
        "--json",
    ]);
    path
}

#[test]
fn budget_check_fails_for_a_too_large_model_on_the_nrf52840dk() {
    let dir = tempfile::tempdir().unwrap();
    let path = big_model(dir.path());
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 640 * 1024, "{size}");
    let out = ldl(&["inspect", s(&path), "--board", "nrf52840dk", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["budget"]["flash_fits"], false);
    assert_eq!(r["budget"]["flash"], 384 * 1024);
    assert_eq!(r["budget"]["fits"], false);
    let text = String::from_utf8_lossy(&ldl(&["inspect", s(&path)]).stdout).to_string();
    assert!(text.contains("DOES NOT FIT"), "{text}");
    // Full capacity: no enrollment; a larger budget fits.
    let ok = ldl(&["inspect", s(&path), "--flash", "8M", "--ram", "1M"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let ram = ldl(&["inspect", s(&path), "--flash", "8M", "--ram", "1K"]);
    assert_eq!(ram.status.code(), Some(2));
    fails_with(&["inspect", s(&path), "--board", "esp32"], &["esp32", "nrf52840dk"]);
}

/// The goal: ten MNIST classes of five images in the mcu mode fit both boards with
/// a real part's memory, with room to enroll ten more classes of five images on the device.
/// `mcu-warp` writes format version 4 with its fill, `mcu-align` version 5 with its fill and
/// query alignment; a board with fewer image slots than the fill refuses its enrollments,
/// before anything is flashed.
#[test]
fn an_mcu_warp_model_records_its_fill_and_boards_check_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.ldlm");
    for (method, fill, align) in [("mcu-warp", 5, 0), ("mcu:::7", 7, 0), ("mcu-align", 5, 1)] {
        ok_json(&[
            "train",
            "--classes",
            "0-9",
            "--shots",
            "1",
            "--method",
            method,
            "--out",
            s(&path),
            "--json",
        ]);
        let r = ok_json(&["inspect", s(&path), "--board", "stm32f405", "--json"]);
        assert_eq!(r["format_version"], if align > 0 { 5 } else { 4 }, "{r}");
        assert_eq!(r["novelty"], "contrast", "{r}");
        assert_eq!(r["preprocess"]["fill"], fill, "{r}");
        if align > 0 {
            assert_eq!(r["preprocess"]["align"], align, "{r}");
            let out = ldl(&["inspect", s(&path)]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("query alignment 1 (3 views of each query"),
                "{text}"
            );
            // Its classification has one member: no ensemble of it.
            fails_with(
                &[
                    "train",
                    "--classes",
                    "0-1",
                    "--shots",
                    "1",
                    "--method",
                    method,
                    "--members",
                    "3",
                    "--out",
                    s(&path),
                ],
                &["one member"],
            );
        } else {
            assert!(r["preprocess"].get("align").is_none(), "{r}");
        }
        let refused = &r["budget"]["enroll"]["refused"];
        if fill <= 5 {
            assert!(refused.is_null(), "{r}");
        } else {
            assert!(refused.as_str().unwrap().contains("warped copies fill up to 7 images"), "{r}");
        }
    }
}

#[test]
fn an_mcu_model_of_ten_digits_fits_both_small_boards() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.ldlm");
    ok_json(&[
        "train",
        "--classes",
        "0-9",
        "--shots",
        "5",
        "--method",
        "mcu",
        "--out",
        s(&path),
        "--json",
    ]);
    for board in ["stm32f405", "nrf52840dk"] {
        let r = ok_json(&["inspect", s(&path), "--board", board, "--json"]);
        let b = &r["budget"];
        assert_eq!(b["fits"], true, "{board}: {b}");
        assert_eq!(b["runs"], true);
        assert!(b["enroll"]["classes"].as_u64().unwrap() >= 10, "{board}: {b}");
        assert!(b["enroll"]["images"].as_u64().unwrap() >= 5);
        assert!(b["enroll"]["refused"].is_null());
        // The default capacity leaves room for ten more classes.
        assert_eq!(r["capacity"], 20, "{r}");
        // Under a third of the f32 form (73.6 KiB per class at rank 24): at most 25 KiB each.
        assert!(r["bytes"].as_u64().unwrap() < 10 * 25 * 1024, "{r}");
        let text = String::from_utf8_lossy(&ldl(&["inspect", s(&path), "--board", board]).stdout).to_string();
        assert!(text.contains("result: fits"), "{text}");
    }
    // A model with more inputs than the firmware takes is refused, before anything is flashed.
    let csv = dir.path().join("wide.csv");
    let mut rows = String::new();
    for c in 0..2 {
        for _ in 0..3 {
            rows.push_str(&format!("{c}"));
            for j in 0..800 {
                rows.push_str(&format!(",{}", (j + c) % 7));
            }
            rows.push('\n');
        }
    }
    std::fs::write(&csv, rows).unwrap();
    let wide = dir.path().join("wide.ldlm");
    ok_json(&[
        "train",
        "--dataset",
        "csv",
        "--data",
        s(&csv),
        "--test",
        s(&csv),
        "--method",
        "mcu",
        "--out",
        s(&wide),
        "--json",
    ]);
    let out = ldl(&["inspect", s(&wide), "--board", "stm32f405", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["budget"]["runs"], false);
    fails_with(
        &["flash", "--chip", "nRF52840_xxAA", s(&wide), "--dry-run"],
        &["784 inputs", "nothing written"],
    );
}

#[test]
fn baselines_and_bad_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.ldlm");
    fails_with(
        &["train", "--classes", "0-1", "--shots", "2", "--method", "logreg", "--out", s(&out)],
        &["logreg", "cannot be exported"],
    );
    fails_with(
        &["train", "--classes", "0,11", "--shots", "2", "--out", s(&out)],
        &["11", "out of range"],
    );
    fails_with(
        &["train", "--classes", "0-3", "--capacity", "2", "--shots", "2", "--out", s(&out)],
        &["--capacity 2"],
    );
    assert!(!out.exists());
    for c in ["train", "inspect", "eval", "predict", "tune"] {
        let h = ldl(&[c, "--help"]);
        assert!(h.status.success() && h.stdout.len() > 200, "{c} --help");
    }
}

#[test]
fn tune_runs_on_validation_rows_only() {
    let v = ok_json(&["tune", "--quick", "--trials", "1", "--shots", "1", "--json"]);
    assert_eq!(v["validation"]["split"], "train");
    assert_eq!(v["validation"]["query_rows"], serde_json::json!([50000, 60000]));
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    assert_eq!(rows.iter().filter(|r| r["chosen"] == true).count(), 1);
    let means: Vec<f64> = rows.iter().map(|r| r["mean"].as_f64().unwrap()).collect();
    assert!(means.windows(2).all(|w| w[0] >= w[1]), "{means:?}");
    assert!(means[0] > 0.3 && means[0] < 1.0);
}

#[test]
fn thresholds_are_calibrated_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.ldlm");
    let common = [
        "train",
        "--classes",
        "0-2",
        "--shots",
        "5",
        "--out",
        s(&path),
        "--json",
        "--calibrate-threshold",
    ];
    // On the support: a sample of the support itself is within the threshold (Q = 1).
    let t = ok_json(&[&common[..], &["1.0"]].concat());
    let th = t["threshold"].as_f64().unwrap();
    assert!(th > 0.0);
    let e = ok_json(&["eval", s(&path), "--json"]);
    assert!(e["rejected_known"].as_u64().unwrap() > 0);
    // Held out: about Q of new samples of the known classes are accepted.
    let t = ok_json(&[&common[..], &["0.95", "--calibrate-on", "heldout"]].concat());
    assert!(t["threshold_source"].as_str().unwrap().contains("300 held-out"));
    let e = ok_json(&["eval", s(&path), "--json"]);
    let rejected = e["rejected_known"].as_u64().unwrap() as f64 / e["known"].as_u64().unwrap() as f64;
    assert!(rejected > 0.01 && rejected < 0.15, "{rejected}");
    assert!(e["unknown_detected"].as_u64().unwrap() > 0);
    // The device method's threshold is on the contrast score (at most 1), recorded in the
    // model: eval decides with it. --novelty best calibrates on the closest distance.
    assert_eq!((t["novelty"].as_str(), e["novelty"].as_str()), (Some("contrast"), Some("contrast")));
    assert!(t["threshold_source"].as_str().unwrap().contains("contrast scores"));
    let contrast = t["threshold"].as_f64().unwrap();
    assert!(contrast > 0.0 && contrast <= 1.0, "{contrast}");
    let t = ok_json(&[&common[..], &["0.95", "--calibrate-on", "heldout", "--novelty", "best"]].concat());
    let e = ok_json(&["eval", s(&path), "--json"]);
    assert_eq!((t["novelty"].as_str(), e["novelty"].as_str()), (Some("best"), Some("best")));
    assert_ne!(t["threshold"].as_f64().unwrap(), contrast);
    let i = ok_json(&["inspect", s(&path), "--json", "--flash", "16M", "--ram", "64M"]);
    assert_eq!(i["novelty"], "best");
}

#[test]
fn bad_thresholds_and_scores_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.ldlm");
    let train = |extra: &[&str], needles: &[&str]| {
        let a = [&["train", "--classes", "0-1", "--shots", "3", "--out", s(&path)][..], extra].concat();
        fails_with(&a, needles);
    };
    for t in ["-1", "nan", "inf", "-inf"] {
        train(&[&format!("--threshold={t}")], &["--threshold must be a finite number >= 0"]);
    }
    // Refused by the argument parser (its exit code 2).
    for (score, needle) in [
        ("normalized", "normalized needs one spread per class"),
        ("nope", "no novelty score"),
    ] {
        let o = ldl(&["train", "--classes", "0-1", "--out", s(&path), "--novelty", score]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(needle), "{err}");
    }
    assert!(!path.exists());
    // A version 3 model file with a negative threshold (written by hand: encode refuses it)
    // is refused by every command, naming the problem.
    let good = small_model(dir.path());
    let mut m = ldl_core::format::decode(&std::fs::read(&good).unwrap()).unwrap();
    m.threshold = Some(1.0);
    let mut b = ldl_core::format::encode(&m).unwrap();
    // Header: method, d = 784 (2 bytes), k, capacity, then Some(threshold).
    assert_eq!((b[4], b[21], &b[22..26]), (3, 1, &1.0f32.to_le_bytes()[..]));
    b[22..26].copy_from_slice(&(-1.0f32).to_le_bytes());
    let n = b.len() - 4;
    let crc = ldl_core::format::checksum(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
    let neg = dir.path().join("negative.ldlm");
    std::fs::write(&neg, &b).unwrap();
    for cmd in [&["inspect"][..], &["eval"][..], &["predict", "--mnist-test", "0"][..]] {
        let a = [&cmd[..1], &[s(&neg)][..], &cmd[1..]].concat();
        fails_with(&a, &[s(&neg), "invalid parameter", "negative novelty threshold"]);
    }
}

#[test]
fn flash_checks_everything_offline_and_writes_nothing_without_a_probe() {
    let dir = tempfile::tempdir().unwrap();
    let good = small_model(dir.path());
    let nrf = ldl_host::models::boards::board("nrf52840dk").unwrap();
    // --dry-run: the plan, from boards.toml's MODEL region and the chip registry.
    let p = ok_json(&["flash", s(&good), "--chip", "nRF52840_xxAA", "--dry-run", "--json"]);
    assert_eq!(p["address"], nrf.model.origin);
    assert_eq!(p["region_size"], nrf.model.size);
    assert_eq!(p["bytes"], std::fs::metadata(&good).unwrap().len());
    assert_eq!(p["board"], "nrf52840dk");
    assert_eq!(p["written"], false);
    let bytes = std::fs::read(&good).unwrap();
    let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
    assert_eq!(p["crc"], crc);
    // The chip's flash (probe-rs registry) holds the region: nRF52840 has 1 MiB at 0.
    assert_eq!(p["nvm"], serde_json::json!([0, 0x100000]));
    // The registry's fuzzy name works too.
    assert!(ldl(&["flash", s(&good), "--chip", "nrf52840", "--dry-run"]).status.success());

    // A model larger than the MODEL region (10 digits at rank 24: ~750 KB > 384 KiB).
    let big = big_model(dir.path());
    fails_with(
        &["flash", s(&big), "--chip", "nRF52840_xxAA", "--dry-run"],
        &["does not fit", "nothing written"],
    );
    // Corrupt, truncated files; unknown chip; a chip no board uses.
    let mut b = bytes.clone();
    b[bytes.len() / 2] ^= 1;
    let corrupt = dir.path().join("corrupt.ldlm");
    std::fs::write(&corrupt, &b).unwrap();
    fails_with(&["flash", s(&corrupt), "--chip", "nRF52840_xxAA", "--dry-run"], &["CRC"]);
    let truncated = dir.path().join("truncated.ldlm");
    std::fs::write(&truncated, &bytes[..bytes.len() - 3]).unwrap();
    fails_with(&["flash", s(&truncated), "--chip", "nRF52840_xxAA"], &["truncated"]);
    fails_with(
        &["flash", s(&good), "--chip", "NoSuchChip42", "--dry-run"],
        &["NoSuchChip42", "not found"],
    );
    fails_with(
        &["flash", s(&good), "--chip", "STM32F405RGTx", "--dry-run"],
        &["no board", "nrf52840dk"],
    );
    fails_with(
        &["flash", s(&good), "--chip", "nRF52840_xxAA", "--board", "qemu"],
        &["not flashed with a probe"],
    );
    // No probe on this machine: a clear error, nothing written.
    fails_with(
        &["flash", s(&good), "--chip", "nRF52840_xxAA"],
        &["no debug probe found", "nothing written"],
    );
    fails_with(
        &["flash", s(&good), "--chip", "nRF52840_xxAA", "--probe", "1366:1051:000683"],
        &["cannot open probe", "nothing written"],
    );
}

#[test]
fn device_command_reports_unreachable_devices_clearly() {
    // Nothing listens on port 9 of loopback; no such serial port.
    fails_with(
        &["device", "--port", "tcp:127.0.0.1:9", "--timeout", "0.5", "info"],
        &["device at tcp:127.0.0.1:9"],
    );
    fails_with(
        &["device", "--port", "/dev/ldl-no-such-port", "info"],
        &["serial port /dev/ldl-no-such-port"],
    );
    fails_with(&["device", "--port", "/dev/null", "--timeout", "0", "info"], &["--timeout"]);
}

#[test]
fn fewshot_json_holds_every_trial_and_the_same_results_at_any_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let run = |jobs: &str| -> Value {
        let path = dir.path().join(format!("fewshot-{jobs}.json"));
        let out = ldl(&[
            "fewshot",
            "--methods",
            "ncm,device",
            "--shots",
            "1,3",
            "--ways",
            "4",
            "--trials",
            "3",
            "--queries",
            "25",
            "--jobs",
            jobs,
            "--json",
            s(&path),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    };
    let one = run("1");
    let cells = one.as_array().unwrap();
    assert_eq!(cells.len(), 4, "2 methods x 2 shots");
    // Each method as typed, its settings beside it.
    let named: Vec<(&str, &str)> = cells
        .iter()
        .map(|c| (c["method"].as_str().unwrap(), c["settings"].as_str().unwrap()))
        .collect();
    assert_eq!(
        named,
        [
            ("ncm", "ncm"),
            ("ncm", "ncm"),
            ("device", "closed-id-shift2"),
            ("device", "closed-id-shift2")
        ]
    );
    for c in cells {
        assert_eq!(c["jobs"], 1);
        assert_eq!(c["ways"], 4);
        let trials = c["trials"].as_array().unwrap();
        assert_eq!(trials.len(), 3);
        let accs: Vec<f64> = trials.iter().map(|t| t["accuracy"].as_f64().unwrap()).collect();
        let mean = accs.iter().sum::<f64>() / 3.0;
        assert!((c["mean"].as_f64().unwrap() - mean).abs() < 1e-12, "{c}");
        assert!(mean > 0.25, "4-way, better than chance: {c}");
    }
    let at_once = run("0");
    for (a, b) in cells.iter().zip(at_once.as_array().unwrap()) {
        assert_eq!(b["jobs"], 0);
        assert_eq!((&a["method"], &a["shots"], &a["mean"]), (&b["method"], &b["shots"], &b["mean"]));
        let acc = |v: &Value| -> Vec<Value> { v["trials"].as_array().unwrap().iter().map(|t| t["accuracy"].clone()).collect() };
        assert_eq!(acc(a), acc(b));
    }
}

/// One trial has no 95% interval: the tables print "-", the CSV an empty field, the JSON null
/// (never NaN).
#[test]
fn one_trial_prints_a_dash_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("one.json");
    let out = ldl(&[
        "fewshot",
        "--methods",
        "ncm,device",
        "--shots",
        "1",
        "--ways",
        "3",
        "--trials",
        "1",
        "--queries",
        "5",
        "--json",
        s(&json),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("NaN"), "{text}");
    let row = text.lines().find(|l| l.starts_with("ncm")).unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[3], "-", "{row}");
    // The table names a method as typed, its settings last.
    let row = text.lines().find(|l| l.starts_with("device ")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.ends_with("  closed-id-shift2"), "{row}");
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(v[0]["ci95"].is_null(), "{v}");
    assert!(v[0]["mean"].as_f64().unwrap() > 0.0);
    fails_with(&["fewshot", "--methods", "ncm", "--trials", "0"], &["--trials"]);

    let rep = dir.path().join("rep");
    let out = ldl(&[
        "reproduce",
        "--methods",
        "ncm,device",
        "--shots",
        "1",
        "--trials",
        "1",
        "--out",
        s(&rep),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["report.md", "summary.csv"] {
        let t = std::fs::read_to_string(rep.join(f)).unwrap();
        assert!(!t.contains("NaN"), "{f}: {t}");
    }
    assert!(!String::from_utf8_lossy(&out.stderr).contains("NaN"));
    let report = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(report.contains(" ± - "), "{report}");
    let summary = std::fs::read_to_string(rep.join("summary.csv")).unwrap();
    let row: Vec<&str> = summary.lines().nth(1).unwrap().split(',').collect();
    assert_eq!((row[2], row[4]), ("1", ""), "{summary}");
    // Methods as typed, with the settings each cell ran.
    assert!(summary.starts_with("method,shots,trials,mean,ci95,paper,train_secs,eval_secs,cell_secs,settings\n"));
    let device: Vec<&str> = summary.lines().nth(2).unwrap().split(',').collect();
    assert_eq!((device[0], device[9]), ("device", "closed-id-shift2"), "{summary}");
    assert!(
        report.contains("| device |") && !report.contains("| closed-id-shift2 |"),
        "{report}"
    );
    // The open-set section: its ROC curves beside the report, and the figures `ldl openset`
    // gives for the same plan and seed.
    assert!(report.contains("## Saying \"unknown\": open set"), "{report}");
    assert!(
        report.contains("![ROC curves of the open-set section](roc_openset.svg)"),
        "{report}"
    );
    let svg = std::fs::read_to_string(rep.join("roc_openset.svg")).unwrap();
    assert!(svg.contains("contrast (AUROC") && svg.contains("best (AUROC"), "{svg}");
    let open = ok_json(&[
        "openset",
        "--methods",
        "device",
        "--known",
        "8",
        "--unknown",
        "2",
        "--shots",
        "5",
        "--trials",
        "1",
        "--scores",
        "best,contrast",
        "--seed",
        "2019",
        "--json",
    ]);
    for sc in open["results"][0]["scores"].as_array().unwrap() {
        let row = format!(
            "| device | {} | {:.3} ± - |",
            sc["score"].as_str().unwrap(),
            sc["auroc"]["mean"].as_f64().unwrap()
        );
        assert!(report.contains(&row), "{row} not in {report}");
    }
    let none = dir.path().join("rep0");
    let out = ldl(&[
        "reproduce",
        "--methods",
        "ncm",
        "--shots",
        "1",
        "--trials",
        "1",
        "--openset-trials",
        "0",
        "--out",
        s(&none),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!std::fs::read_to_string(none.join("report.md")).unwrap().contains("open set"));
    assert!(!none.join("roc_openset.svg").exists());
}

/// The drawings of an Omniglot character of the default set (`Alphabet/characterNN`) as
/// file names and PNG bytes, in the loader's order (by file name).
fn omniglot_drawings(character: &str) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let zip_path = ldl_host::data::default_omniglot();
    let mut a = zip::ZipArchive::new(std::fs::File::open(zip_path).unwrap()).unwrap();
    let dir = format!("images_background_small1/{character}/");
    let mut names: Vec<String> = a
        .file_names()
        .filter_map(Result::ok)
        .filter(|n| n.starts_with(&dir) && n.ends_with(".png"))
        .map(|n| n.into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let mut b = Vec::new();
            a.by_name(&n).unwrap().read_to_end(&mut b).unwrap();
            (n[dir.len()..].to_string(), b)
        })
        .collect()
}

/// `ldl predict --png` on an Omniglot drawing as the data set has it (105x105, dark ink on
/// white): the model's recorded resize and the inversion are applied as training did, so the
/// input, and every distance, is the one the training loader's image of that drawing gives.
#[test]
fn predict_prepares_an_original_omniglot_drawing_as_training_did() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("omniglot.ldlm");
    let t = ok_json(&[
        "train",
        "--dataset",
        "omniglot",
        "--classes",
        "0-4",
        "--shots",
        "5",
        "--out",
        s(&path),
        "--json",
    ]);
    assert_eq!(t["classes"][1], "Balinese/character02");
    let model = ldl_core::format::decode(&std::fs::read(&path).unwrap()).unwrap();
    let im = model.preprocess.image.unwrap();
    assert_eq!((im.width, im.source_width), (28, 105));

    let drawings = omniglot_drawings("Balinese/character02");
    let offset = drawings.iter().position(|(n, _)| n == "0109_07.png").unwrap();
    let png = &drawings[offset].1;
    let drawing = dir.path().join("drawing.png");
    std::fs::write(&drawing, png).unwrap();
    let loaded = ldl_host::data::load_omniglot(&ldl_host::data::default_omniglot(), &Default::default()).unwrap();
    let row = loaded.class_indices()[1][offset];
    let expected = loaded.row(row).to_vec();
    // The input vector: the loader's, value for value.
    let raw = ldl_host::models::predict::png_raw(&model.preprocess, &drawing, false).unwrap();
    assert_eq!(raw, expected);
    // The answer: every distance the loader's image gets from the model.
    let (c, dist) = ldl_host::models::predict::classify_raw(&model, expected).unwrap();
    let p = ok_json(&["predict", s(&path), "--png", s(&drawing), "--json"]);
    let a = &p[0];
    assert_eq!(a["best"], model.labels[c.best].as_str());
    assert_eq!(a["best"], "Balinese/c02");
    for (l, d) in model.labels.iter().zip(&dist) {
        assert_eq!(a["distances"][l.as_str()].as_f64().unwrap() as f32, *d, "{l}");
    }
    // --invert changes nothing: the model records the inversion.
    assert_eq!(ok_json(&["predict", s(&path), "--png", s(&drawing), "--invert", "--json"]), p);

    // Another size: the message names the sizes the model takes.
    let small = dir.path().join("small.png");
    {
        let f = std::fs::File::create(&small).unwrap();
        let mut enc = png::Encoder::new(f, 50, 50);
        enc.set_color(png::ColorType::Grayscale);
        enc.write_header().unwrap().write_image_data(&[255u8; 2500]).unwrap();
    }
    fails_with(&["predict", s(&path), "--png", s(&small)], &["50x50", "105x105", "28x28"]);
}

/// `ldl eval` on a separate Omniglot folder says it scores every drawing of that folder, and
/// does not claim it holds the drawings the model was trained on; on the default set, which
/// `ldl train` draws from by default, it says they are among them if it was trained there.
#[test]
fn eval_on_a_separate_folder_does_not_claim_training_drawings() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.ldlm");
    ok_json(&[
        "train",
        "--dataset",
        "omniglot",
        "--classes",
        "0-2",
        "--shots",
        "3",
        "--out",
        s(&model),
        "--json",
    ]);
    // A folder of other drawings of the same characters (the last five of each).
    let folder = dir.path().join("unseen");
    for ch in ["character01", "character02", "character03"] {
        let out = folder.join("Balinese").join(ch);
        std::fs::create_dir_all(&out).unwrap();
        for (name, png) in omniglot_drawings(&format!("Balinese/{ch}")).iter().rev().take(5) {
            std::fs::write(out.join(name), png).unwrap();
        }
    }
    let args = ["eval", s(&model), "--dataset", "omniglot", "--data", s(&folder)];
    let out = ldl(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap();
    assert!(first.contains(&format!("(every drawing of {}): 15 samples", s(&folder))), "{first}");
    assert!(!text.contains("trained on") && !text.contains("only set"), "{text}");
    let e = ok_json(&[&args[..], &["--json"]].concat());
    assert_eq!(e["split"], format!("every drawing of {}", s(&folder)));
    assert_eq!(e["known"], 15);

    let e = ok_json(&["eval", s(&model), "--dataset", "omniglot", "--json"]);
    let split = e["split"].as_str().unwrap();
    assert!(
        split.contains("images_background_small1.zip") && split.contains("among them if it was trained there"),
        "{split}"
    );
    assert_eq!(e["known"], 60);
}

/// A confusion matrix too wide to read (20 Omniglot classes) is summed up by its most frequent
/// confusions; the whole matrix goes to --confusion-csv (and the JSON). A narrow one (MNIST
/// digits) is printed whole.
#[test]
fn eval_prints_a_wide_confusion_matrix_as_its_top_confusions() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m20.ldlm");
    ok_json(&[
        "train",
        "--dataset",
        "omniglot",
        "--classes",
        "0-19",
        "--shots",
        "5",
        "--out",
        s(&model),
        "--json",
    ]);
    let csv_path = dir.path().join("confusion.csv");
    let out = ldl(&["eval", s(&model), "--dataset", "omniglot", "--confusion-csv", s(&csv_path)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("confusion (rows"), "{text}");
    let e = ok_json(&["eval", s(&model), "--dataset", "omniglot", "--json"]);
    let conf: Vec<Vec<u64>> = e["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect())
        .collect();
    assert_eq!((conf.len(), conf[0].len()), (21, 21));
    // The listed confusions: the largest off-diagonal counts of the model's classes.
    let listed: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("most frequent confusions"))
        .skip(1)
        .filter(|l| l.contains(" -> "))
        .collect();
    assert!(!listed.is_empty() && listed.len() <= 10, "{text}");
    assert!(listed.iter().all(|l| l.len() <= 100), "{text}");
    let mut off: Vec<u64> = (0..20)
        .flat_map(|i| (0..21).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| conf[i][j])
        .collect();
    off.sort_unstable_by(|a, b| b.cmp(a));
    let counts: Vec<u64> = listed
        .iter()
        .map(|l| l.split_whitespace().last().unwrap().parse().unwrap())
        .collect();
    assert_eq!(counts, off[..counts.len()], "{text}");
    let labels = e["confusion_rows"].as_array().unwrap();
    let first: Vec<&str> = listed[0].split_whitespace().collect();
    let (i, j) = (0..20)
        .flat_map(|i| (0..21).map(move |j| (i, j)))
        .find(|&(i, j)| i != j && conf[i][j] == off[0])
        .unwrap();
    assert_eq!(
        (first[0], first[2]),
        (labels[i].as_str().unwrap(), e["confusion_cols"][j].as_str().unwrap())
    );
    // The CSV: the whole matrix, labelled.
    let mut r = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[0], "true");
    assert_eq!(
        header[1..],
        e["confusion_cols"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect::<Vec<_>>()[..]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 21);
    for (k, row) in rows.iter().enumerate() {
        assert_eq!(row[0], *labels[k].as_str().unwrap());
        let counts: Vec<u64> = row.iter().skip(1).map(|v| v.parse().unwrap()).collect();
        assert_eq!(counts, conf[k], "row {k}");
    }

    // Three digits: the whole matrix, narrow enough to print.
    let small = dir.path().join("m3.ldlm");
    ok_json(&["train", "--classes", "0-2", "--shots", "5", "--out", s(&small), "--json"]);
    let out = ldl(&["eval", s(&small)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("confusion (rows: true class, columns: decision)"), "{text}");
    assert!(
        text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["0", "1", "2"]),
        "{text}"
    );
}

/// `ldl train` with a gradient method prints how it trained, not closed-form fit options, and
/// a model larger than every board's MODEL region comes with a warning (stderr and JSON)
/// that names the method that fits: mcu, whose model of the same classes does fit.
#[test]
fn train_warns_of_a_model_no_board_holds_and_prints_the_options_that_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o2md.ldlm");
    let train = |method: &str, json: bool| {
        let mut a = vec!["train", "--classes", "0-2", "--shots", "3", "--method", method, "--out", s(&path)];
        if json {
            a.push("--json");
        }
        let out = ldl(&a);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let largest = ldl_host::models::boards::boards()
        .unwrap()
        .values()
        .map(|b| b.model.size)
        .max()
        .unwrap();

    let (text, err) = train("o2md:300", false);
    assert!(std::fs::metadata(&path).unwrap().len() > largest);
    assert!(text.contains("  training   3 epochs of Adam, lr 0.001, batch 1"), "{text}");
    for opt in ["ridge", "affine", "rank_tol", "max_rank"] {
        assert!(!text.contains(opt), "{opt}: {text}");
    }
    assert!(
        err.contains("warning:") && err.contains("larger than every board's MODEL region"),
        "{err}"
    );
    assert!(err.contains("--method mcu") && err.contains("which fits"), "{err}");
    let (json, err) = train("o2md:300", true);
    let t: Value = serde_json::from_str(&json).unwrap();
    assert!(t["fit"].is_null(), "{t}");
    assert_eq!(t["training"]["epochs"], 3);
    assert_eq!(t["warnings"].as_array().unwrap().len(), 1);
    assert!(err.contains(t["warnings"][0].as_str().unwrap()), "{err}");

    // The method it names fits: the mcu model of the same classes, within the bound it gives.
    let (json, err) = train("mcu", true);
    let t: Value = serde_json::from_str(&json).unwrap();
    assert!(t["warnings"].as_array().unwrap().is_empty() && err.is_empty(), "{t} {err}");
    let bytes = t["bytes"].as_u64().unwrap();
    assert!(bytes <= 3 * ldl_core::store::max_plain_class_len(784, 40) as u64, "{bytes}");
    let stm32 = ldl_host::models::boards::board("stm32f405").unwrap();
    assert!(bytes <= stm32.model.size);
    // Closed-form methods print their fit.
    assert_eq!(t["fit"]["max_rank"], 40);
    assert!(t["training"].is_null());
    let (text, _) = train("device", false);
    assert!(text.contains("  fit        ridge 100"), "{text}");
}

/// A CSV data set (the IMU set) with the device and mcu modes: they run without their shift
/// augmentation, as `ldl train` does, with one note for the whole run; `device` then gives
/// `device::0`'s figures.
#[test]
fn fewshot_on_a_csv_runs_the_device_mode_without_shifts_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("imu.json");
    let imu = ldl_host::repo_root().join("data/sensors/BasicMotions");
    let (train, test) = (imu.join("train.csv"), imu.join("test.csv"));
    let out = ldl(&[
        "fewshot",
        "--dataset",
        "csv",
        "--data",
        s(&train),
        "--test",
        s(&test),
        "--methods",
        "device,device::0,mcu",
        "--shots",
        "1,2",
        "--trials",
        "3",
        "--json",
        s(&json),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("note:").count(), 1, "{err}");
    assert!(
        err.contains("note: csv is not an image data set: device, mcu run without their shift augmentation"),
        "{err}"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let cells = v.as_array().unwrap();
    assert_eq!(cells.len(), 6);
    assert_eq!(cells[0]["settings"], "closed-id");
    for (dev, zero) in cells[..2].iter().zip(&cells[2..4]) {
        assert_eq!((&dev["shots"], &dev["mean"]), (&zero["shots"], &zero["mean"]));
    }
}

/// Lake's episodes are Omniglot's, of alphabets with enough characters.
#[test]
fn within_alphabet_episodes_are_refused_where_they_cannot_be_drawn() {
    let imu = ldl_host::repo_root().join("data/sensors/BasicMotions");
    let (train, test) = (imu.join("train.csv"), imu.join("test.csv"));
    fails_with(
        &[
            "fewshot",
            "--dataset",
            "csv",
            "--data",
            s(&train),
            "--test",
            s(&test),
            "--within-alphabet",
        ],
        &["--within-alphabet is for --dataset omniglot", "not csv"],
    );
    fails_with(
        &[
            "fewshot",
            "--dataset",
            "omniglot",
            "--within-alphabet",
            "--ways",
            "60",
            "--shots",
            "1",
            "--methods",
            "ncm",
        ],
        &["no alphabet has 60 characters (the largest, Korean, has 40)"],
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("lake.json");
    let out = ldl(&[
        "fewshot",
        "--dataset",
        "omniglot",
        "--within-alphabet",
        "--shots",
        "1",
        "--methods",
        "ncm",
        "--trials",
        "2",
        "--json",
        s(&json),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v[0]["ways"], 20);
}

/// A fixed split as two folders: one drawing per class as support, the queries matched by
/// their alphabet/character path; one trial unless asked; a query class the support lacks
/// is named.
#[test]
fn fewshot_takes_a_fixed_split_of_one_drawing_per_class() {
    let dir = tempfile::tempdir().unwrap();
    let (support, queries) = (dir.path().join("support"), dir.path().join("queries"));
    for c in 1..=5 {
        let character = format!("Greek/character{c:02}");
        let drawings = omniglot_drawings(&character);
        for (root, range) in [(&support, 0..1), (&queries, 1..3)] {
            let d = root.join(&character);
            std::fs::create_dir_all(&d).unwrap();
            for (name, bytes) in &drawings[range] {
                std::fs::write(d.join(name), bytes).unwrap();
            }
        }
    }
    let json = dir.path().join("fixed.json");
    let out = ldl(&[
        "fewshot",
        "--dataset",
        "omniglot",
        "--data",
        s(&support),
        "--query",
        s(&queries),
        "--methods",
        "device,ncm",
        "--json",
        s(&json),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for cell in v.as_array().unwrap() {
        assert_eq!((&cell["ways"], &cell["shots"]), (&Value::from(5), &Value::from(1)), "{cell}");
        assert_eq!(cell["trials"].as_array().unwrap().len(), 1);
    }
    fails_with(
        &[
            "fewshot",
            "--dataset",
            "omniglot",
            "--data",
            s(&support),
            "--query",
            s(&queries),
            "--shots",
            "1",
        ],
        &["--query gives a fixed split", "leave out --shots"],
    );
    let stranger = queries.join("Latin/character01");
    std::fs::create_dir_all(&stranger).unwrap();
    let (name, bytes) = &omniglot_drawings("Greek/character06")[0];
    std::fs::write(stranger.join(name), bytes).unwrap();
    fails_with(
        &["fewshot", "--dataset", "omniglot", "--data", s(&support), "--query", s(&queries)],
        &["query class Latin/character01 is not in the support"],
    );
}

#[test]
fn ensembles_train_every_member_into_the_file_and_predict_reports_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ens.ldlm");
    let t = ok_json(&[
        "train",
        "--classes",
        "0-2",
        "--shots",
        "5",
        "--method",
        "mcu",
        "--members",
        "3",
        "--seed",
        "7",
        "--out",
        s(&path),
        "--json",
    ]);
    assert_eq!(t["settings"], "mcu-m3");
    // The file is the library's fit with the same options: three members, each its own
    // bootstrap fit.
    let loaded = mnist().load().unwrap();
    let options = TrainOptions {
        classes: Some("0-2".into()),
        shots: Some(5),
        seed: 7,
        members: 3,
        ..TrainOptions::new(DatasetKind::Mnist, "mcu")
    };
    let model = fit(&options, &loaded).unwrap().model;
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(ldl_core::format::decode(&bytes).unwrap(), model);
    assert_eq!(model.members.len(), 3);
    assert_ne!(model.members[0], model.members[1]);
    // predict: every answer carries the members' agreement, a share of the 3 members.
    let p = ok_json(&["predict", s(&path), "--mnist-test", "0", "1", "2", "3", "--json"]);
    for a in p.as_array().unwrap() {
        let agreement = a["agreement"].as_f64().unwrap();
        assert!([1.0 / 3.0, 2.0 / 3.0, 1.0].iter().any(|v| (v - agreement).abs() < 1e-6), "{a}");
    }
    // Baselines have no members; neither does a count outside 1..=16.
    fails_with(
        &[
            "train",
            "--method",
            "logreg",
            "--members",
            "3",
            "--out",
            s(&dir.path().join("x.ldlm")),
        ],
        &["baseline"],
    );
    fails_with(
        &[
            "train",
            "--method",
            "device",
            "--members",
            "17",
            "--shots",
            "2",
            "--classes",
            "0-1",
            "--out",
            s(&dir.path().join("y.ldlm")),
        ],
        &["at most 16"],
    );
    fails_with(
        &["fewshot", "--methods", "device,1nn", "--members", "2", "--trials", "1"],
        &["1nn", "baseline"],
    );
}

/// `--series`: the rows are time series, the device and mcu modes shift them in time (as a
/// one-pixel-high image), warped copies are dropped with a note, bad declarations refused.
#[test]
fn series_rows_are_shifted_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("imu.json");
    let imu = ldl_host::repo_root().join("data/sensors/BasicMotions");
    let (train, test) = (imu.join("train.csv"), imu.join("test.csv"));
    let csv = ["--dataset", "csv", "--data", s(&train), "--test", s(&test)];
    let args: Vec<&str> = ["fewshot"]
        .into_iter()
        .chain(csv)
        .chain([
            "--series",
            "6",
            "--methods",
            "device,device::0,mcu-warp",
            "--shots",
            "1",
            "--trials",
            "3",
            "--json",
            s(&json),
        ])
        .collect();
    let out = ldl(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("note: csv holds time series: mcu-warp runs without its warped copies"),
        "{err}"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let cells = v.as_array().unwrap();
    assert_eq!(
        (&cells[0]["settings"], &cells[1]["settings"]),
        (&"closed-id-shift2".into(), &"closed-id".into())
    );
    // Shifts in time change the answers (on this set, for the better).
    assert!(cells[0]["mean"].as_f64().unwrap() > cells[1]["mean"].as_f64().unwrap(), "{v}");
    // The model records the series as a 600 x 1 image; the enrollment shift is 2.
    let model = dir.path().join("imu.ldlm");
    let t: Vec<&str> = ["train"]
        .into_iter()
        .chain(csv)
        .chain(["--series", "6", "--method", "mcu", "--shots", "2", "--out", s(&model), "--json"])
        .collect();
    ok_json(&t);
    let m = ldl_core::format::decode(&std::fs::read(&model).unwrap()).unwrap();
    let im = m.preprocess.image.unwrap();
    assert_eq!((im.width, im.height, m.preprocess.shift), (600, 1, 2));
    // inspect reads it; no board's firmware takes 600 inputs (they are built for 784), which
    // it says with its "does not fit" status.
    let out = ldl(&["inspect", s(&model), "--json"]);
    let i: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(i["preprocess"]["shift"], 2);
    assert_eq!(out.status.code(), Some(2), "{i}");
    // A channel count that does not divide the rows, or --series on images: refused.
    let bad: Vec<&str> = ["fewshot"]
        .into_iter()
        .chain(csv)
        .chain(["--series", "7", "--trials", "1"])
        .collect();
    fails_with(&bad, &["--series 7", "600 values"]);
    fails_with(&["fewshot", "--series", "6", "--trials", "1"], &["--series", "csv"]);
}

/// `ldl predict` names the model's novelty score, and for an ensemble shows how many
/// members agree with the answer.
#[test]
fn predict_shows_the_score_and_an_ensembles_agreement() {
    const D: usize = 784;
    let dir = tempfile::tempdir().unwrap();
    let xs: Vec<f32> = (0..6 * D).map(|i| (i as f32 * 0.37).sin().abs()).collect();
    let cfg = ldl_core::methods::ClosedFormConfig {
        k: 4,
        ..Default::default()
    };
    let mut m = ldl_core::methods::ensemble(&[&xs[..3 * D], &xs[3 * D..]], D, 3, 5, |c, seed| {
        ldl_core::methods::fit_closed_form(c, D, &["a", "b"], &cfg, seed)
    })
    .unwrap();
    m.score = ldl_core::novelty::Score::Contrast;
    m.threshold = Some(0.9);
    let p = dir.path().join("ens.ldlm");
    std::fs::write(&p, ldl_core::format::encode(&m).unwrap()).unwrap();
    let j = ok_json(&["predict", s(&p), "--mnist-test", "0", "1", "--json"]);
    for a in j.as_array().unwrap() {
        assert_eq!(a["score"], "contrast");
        let agree = a["agreement"].as_f64().unwrap();
        assert!([1.0 / 3.0, 2.0 / 3.0, 1.0].iter().any(|v| (agree - v).abs() < 1e-6), "{agree}");
    }
    let out = ldl(&["predict", s(&p), "--mnist-test", "0", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let header = text.lines().next().unwrap();
    assert!(header.contains("contrast") && header.contains("agreement"), "{text}");
}
