//! End-to-end tests of the model commands through the built `ldl` binary: train -> file ->
//! inspect / eval / predict, bad files, the budget check, tune.

use ldl_host::cli::{DataArgs, DatasetKind};
use ldl_host::models::train::{fit, TrainArgs};
use serde_json::Value;
use std::path::{Path, PathBuf};

mod common;
use common::{fails_with, ldl, ok_json, s};

fn mnist() -> DataArgs {
    DataArgs {
        dataset: DatasetKind::Mnist,
        data: None,
        test: None,
        rotations: false,
        validation: false,
        max_input_bytes: ldl_host::data::DEFAULT_MAX_INPUT_BYTES,
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

    // The same model in memory, from the library: the file holds exactly it.
    let loaded = mnist().load().unwrap();
    let args = TrainArgs {
        data: mnist(),
        classes: Some("0-2".into()),
        shots: Some(5),
        method: "device".into(),
        seed: 7,
        capacity: None,
        threshold: None,
        calibrate_threshold: None,
        calibrate_on: ldl_host::models::train::CalibrateOn::Support,
        max_rank: None,
        max_weight_bytes: ldl_host::experiment::DEFAULT_MAX_WEIGHT_BYTES,
        out: path.clone(),
        json: false,
    };
    let trained = fit(&args, &loaded).unwrap();
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
    match ldl_host::experiment::device_mode(None) {
        ldl_host::experiment::MethodSpec::ClosedForm { cfg, .. } => assert_eq!(model.fit, cfg.fit),
        _ => unreachable!(),
    }

    // inspect: header, labels, dims, size, CRC.
    let i = ok_json(&["inspect", s(&path), "--json", "--flash", "16M", "--ram", "64M"]);
    assert_eq!(i["labels"], serde_json::json!(["0", "1", "2"]));
    assert_eq!(i["inputs"], 784);
    assert_eq!(i["outputs"], 784);
    assert_eq!(i["target"], "identity");
    assert_eq!(i["format_version"], 2);
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
        let c = ldl_core::classify(&model, x, None, &mut scratch, &mut dist).unwrap();
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
    let c = ldl_core::classify(&model, &first, None, &mut scratch, &mut dist).unwrap();
    assert_eq!(p[0]["best"], model.labels[c.best].as_str());
    assert_eq!(p[0]["novelty"].as_f64().unwrap() as f32, c.novelty);
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
