//! The `ldl` command line against the firmware running in QEMU:
//!
//! * `ldl device` over the UART on loopback TCP: info, enroll from MNIST training images,
//!   classify test images (every answer checked against the host core with the same class
//!   enrolled the same way), list, forget, device-side errors; garbage and truncated frames
//!   sent between commands leave the device answering;
//! * `ldl device` over a real serial port (QEMU's UART on a pty);
//! * `ldl demo`, the README's whole story, with its report checked, on both QEMU boards
//!   (`qemu`, and `stm32f405` with the STM32F405's memory).
//!
//! Needs `qemu-system-arm` and the thumbv7em-none-eabihf target (`test-all.sh` installs both).

use ldl_host::data::{load_mnist, Split};
use ldl_host::device::enroll_like_device;
use ldl_host::device::qemu::{build_firmware, Qemu, QemuConfig};
use serde_json::Value;

mod common;
use common::{fails_with, ldl, ok_json, s};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Two cores, and each QEMU keeps one busy: one test at a time.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

fn elf() -> PathBuf {
    static ELF: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ELF.get_or_init(|| build_firmware("qemu").map_err(|e| format!("{e:#}")))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn boot(dir: &Path, model: &Path, pty: bool) -> Qemu {
    Qemu::boot(&QemuConfig {
        board: "qemu".into(),
        elf: elf(),
        model: Some(model.to_path_buf()),
        store: dir.join("store.bin"),
        log: dir.join("qemu.log"),
        limit: Duration::from_secs(600),
        pty,
    })
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A device-mode model of digits 0-4 (10 images each, room for 6 classes, a threshold on the
/// contrast score at the 0.9-quantile of its training images), via `ldl train`.
fn train(dir: &Path) -> PathBuf {
    let path = dir.join("model.ldlm");
    ok_json(&[
        "train",
        "--classes",
        "0-4",
        "--shots",
        "10",
        "--max-rank",
        "24",
        "--capacity",
        "6",
        "--calibrate-threshold",
        "0.9",
        "--out",
        s(&path),
        "--json",
    ]);
    path
}

fn raw(ds: &ldl_host::data::Dataset, i: usize) -> Vec<f32> {
    ds.row(i).iter().map(|v| (v * 255.0).round()).collect()
}

#[test]
fn device_command_enrolls_and_classifies_like_the_host_core() {
    let _g = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let model_path = train(dir.path());
    let q = boot(dir.path(), &model_path, false);
    let port = q.port_spec().to_string();
    let dev = |args: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["device", "--port", &port, "--timeout", "30", "--json"].map(String::from).to_vec();
        a.extend(args.iter().map(|x| x.to_string()));
        a
    };
    let run = |args: &[&str]| {
        let a = dev(args);
        ok_json(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let fail = |args: &[&str], needles: &[&str]| {
        let a = dev(args);
        fails_with(&a.iter().map(String::as_str).collect::<Vec<_>>(), needles)
    };

    let info = run(&["info"]);
    assert_eq!(info["model_valid"], true, "{info}");
    let device_rank = info["max_rank"].as_u64().unwrap() as usize;
    assert_eq!(info["inputs"], 784);
    assert_eq!(info["classes"], 5);
    assert_eq!(info["labels"], serde_json::json!(["0", "1", "2", "3", "4"]));

    // Enroll digit 7 from five training images, on the device and on the host copy.
    let dir_m = ldl_host::repo_root().join("data/mnist");
    let (train, test) = (load_mnist(&dir_m, Split::Train).unwrap(), load_mnist(&dir_m, Split::Test).unwrap());
    let sevens: Vec<usize> = train.indices_of_class(7)[..5].to_vec();
    let idx: Vec<String> = sevens.iter().map(|i| i.to_string()).collect();
    let mut args = vec!["enroll", "7", "--mnist-train"];
    args.extend(idx.iter().map(String::as_str));
    let e = run(&args);
    assert_eq!(e["enrolled"], "7");
    assert_eq!(e["samples"], 5);
    let rank = e["rank"].as_u64().unwrap();
    assert!((1..=24).contains(&rank), "{e}");
    let mut host = ldl_host::models::load_model(&model_path).unwrap();
    let raws: Vec<Vec<f32>> = sevens.iter().map(|&i| raw(&train, i)).collect();
    enroll_like_device(&mut host, "7", &raws, device_rank).unwrap();

    // Garbage and a truncated frame on the line between two commands.
    {
        let addr = port.strip_prefix("tcp:").unwrap();
        let mut raw_link = std::net::TcpStream::connect(addr).unwrap();
        raw_link.write_all(&(1..=255u8).collect::<Vec<_>>()).unwrap();
        raw_link.write_all(&[0, 0x05, 0x01, 0x02, 0x00]).unwrap();
        raw_link.write_all(&[0x11; 300]).unwrap(); // a frame cut short: no delimiter
        raw_link.flush().unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(run(&["list"]), serde_json::json!(["0", "1", "2", "3", "4", "7"]));

    // 40 test images: every answer equals the host core's.
    let n = 40;
    let idx: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let mut args = vec!["classify", "--mnist-test"];
    args.extend(idx.iter().map(String::as_str));
    let answers = run(&args);
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), n);
    let mut scratch = vec![0.0; ldl_core::classify::scratch_len(&host).unwrap()];
    let mut dist = vec![0.0; host.labels.len()];
    let mut sevens_right = 0;
    for (i, a) in answers.iter().enumerate() {
        let mut x = raw(&test, i);
        host.preprocess.apply(&mut x).unwrap();
        let h = ldl_core::classify(&host, &x, host.rule(), &mut scratch, &mut dist).unwrap();
        assert_eq!(a["class"], h.best, "image {i}: {a}");
        assert_eq!(a["best"], host.labels[h.best].as_str(), "image {i}");
        assert_eq!(a["expected"], test.labels[i].to_string());
        // The model's novelty rule, decided on the device as on the host.
        assert_eq!(a["score"], host.score.name(), "image {i}");
        assert_eq!(a["unknown"], h.class.is_none(), "image {i}");
        let nov = a["novelty"].as_f64().unwrap() as f32;
        assert_eq!(nov.to_bits(), h.novelty.to_bits(), "image {i}: novelty {nov} vs host {}", h.novelty);
        for (l, d) in host.labels.iter().zip(&dist) {
            let got = a["distances"][l.as_str()].as_f64().unwrap() as f32;
            assert_eq!(got.to_bits(), d.to_bits(), "image {i} class {l}: device {got}, host {d}");
        }
        sevens_right += usize::from(test.labels[i] == 7 && a["best"] == "7");
    }
    assert!(sevens_right > 0, "no test 7 recognised after enrolling 7");

    // Test image 0 as a PNG, with the device's model file: prepared as the model records
    // (grey levels 0..255, which the device scales), the answer of --mnist-test 0. Another
    // model file is refused before anything is sent.
    let png_path = dir.path().join("test0.png");
    {
        let pixels: Vec<u8> = raw(&test, 0).iter().map(|&v| v as u8).collect();
        let mut enc = png::Encoder::new(std::fs::File::create(&png_path).unwrap(), 28, 28);
        enc.set_color(png::ColorType::Grayscale);
        enc.write_header().unwrap().write_image_data(&pixels).unwrap();
    }
    let p = run(&["classify", "--model", s(&model_path), s(&png_path)]);
    assert_eq!(p[0]["distances"], answers[0]["distances"], "{p}");
    let mut other = ldl_host::models::load_model(&model_path).unwrap();
    other.threshold = Some(1.0);
    let other_path = dir.path().join("other.ldlm");
    std::fs::write(&other_path, ldl_core::format::encode(&other).unwrap()).unwrap();
    fail(
        &["classify", "--model", s(&other_path), s(&png_path)],
        &["other.ldlm", "not the device's model"],
    );

    // Device-side errors come back as clear errors, and the device keeps going.
    fail(&["enroll", "7", "--mnist-train", "0"], &["duplicate label"]);
    fail(
        &["enroll", "an-overlong-label-name", "--mnist-train", "0"],
        &["longer than 16 bytes"],
    );
    let csv = dir.path().join("short.csv");
    std::fs::write(&csv, "1,2,3\n").unwrap();
    fail(&["classify", s(&csv)], &["short.csv", "784"]);
    let f = run(&["forget", "7"]);
    assert_eq!(f["forgotten"], "7");
    fail(&["forget", "7"], &["unknown class"]);
    assert_eq!(run(&["list"]), serde_json::json!(["0", "1", "2", "3", "4"]));
    // The model's own classes cannot be forgotten.
    let out = ldl(&dev(&["forget", "0"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    assert_eq!(run(&["info"])["classes"], 5);
}

#[test]
fn device_command_works_over_a_serial_port() {
    let _g = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let model_path = train(dir.path());
    let q = boot(dir.path(), &model_path, true);
    let port = q.port_spec().to_string();
    assert!(port.starts_with("/dev/"), "{port}");
    let info = ok_json(&["device", "--port", &port, "--json", "info"]);
    assert_eq!(info["classes"], 5);
    let a = ok_json(&["device", "--port", &port, "--json", "classify", "--mnist-test", "0", "1", "2"]);
    let host = ldl_host::models::load_model(&model_path).unwrap();
    let test = load_mnist(&ldl_host::repo_root().join("data/mnist"), Split::Test).unwrap();
    for (i, ans) in a.as_array().unwrap().iter().enumerate() {
        let (c, _) = ldl_host::models::predict::classify_raw(&host, raw(&test, i)).unwrap();
        assert_eq!(ans["class"], c.best, "image {i}");
    }
    let text = ldl(&["device", "--port", &port, "list"]);
    assert!(text.status.success());
    assert_eq!(
        String::from_utf8_lossy(&text.stdout).lines().collect::<Vec<_>>(),
        ["0", "1", "2", "3", "4"]
    );
}

#[test]
fn demo_tells_the_whole_story() {
    for board in ["qemu", "stm32f405"] {
        demo_on(board);
    }
}

fn demo_on(board: &str) {
    let _g = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let r = ok_json(&["demo", "--board", board, "--per-class", "10", "--out", s(dir.path()), "--json"]);
    let (before, after) = (&r["before"], &r["after"]);
    let digit = |p: &Value, d: usize, k: &str| p["digits"][d][k].as_u64().unwrap();
    for d in 0..10 {
        assert_eq!(digit(before, d, "images"), 10);
    }
    // Before: 8 and 9 are no class of the model; after: the device knows them.
    assert_eq!(digit(before, 8, "correct") + digit(before, 9, "correct"), 0);
    // Saying "unknown" before enrolling: the model's contrast rule, a threshold from held-out
    // training images, counted on the device's first pass.
    let u = &r["unknown_before"];
    assert_eq!(
        (u["score"].as_str(), u["new_images"].as_u64(), u["known_images"].as_u64()),
        (Some("contrast"), Some(20), Some(80))
    );
    assert!(u["threshold"].as_f64().unwrap() > 0.0);
    assert!(u["threshold_source"].as_str().unwrap().contains("held-out"));
    assert_eq!(
        u["new_unknown"].as_u64().unwrap() + u["known_rejected"].as_u64().unwrap(),
        (0..10).map(|d| digit(before, d, "unknown")).sum::<u64>()
    );
    assert!(digit(after, 8, "correct") + digit(after, 9, "correct") >= 8, "{after}");
    let total = |p: &Value| (0..10).map(|d| digit(p, d, "correct")).sum::<u64>();
    assert!(total(after) > total(before));
    // Every device answer equalled the host core's, before and after.
    assert_eq!(before["equal_to_host"], 100);
    assert_eq!(after["equal_to_host"], 100);
    let enrolled = r["enrolled"].as_array().unwrap();
    assert_eq!(enrolled.len(), 2);
    for e in enrolled {
        assert_eq!(e["samples"].as_array().unwrap().len(), 5);
        assert!(e["rank"].as_u64().unwrap() > 0);
    }
    // After a reset the classes are still there and the answers unchanged.
    assert_eq!(
        r["after_reset_labels"],
        serde_json::json!(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])
    );
    assert_eq!(r["after_reset_identical"], 100);
    assert!(dir.path().join("report.json").is_file() && dir.path().join("model.ldlm").is_file());
    let name = ldl_host::models::boards::board(board).unwrap().name;
    assert_eq!(r["device"], name.as_str(), "{board}");
}
