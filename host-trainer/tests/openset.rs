//! `ldl openset` end to end through the built binary: synthetic CSV data sets whose answers
//! are known, MNIST's validation split, and bad input.

use std::path::{Path, PathBuf};

mod common;
use common::{fails_with, ldl, ok_json, s};

/// A CSV of `classes` classes, `per_class` rows each, 3 features per class: class `c` lives
/// in features `3c..3c+3` (values in 1..2), every other feature is `noise` times a
/// pseudo-random number in -1..1. With small noise each class is a 3-dimensional affine
/// patch orthogonal to the others: a class fitted on 4 samples holds its new samples almost
/// exactly, and a sample of a class it never saw is far from it.
fn blocks(path: &Path, classes: usize, per_class: usize, noise: f64, seed: u64) {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut text = String::new();
    for c in 0..classes {
        for _ in 0..per_class {
            text.push_str(&c.to_string());
            for j in 0..3 * classes {
                let v = if j / 3 == c { 1.0 + next() } else { noise * (2.0 * next() - 1.0) };
                text.push_str(&format!(",{v:.5}"));
            }
            text.push('\n');
        }
    }
    std::fs::write(path, text).unwrap();
}

/// A train and a test CSV of six block classes.
fn six_blocks(dir: &Path, noise: f64) -> (PathBuf, PathBuf) {
    let (train, test) = (dir.join("train.csv"), dir.join("test.csv"));
    blocks(&train, 6, 10, noise, 1);
    blocks(&test, 6, 8, noise, 2);
    (train, test)
}

fn csv_args<'a>(train: &'a Path, test: &'a Path) -> Vec<&'a str> {
    vec!["openset", "--dataset", "csv", "--data", s(train), "--test", s(test)]
}

const DEFAULT_SCORES: [&str; 6] = ["best", "ratio", "contrast", "normalized", "normalized-min", "relative"];

#[test]
fn separable_unknowns_score_perfectly_and_the_roc_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = six_blocks(dir.path(), 0.01);
    // In a folder that does not exist yet.
    let svg = dir.path().join("plots/roc.svg");
    let mut args = csv_args(&train, &test);
    args.extend([
        "--known",
        "3",
        "--unknown",
        "2",
        "--shots",
        "4",
        "--trials",
        "6",
        "--methods",
        "closed:0",
        "--json",
        "--svg",
    ]);
    args.push(s(&svg));
    let v = ok_json(&args);
    assert_eq!(
        (v["split"].as_str(), v["known"].as_u64(), v["unknown"].as_u64()),
        (Some("test"), Some(3), Some(2))
    );
    assert_eq!(v["scores"], serde_json::json!(DEFAULT_SCORES));
    let grid = v["roc_fpr"].as_array().unwrap();
    assert_eq!((grid.len(), grid[0].as_f64(), grid[200].as_f64()), (201, Some(0.0), Some(1.0)));
    let r = &v["results"][0];
    assert_eq!(
        (r["method"].as_str(), r["settings"].as_str()),
        (Some("closed:0"), Some("closed-id"))
    );
    // Closed-set: every known query is closest to its own class.
    assert_eq!(r["accuracy"]["mean"], 1.0);
    let trials = r["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6);
    let mut unknown_seen = std::collections::BTreeSet::new();
    for t in trials {
        assert_eq!(
            (t["known_queries"].as_u64(), t["unknown_queries"].as_u64()),
            (Some(24), Some(16)),
            "{t}"
        );
        let names = |k: &str| -> Vec<String> { t[k].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect() };
        let (known, unknown) = (names("known"), names("unknown"));
        assert_eq!((known.len(), unknown.len()), (3, 2));
        assert!(known.iter().all(|k| !unknown.contains(k)), "{t}");
        unknown_seen.extend(unknown);
        for sc in t["scores"].as_array().unwrap() {
            // Perfect separation: AUROC 1, every unknown caught, at most 5% of knowns lost.
            assert_eq!((sc["auroc"].as_f64(), sc["tpr"].as_f64()), (Some(1.0), Some(1.0)), "{sc}");
            assert!(sc["fpr"].as_f64().unwrap() <= 0.05);
            assert!(sc["threshold"].as_f64().unwrap() >= 0.0);
        }
    }
    // The unknown classes are drawn per trial.
    assert!(unknown_seen.len() >= 4, "{unknown_seen:?}");
    let scores = r["scores"].as_array().unwrap();
    assert_eq!(
        scores.iter().map(|x| x["score"].as_str().unwrap()).collect::<Vec<_>>(),
        DEFAULT_SCORES
    );
    for sc in scores {
        assert_eq!(
            (sc["auroc"]["mean"].as_f64(), sc["tpr"]["mean"].as_f64()),
            (Some(1.0), Some(1.0)),
            "{sc}"
        );
        let roc = sc["roc_tpr"].as_array().unwrap();
        assert_eq!(roc.len(), 201);
        assert!(roc.iter().all(|x| x.as_f64() == Some(1.0)), "{sc}");
    }
    // The SVG: one line per score, named in the legend, axes labelled.
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..100.min(text.len())]);
    for needle in [
        "false-positive rate",
        "true-positive rate",
        "relative (AUROC 1.000)",
        "normalized-min (AUROC 1.000)",
    ] {
        assert!(text.contains(needle), "{needle} not in the SVG");
    }
    assert!(text.matches("<polyline").count() >= 6, "a line per score");
}

/// Overlapping classes: scores between chance and perfect; the summary is the trials' mean,
/// with a 95% interval, and the table says the same.
#[test]
fn the_summary_is_the_mean_of_the_trials() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = six_blocks(dir.path(), 0.9);
    let mut args = csv_args(&train, &test);
    args.extend([
        "--known",
        "4",
        "--unknown",
        "2",
        "--shots",
        "3",
        "--trials",
        "5",
        "--methods",
        "closed:0,mcu",
        "--scores",
        "best,ratio,span",
    ]);
    let mut json = args.clone();
    json.push("--json");
    let v = ok_json(&json);
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    let mut varied = false;
    for r in v["results"].as_array().unwrap() {
        let trials = r["trials"].as_array().unwrap();
        for (j, sc) in r["scores"].as_array().unwrap().iter().enumerate() {
            let each: Vec<f64> = trials.iter().map(|t| t["scores"][j]["auroc"].as_f64().unwrap()).collect();
            let mean = each.iter().sum::<f64>() / each.len() as f64;
            assert!((sc["auroc"]["mean"].as_f64().unwrap() - mean).abs() < 1e-12, "{sc}");
            assert!(each.iter().all(|a| (0.0..=1.0).contains(a)));
            let tprs: Vec<f64> = trials.iter().map(|t| t["scores"][j]["tpr"].as_f64().unwrap()).collect();
            assert!((sc["tpr"]["mean"].as_f64().unwrap() - tprs.iter().sum::<f64>() / 5.0).abs() < 1e-12);
            if each.iter().any(|&a| a != each[0]) {
                varied = true;
                assert!(sc["auroc"]["ci95"].as_f64().unwrap() > 0.0, "{sc}");
            }
            // Mean ROC: the mean of the trials' curves, which rise to 1.
            let roc = sc["roc_tpr"].as_array().unwrap();
            assert!(roc.windows(2).all(|w| w[0].as_f64() <= w[1].as_f64()));
            assert_eq!(roc[200].as_f64(), Some(1.0));
        }
        let accs: Vec<f64> = trials.iter().map(|t| t["accuracy"].as_f64().unwrap()).collect();
        assert!((r["accuracy"]["mean"].as_f64().unwrap() - accs.iter().sum::<f64>() / 5.0).abs() < 1e-12);
    }
    assert!(varied, "the noise should make the trials differ");
    // The table: one row per method and score, the AUROC as in the JSON.
    let out = ldl(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("mcu ") && l.contains(" ratio "))
        .unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    let want = v["results"][1]["scores"][1]["auroc"]["mean"].as_f64().unwrap();
    assert_eq!(cols[2], format!("{want:.4}"), "{row}");
    // A CSV: the mcu mode without its shifts, which its settings say.
    assert!(row.ends_with("  mcu:40:0"), "{row}");
    // One trial: no interval, a dash.
    let mut one = csv_args(&train, &test);
    one.extend([
        "--known",
        "3",
        "--trials",
        "1",
        "--shots",
        "2",
        "--methods",
        "closed:0",
        "--scores",
        "best",
    ]);
    let out = ldl(&one);
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text.lines().find(|l| l.starts_with("closed:0")).unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((cols[3], cols[5], cols[8]), ("-", "-", "-"), "{row}");
    assert!(!text.contains("NaN"), "{text}");
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = six_blocks(dir.path(), 0.01);
    let run = |more: &[&str], needles: &[&str]| {
        let mut a = csv_args(&train, &test);
        a.extend(["--methods", "closed:0", "--trials", "2"]);
        a.extend(more);
        fails_with(&a, needles);
    };
    run(
        &["--known", "5", "--unknown", "2"],
        &["--known 5 and --unknown 2 need 7 classes, the data set has 6"],
    );
    run(&[], &["--known 8 and --unknown 2 need 10 classes"]);
    run(&["--known", "3", "--unknown", "0"], &["--unknown must be at least 1"]);
    run(&["--known", "0"], &["--known must be at least 1"]);
    run(&["--known", "3", "--shots", "0"], &["--shots"]);
    run(&["--known", "3", "--shots", "11"], &["has 10 samples, the episode needs 11"]);
    for fpr in ["--fpr=nan", "--fpr=inf", "--fpr=0", "--fpr=1", "--fpr=-0.1"] {
        run(&["--known", "3", fpr], &["--fpr must be a number between 0 and 1"]);
    }
    run(&["--known", "3", "--scores", "best,nope"], &["unknown score \"nope\""]);
    run(&["--known", "1", "--scores", "ratio"], &["score ratio", "--known 2"]);
    run(&["--known", "3", "--scores", "disagreement"], &["--members 2"]);
    run(&["--known", "3", "--members", "0"], &["--members must be 1 to 16"]);
    run(&["--known", "3", "--methods", "ncm"], &["ncm", "baseline"]);
    // Image augmentation asked of a CSV: the device mode runs without its shifts, and says so
    // once (as `ldl train` and `ldl fewshot` do).
    let mut a = csv_args(&train, &test);
    a.extend(["--trials", "2", "--known", "3", "--methods", "device"]);
    let out = ldl(&a);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        err.matches("note: csv is not an image data set: device runs without its shift augmentation")
            .count(),
        1,
        "{err}"
    );
    run(&["--known", "3", "--split", "validation"], &["MNIST"]);
    // Non-finite values in the data are refused by name; values so large their distances
    // overflow are refused as non-finite, naming the trial, not scored as NaN.
    // Row `row` (every row: None) of the training CSV with its first feature replaced.
    let with_first_feature = |name: &str, value: &str, row: Option<usize>| -> PathBuf {
        let text: String = std::fs::read_to_string(&train)
            .unwrap()
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let mut f: Vec<String> = l.split(',').map(String::from).collect();
                if row.is_none_or(|r| r == i) {
                    f[1] = value.into();
                }
                f.join(",") + "\n"
            })
            .collect();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let bad = with_first_feature("bad.csv", "inf", Some(5));
    fails_with(
        &[
            "openset",
            "--dataset",
            "csv",
            "--data",
            s(&bad),
            "--test",
            s(&test),
            "--known",
            "3",
            "--methods",
            "closed:0",
        ],
        &["bad.csv", "line 6", "non-finite"],
    );
    let huge = with_first_feature("huge.csv", "3e38", None);
    fails_with(
        &[
            "openset",
            "--dataset",
            "csv",
            "--data",
            s(&huge),
            "--test",
            s(&huge),
            "--known",
            "3",
            "--methods",
            "closed:0",
            "--jobs",
            "1",
        ],
        &["closed:0 trial 0", "non-finite"],
    );
    let h = ldl(&["openset", "--help"]);
    let help = String::from_utf8_lossy(&h.stdout);
    assert!(h.status.success(), "openset --help");
    for opt in [
        "--known",
        "--unknown",
        "--shots",
        "--trials",
        "--methods",
        "--scores",
        "--split",
        "--svg",
        "--json",
        "--seed",
        "--fpr",
    ] {
        assert!(help.contains(opt), "{opt} not in --help");
    }
}

/// MNIST's validation split: supports from training images before 50000, queries from the
/// rest of the training split; 8 known digits and 2 unknown ones per trial.
#[test]
fn mnist_validation_split() {
    let v = ok_json(&[
        "openset",
        "--split",
        "validation",
        "--trials",
        "2",
        "--queries",
        "30",
        "--scores",
        "best,relative",
        "--json",
    ]);
    assert_eq!(v["split"], "validation");
    assert_eq!(v["validation"]["support_rows"], serde_json::json!([0, 50000]));
    assert_eq!(v["validation"]["query_rows"], serde_json::json!([50000, 60000]));
    assert_eq!(
        (v["known"].as_u64(), v["unknown"].as_u64(), v["shots"].as_u64()),
        (Some(8), Some(2), Some(5))
    );
    let r = &v["results"][0];
    assert_eq!(
        (r["method"].as_str(), r["settings"].as_str()),
        (Some("device"), Some("closed-id-shift2"))
    );
    for t in r["trials"].as_array().unwrap() {
        assert_eq!((t["known_queries"].as_u64(), t["unknown_queries"].as_u64()), (Some(240), Some(60)));
    }
    // Better than chance at telling new digits apart, and a fair closed-set accuracy.
    assert!(r["accuracy"]["mean"].as_f64().unwrap() > 0.6, "{r}");
    assert!(r["scores"][1]["auroc"]["mean"].as_f64().unwrap() > 0.55, "{r}");
    // --validation says the same; with --split test it contradicts.
    fails_with(&["openset", "--validation", "--split", "test"], &["contradict"]);
}
