//! Linear Distillation Learning (LDL), once, for the host and the microcontroller.
//!
//! A random linear *target* maps an input to `k` outputs; each class has a linear
//! *predictor* trained only on that class to reproduce the target; a sample belongs to the
//! class whose predictor agrees best with the target. `no_std`, no allocation on the device
//! path: every buffer is sized by the caller or by const generics.
//!
//! # Map: the paper's objects and where they live
//!
//! | object | type | where |
//! |---|---|---|
//! | target `Q` (random linear map, or identity) | [`Target`], [`Linear`], [`Init`] | root |
//! | predictor `P_c` of a class | [`Predictor`]: dense [`Linear`], closed-form [`subspace::Subspace`], 8-bit [`compact::Compact`] | root, [`subspace`], [`compact`] |
//! | training by gradient (O2MD, BD, naive) | [`methods::GradientTrainer`], [`train::Optimizer`], [`train::fit_epoch`] | [`methods`] (host), [`train`] |
//! | closed-form fit (the device and mcu modes) | [`fit::fit`], [`subspace::FitOptions`] | [`fit`], [`eigen`], [`augment`] (shifts) |
//! | classification `argmin_c` distance, "unknown" by the model's novelty rule (score + threshold) | [`classify()`], [`classify::Classification`], [`classify::Classes`], [`novelty::Rule`] | [`classify`](mod@classify), [`novelty`] |
//! | the model file (versioned, CRC-checked, read in place) | [`format::ModelView`], [`format::Header`], [`format::encode`] | [`format`](mod@format) (`FORMAT.md`) |
//! | a model on the host (owned weights), its labels and preprocessing | [`Model`], [`Label`], [`Method`], [`Preprocess`] | root |
//! | enrollment of a new class | [`Model::enroll`] (host), [`store::Store::enroll`] (device: fit straight to flash) | root, [`store`], [`fit`] |
//! | enrolled classes kept across power cuts | [`store::Store`] (A/B slots) | [`store`] |
//! | host <-> device frames | [`protocol::Request`], [`protocol::Response`], [`protocol::ErrorCode`] | [`protocol`] (`PROTOCOL.md`) |
//! | a board's memory, known before flashing | [`budget::Sizes`] | [`budget`] |
//! | many samples at once on the host | [`batch::distances`] | [`batch`] |
//!
//! Each item has one path: the value types every part uses ([`Error`], [`Rng`], the target,
//! predictor and model types) at the root, the rest in the module that owns it. `linalg`,
//! `eigen`, `columns` and `augment` are the shared numerical building blocks (the trainer's
//! baselines and the tests call them too); the unsafe kernels behind them are private.
//!
//! # From samples to a decision
//!
//! Fit two classes on the host, write the model file, read it back in place as a device
//! does, classify, and enroll a third class:
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use ldl_core::methods::{fit_closed_form, ClosedFormConfig};
//! use ldl_core::format::{self, ModelView};
//! use ldl_core::classify;
//!
//! // Three samples of 4 values per class, row-major.
//! let a = [1.0, 0.0, 0.0, 0.0, 0.9, 0.1, 0.0, 0.0, 1.1, 0.0, 0.1, 0.0];
//! let b = [0.0, 0.0, 1.0, 0.0, 0.0, 0.1, 0.9, 0.0, 0.0, 0.0, 1.1, 0.1];
//! let cfg = ClosedFormConfig { k: 0, ..Default::default() }; // identity target
//! let mut model = fit_closed_form(&[&a, &b], 4, &["a", "b"], &cfg, 7)?;
//!
//! // The file a device flashes, parsed where it lies (4-byte aligned), nothing copied.
//! let file = format::Aligned::new(&format::encode(&model)?);
//! let view = ModelView::parse(&file)?;
//! let mut scratch = vec![0.0; ldl_core::classify::scratch_len(&view)?];
//! let mut distances = [0.0; 2];
//! let c = classify(&view, &[0.0, 0.0, 1.0, 0.05], ldl_core::novelty::Rule::default(), &mut scratch, &mut distances)?;
//! assert_eq!(c.class, Some(1));
//! assert!(distances[1] < distances[0]);
//!
//! // Enrollment: a third class from two samples, the others untouched.
//! model.capacity = 3;
//! model.enroll("c", &[0.0, 1.0, 0.0, 0.0, 0.1, 1.0, 0.0, 0.0], 2)?;
//! assert_eq!(model.class_index("c"), Some(2));
//! # }
//! # Ok::<(), ldl_core::Error>(())
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_code)]
// The device must not panic or overflow on any input: every module denies unwrap, expect,
// panics, indexing and integer overflow; the few that opt out say why at their top.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod augment;
#[cfg(feature = "alloc")]
pub mod batch;
pub mod budget;
pub mod classify;
#[cfg(feature = "alloc")]
pub mod columns;
pub mod compact;
pub mod eigen;
mod error;
pub mod fit;
pub mod format;
mod kernels;
pub mod linalg;
mod linear;
#[cfg(feature = "alloc")]
pub mod methods;
mod model;
pub mod novelty;
mod parallel;
mod predictor;
pub mod protocol;
mod rng;
pub mod store;
pub mod subspace;
#[cfg(feature = "testing")]
pub mod testing;
pub mod train;

// The value types every part uses live at the root (their modules are private); the
// modules named above own the rest, so each item has one path. `classify()` is also at the
// root: it is the entry point.
pub use classify::classify;
pub use error::{Error, Result};
pub use linear::{init_weights, Init, Linear, Target};
pub use model::{label, ImageSpec, Label, Method, Preprocess};
#[cfg(feature = "alloc")]
pub use model::{Member, Model};
pub use predictor::Predictor;
pub use rng::Rng;

/// Longest class label, in bytes.
pub const LABEL_LEN: usize = 16;
