//! Files made to break the loaders, `inspect`, or to exhaust the trainers' memory (issue 18):
//! every one is refused with a clear error naming the file (or the method) and the limit,
//! before anything large is allocated, read or inflated, and nothing panics or aborts.

use std::io::Write;
use std::path::Path;

mod common;
use common::{fails_with, ldl, s};

/// An IDX image file header: magic, count, rows, cols.
fn idx_images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    [0x0803, count, rows, cols].iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// An IDX label file of `labels`.
fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b: Vec<u8> = [0x0801, labels.len() as u32].iter().flat_map(|v| v.to_be_bytes()).collect();
    b.extend_from_slice(labels);
    b
}

/// An MNIST folder whose train and test splits both hold `images` (as written) and
/// `labels` labels (0, then 1s).
fn mnist_dir(dir: &Path, images: &[u8], images_name: &str, labels: usize) {
    let mut l = vec![1u8; labels];
    l[0] = 0;
    for split in ["train", "t10k"] {
        std::fs::write(dir.join(format!("{split}-{images_name}")), images).unwrap();
        std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), idx_labels(&l)).unwrap();
    }
}

fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `train` and `fewshot` on the MNIST folder `dir` (extra arguments `more`) both fail with
/// exit code 1, no panic, and every one of `needles` in the message.
fn train_and_fewshot_fail(dir: &Path, more: &[&str], needles: &[&str]) {
    let out = dir.join("m.ldlm");
    let mut train = vec!["train", "--data", s(dir), "--classes", "0-1", "--shots", "1", "--out", s(&out)];
    train.extend_from_slice(more);
    fails_with(&train, needles);
    let mut fewshot = vec!["fewshot", "--data", s(dir), "--shots", "1", "--trials", "1"];
    fewshot.extend_from_slice(more);
    fails_with(&fewshot, needles);
    assert!(!out.exists());
}

#[test]
fn mnist_headers_that_overflow_or_exceed_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 2^22 x 2^21 x 2^21 with as many labels: the product overflowed to 0, which matched the
    // 16-byte file (train panicked, fewshot aborted allocating 16 TiB).
    mnist_dir(dir.path(), &idx_images(1 << 22, 1 << 21, 1 << 21), "images-idx3-ubyte", 1 << 22);
    train_and_fewshot_fail(
        dir.path(),
        &[],
        &["train-images-idx3-ubyte", "4194304 x 2097152 x 2097152", "declares over 2^64 bytes"],
    );
    // MNIST's own size declared in a 16-byte file: above a lowered limit, the limit is named;
    // under the default one, the real length is short.
    mnist_dir(dir.path(), &idx_images(60_000, 28, 28), "images-idx3-ubyte", 2);
    train_and_fewshot_fail(
        dir.path(),
        &["--max-input-bytes", "1M"],
        &["train-images-idx3-ubyte", "47040000 bytes", "--max-input-bytes 1048576"],
    );
    train_and_fewshot_fail(
        dir.path(),
        &[],
        &["train-images-idx3-ubyte", "truncated", "expected 47040016 bytes, found 16"],
    );
}

#[test]
fn mnist_images_of_no_pixels_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // rows = cols = 0: train and fewshot divided by zero.
    mnist_dir(dir.path(), &idx_images(2, 0, 0), "images-idx3-ubyte", 2);
    train_and_fewshot_fail(dir.path(), &[], &["train-images-idx3-ubyte", "images of 0x0 pixels"]);
}

#[test]
fn an_mnist_gzip_bomb_is_not_inflated() {
    let dir = tempfile::tempdir().unwrap();
    // Two valid 28x28 images, then 3 GiB of zeros as 3072 gzip members of 1 MiB each: a
    // 3 MB file that was inflated in full (3.2 GB of memory) before the length check.
    let mut bomb = idx_images(2, 28, 28);
    bomb.extend_from_slice(&[0; 2 * 784]);
    let mut bomb = gzip(&bomb, 6);
    let member = gzip(&vec![0; 1 << 20], 9);
    for _ in 0..3072 {
        bomb.extend_from_slice(&member);
    }
    assert!(bomb.len() < 4 << 20, "{}", bomb.len());
    mnist_dir(dir.path(), &bomb, "images-idx3-ubyte.gz", 2);
    train_and_fewshot_fail(
        dir.path(),
        &[],
        &[
            "train-images-idx3-ubyte.gz",
            "decompresses to more than the 1584 bytes its header declares",
        ],
    );
}

/// A grey PNG whose header says `w x h` with only its first three rows of data (zeros):
/// a few hundred bytes.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().unwrap();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![0; 3 * (w as usize + 1)]).unwrap();
    writer.write_chunk(png::chunk::IDAT, &z.finish().unwrap()).unwrap();
    drop(writer); // writes IEND
    out
}

#[test]
fn huge_pngs_are_refused_from_their_header() {
    let dir = tempfile::tempdir().unwrap();
    // A model of 28x28 images, made in process.
    const D: usize = 784;
    let xs: Vec<f32> = (0..4 * D).map(|i| (i as f32 * 0.37).sin().abs()).collect();
    let cfg = ldl_core::methods::ClosedFormConfig {
        k: 0,
        ..Default::default()
    };
    let mut m = ldl_core::methods::fit_closed_form(&[&xs[..2 * D], &xs[2 * D..]], D, &["a", "b"], &cfg, 1).unwrap();
    m.preprocess.image = Some(ldl_core::ImageSpec {
        width: 28,
        height: 28,
        source_width: 0,
        source_height: 0,
    });
    let model = dir.path().join("m.ldlm");
    std::fs::write(&model, ldl_core::format::encode(&m).unwrap()).unwrap();

    // 20000 x 20000 in 600 bytes: it was decoded in full (2-3.6 GB) before the size check.
    let huge = dir.path().join("huge.png");
    let bytes = png_claiming(20000, 20000);
    assert!(bytes.len() < 1000, "{}", bytes.len());
    std::fs::write(&huge, &bytes).unwrap();
    fails_with(&["predict", s(&model), "--png", s(&huge)], &["huge.png", "20000x20000", "16777216"]);

    // The same drawing inside an Omniglot archive, and the archive's entry named.
    let zip_path = dir.path().join("omni.zip");
    let mut zw = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let zo = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zw.start_file("set/Alpha/character01/0001_01.png", zo).unwrap();
    zw.write_all(&bytes).unwrap();
    zw.finish().unwrap();
    fails_with(
        &["fewshot", "--dataset", "omniglot", "--data", s(&zip_path), "--trials", "1"],
        &["omni.zip", "set/Alpha/character01/0001_01.png", "20000x20000"],
    );
}

#[test]
fn weights_too_large_for_memory_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    // Two rows of 10^6 features: O2MD (k = 2000) would allocate 56 GB of weights and Adam
    // state, and aborted on its first 8 GB allocation.
    let row = |label: &str| format!("{label}{}\n", ",0.5".repeat(1_000_000));
    let (train, test) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    std::fs::write(&train, row("a") + &row("b")).unwrap();
    std::fs::write(&test, row("a") + &row("b")).unwrap();
    let out = dir.path().join("m.ldlm");
    let csv = ["--dataset", "csv", "--data", s(&train), "--test", s(&test)];
    let needles = [
        "o2md-k2000 on 1000000 inputs and 2 classes",
        "56000056000 bytes",
        "--max-weight-bytes 4294967296",
    ];
    let mut args = vec!["train", "--method", "o2md", "--out", s(&out)];
    args.extend_from_slice(&csv);
    fails_with(&args, &needles);
    let mut args = vec!["fewshot", "--methods", "device,o2md", "--shots", "1", "--trials", "1"];
    args.extend_from_slice(&csv);
    fails_with(&args, &needles);
    // The naive form's 10^6 x 10^6 layers, the option lowered, and the MLP's first layer.
    let mut args = vec!["fewshot", "--methods", "naive", "--shots", "1", "--trials", "1"];
    args.extend_from_slice(&csv);
    fails_with(&args, &["naive on 1000000 inputs", "--max-weight-bytes"]);
    let mut args = vec![
        "fewshot",
        "--methods",
        "mlp",
        "--max-weight-bytes",
        "1G",
        "--shots",
        "1",
        "--trials",
        "1",
    ];
    args.extend_from_slice(&csv);
    fails_with(&args, &["mlp on 1000000 inputs", "--max-weight-bytes 1073741824"]);
    assert!(!out.exists());
}

/// A model file with no class, an identity target of `d` inputs, and the preprocessing's
/// image `(w, h)` and enrollment `shift`, written byte by byte (core/FORMAT.md): what the
/// format's own validation accepts.
fn crafted_model(d: u32, image: (u16, u16), shift: u8) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut h = Vec::new();
    varint(&mut h, 3); // closed form
    varint(&mut h, d); // inputs
    varint(&mut h, d); // outputs (identity target)
    varint(&mut h, 1); // capacity
    h.push(0); // no threshold
    h.extend_from_slice(&1.0f32.to_le_bytes()); // scale
    h.extend_from_slice(&0.0f32.to_le_bytes()); // offset
    h.push(1); // an image:
    for v in [image.0, image.1, 0, 0] {
        varint(&mut h, v.into());
    }
    h.push(shift);
    h.extend_from_slice(&0.0f32.to_le_bytes()); // ridge
    h.push(0); // not affine
    h.extend_from_slice(&[0; 8]); // rank_tol, min_weight
    varint(&mut h, 0); // max_rank
    h.extend_from_slice(&[0, 1, 0, 0, 0]); // no label; one identity target at 0; no class
    let mut file = b"LDLM".to_vec();
    file.extend_from_slice(&2u16.to_le_bytes());
    file.extend_from_slice(&0u16.to_le_bytes());
    file.extend_from_slice(&(h.len() as u32).to_le_bytes());
    file.extend_from_slice(&0u32.to_le_bytes()); // no weights
    file.extend_from_slice(&h);
    file.resize(file.len().div_ceil(16) * 16, 0);
    let crc = ldl_core::format::checksum(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    file
}

#[test]
fn inspect_refuses_headers_whose_sizes_cannot_be_right() {
    let dir = tempfile::tempdir().unwrap();
    // The crafting is right: a plausible header is read and reported.
    let fine = dir.path().join("fine.ldlm");
    std::fs::write(&fine, crafted_model(784, (28, 28), 2)).unwrap();
    assert!(ldl_core::format::ModelView::parse(&std::fs::read(&fine).unwrap()).is_ok());
    let out = ldl(&["inspect", s(&fine)]);
    assert!(matches!(out.status.code(), Some(0 | 2)), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("d = 784 inputs"));

    // 84 bytes: 2^32 - 1 inputs that are not the 65535 x 65535 image: inspect printed
    // enrollment sizes of terabytes.
    let huge = dir.path().join("huge.ldlm");
    let bytes = crafted_model(u32::MAX, (65535, 65535), 3);
    assert_eq!(bytes.len(), 84);
    std::fs::write(&huge, &bytes).unwrap();
    assert!(ldl_core::format::ModelView::parse(&bytes).is_ok(), "the format itself accepts it");
    fails_with(&["inspect", s(&huge)], &["huge.ldlm", "65535x65535", "4294967295 inputs"]);
    fails_with(&["inspect", s(&huge), "--json"], &["huge.ldlm", "65535x65535"]);

    // A shift of 255 pixels on 28 x 28 images: a fit "needing" 12 TB of workspace.
    let shifty = dir.path().join("shifty.ldlm");
    std::fs::write(&shifty, crafted_model(784, (28, 28), 255)).unwrap();
    fails_with(&["inspect", s(&shifty)], &["shifty.ldlm", "shift of 255 pixels on 28x28 images"]);
}

/// Issue 18, reproducer 1: a row of 784 x 1e25 was "0, novelty 0, known" (inf - inf
/// clamped to 0), and a blank row was a confident "0" too. Now the huge row is refused as
/// unmeasurable (unknown, with the reason) and the blank one is unknown (every class is at
/// the same distance from it), while the other rows of the same file are still answered.
#[test]
fn huge_and_blank_rows_are_unknown_and_the_others_still_answered() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.ldlm");
    let t = common::ok_json(&[
        "train",
        "--classes",
        "0-2",
        "--shots",
        "5",
        "--method",
        "device",
        "--threshold",
        "1e6",
        "--out",
        s(&model),
        "--json",
    ]);
    assert_eq!(t["labels"], serde_json::json!(["0", "1", "2"]));
    // A real "1" from the MNIST test set (index 2), raw pixels, beside the hostile rows.
    let one = ldl_host::models::predict::mnist_inputs(&ldl_host::repo_root().join("data/mnist"), &[2]).unwrap();
    let row = |v: &[f32]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    let csv = dir.path().join("rows.csv");
    let mut text = String::new();
    for v in ["1e25", "1e30", &f32::MAX.to_string()] {
        text += &row(&vec![v.parse().unwrap(); 784]);
        text += "\n";
    }
    text += &row(&[0.0; 784]);
    text += "\n";
    text += &row(&one[0].raw);
    text += "\n";
    std::fs::write(&csv, text).unwrap();
    let out = common::ok_json(&["predict", s(&model), "--csv", s(&csv), "--json"]);
    let rows = out.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for r in &rows[..3] {
        assert_eq!(r["unknown"], true, "{r}");
        assert_eq!(r["label"], serde_json::Value::Null, "{r}");
        assert!(r["error"].as_str().unwrap().contains("no class gives a finite distance"), "{r}");
    }
    assert_eq!(rows[3]["unknown"], true, "blank: {}", rows[3]);
    assert_eq!(rows[3]["label"], serde_json::Value::Null);
    assert_eq!(rows[3]["error"], serde_json::Value::Null);
    assert_eq!(
        (&rows[4]["label"], &rows[4]["unknown"]),
        (&"1".into(), &false.into()),
        "{}",
        rows[4]
    );
    // The table says it too, and the reason goes to stderr.
    let text = ldl(&["predict", s(&model), "--csv", s(&csv)]);
    assert!(text.status.success());
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert_eq!(stdout.matches("unknown (refused)").count(), 3, "{stdout}");
    assert!(String::from_utf8_lossy(&text.stderr).contains("no class gives a finite distance"));
}
