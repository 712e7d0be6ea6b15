//! Linear maps: the target `Q` and the dense predictors `P_c`, with their initialisations.
use crate::error::{check_len, Error, Result};
use crate::linalg;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// How a weight matrix starts (the paper's choices, as in PyTorch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Init {
    /// Xavier (Glorot) normal: std = sqrt(2 / (inputs + outputs)). The O2MD target.
    XavierNormal,
    /// A random (semi-)orthogonal matrix: orthonormal rows if outputs <= inputs, orthonormal
    /// columns otherwise. The BD target.
    Orthogonal,
    /// PyTorch's `nn.Linear` default: uniform in +-1/sqrt(inputs). The O2MD predictors.
    Uniform,
    /// All zeros: gradient descent from here converges to the minimum-norm solution.
    Zeros,
}

/// A linear map R^inputs -> R^outputs: `y = W x (+ b)`, `W` row-major `outputs x inputs`.
///
/// Generic over its storage: `Vec<f32>` on the host, `&[f32]` for weights read in place from
/// flash, fixed arrays on a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear<S> {
    inputs: usize,
    outputs: usize,
    weight: S,
    bias: Option<S>,
}

impl<S: AsRef<[f32]>> Linear<S> {
    /// Builds a map from its parts, checking the sizes.
    pub fn from_parts(inputs: usize, outputs: usize, weight: S, bias: Option<S>) -> Result<Self> {
        if inputs == 0 || outputs == 0 {
            return Err(Error::InvalidParameter);
        }
        // An absurd size saturates, and no weight slice is that long.
        check_len(inputs.saturating_mul(outputs), weight.as_ref().len())?;
        if let Some(b) = &bias {
            check_len(outputs, b.as_ref().len())?;
        }
        Ok(Linear {
            inputs,
            outputs,
            weight,
            bias,
        })
    }
    /// Input dimension `d`.
    pub fn inputs(&self) -> usize {
        self.inputs
    }
    /// Output dimension `k`.
    pub fn outputs(&self) -> usize {
        self.outputs
    }
    /// The weights, row-major `outputs x inputs`.
    pub fn weight(&self) -> &[f32] {
        self.weight.as_ref()
    }
    /// The bias, if the map has one.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_ref().map(|b| b.as_ref())
    }
    /// A borrowed view of the same map.
    pub fn view(&self) -> Linear<&[f32]> {
        Linear {
            inputs: self.inputs,
            outputs: self.outputs,
            weight: self.weight.as_ref(),
            bias: self.bias.as_ref().map(|b| b.as_ref()),
        }
    }
    /// `out = W x (+ b)`.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) -> Result<()> {
        check_len(self.inputs, x.len())?;
        check_len(self.outputs, out.len())?;
        linalg::gemv(self.weight(), self.outputs, self.inputs, x, self.bias(), out)
    }
    /// Applies the map to `n` inputs at once (`xs` row-major `n x inputs`, `out` `n x outputs`)
    /// through the fast matrix-product kernel.
    pub fn forward_batch(&self, xs: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
        check_len(n.saturating_mul(self.inputs), xs.len())?;
        check_len(n.saturating_mul(self.outputs), out.len())?;
        linalg::matmul_nt(xs, n, self.inputs, self.weight(), self.outputs, out)?;
        if let Some(b) = self.bias() {
            for row in out.chunks_exact_mut(self.outputs) {
                for (o, bi) in row.iter_mut().zip(b) {
                    *o += bi;
                }
            }
        }
        Ok(())
    }
}

impl<S: AsRef<[f32]> + AsMut<[f32]>> Linear<S> {
    /// Mutable weights.
    pub fn weight_mut(&mut self) -> &mut [f32] {
        self.weight.as_mut()
    }
    /// Mutable bias.
    pub fn bias_mut(&mut self) -> Option<&mut [f32]> {
        self.bias.as_mut().map(|b| b.as_mut())
    }
    /// Weights and bias, both mutable.
    pub fn parts_mut(&mut self) -> (&mut [f32], Option<&mut [f32]>) {
        (self.weight.as_mut(), self.bias.as_mut().map(|b| b.as_mut()))
    }
    /// Re-initialises the weights (and the bias, PyTorch-style uniform +-1/sqrt(inputs), or
    /// zero with [`Init::Zeros`]) from `rng`.
    pub fn init(&mut self, init: Init, rng: &mut Rng) {
        let (d, k) = (self.inputs, self.outputs);
        init_weights(self.weight.as_mut(), k, d, init, rng);
        let bound = 1.0 / libm::sqrtf(d as f32);
        if let Some(b) = self.bias.as_mut() {
            for v in b.as_mut() {
                *v = if init == Init::Zeros { 0.0 } else { rng.uniform(-bound, bound) };
            }
        }
    }
}

#[cfg(feature = "alloc")]
impl Linear<alloc::vec::Vec<f32>> {
    /// A new map on the heap, initialised from `rng`.
    pub fn new(inputs: usize, outputs: usize, bias: bool, init: Init, rng: &mut Rng) -> Result<Self> {
        use alloc::vec;
        let len = inputs.checked_mul(outputs).ok_or(Error::InvalidParameter)?;
        let mut l = Linear::from_parts(inputs, outputs, vec![0.0; len], bias.then(|| vec![0.0; outputs]))?;
        l.init(init, rng);
        Ok(l)
    }
}

/// Fills a row-major `k x d` matrix.
pub fn init_weights(w: &mut [f32], k: usize, d: usize, init: Init, rng: &mut Rng) {
    match init {
        Init::Zeros => w.iter_mut().for_each(|v| *v = 0.0),
        Init::Uniform => {
            let bound = 1.0 / libm::sqrtf(d as f32);
            w.iter_mut().for_each(|v| *v = rng.uniform(-bound, bound));
        }
        Init::XavierNormal => {
            let std = libm::sqrtf(2.0 / d.saturating_add(k) as f32);
            w.iter_mut().for_each(|v| *v = std * rng.normal());
        }
        Init::Orthogonal => {
            w.iter_mut().for_each(|v| *v = rng.normal());
            if k <= d {
                // Orthonormal rows. Gaussian rows are independent with probability 1.
                let _ = linalg::orthonormalize_rows(w, k, d, 0.0);
            } else {
                orthonormalize_cols(w, k, d);
            }
            // (With k > d the columns are made orthonormal; see orthonormalize_cols.)
        }
    }
}

/// Orthonormal columns of a row-major `k x d` Gaussian matrix. With `alloc`, the rows of its
/// `d x k` transpose are orthonormalised (contiguous, vectorised) and transposed back;
/// without, a strided modified Gram-Schmidt runs in place (slow for big matrices, but a
/// device never draws a large orthogonal target).
/// A `w` shorter than `k x d` is left as it is.
#[cfg(feature = "alloc")]
fn orthonormalize_cols(w: &mut [f32], k: usize, d: usize) {
    let Some(w) = k.checked_mul(d).and_then(|n| w.get_mut(..n)) else {
        return;
    };
    let mut t = alloc::vec![0.0f32; w.len()];
    // t = w^T (d x k): row j of t is column j of w. (`step_by` is only reached with
    // j < d and i < k, so its step is never 0.)
    for (j, trow) in rows_mut(&mut t, d, k).enumerate() {
        trow.iter_mut().zip(w.iter().skip(j).step_by(d)).for_each(|(x, v)| *x = *v);
    }
    let _ = linalg::orthonormalize_rows(&mut t, d, k, 0.0);
    for (i, wrow) in rows_mut(w, k, d).enumerate() {
        wrow.iter_mut().zip(t.iter().skip(i).step_by(k)).for_each(|(x, v)| *x = *v);
    }
}

/// Modified Gram-Schmidt (two passes) on the columns of a row-major `k x d` matrix.
/// With a `w` shorter than `k x d`, only its full rows take part.
#[cfg(not(feature = "alloc"))]
fn orthonormalize_cols(w: &mut [f32], k: usize, d: usize) {
    // Entries p and j of every row (both < d, the row's length: always there).
    let pairs = |w: &[f32], p: usize, j: usize| -> f32 { rows(w, k, d).filter_map(|row| Some(row.get(p)? * row.get(j)?)).sum() };
    for j in 0..d {
        for _pass in 0..2 {
            for p in 0..j {
                let c: f32 = pairs(w, p, j);
                for row in rows_mut(w, k, d) {
                    if let Some(&wp) = row.get(p) {
                        if let Some(wj) = row.get_mut(j) {
                            *wj -= c * wp;
                        }
                    }
                }
            }
        }
        let n = libm::sqrtf(pairs(w, j, j));
        if n > 0.0 {
            rows_mut(w, k, d).filter_map(|row| row.get_mut(j)).for_each(|wj| *wj /= n);
        }
    }
}

/// The first `n` rows of the row-major matrix `a` with `cols` columns (fewer if `a` is
/// shorter): `a.chunks_exact(cols).take(n)`, but `cols == 0` gives `n` empty rows rather than
/// a panic. One length check per row, none per element.
pub(crate) fn rows(a: &[f32], n: usize, cols: usize) -> impl Iterator<Item = &[f32]> {
    let mut rest = a;
    (0..n).map_while(move |_| {
        let (row, tail) = rest.split_at_checked(cols)?;
        rest = tail;
        Some(row)
    })
}

/// [`rows`], mutable.
pub(crate) fn rows_mut(a: &mut [f32], n: usize, cols: usize) -> impl Iterator<Item = &mut [f32]> {
    let mut rest = a;
    (0..n).map_while(move |_| {
        let (row, tail) = core::mem::take(&mut rest).split_at_mut_checked(cols)?;
        rest = tail;
        Some(row)
    })
}

/// The target network `Q`: a linear map, or the identity (the naive autoencoder form).
#[derive(Debug, Clone, PartialEq)]
pub enum Target<S> {
    /// `Q(x) = x`: the naive form, each predictor an autoencoder.
    Identity {
        /// The input (and output) dimension.
        dim: usize,
    },
    /// `Q(x) = A x (+ a)`.
    Linear(Linear<S>),
}

impl<S: AsRef<[f32]>> Target<S> {
    /// Input dimension `d`.
    pub fn inputs(&self) -> usize {
        match self {
            Target::Identity { dim } => *dim,
            Target::Linear(l) => l.inputs(),
        }
    }
    /// Output dimension `k`.
    pub fn outputs(&self) -> usize {
        match self {
            Target::Identity { dim } => *dim,
            Target::Linear(l) => l.outputs(),
        }
    }
    /// `out = Q(x)`.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) -> Result<()> {
        match self {
            Target::Identity { dim } => {
                check_len(*dim, x.len())?;
                check_len(*dim, out.len())?;
                out.copy_from_slice(x);
                Ok(())
            }
            Target::Linear(l) => l.forward(x, out),
        }
    }
    /// `Q` applied to `n` inputs at once (row-major).
    pub fn forward_batch(&self, xs: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
        match self {
            Target::Identity { dim } => {
                check_len(n.saturating_mul(*dim), xs.len())?;
                check_len(n.saturating_mul(*dim), out.len())?;
                out.copy_from_slice(xs);
                Ok(())
            }
            Target::Linear(l) => l.forward_batch(xs, n, out),
        }
    }
    /// A borrowed view.
    pub fn view(&self) -> Target<&[f32]> {
        match self {
            Target::Identity { dim } => Target::Identity { dim: *dim },
            Target::Linear(l) => Target::Linear(l.view()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec;

    #[test]
    fn xavier_has_the_right_spread_and_orthogonal_is_orthonormal() {
        let (k, d) = (64, 128);
        let mut w = vec![0.0; k * d];
        init_weights(&mut w, k, d, Init::XavierNormal, &mut Rng::new(1));
        let var: f32 = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        let want = 2.0 / (k + d) as f32;
        assert!((var / want - 1.0).abs() < 0.05, "{var} vs {want}");

        for (k, d) in [(8, 20), (20, 8)] {
            let mut w = vec![0.0; k * d];
            init_weights(&mut w, k, d, Init::Orthogonal, &mut Rng::new(2));
            // W W^T = I (k <= d) or W^T W = I (k > d).
            let small = k.min(d);
            for a in 0..small {
                for b in 0..small {
                    let v: f32 = if k <= d {
                        (0..d).map(|j| w[a * d + j] * w[b * d + j]).sum()
                    } else {
                        (0..k).map(|i| w[i * d + a] * w[i * d + b]).sum()
                    };
                    assert!((v - if a == b { 1.0 } else { 0.0 }).abs() < 1e-4, "{k}x{d} {a},{b}: {v}");
                }
            }
        }
    }

    #[test]
    fn uniform_stays_in_bounds_and_forward_is_affine() {
        let mut l = Linear::new(16, 4, true, Init::Uniform, &mut Rng::new(3)).unwrap();
        assert!(l.weight().iter().chain(l.bias().unwrap()).all(|v| v.abs() <= 0.25));
        l.weight_mut().iter_mut().for_each(|v| *v = 1.0);
        l.bias_mut().unwrap().copy_from_slice(&[0.0, 1.0, 2.0, 3.0]);
        let mut out = [0.0; 4];
        l.forward(&[0.5; 16], &mut out).unwrap();
        assert_eq!(out, [8.0, 9.0, 10.0, 11.0]);
        let mut batch = [0.0; 8];
        let xs: vec::Vec<f32> = [0.5f32; 16].iter().chain([1.0f32; 16].iter()).copied().collect();
        l.forward_batch(&xs, 2, &mut batch).unwrap();
        assert_eq!(batch, [8.0, 9.0, 10.0, 11.0, 16.0, 17.0, 18.0, 19.0]);
        assert!(matches!(l.forward(&[0.0; 3], &mut out), Err(Error::DimensionMismatch { .. })));
    }
}
