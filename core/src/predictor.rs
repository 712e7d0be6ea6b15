//! A class's predictor `P_c`: dense (trained by gradient descent) or compact closed form.
use crate::compact::Compact;
use crate::error::{check_len, Error, Result};
use crate::linalg::dot;
use crate::linear::{rows, Linear};
use crate::subspace::{distance_scratch_len, Subspace};

/// The predictor of one class.
#[derive(Debug, Clone)]
pub enum Predictor<S> {
    /// A full linear map `R^d -> R^k` (O2MD, BD, naive).
    Dense(Linear<S>),
    /// The closed-form fit: its directions in `f32`.
    Subspace(Subspace<S>),
    /// The closed-form fit as a microcontroller keeps it: 8-bit directions over the live
    /// inputs ([`crate::compact`]).
    Compact(Compact<S>),
}

impl<S: AsRef<[f32]> + PartialEq> PartialEq for Predictor<S> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Predictor::Dense(a), Predictor::Dense(b)) => a == b,
            (Predictor::Subspace(a), Predictor::Subspace(b)) => a == b,
            (Predictor::Compact(a), Predictor::Compact(b)) => a == b,
            _ => false,
        }
    }
}

impl<S: AsRef<[f32]>> Predictor<S> {
    /// Input dimension.
    pub fn inputs(&self) -> usize {
        match self {
            Predictor::Dense(l) => l.inputs(),
            Predictor::Subspace(s) => s.inputs(),
            Predictor::Compact(c) => c.shape().inputs,
        }
    }
    /// Output dimension `k`.
    pub fn outputs(&self) -> usize {
        match self {
            Predictor::Dense(l) => l.outputs(),
            Predictor::Subspace(s) => s.outputs(),
            Predictor::Compact(c) => c.shape().outputs,
        }
    }
    /// Scratch (f32s) that [`Predictor::distance`] needs.
    #[inline]
    pub fn scratch_len(&self) -> usize {
        match self {
            Predictor::Dense(_) => 0,
            Predictor::Subspace(s) => distance_scratch_len(s.inputs(), s.rank()),
            Predictor::Compact(c) => crate::compact::distance_scratch_len(c.shape()),
        }
    }
    /// The class's novelty score for `x`: `||P(x) - Q(x)||^2 / k`, given `qx = Q(x)`.
    pub fn distance(&self, x: &[f32], qx: &[f32], scratch: &mut [f32]) -> Result<f32> {
        match self {
            Predictor::Dense(l) => {
                let (d, k) = (l.inputs(), l.outputs());
                check_len(d, x.len())?;
                check_len(k, qx.len())?;
                let bias = l.bias();
                let mut s = 0.0f32;
                for (j, (w, q)) in rows(l.weight(), k, d).zip(qx).enumerate() {
                    // The bias has k entries when there is one.
                    let b = bias.and_then(|b| b.get(j)).map_or(0.0, |b| *b);
                    let e = dot(w, x) + b - q;
                    s += e * e;
                }
                Ok(s / k as f32)
            }
            Predictor::Subspace(s) => {
                if scratch.len() < self.scratch_len() {
                    return Err(Error::BufferTooSmall);
                }
                s.distance(x, qx, scratch)
            }
            Predictor::Compact(c) => c.distance(x, qx, scratch),
        }
    }
    /// A borrowed view.
    pub fn view(&self) -> Predictor<&[f32]> {
        match self {
            Predictor::Dense(l) => Predictor::Dense(l.view()),
            Predictor::Subspace(s) => Predictor::Subspace(s.view()),
            Predictor::Compact(c) => Predictor::Compact(c.view()),
        }
    }
}
