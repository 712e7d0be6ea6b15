//! Linear Distillation Learning (LDL), once, for the host and the microcontroller.
//!
//! A random linear *target* maps an input to `k` outputs; each class has a linear
//! *predictor* trained only on that class to reproduce the target; a sample belongs to the
//! class whose predictor agrees best with the target. `no_std`, no allocation on the device
//! path: every buffer is sized by the caller or by const generics.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_code)]

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
pub mod error;
pub mod fit;
pub mod format;
pub mod linalg;
pub mod linear;
#[cfg(feature = "alloc")]
pub mod methods;
pub mod model;
pub mod novelty;
#[cfg(feature = "alloc")]
mod parallel;
pub mod predictor;
pub mod protocol;
pub mod rng;
pub mod store;
pub mod subspace;
#[cfg(feature = "testing")]
pub mod testing;
pub mod train;

pub use classify::{classify, Classes, Classification};
pub use error::{Error, Result};
pub use format::{Header, ModelView};
pub use linear::{Init, Linear, Target};
pub use model::{label, ImageSpec, Label, Method, Preprocess};
#[cfg(feature = "alloc")]
pub use model::{Member, Model};
pub use predictor::Predictor;
pub use rng::Rng;
pub use subspace::{FitOptions, Subspace};
pub use train::{OptState, Optimizer, StepOptions};

/// Longest class label, in bytes.
pub const LABEL_LEN: usize = 16;
