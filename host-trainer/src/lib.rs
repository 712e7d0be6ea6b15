//! The LDL host trainer as a library: data sets, experiments and model export, so the
//! `ldl` binary and the cross-crate tests share one implementation.
pub mod data;
pub mod baselines;
pub mod experiment;
