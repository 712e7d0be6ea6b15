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
        #[cfg(feature = "parallel")]
        {
            use rayon::prelude::*;
            // Rows are independent: blocks of rows go to different cores.
            const ROWS: usize = 32;
            let bias_chunks: alloc::vec::Vec<BiasRows<'_>> = match bias_bufs.as_mut() {
                Some((b, mb, vb)) => b
                    .chunks_mut(ROWS)
                    .zip(mb.chunks_mut(ROWS))
                    .zip(vb.chunks_mut(ROWS))
                    .map(|((b, m), v)| Some((b, m, v)))
                    .collect(),
                None => (0..k.div_ceil(ROWS)).map(|_| None).collect(),
            };
            total += w
                .par_chunks_mut(ROWS * d)
                .zip(m_w.par_chunks_mut(ROWS * d))
                .zip(v_w.par_chunks_mut(ROWS * d))
                .zip(bias_chunks.into_par_iter())
                .enumerate()
                .map(|(ci, (((w, mw), vw), bias))| run_rows(&data, ups, chunk_start, ci * ROWS, w, mw, vw, bias))
                .sum::<f64>();
        }
        #[cfg(not(feature = "parallel"))]
        {
            let bias = bias_bufs.as_mut().map(|(b, mb, vb)| (&mut **b, &mut **mb, &mut **vb));
            total += run_rows(&data, ups, chunk_start, 0, w, m_w, v_w, bias);
        }
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
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if avx512_detected() {
        // SAFETY: the CPU supports every feature `run_rows_avx512` enables (AVX-512F,
        // AVX-512VL, AVX2 and FMA, each checked just above), the only requirement of a
        // target_feature function; it runs the same source, so the same arithmetic.
        #[allow(unsafe_code)]
        return unsafe { run_rows_avx512(data, ups, chunk_start, row0, w, mw, vw, bias) };
    }
    run_rows_impl::<false>(data, ups, chunk_start, row0, w, mw, vw, bias)
}

/// Whether this CPU has every feature [`run_rows_avx512`] and [`adam_row_dot_avx512`] are
/// compiled with (`#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]`): calling them
/// is sound only then. The detection is cached by `std`, so this is a few loads.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
fn avx512_detected() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
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
    if x.abs() < MOMENT_FLOOR {
        0.0
    } else {
        x
    }
}

/// [`run_rows`] compiled for AVX-512 (16 floats per instruction); callers check
/// [`avx512_detected`] first. Rust never contracts `a * b + c` into a fused multiply-add and
/// `sqrt`/division are exact in IEEE arithmetic, so the result is the same, bit for bit, as
/// the portable build.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[allow(unsafe_code, clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn run_rows_avx512(
    data: &Data<'_>,
    ups: &[Update],
    chunk_start: usize,
    row0: usize,
    w: &mut [f32],
    mw: &mut [f32],
    vw: &mut [f32],
    bias: BiasRows<'_>,
) -> f64 {
    run_rows_impl::<true>(data, ups, chunk_start, row0, w, mw, vw, bias)
}

/// The rows' training loop. `AVX512` (only set by [`run_rows_avx512`]) lets a batch-1 Adam
/// step go through [`adam_row_dot_avx512`], which also sums the next step's `w . x`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn run_rows_impl<const AVX512: bool>(
    data: &Data<'_>,
    ups: &[Update],
    chunk_start: usize,
    row0: usize,
    w: &mut [f32],
    mw: &mut [f32],
    vw: &mut [f32],
    mut bias: BiasRows<'_>,
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
                let fused = AVX512 && upd.kind == Rule::Adam && bs == 1 && ci + 1 < ups.len();
                match order.get(st + 1).filter(|_| fused) {
                    #[cfg(all(feature = "std", target_arch = "x86_64"))]
                    // SAFETY: `AVX512` is true only in `run_rows_avx512`, which runs only
                    // after `avx512_detected` found every feature this function enables.
                    #[allow(unsafe_code)]
                    Some(&j) => {
                        let xn = &xs[j as usize * d..(j as usize + 1) * d];
                        next_dot = Some(unsafe { adam_row_dot_avx512(upd, wr, mwr, vwr, x, gscale * r[0], wd, xn) })
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

/// [`Update::apply_row`] for Adam, then `dot(w, xn)` of the updated row, in one pass with
/// AVX-512. Each block of 16 weights takes the optimiser's update in exactly the portable
/// code's operations (separate multiplies and adds, IEEE `sqrt` and division), then its
/// products with `xn` are added into 8 accumulators, low half then high half, so that
/// accumulator `i` sums elements `i, i + 8, ...` in order, as [`dot`] does; the tail and the
/// final pairwise sum are `dot`'s too. So both results have the same bits as the two-pass
/// portable code (tested). Callers check [`avx512_detected`] first.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[allow(unsafe_code, clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn adam_row_dot_avx512(u: &Update, w: &mut [f32], m: &mut [f32], v: &mut [f32], x: &[f32], c: f32, wd: f32, xn: &[f32]) -> f32 {
    use core::arch::x86_64::*;
    let n = w.len().min(m.len()).min(v.len()).min(x.len()).min(xn.len());
    let blocks = n / 16;
    let (vc, vwd) = (_mm512_set1_ps(c), _mm512_set1_ps(wd));
    let (va1, va2, vb1, vb2) = (
        _mm512_set1_ps(u.a1),
        _mm512_set1_ps(u.a2),
        _mm512_set1_ps(u.b1),
        _mm512_set1_ps(u.b2),
    );
    let (vss, visb, veps) = (_mm512_set1_ps(u.step_size), _mm512_set1_ps(u.inv_sqrt_bc2), _mm512_set1_ps(u.eps));
    let vfloor = _mm512_set1_ps(MOMENT_FLOOR);
    // `floor_moment` on 16 lanes: keep the lanes not below the floor (NaN is unordered,
    // so kept), zero the others.
    let floor = |v: __m512| _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_NLT_UQ>(_mm512_abs_ps(v), vfloor), v);
    let mut acc = _mm256_setzero_ps();
    for b in 0..blocks {
        let o = b * 16;
        // SAFETY: o + 16 <= n, and n is at most each slice's length.
        let (wp, mp, vp) = unsafe { (w.as_mut_ptr().add(o), m.as_mut_ptr().add(o), v.as_mut_ptr().add(o)) };
        let (xp, np) = unsafe { (x.as_ptr().add(o), xn.as_ptr().add(o)) };
        let (wv, mv, vv, xv, nv) = unsafe {
            (
                _mm512_loadu_ps(wp),
                _mm512_loadu_ps(mp),
                _mm512_loadu_ps(vp),
                _mm512_loadu_ps(xp),
                _mm512_loadu_ps(np),
            )
        };
        let g = _mm512_add_ps(_mm512_mul_ps(vc, xv), _mm512_mul_ps(vwd, wv));
        let mv = floor(_mm512_add_ps(_mm512_mul_ps(va1, mv), _mm512_mul_ps(vb1, g)));
        let vv = floor(_mm512_add_ps(_mm512_mul_ps(va2, vv), _mm512_mul_ps(_mm512_mul_ps(vb2, g), g)));
        let denom = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vv), visb), veps);
        let wv = _mm512_sub_ps(wv, _mm512_div_ps(_mm512_mul_ps(vss, mv), denom));
        unsafe {
            _mm512_storeu_ps(mp, mv);
            _mm512_storeu_ps(vp, vv);
            _mm512_storeu_ps(wp, wv);
        }
        let prod = _mm512_mul_ps(wv, nv);
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(prod));
        acc = _mm256_add_ps(acc, _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(prod))));
    }
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds 8 f32s.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let mut tail = 0.0f32;
    let full = n / 8 * 8;
    for j in blocks * 16..n {
        let g = c * x[j] + wd * w[j];
        u.apply(&mut w[j], &mut m[j], &mut v[j], g);
        if j < full {
            lanes[j % 8] += w[j] * xn[j];
        } else {
            tail += w[j] * xn[j];
        }
    }
    crate::linalg::dot_finish(&lanes, tail)
}

/// Which update rule an [`Update`] applies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Plain SGD.
    Sgd,
    /// SGD with momentum.
    Momentum,
    /// Adam.
    Adam,
}

/// The per-parameter update rule with its step-dependent constants hoisted.
struct Update {
    kind: Rule,
    lr: f32,
    a1: f32,
    a2: f32,
    b1: f32,
    b2: f32,
    step_size: f32,
    inv_sqrt_bc2: f32,
    eps: f32,
}

impl Update {
    fn new(opt: &Optimizer, t: i32) -> Self {
        match *opt {
            Optimizer::Sgd { lr, momentum } => Update {
                kind: if momentum == 0.0 { Rule::Sgd } else { Rule::Momentum },
                lr,
                a1: momentum,
                a2: 0.0,
                b1: 0.0,
                b2: 0.0,
                step_size: lr,
                inv_sqrt_bc2: 1.0,
                eps: 0.0,
            },
            Optimizer::Adam { lr, beta1, beta2, eps } => {
                let bc1 = 1.0 - libm::powf(beta1, t as f32);
                let bc2 = 1.0 - libm::powf(beta2, t as f32);
                Update {
                    kind: Rule::Adam,
                    lr,
                    a1: beta1,
                    a2: beta2,
                    b1: 1.0 - beta1,
                    b2: 1.0 - beta2,
                    step_size: lr / bc1,
                    inv_sqrt_bc2: 1.0 / libm::sqrtf(bc2),
                    eps,
                }
            }
        }
    }

    /// `w -= update(g)` for a whole row with `g = c * x + wd * w`: one loop per optimiser so
    /// the compiler vectorises each without a branch inside.
    #[inline(always)]
    fn apply_row(&self, w: &mut [f32], m: &mut [f32], v: &mut [f32], x: &[f32], c: f32, wd: f32) {
        let n = w.len().min(m.len()).min(v.len()).min(x.len());
        let (w, m, v, x) = (&mut w[..n], &mut m[..n], &mut v[..n], &x[..n]);
        match self.kind {
            Rule::Sgd => {
                let lr = self.lr;
                for (w, x) in w.iter_mut().zip(x) {
                    let g = c * x + wd * *w;
                    *w -= lr * g;
                }
            }
            Rule::Momentum => {
                let (lr, mu) = (self.lr, self.a1);
                for ((w, m), x) in w.iter_mut().zip(m.iter_mut()).zip(x) {
                    let g = c * x + wd * *w;
                    *m = floor_moment(mu * *m + g);
                    *w -= lr * *m;
                }
            }
            Rule::Adam => {
                let (a1, a2, b1, b2, ss, isb, eps) = (self.a1, self.a2, self.b1, self.b2, self.step_size, self.inv_sqrt_bc2, self.eps);
                for (((w, m), v), x) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(x) {
                    let g = c * x + wd * *w;
                    *m = floor_moment(a1 * *m + b1 * g);
                    *v = floor_moment(a2 * *v + b2 * g * g);
                    let denom = sqrtf_fast(*v) * isb + eps;
                    *w -= ss * *m / denom;
                }
            }
        }
    }

    #[inline(always)]
    fn apply(&self, w: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        match self.kind {
            Rule::Sgd => *w -= self.lr * g,
            Rule::Momentum => {
                // PyTorch: buf = momentum * buf + g (dampening 0); w -= lr * buf.
                *m = floor_moment(self.a1 * *m + g);
                *w -= self.lr * *m;
            }
            Rule::Adam => {
                *m = floor_moment(self.a1 * *m + self.b1 * g);
                *v = floor_moment(self.a2 * *v + self.b2 * g * g);
                let denom = sqrtf_fast(*v) * self.inv_sqrt_bc2 + self.eps;
                *w -= self.step_size * *m / denom;
            }
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
        if !avx512_detected() {
            return;
        }
        let mut rng = Rng::new(17);
        for n in [0usize, 1, 5, 8, 13, 16, 23, 24, 31, 32, 47, 784] {
            for (t, tiny) in [(1, false), (2, false), (50, false), (50, true)] {
                let upd = Update::new(&Optimizer::adam(1e-3), t);
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
                // SAFETY: every feature the function enables was detected above.
                #[allow(unsafe_code)]
                let d2 = unsafe { adam_row_dot_avx512(&upd, &mut w2, &mut m2, &mut v2, &x, c, wd, &xn) };
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
            let beta = upd.a1;
            assert_eq!(m[..3], [0.0, 0.0, beta * 2e-30], "{opt:?}");
            assert!(m[3].is_nan());
            assert_eq!(w[..3], [0.25; 3], "{opt:?}");
            if upd.kind == Rule::Adam {
                assert_eq!(v[..3], [0.0, upd.a2 * 1e-20, 0.0]);
            }
            let bits = |a: &[f32]| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!((bits(&w), bits(&m), bits(&v)), (bits(&w1), bits(&m1), bits(&v1)), "{opt:?}");
        }
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
