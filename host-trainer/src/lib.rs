//! The LDL host trainer as a library: data sets, experiments and model export, so the
//! `ldl` binary and the cross-crate tests share one implementation.
pub mod baselines;
pub mod cli;
pub mod data;
pub mod demo;
pub mod device;
pub mod errors;
pub mod experiment;
pub mod fewshot;
pub mod flash;
pub mod methods;
pub mod models;
pub mod openset;
pub mod paper;
pub mod plot;
pub mod progress;
pub mod reproduce;
pub mod trials;
pub mod tune;
pub mod units;
pub mod warps;

/// The repository root (where `data/` lives), found from the crate's location at build time
/// or the current directory.
pub fn repo_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if here.join("data").is_dir() {
        here
    } else {
        std::path::PathBuf::from(".")
    }
}
