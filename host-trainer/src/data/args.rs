//! Where a command's data comes from (`--dataset`, `--data`, `--test`...) and loading it.

use super::Dataset;
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// First MNIST training image used as a validation query; supports come from the ones
/// before (`--validation`, `ldl tune`).
pub const VALIDATION_START: usize = 50_000;

/// Which data set.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DatasetKind {
    /// MNIST from IDX files (train / t10k).
    Mnist,
    /// Omniglot from a zip or folder of alphabet/character/*.png (one set: support and
    /// queries are disjoint drawings of the same characters).
    Omniglot,
    /// A CSV of `label,features...` (give --train and --test).
    Csv,
}

impl DatasetKind {
    /// Its name on the command line (`mnist`, `omniglot`, `csv`).
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::Omniglot => "omniglot",
            DatasetKind::Csv => "csv",
        }
    }
}

/// Where the data comes from.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// Data set kind.
    #[arg(long, value_enum, default_value = "mnist")]
    pub dataset: DatasetKind,
    /// MNIST folder, Omniglot zip/folder, or the training CSV.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Test CSV (for --dataset csv).
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Omniglot: add rotations by 90, 180, 270 degrees as new classes.
    #[arg(long)]
    pub rotations: bool,
    /// MNIST: choose hyper-parameters without the test split: supports from training
    /// images 0..50000, queries from 50000..60000 (the split `ldl tune` uses).
    #[arg(long)]
    pub validation: bool,
    /// MNIST: the most bytes an IDX file may hold after decompression (e.g. 4G); a file
    /// whose header declares more is refused before it is read or inflated.
    #[arg(long, value_name = "SIZE", value_parser = crate::units::parse_size, default_value = "1G")]
    pub max_input_bytes: u64,
    /// CSV: every row is a time series of CHANNELS equal-length channels, one after another
    /// (the UEA layout): the device and mcu modes' shifts then move a series in time (a row
    /// is fitted as a one-pixel-high image, so a shift by `s` also carries the last `s`
    /// values of a channel into the next one), and image augmentations do not apply.
    #[arg(long, value_name = "CHANNELS")]
    pub series: Option<usize>,
}

/// The Omniglot set used without --data.
pub fn default_omniglot() -> PathBuf {
    crate::repo_root().join("data/omniglot/images_background_small1.zip")
}

/// Loaded data: training split, optional test split.
pub struct Loaded {
    /// Support pool.
    pub train: Dataset,
    /// Query pool (`None`: queries come from `train`).
    pub test: Option<Dataset>,
}

impl DataArgs {
    /// Loads the data set.
    pub fn load(&self) -> Result<Loaded> {
        let root = crate::repo_root();
        let limits = super::Limits {
            input_bytes: self.max_input_bytes,
        };
        if self.series.is_some() && self.dataset != DatasetKind::Csv {
            bail!("--series describes the rows of a CSV (--dataset csv), not {}", self.dataset.name());
        }
        Ok(match self.dataset {
            DatasetKind::Mnist if self.validation => {
                let dir = self.data.clone().unwrap_or_else(|| root.join("data/mnist"));
                let all = super::load_mnist_with(&dir, super::Split::Train, &limits)?;
                let split = VALIDATION_START;
                Loaded {
                    train: all.subset(&(0..split).collect::<Vec<_>>()),
                    test: Some(all.subset(&(split..all.len()).collect::<Vec<_>>())),
                }
            }
            DatasetKind::Mnist => {
                let dir = self.data.clone().unwrap_or_else(|| root.join("data/mnist"));
                Loaded {
                    train: super::load_mnist_with(&dir, super::Split::Train, &limits)?,
                    test: Some(super::load_mnist_with(&dir, super::Split::Test, &limits)?),
                }
            }
            DatasetKind::Omniglot => {
                let path = self.data.clone().unwrap_or_else(default_omniglot);
                let opts = super::OmniglotOptions {
                    rotations: self.rotations,
                    ..Default::default()
                };
                Loaded {
                    train: super::load_omniglot(&path, &opts)?,
                    test: None,
                }
            }
            DatasetKind::Csv => {
                let (Some(train), Some(test)) = (&self.data, &self.test) else {
                    bail!("--dataset csv needs --data TRAIN.csv and --test TEST.csv")
                };
                let (mut a, mut b) = super::load_csv_split(train, test, &Default::default())?;
                if let Some(channels) = self.series {
                    if channels == 0 || !a.dim.is_multiple_of(channels) {
                        bail!(
                            "--series {channels}: the rows have {} values, not a whole number per channel",
                            a.dim
                        );
                    }
                    // One row of pixels: shifts along it are shifts in time.
                    a.image = Some((a.dim, 1));
                    b.image = Some((b.dim, 1));
                }
                Loaded { train: a, test: Some(b) }
            }
        })
    }
}
