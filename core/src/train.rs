//! Gradient training of linear maps: the step shared by O2MD, BD and the naive form.
//!
//! Every method reduces to the same primitive: make a linear map reproduce given outputs
//! (`layer(x_s) ~ t_s`) under MSE, by SGD or Adam, over one epoch of shuffled mini-batches.
//! O2MD calls it with `t = Q(x)` on one class; BD stage 1 calls it on the *target* with
//! `t = P_y(x)`; the naive form with `t = x`. Classes are independent, so a host may train
//! them one after another or in parallel with identical results.
//!
//! The kernel is fused per output row: residual, gradient, weight decay and the optimiser
//! update touch each weight once, so a row and its optimiser state stay in cache.
// Opts out of the crate's indexing and overflow lints: gradient training runs on the host
// (the firmware never calls it) on sizes the trainer built itself.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::error::{check_len, Error, Result};
use crate::kernels::Avx512;
use crate::linalg::dot;
use crate::linear::Linear;
use serde::{Deserialize, Serialize};

/// Largest mini-batch; residuals of one row for a batch live on the stack.
pub const MAX_BATCH: usize = 256;

/// The optimiser and its hyper-parameters (PyTorch's semantics).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Optimizer {
    /// Stochastic gradient descent, with optional heavy-ball momentum.
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum (0 for plain SGD).
        momentum: f32,
    },
    /// Adam (Kingma & Ba), with bias correction, as `torch.optim.Adam`.
    Adam {
        /// Learning rate.
        lr: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Denominator epsilon.
        eps: f32,
    },
}

impl Optimizer {
    /// Adam with PyTorch's defaults and the given learning rate.
    pub const fn adam(lr: f32) -> Self {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
    /// Plain SGD.
    pub const fn sgd(lr: f32) -> Self {
        Optimizer::Sgd { lr, momentum: 0.0 }
    }
    fn validate(&self) -> Result<()> {
        let ok = match *self {
            Optimizer::Sgd { lr, momentum } => lr > 0.0 && lr.is_finite() && (0.0..1.0).contains(&momentum),
            Optimizer::Adam { lr, beta1, beta2, eps } => {
                lr > 0.0 && lr.is_finite() && (0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidParameter)
        }
    }
}

/// Hyper-parameters of one gradient-trained map.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StepOptions {
    /// The optimiser.
    pub optimizer: Optimizer,
    /// L2 weight decay added to the weights' gradient (`g += wd * w`, as PyTorch's
    /// `weight_decay`); biases are not decayed.
    pub weight_decay: f32,
    /// Mini-batch size, 1..=[`MAX_BATCH`].
    pub batch_size: usize,
}

impl StepOptions {
    fn validate(&self) -> Result<()> {
        self.optimizer.validate()?;
        if self.batch_size == 0
            || self.batch_size > MAX_BATCH
            || self.weight_decay.partial_cmp(&0.0).is_none_or(|o| o.is_lt())
            || !self.weight_decay.is_finite()
        {
            return Err(Error::InvalidParameter);
        }
        Ok(())
    }
}

/// Optimiser state of one linear map: first and second moments for weights and bias, and the
/// step count. Momentum SGD uses only the first moments.
#[derive(Debug, Clone, PartialEq)]
pub struct OptState<S> {
    m_w: S,
    v_w: S,
    m_b: S,
    v_b: S,
    step: u32,
}

impl<S: AsRef<[f32]> + AsMut<[f32]>> OptState<S> {
    /// State from zeroed buffers sized like the map (`weight`, `weight`, `bias`, `bias`; the
    /// bias buffers may be empty for a map without bias).
    pub fn from_parts(mut m_w: S, mut v_w: S, mut m_b: S, mut v_b: S) -> Self {
        for b in [&mut m_w, &mut v_w, &mut m_b, &mut v_b] {
            b.as_mut().iter_mut().for_each(|v| *v = 0.0);
        }
        OptState {
            m_w,
            v_w,
            m_b,
            v_b,
            step: 0,
        }
    }
    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.step
    }
}

#[cfg(feature = "alloc")]
impl OptState<alloc::vec::Vec<f32>> {
    /// Zeroed state on the heap for a map of this shape.
    pub fn for_layer<S: AsRef<[f32]>>(layer: &Linear<S>) -> Self {
        use alloc::vec;
        let w = layer.inputs() * layer.outputs();
        let b = layer.bias().map_or(0, |b| b.len());
        OptState::from_parts(vec![0.0; w], vec![0.0; w], vec![0.0; b], vec![0.0; b])
    }
}

/// Runs one epoch: the samples `order[..]` (indices into `xs`/`ts`), taken in that order in
/// mini-batches, each one optimiser step that moves `layer(x_s)` towards `t_s`.
///
/// `xs` is row-major `n x inputs`, `ts` row-major `n x outputs`. The loss is the MSE, mean
/// over outputs and batch samples, as `nn.MSELoss`. Returns the epoch's mean loss measured
/// before each step (as a training loop prints it). A non-finite loss stops with `NonFinite`.
pub fn fit_epoch<S, T>(
    layer: &mut Linear<S>,
    state: &mut OptState<T>,
    xs: &[f32],
    ts: &[f32],
    order: &[u32],
    opts: &StepOptions,
) -> Result<f32>
where
    S: AsRef<[f32]> + AsMut<[f32]>,
    T: AsRef<[f32]> + AsMut<[f32]>,
{
    opts.validate()?;
    let (d, k) = (layer.inputs(), layer.outputs());
    if !xs.len().is_multiple_of(d) {
        return Err(Error::DimensionMismatch {
            expected: d as u32,
            found: xs.len() as u32,
        });
    }
    let n = xs.len() / d;
    check_len(n * k, ts.len())?;
    check_len(d * k, state.m_w.as_ref().len())?;
    check_len(d * k, state.v_w.as_ref().len())?;
    let nb = layer.bias().map_or(0, |b| b.len());
    check_len(nb, state.m_b.as_ref().len())?;
    check_len(nb, state.v_b.as_ref().len())?;
    if order.iter().any(|&i| i as usize >= n) {
        return Err(Error::InvalidParameter);
    }
    if order.is_empty() {
        return Err(Error::EmptyClass);
    }
    // Rows are independent: row j's residual for a sample depends only on row j's weights
    // and bias. So instead of sweeping all k rows once per step (streaming the whole weight
    // matrix and optimiser state through memory every step), each row runs a chunk of steps
    // while its weights and moments sit in L1. The arithmetic, and so the result, is the same
    // as step-major order, bit for bit.
    const CHUNK: usize = 64;
    /// Rows per block of work.
    const ROWS: usize = 32;
    let bs = opts.batch_size;
    let nsteps = order.len().div_ceil(bs);
    let wd = opts.weight_decay;
    let (w, b) = layer.parts_mut();
    let (m_w, v_w) = (state.m_w.as_mut(), state.v_w.as_mut());
    let (m_b, v_b) = (state.m_b.as_mut(), state.v_b.as_mut());
    let mut total = 0.0f64;
    let mut chunk_start = 0;
    let data = Data {
        xs,
        ts,
        order,
        d,
        k,
        bs,
        wd,
    };
    let mut bias_bufs = b.map(|b| (b, m_b, v_b));
    while chunk_start < nsteps {
        let chunk_len = CHUNK.min(nsteps - chunk_start);
        let ups: [Update; CHUNK] = core::array::from_fn(|i| {
            Update::new(
                &opts.optimizer,
                (state.step as i64 + 1 + (chunk_start + i) as i64).min(i32::MAX as i64) as i32,
            )
        });
        let ups = &ups[..chunk_len];
        // Rows are independent: blocks of rows go to different cores with the `parallel`
        // feature (the block totals are added in order either way).
        let mut bias_blocks = bias_bufs
            .as_mut()
            .map(|(b, mb, vb)| b.chunks_mut(ROWS).zip(mb.chunks_mut(ROWS)).zip(vb.chunks_mut(ROWS)));
        let bias_rows = core::iter::from_fn(|| Some(bias_blocks.as_mut().and_then(|it| it.next()).map(|((b, m), v)| (b, m, v))));
        let blocks = w
            .chunks_mut(ROWS * d)
            .zip(m_w.chunks_mut(ROWS * d))
            .zip(v_w.chunks_mut(ROWS * d))
            .zip(bias_rows)
            .enumerate();
        total += crate::parallel::sum(blocks, |(ci, (((w, mw), vw), bias))| {
            run_rows(&data, ups, chunk_start, ci * ROWS, w, mw, vw, bias)
        });
        chunk_start += chunk_len;
    }
    state.step = state.step.saturating_add(nsteps as u32);
    let loss = (total / (order.len() as f64 * k as f64)) as f32;
    if loss.is_finite() {
        Ok(loss)
    } else {
        Err(Error::NonFinite)
    }
}

/// One block's bias, its first and second moments.
type BiasRows<'a> = Option<(&'a mut [f32], &'a mut [f32], &'a mut [f32])>;

/// The read-only inputs of an epoch.
struct Data<'a> {
    xs: &'a [f32],
    ts: &'a [f32],
    order: &'a [u32],
    d: usize,
    k: usize,
    bs: usize,
    wd: f32,
}

/// Runs steps `chunk_start..chunk_start + ups.len()` on a block of rows starting at `row0`
/// (`w`, `mw`, `vw` hold whole rows; the bias buffers hold the same rows' entries). Returns
/// the block's sum of squared residuals.
#[allow(clippy::too_many_arguments)]
fn run_rows(
    data: &Data<'_>,
    ups: &[Update],
    chunk_start: usize,
    row0: usize,
    w: &mut [f32],
    mw: &mut [f32],
    vw: &mut [f32],
    bias: BiasRows<'_>,
) -> f64 {
    if let Some(avx) = Avx512::detect() {
        return avx.run(|| run_rows_impl(data, ups, chunk_start, row0, w, mw, vw, bias, Some(avx)));
    }
    run_rows_impl(data, ups, chunk_start, row0, w, mw, vw, bias, None)
}

/// Optimiser moments smaller in magnitude than this are set to zero after each update.
///
/// The moments of weights whose gradient is zero most of the time (MNIST's rarely inked
/// pixels) decay geometrically, by `beta1` (0.9) a step for Adam's first moment, towards the
/// subnormal range below 1.2e-38, where operations on them take slow microcode assists on
/// x86. The CPU's flush-to-zero mode avoids that too, but it changes the floating-point
/// environment under Rust code, which Rust treats as undefined behaviour; this floor is
/// ordinary arithmetic, the same in every build. Measured on the 2-core AMD EPYC dev machine
/// (`ldl fewshot --methods bd --shots 50 --trials 3 --jobs 1`, CPU seconds of the run):
/// 6.8 with flush-to-zero, 6.7 with this floor, 10.4 with neither; the same accuracies.
/// Above the floor, the update's products of a moment (`beta1 * m`, `step_size * m` for
/// learning rates above 1e-8) are normal numbers; below it, what the moment would still move
/// its weight by, `lr * m / (sqrt(v) + eps)`, is under 1e-25 at lr 1e-3 and eps 1e-8, far
/// below the rounding unit of any weight the models hold.
const MOMENT_FLOOR: f32 = 1e-30;

/// `x`, or 0 when `|x| <` [`MOMENT_FLOOR`] (NaN is kept, so divergence is still seen).
#[inline(always)]
fn floor_moment(x: f32) -> f32 {
    floor_at(x, MOMENT_FLOOR)
}

/// `x`, or 0 when `|x| < floor` (never for `floor = 0`; NaN is kept).
#[inline(always)]
fn floor_at(x: f32, floor: f32) -> f32 {
    if x.abs() < floor {
        0.0
    } else {
        x
    }
}

/// The rows' training loop. With `avx` (only when [`run_rows`] runs it compiled for
/// AVX-512) a batch-1 Adam step goes through [`Avx512::adam_row_dot`], which also sums the
/// next step's `w . x`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn run_rows_impl(
    data: &Data<'_>,
    ups: &[Update],
    chunk_start: usize,
    row0: usize,
    w: &mut [f32],
    mw: &mut [f32],
    vw: &mut [f32],
    mut bias: BiasRows<'_>,
    avx: Option<Avx512>,
) -> f64 {
    let Data {
        xs,
        ts,
        order,
        d,
        k,
        bs,
        wd,
    } = *data;
    let rows = w.len() / d;
    let mut r = [0.0f32; MAX_BATCH];
    let mut total = 0.0f64;
    for lr in 0..rows {
        let row = row0 + lr;
        let wr = &mut w[lr * d..(lr + 1) * d];
        let mwr = &mut mw[lr * d..(lr + 1) * d];
        let vwr = &mut vw[lr * d..(lr + 1) * d];
        let mut row_loss = 0.0f32;
        // With batch 1 and Adam on AVX-512, the next step's `w . x` is summed inside this
        // step's update loop, where its adds hide behind the optimiser's division: one pass
        // over the row instead of two. Same order of operations as `dot`, so the same bits.
        let mut next_dot: Option<f32> = None;
        for (ci, upd) in ups.iter().enumerate() {
            let st = chunk_start + ci;
            let batch = &order[st * bs..((st + 1) * bs).min(order.len())];
            let nb = batch.len();
            let bias_r = bias.as_ref().map_or(0.0, |(b, _, _)| b[lr]);
            for (s, &i) in batch.iter().enumerate() {
                let i = i as usize;
                // Only set for batch 1 (s = 0), by the previous step's fused update.
                let wx = next_dot.take().unwrap_or_else(|| dot(wr, &xs[i * d..(i + 1) * d]));
                let y = wx + bias_r;
                r[s] = y - ts[i * k + row];
                row_loss += r[s] * r[s];
            }
            // d(MSE)/d(output) = 2 r / (k * B).
            let gscale = 2.0 / (k as f32 * nb as f32);
            if nb == 1 {
                let i = batch[0] as usize;
                let x = &xs[i * d..(i + 1) * d];
                // Fused with the next step's dot product when that step is in this chunk
                // (with batch 1 its sample is `order[st + 1]`).
                let fused = avx.filter(|_| bs == 1 && ci + 1 < ups.len());
                match (fused, upd, order.get(st + 1)) {
                    (Some(avx), Update::Adam(s), Some(&j)) => {
                        let xn = &xs[j as usize * d..(j as usize + 1) * d];
                        next_dot = Some(avx.adam_row_dot(s, wr, mwr, vwr, x, gscale * r[0], wd, xn));
                    }
                    _ => upd.apply_row(wr, mwr, vwr, x, gscale * r[0], wd),
                }
            } else {
                for j in 0..d {
                    let mut g = wd * wr[j];
                    for (s, &i) in batch.iter().enumerate() {
                        g += gscale * r[s] * xs[i as usize * d + j];
                    }
                    upd.apply(&mut wr[j], &mut mwr[j], &mut vwr[j], g);
                }
            }
            if let Some((b, mb, vb)) = bias.as_mut() {
                let g: f32 = gscale * r[..nb].iter().sum::<f32>();
                upd.apply(&mut b[lr], &mut mb[lr], &mut vb[lr], g);
            }
        }
        total += row_loss as f64;
    }
    total
}

/// One step of Adam (`torch.optim.Adam`'s arithmetic), its step-dependent constants
/// hoisted: the single implementation of the update, used by the core's trainers
/// ([`Optimizer::Adam`]) and by the host's softmax baselines.
///
/// Per element, with `g` the gradient: `m = beta1 m + (1 - beta1) g`,
/// `v = beta2 v + (1 - beta2) g^2`, `w -= step_size m / (sqrt(v) inv_sqrt_bc2 + eps)`, each
/// a rounded multiply then a rounded add; moments below `floor` in magnitude become 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    pub(crate) beta1: f32,
    pub(crate) beta2: f32,
    pub(crate) one_minus_beta1: f32,
    pub(crate) one_minus_beta2: f32,
    pub(crate) step_size: f32,
    pub(crate) inv_sqrt_bc2: f32,
    pub(crate) eps: f32,
    pub(crate) floor: f32,
}

impl AdamStep {
    /// Step `t` (from 1) as the core's trainers take it: bias corrections `1 - beta^t` in
    /// `f32`, moments below 1e-30 in magnitude set to 0 (where they no longer move a weight
    /// but would reach the subnormal range, slow on x86).
    pub fn new(lr: f32, beta1: f32, beta2: f32, eps: f32, t: i32) -> Self {
        let bc1 = 1.0 - libm::powf(beta1, t as f32);
        let bc2 = 1.0 - libm::powf(beta2, t as f32);
        AdamStep {
            step_size: lr / bc1,
            inv_sqrt_bc2: 1.0 / libm::sqrtf(bc2),
            floor: MOMENT_FLOOR,
            ..Self::moments(beta1, beta2, eps)
        }
    }

    /// A step with the bias corrections `bc1 = 1 - beta1^t`, `bc2 = 1 - beta2^t` given in
    /// `f64` and divided in `f64`, as PyTorch does in Python floats, and no moment floor:
    /// PyTorch's bits (the host's logistic-regression and MLP baselines).
    pub fn with_corrections(lr: f32, beta1: f32, beta2: f32, eps: f32, bc1: f64, bc2: f64) -> Self {
        AdamStep {
            step_size: (lr as f64 / bc1) as f32,
            inv_sqrt_bc2: (1.0 / libm::sqrt(bc2)) as f32,
            floor: 0.0,
            ..Self::moments(beta1, beta2, eps)
        }
    }

    const fn moments(beta1: f32, beta2: f32, eps: f32) -> Self {
        AdamStep {
            beta1,
            beta2,
            one_minus_beta1: 1.0 - beta1,
            one_minus_beta2: 1.0 - beta2,
            step_size: 0.0,
            inv_sqrt_bc2: 1.0,
            eps,
            floor: 0.0,
        }
    }

    /// `w -= update(g)` element-wise over `w`, its gradient `g` and moments `m`, `v` (the
    /// shortest length).
    pub fn apply(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let s = *self;
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            s.apply_one(w, m, v, g);
        }
    }

    /// The update of one weight.
    #[inline(always)]
    pub(crate) fn apply_one(self, w: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        *m = floor_at(self.beta1 * *m + self.one_minus_beta1 * g, self.floor);
        *v = floor_at(self.beta2 * *v + self.one_minus_beta2 * g * g, self.floor);
        let denom = sqrtf_fast(*v) * self.inv_sqrt_bc2 + self.eps;
        *w -= self.step_size * *m / denom;
    }
}

/// The per-parameter update rule of one step, its step-dependent constants hoisted.
#[derive(Clone, Copy)]
enum Update {
    /// Plain SGD.
    Sgd { lr: f32 },
    /// SGD with momentum (PyTorch: `buf = momentum buf + g`, dampening 0; `w -= lr buf`).
    Momentum { lr: f32, momentum: f32 },
    /// Adam.
    Adam(AdamStep),
}

impl Update {
    fn new(opt: &Optimizer, t: i32) -> Self {
        match *opt {
            Optimizer::Sgd { lr, momentum: 0.0 } => Update::Sgd { lr },
            Optimizer::Sgd { lr, momentum } => Update::Momentum { lr, momentum },
            Optimizer::Adam { lr, beta1, beta2, eps } => Update::Adam(AdamStep::new(lr, beta1, beta2, eps, t)),
        }
    }

    /// `w -= update(g)` for a whole row with `g = c * x + wd * w`: one loop per optimiser so
    /// the compiler vectorises each without a branch inside.
    #[inline(always)]
    fn apply_row(&self, w: &mut [f32], m: &mut [f32], v: &mut [f32], x: &[f32], c: f32, wd: f32) {
        let n = w.len().min(m.len()).min(v.len()).min(x.len());
        let (w, m, v, x) = (&mut w[..n], &mut m[..n], &mut v[..n], &x[..n]);
        match *self {
            Update::Sgd { lr } => {
                for (w, x) in w.iter_mut().zip(x) {
                    let g = c * x + wd * *w;
                    *w -= lr * g;
                }
            }
            Update::Momentum { lr, momentum } => {
                for ((w, m), x) in w.iter_mut().zip(m.iter_mut()).zip(x) {
                    let g = c * x + wd * *w;
                    *m = floor_moment(momentum * *m + g);
                    *w -= lr * *m;
                }
            }
            Update::Adam(s) => {
                for (((w, m), v), x) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(x) {
                    let g = c * x + wd * *w;
                    s.apply_one(w, m, v, g);
                }
            }
        }
    }

    #[inline(always)]
    fn apply(&self, w: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        match *self {
            Update::Sgd { lr } => *w -= lr * g,
            Update::Momentum { lr, momentum } => {
                *m = floor_moment(momentum * *m + g);
                *w -= lr * *m;
            }
            Update::Adam(s) => s.apply_one(w, m, v, g),
        }
    }
}

/// Square root that compiles to the hardware instruction where there is one (x86 `sqrtss`,
/// Cortex-M4F `vsqrt.f32`) rather than a libm call in the innermost loop.
#[inline(always)]
fn sqrtf_fast(x: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        x.sqrt()
    }
    #[cfg(not(feature = "std"))]
    {
        libm::sqrtf(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linear::Init;
    use crate::rng::Rng;
    extern crate std;
    use std::vec::Vec;

    fn problem(n: usize, d: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Rng::new(5);
        let a = Linear::new(d, k, true, Init::XavierNormal, &mut rng).unwrap();
        let xs: Vec<f32> = (0..n * d).map(|_| rng.normal()).collect();
        let mut ts = std::vec![0.0; n * k];
        a.forward_batch(&xs, n, &mut ts).unwrap();
        (xs, ts)
    }

    #[test]
    fn adam_and_sgd_reduce_the_loss() {
        let (n, d, k) = (6, 10, 7);
        let (xs, ts) = problem(n, d, k);
        for (opt, bs) in [
            (Optimizer::adam(1e-2), 1),
            (Optimizer::sgd(5e-2), 3),
            (Optimizer::Sgd { lr: 2e-2, momentum: 0.9 }, 2),
        ] {
            let mut p = Linear::new(d, k, true, Init::Uniform, &mut Rng::new(9)).unwrap();
            let mut st = OptState::for_layer(&p);
            let opts = StepOptions {
                optimizer: opt,
                weight_decay: 0.0,
                batch_size: bs,
            };
            let order: Vec<u32> = (0..n as u32).collect();
            let first = fit_epoch(&mut p, &mut st, &xs, &ts, &order, &opts).unwrap();
            let mut last = first;
            for _ in 0..200 {
                last = fit_epoch(&mut p, &mut st, &xs, &ts, &order, &opts).unwrap();
            }
            assert!(last < first * 0.05, "{opt:?}: {first} -> {last}");
        }
    }

    /// The fused AVX-512 Adam step with the next dot product gives the same bits as the
    /// portable update followed by `dot`, for row lengths around the block sizes, also for
    /// moments around [`MOMENT_FLOOR`] and in the subnormal range (some with no gradient).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    fn fused_avx512_adam_row_has_the_portable_bits() {
        let Some(avx) = Avx512::detect() else {
            return;
        };
        let mut rng = Rng::new(17);
        for n in [0usize, 1, 5, 8, 13, 16, 23, 24, 31, 32, 47, 784] {
            for (t, tiny) in [(1, false), (2, false), (50, false), (50, true)] {
                let step = AdamStep::new(1e-3, 0.9, 0.999, 1e-8, t);
                let upd = Update::Adam(step);
                let mut vec = |scale: f32| -> Vec<f32> { (0..n).map(|_| scale * rng.normal()).collect() };
                // Moments near the floor, or subnormal, on every third lane, with a zero
                // input there half the time (no gradient: the moment only decays).
                let near = |i: usize, v: f32| [v, 1.05e-30, -1.2e-30, 3e-39, -1e-45, 1e-30][i % 6];
                let (w0, mut m0, mut x, xn) = (vec(0.1), vec(0.01), vec(1.0), vec(1.0));
                let mut v0: Vec<f32> = vec(0.01).iter().map(|a| a * a).collect();
                if tiny {
                    for i in (0..n).step_by(3) {
                        m0[i] = near(i, m0[i]);
                        v0[i] = near(i + 1, v0[i]).abs();
                        if i % 2 == 0 {
                            x[i] = 0.0;
                        }
                    }
                }
                let (c, wd) = (0.37f32, 5e-7f32);
                let (mut w1, mut m1, mut v1) = (w0.clone(), m0.clone(), v0.clone());
                upd.apply_row(&mut w1, &mut m1, &mut v1, &x, c, wd);
                let d1 = dot(&w1, &xn);
                let (mut w2, mut m2, mut v2) = (w0.clone(), m0.clone(), v0.clone());
                let d2 = avx.adam_row_dot(&step, &mut w2, &mut m2, &mut v2, &x, c, wd, &xn);
                let bits = |a: &[f32]| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&w1), bits(&w2), "w, n = {n}");
                assert_eq!(bits(&m1), bits(&m2), "m, n = {n}");
                assert_eq!(bits(&v1), bits(&v2), "v, n = {n}");
                assert_eq!(d1.to_bits(), d2.to_bits(), "dot, n = {n}: {d1} vs {d2}");
            }
        }
    }

    /// A moment that decays below [`MOMENT_FLOOR`] becomes exactly zero in both update
    /// paths, so it never reaches the subnormal range, whatever the FPU's mode; one above it
    /// decays as before, and NaN is kept.
    #[test]
    fn decaying_moments_are_flushed_at_the_floor() {
        for opt in [Optimizer::adam(1e-3), Optimizer::Sgd { lr: 1e-2, momentum: 0.9 }] {
            let upd = Update::new(&opt, 7);
            // No gradient (x = 0, no weight decay): the moments only decay.
            let (mut w, mut m, mut v) = ([0.25f32; 4], [1.05e-30f32, -1.05e-30, 2e-30, f32::NAN], [1e-31f32, 1e-20, 0.0, 1.0]);
            let (mut w1, mut m1, mut v1) = (w, m, v);
            upd.apply_row(&mut w, &mut m, &mut v, &[0.0; 4], 0.37, 0.0);
            for j in 0..4 {
                upd.apply(&mut w1[j], &mut m1[j], &mut v1[j], 0.0);
            }
            let beta = match upd {
                Update::Adam(s) => s.beta1,
                Update::Momentum { momentum, .. } => momentum,
                Update::Sgd { .. } => unreachable!(),
            };
            assert_eq!(m[..3], [0.0, 0.0, beta * 2e-30], "{opt:?}");
            assert!(m[3].is_nan());
            assert_eq!(w[..3], [0.25; 3], "{opt:?}");
            if let Update::Adam(s) = upd {
                assert_eq!(v[..3], [0.0, s.beta2 * 1e-20, 0.0]);
            }
            let bits = |a: &[f32]| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!((bits(&w), bits(&m), bits(&v)), (bits(&w1), bits(&m1), bits(&v1)), "{opt:?}");
        }
    }

    /// PyTorch's step (bias corrections in f64, no floor) keeps a moment the core's floor
    /// flushes, and otherwise does the same arithmetic: PyTorch's formula, written out.
    #[test]
    fn the_pytorch_step_has_pytorch_bits_and_no_floor() {
        let t = 3;
        let (bc1, bc2) = (1.0 - 0.9f64.powi(t), 1.0 - 0.999f64.powi(t));
        let torch = AdamStep::with_corrections(1e-3, 0.9, 0.999, 1e-8, bc1, bc2);
        let (step_size, inv) = ((1e-3f64 / bc1) as f32, (1.0 / bc2.sqrt()) as f32);
        let (mut w, mut m, mut v) = ([0.5f32, -0.25], [1e-31f32, 0.02], [1e-33f32, 4e-4]);
        let g = [0.0f32, 0.3];
        let mut want = (w, m, v);
        for (j, &g) in g.iter().enumerate() {
            let (w, m, v) = (&mut want.0[j], &mut want.1[j], &mut want.2[j]);
            *m = 0.9 * *m + (1.0 - 0.9) * g;
            *v = 0.999 * *v + (1.0 - 0.999) * g * g;
            *w -= step_size * *m / (v.sqrt() * inv + 1e-8);
        }
        torch.apply(&mut w, &g, &mut m, &mut v);
        assert_eq!((w, m, v), want);
        assert!(m[0] > 0.0 && v[0] > 0.0, "no floor: {m:?} {v:?}");
        // The core's own step flushes the same tiny moments.
        let (mut m2, mut v2) = ([1e-31f32, 0.02], [1e-33f32, 4e-4]);
        AdamStep::new(1e-3, 0.9, 0.999, 1e-8, t).apply(&mut [0.5, -0.25], &g, &mut m2, &mut v2);
        assert_eq!((m2[0], v2[0]), (0.0, 0.0));
    }

    #[test]
    fn matches_a_hand_computed_adam_step() {
        // One input, one output, no bias: w=0.5, x=2, t=3 -> r = -2, g = 2*r*x = -8.
        let mut p = Linear::from_parts(1, 1, std::vec![0.5f32], None).unwrap();
        let mut st = OptState::for_layer(&p);
        let opts = StepOptions {
            optimizer: Optimizer::adam(0.1),
            weight_decay: 0.0,
            batch_size: 1,
        };
        let loss = fit_epoch(&mut p, &mut st, &[2.0], &[3.0], &[0], &opts).unwrap();
        assert_eq!(loss, 4.0);
        // First Adam step moves by lr * sign(g) (up to eps).
        assert!((p.weight()[0] - 0.6).abs() < 1e-6, "{}", p.weight()[0]);
    }

    #[test]
    fn rejects_bad_options_and_shapes() {
        let mut p = Linear::from_parts(2, 1, std::vec![0.0f32; 2], None).unwrap();
        let mut st = OptState::for_layer(&p);
        let good = StepOptions {
            optimizer: Optimizer::sgd(0.1),
            weight_decay: 0.0,
            batch_size: 1,
        };
        let bad_lr = StepOptions {
            optimizer: Optimizer::sgd(-1.0),
            ..good
        };
        let bad_bs = StepOptions { batch_size: 0, ..good };
        assert_eq!(
            fit_epoch(&mut p, &mut st, &[1.0, 2.0], &[1.0], &[0], &bad_lr),
            Err(Error::InvalidParameter)
        );
        assert_eq!(
            fit_epoch(&mut p, &mut st, &[1.0, 2.0], &[1.0], &[0], &bad_bs),
            Err(Error::InvalidParameter)
        );
        assert_eq!(
            fit_epoch(&mut p, &mut st, &[1.0, 2.0], &[1.0], &[1], &good),
            Err(Error::InvalidParameter)
        );
        assert!(fit_epoch(&mut p, &mut st, &[1.0, 2.0, 3.0], &[1.0], &[0], &good).is_err());
        assert_eq!(fit_epoch(&mut p, &mut st, &[1.0, 2.0], &[1.0], &[], &good), Err(Error::EmptyClass));
        // Divergence is reported, not returned as a number.
        let huge = StepOptions {
            optimizer: Optimizer::sgd(1e30),
            ..good
        };
        let r = (0..5).try_for_each(|_| fit_epoch(&mut p, &mut st, &[1e10, 1e10], &[1.0], &[0], &huge).map(|_| ()));
        assert_eq!(r, Err(Error::NonFinite));
    }
}
