//! Labelled samples from CSV: one row per sample, `label, features...`.
//!
//! This covers sensor data exported from anywhere (the class label first, then numbers),
//! including the UEA time-series archive's flattened layout used by
//! `data/sensors/BasicMotions/{train,test}.csv`:
//!
//! ```text
//! label, channels, length, channels*length values (channel by channel)
//! Standing,6,100,0.079106,0.079106,...
//! ```
//!
//! The two meta columns (`channels`, `length`) are not features. They are dropped either
//! because [`CsvOptions::skip_columns`] says so, or by auto-detection (the default): if, on
//! the first data row, columns 2 and 3 are positive integers whose product is exactly the
//! number of remaining columns, the row is taken to be UEA layout and every row must then
//! satisfy the same rule.
//!
//! Class names are the sorted unique labels (numerically if every label is an integer, else
//! by string), so the class indices do not depend on row order. A test split must use the
//! training split's indices: load it with [`load_csv_with_classes`] (or both at once with
//! [`load_csv_split`]).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::{DataError, Dataset};

/// How to read a labelled CSV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// `Some(true)`/`Some(false)`: the first row is/is not a header. `None` (default):
    /// it is a header iff one of its fields after the label is not a number. (A header whose
    /// column names are all numbers cannot be detected; say `Some(true)` then.)
    pub has_header: Option<bool>,
    /// Number of columns right after the label that are not features. `None` (default):
    /// 2 if the file is in UEA layout (see the module docs), else 0.
    pub skip_columns: Option<usize>,
    /// Field delimiter (default `b','`).
    pub delimiter: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            has_header: None,
            skip_columns: None,
            delimiter: b',',
        }
    }
}

/// Loads a labelled CSV; classes are the sorted unique labels found in the file.
pub fn load_csv(path: &Path, opts: &CsvOptions) -> Result<Dataset, DataError> {
    let rows = parse(path, opts)?;
    let class_names = sorted_classes(rows.iter().map(|r| r.label.as_str()));
    build(path, rows, class_names)
}

/// Loads a labelled CSV using a given class list (typically the training split's
/// `class_names`), so the same label gets the same index in both splits. A label that is not
/// in `class_names` is an error naming its line.
pub fn load_csv_with_classes(path: &Path, opts: &CsvOptions, class_names: &[String]) -> Result<Dataset, DataError> {
    let rows = parse(path, opts)?;
    build(path, rows, class_names.to_vec())
}

/// Loads a train and a test CSV with the training split's class indices for both.
pub fn load_csv_split(train: &Path, test: &Path, opts: &CsvOptions) -> Result<(Dataset, Dataset), DataError> {
    let train_ds = load_csv(train, opts)?;
    let test_ds = load_csv_with_classes(test, opts, &train_ds.class_names)?;
    if test_ds.dim != train_ds.dim {
        return Err(DataError::invalid(
            test,
            format!(
                "{} features per row, but the training file {} has {}",
                test_ds.dim,
                train.display(),
                train_ds.dim
            ),
        ));
    }
    Ok((train_ds, test_ds))
}

/// One parsed data row.
struct Row {
    line: u64,
    label: String,
    features: Vec<f32>,
}

/// Sorted unique labels: numerically when all are integers (so "2" < "10"), else by string.
fn sorted_classes<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let unique: BTreeSet<&str> = labels.collect();
    let mut names: Vec<String> = unique.into_iter().map(str::to_string).collect();
    let numeric: Option<Vec<i64>> = names.iter().map(|n| n.parse().ok()).collect();
    if let Some(keys) = numeric {
        let mut pairs: Vec<(i64, String)> = keys.into_iter().zip(names).collect();
        pairs.sort();
        names = pairs.into_iter().map(|p| p.1).collect();
    }
    names
}

fn build(path: &Path, rows: Vec<Row>, class_names: Vec<String>) -> Result<Dataset, DataError> {
    let index: HashMap<&str, u32> = class_names.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
    let dim = rows[0].features.len();
    let mut features = Vec::with_capacity(rows.len() * dim);
    let mut labels = Vec::with_capacity(rows.len());
    for r in &rows {
        let Some(&c) = index.get(r.label.as_str()) else {
            return Err(DataError::BadRow {
                path: path.into(),
                line: r.line,
                problem: format!("label {:?} is not one of the {} known classes", r.label, class_names.len()),
            });
        };
        labels.push(c);
        features.extend_from_slice(&r.features);
    }
    Ok(Dataset::new(features, labels, class_names, dim, None))
}

/// Reads and validates every data row (header and meta columns removed).
fn parse(path: &Path, opts: &CsvOptions) -> Result<Vec<Row>, DataError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true) // ragged rows are reported by us, with the expected field count
        .trim(::csv::Trim::All)
        .delimiter(opts.delimiter)
        .from_path(path)
        .map_err(|source| DataError::Csv { path: path.into(), source })?;

    let bad = |line: u64, problem: String| DataError::BadRow {
        path: path.into(),
        line,
        problem,
    };
    let mut rows = Vec::new();
    // Fixed by the first data row: (field count, skip, whether that came from UEA detection).
    let mut shape: Option<(usize, usize, bool)> = None;
    let mut first = true;
    for record in reader.records() {
        let record = record.map_err(|source| DataError::Csv { path: path.into(), source })?;
        let line = record.position().map_or(0, |p| p.line());
        let fields: Vec<&str> = record.iter().collect();
        if std::mem::take(&mut first) {
            let is_header = opts
                .has_header
                .unwrap_or_else(|| fields.iter().skip(1).any(|f| f.parse::<f64>().is_err()));
            if is_header {
                continue;
            }
        }
        let (n_fields, skip, uea) = *shape.get_or_insert_with(|| match opts.skip_columns {
            Some(k) => (fields.len(), k, false),
            None => match uea_meta(&fields) {
                Some(_) => (fields.len(), 2, true),
                None => (fields.len(), 0, false),
            },
        });
        if fields.len() != n_fields {
            return Err(bad(
                line,
                format!(
                    "ragged row: expected {n_fields} fields like the first data row, found {}",
                    fields.len()
                ),
            ));
        }
        if n_fields < 2 + skip {
            return Err(bad(
                line,
                format!("no feature columns: {n_fields} fields, but 1 label and {skip} skipped column(s)"),
            ));
        }
        if uea && uea_meta(&fields).is_none() {
            return Err(bad(
                line,
                format!(
                    "UEA meta columns {:?} x {:?} do not multiply to the {} values on the row",
                    fields[1],
                    fields[2],
                    n_fields - 3
                ),
            ));
        }
        let label = fields[0];
        if label.is_empty() {
            return Err(bad(line, "empty label in column 1".into()));
        }
        let mut features = Vec::with_capacity(n_fields - 1 - skip);
        for (col, text) in fields.iter().enumerate().skip(1 + skip) {
            let v: f32 = text
                .parse()
                .map_err(|_| bad(line, format!("column {}: {text:?} is not a number", col + 1)))?;
            if !v.is_finite() {
                return Err(bad(line, format!("column {}: non-finite value {text:?}", col + 1)));
            }
            features.push(v);
        }
        rows.push(Row {
            line,
            label: label.to_string(),
            features,
        });
    }
    if rows.is_empty() {
        return Err(DataError::invalid(path, "no data rows"));
    }
    Ok(rows)
}

/// `Some((channels, length))` if `fields` is `label, channels, length, channels*length values`.
fn uea_meta(fields: &[&str]) -> Option<(usize, usize)> {
    if fields.len() < 4 {
        return None;
    }
    let channels: usize = fields[1].parse().ok()?;
    let length: usize = fields[2].parse().ok()?;
    (channels >= 1 && length >= 1 && channels.checked_mul(length)? == fields.len() - 3).then_some((channels, length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn motions(split: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../data/sensors/BasicMotions/{split}.csv"))
    }

    fn temp_csv(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn row_error(text: &str, opts: &CsvOptions) -> (u64, String) {
        let f = temp_csv(text);
        match load_csv(f.path(), opts).unwrap_err() {
            DataError::BadRow { line, problem, path } => {
                assert_eq!(path, f.path());
                (line, problem)
            }
            e => panic!("expected BadRow, got {e}"),
        }
    }

    #[test]
    fn basic_motions_train_and_test() {
        let (train, test) = load_csv_split(&motions("train"), &motions("test"), &CsvOptions::default()).unwrap();
        for ds in [&train, &test] {
            assert_eq!(ds.len(), 40);
            assert_eq!(ds.dim, 600, "meta columns auto-detected and skipped");
            assert_eq!(ds.class_names, ["Badminton", "Running", "Standing", "Walking"]);
            assert_eq!(ds.class_counts(), [10, 10, 10, 10]);
            assert!(ds.features.iter().all(|v| v.is_finite()));
            assert_eq!(ds.image, None);
        }
        // First train row: "Standing,6,100,0.079106,0.079106,-0.903497,..."
        assert_eq!(train.labels[0], 2);
        assert_eq!(&train.row(0)[..3], &[0.079106, 0.079106, -0.903497]);
        // Explicit skip gives the same; no skip keeps the meta columns as features.
        let explicit = CsvOptions {
            skip_columns: Some(2),
            ..Default::default()
        };
        assert_eq!(load_csv(&motions("train"), &explicit).unwrap(), train);
        let raw = load_csv(
            &motions("train"),
            &CsvOptions {
                skip_columns: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(raw.dim, 602);
        assert_eq!(&raw.row(0)[..3], &[6.0, 100.0, 0.079106]);
    }

    #[test]
    fn header_detection_and_label_order() {
        let f = temp_csv("class,x,y\nb,1,2\n10,3,4\nb,5,6e-1\na,7,8\n");
        let ds = load_csv(f.path(), &CsvOptions::default()).unwrap();
        assert_eq!(ds.class_names, ["10", "a", "b"]);
        assert_eq!(ds.labels, [2, 0, 2, 1]);
        assert_eq!(ds.features, [1.0, 2.0, 3.0, 4.0, 5.0, 0.6, 7.0, 8.0]);

        // Headerless, integer labels sort numerically; spaces around fields are fine.
        let f = temp_csv("10, 1.5\n2, -1\n 2 ,0\n");
        let ds = load_csv(f.path(), &CsvOptions::default()).unwrap();
        assert_eq!(ds.class_names, ["2", "10"]);
        assert_eq!(ds.labels, [1, 0, 0]);
        assert_eq!(ds.dim, 1);

        // Forcing a header drops a numeric first row.
        let ds = load_csv(
            f.path(),
            &CsvOptions {
                has_header: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ds.len(), 2);

        // Semicolons.
        let f = temp_csv("a;1;2\nb;3;4\n");
        let ds = load_csv(
            f.path(),
            &CsvOptions {
                delimiter: b';',
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ds.features, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn test_split_uses_training_indices() {
        let classes: Vec<String> = ["x", "y", "z"].map(String::from).to_vec();
        let f = temp_csv("z,1\nx,2\n");
        let ds = load_csv_with_classes(f.path(), &CsvOptions::default(), &classes).unwrap();
        assert_eq!(ds.labels, [2, 0]);
        assert_eq!(ds.class_names, classes);
        assert_eq!(ds.class_counts(), [1, 0, 1]);

        let f = temp_csv("z,1\nw,2\n");
        let e = load_csv_with_classes(f.path(), &CsvOptions::default(), &classes).unwrap_err();
        assert!(matches!(e, DataError::BadRow { line: 2, .. }), "{e}");
        assert!(e.to_string().contains("\"w\" is not one of the 3 known classes"), "{e}");
    }

    #[test]
    fn bad_rows_name_line_and_problem() {
        let d = CsvOptions::default();
        let (line, p) = row_error("a,1,2\nb,3\n", &d);
        assert_eq!(line, 2);
        assert!(p.contains("ragged row: expected 3 fields") && p.contains("found 2"), "{p}");

        let (line, p) = row_error("label,f1,f2\na,1,2\nb,3,4\nc,5,oops\n", &d);
        assert_eq!(line, 4);
        assert_eq!(p, "column 3: \"oops\" is not a number");

        let (line, p) = row_error("a,1,2\nb,NaN,2\n", &d);
        assert_eq!(line, 2);
        assert!(p.contains("non-finite value \"NaN\""), "{p}");
        let (_, p) = row_error("a,1,2\nb,1,inf\n", &d);
        assert!(p.contains("non-finite"), "{p}");

        let (line, p) = row_error("a,1,2\nb,1,\n", &d);
        assert_eq!(line, 2);
        assert!(p.contains("column 3: \"\" is not a number"), "{p}");

        let (line, p) = row_error("a,1\n,2\n", &d);
        assert_eq!(line, 2);
        assert!(p.contains("empty label"), "{p}");

        // UEA layout whose meta columns stop adding up.
        let (line, p) = row_error("a,2,2,1,2,3,4\nb,2,2,1,2,3,4\nc,1,2,1,2,3,4\n", &d);
        assert_eq!(line, 3);
        assert!(p.contains("UEA meta columns"), "{p}");

        let (_, p) = row_error(
            "a,1\n",
            &CsvOptions {
                skip_columns: Some(1),
                ..Default::default()
            },
        );
        assert!(p.contains("no feature columns"), "{p}");

        let f = temp_csv("label,x\n");
        let e = load_csv(f.path(), &d).unwrap_err();
        assert!(e.to_string().ends_with("no data rows"), "{e}");

        let e = load_csv(Path::new("/nonexistent/data.csv"), &d).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/data.csv"), "{e}");
    }
}
