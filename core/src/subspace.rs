//! The exact closed-form (ridge least-squares) predictor of a class, stored compactly.
//!
//! For a linear predictor trained by MSE to reproduce the target `Q(x) = A x + a` on a class's
//! samples, the ridge optimum is `W = A Z^T (Z Z^T + lambda I)^-1 Z` (Z: the centred samples)
//! and the bias makes it exact at the class mean `mu`. With the principal directions `U`
//! (r x d, orthonormal rows) of the centred samples and their squared singular values `s_i^2`,
//! `W = A U^T diag(w) U` with shrinkage weights `w_i = s_i^2 / (s_i^2 + lambda)`. So
//!
//! `P(x) - Q(x) = -[A (x - mu) - B diag(w) U (x - mu)]`, with `B = A U^T` (k x r).
//!
//! Storing `mu`, `U`, `w`, `B` and `Q(mu)` costs `(d + k + 1) r + d + k` numbers instead of
//! `k d`, and one distance costs `r d + k r` multiply-adds after `Q(x)`. Directions whose
//! weight is negligible can be dropped (`min_weight`, `max_rank`) to bound a device's memory.
//! `lambda = 0` is the minimum-norm solution gradient descent reaches from zero (`w = 1`: a
//! projection), so a converged O2MD model is a randomly projected nearest-subspace
//! classifier. It is exact, deterministic and needs no epochs: what a device uses to enroll.
use crate::error::{check_len, Error, Result};
use crate::linalg::{self, axpy, dot};
use crate::linear::{rows, rows_mut, Target};
use serde::{Deserialize, Serialize};

/// Options of the closed-form fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FitOptions {
    /// Ridge penalty `lambda` on the predictor's weights, in the units of a sum of squares
    /// over the class's samples. 0 = minimum-norm exact fit (a projection).
    pub ridge: f32,
    /// Fit a bias too (the class is an affine subspace through its mean) rather than a
    /// subspace through the origin.
    pub affine: bool,
    /// A sample whose part outside the span of the previous ones is below this fraction of
    /// its norm adds no dimension (it is a duplicate up to rounding).
    pub rank_tol: f32,
    /// Directions whose shrinkage weight is below this are dropped (0 keeps all).
    pub min_weight: f32,
    /// At most this many directions are kept, the strongest first (0 = no limit).
    pub max_rank: u16,
}

impl FitOptions {
    /// Ridge finite and >= 0, `rank_tol` in [0, 1), `min_weight` in [0, 1].
    pub(crate) fn validate(&self) -> Result<()> {
        if self.ridge.partial_cmp(&0.0).is_none_or(|o| o.is_lt())
            || !self.ridge.is_finite()
            || !(0.0..1.0).contains(&self.rank_tol)
            || !(0.0..=1.0).contains(&self.min_weight)
        {
            return Err(Error::InvalidParameter);
        }
        Ok(())
    }
}

/// With `affine`, writes the mean of the `m` rows of `samples` (summed in f64, in row order)
/// into `mean` and subtracts it from every row; otherwise zeroes `mean`.
fn centre(samples: &mut [f32], m: usize, d: usize, affine: bool, mean: &mut [f32]) {
    mean.iter_mut().for_each(|v| *v = 0.0);
    if !affine {
        return;
    }
    for (j, mu) in mean.iter_mut().enumerate().take(d) {
        // Column j, row by row (j < d, so the step is not 0).
        let s: f64 = samples.iter().skip(j).step_by(d).take(m).map(|&v| v as f64).sum();
        *mu = (s / m as f64) as f32;
    }
    for row in rows_mut(samples, m, d) {
        row.iter_mut().zip(mean.iter()).for_each(|(v, mu)| *v -= mu);
    }
}

/// `buf` split after `n` values; `BufferTooSmall` if it is shorter.
fn split_buf(buf: &mut [f32], n: usize) -> Result<(&mut [f32], &mut [f32])> {
    buf.split_at_mut_checked(n).ok_or(Error::BufferTooSmall)
}

/// `buf[start..start + len]`; `BufferTooSmall` if it is shorter.
fn part(buf: &mut [f32], start: usize, len: usize) -> Result<&mut [f32]> {
    buf.get_mut(start..).and_then(|b| b.get_mut(..len)).ok_or(Error::BufferTooSmall)
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            ridge: 0.0,
            affine: true,
            rank_tol: 1e-3,
            min_weight: 0.0,
            max_rank: 0,
        }
    }
}

/// [`Subspace::fit`] goes through the scatter matrix from this many samples per dimension on.
#[cfg(feature = "alloc")]
const COVARIANCE_FROM: usize = 1;

/// Scratch space (in f32s) that [`fit_into`] needs for `m` samples of dimension `d` and a
/// target of `k` outputs.
/// Absurd sizes saturate to `usize::MAX`, which no buffer holds.
pub const fn fit_scratch_len(m: usize, d: usize, k: usize) -> usize {
    let w = if m < d { m } else { d };
    let ww = w.saturating_mul(w).saturating_mul(2);
    ww.saturating_add(w.saturating_mul(2)).saturating_add(k)
}

/// Scratch space (in f32s) that [`Subspace::distance`] needs (saturated, as
/// [`fit_scratch_len`]).
pub const fn distance_scratch_len(inputs: usize, max_rank: usize) -> usize {
    inputs.saturating_add(max_rank)
}

/// A class's closed-form predictor in compact form (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Subspace<S> {
    inputs: usize,
    outputs: usize,
    rank: usize,
    mean: Option<S>,
    basis: S,
    shrink: S,
    proj: Option<S>,
    target_mean: Option<S>,
}

/// Mutable output buffers for [`fit_into`], sized for a rank capacity `cap`: `mean` d,
/// `basis` cap*d, `shrink` cap, `proj` k*cap and `target_mean` k (both may be empty for an
/// identity target). Results are stored compactly at the front (stride = the actual rank).
pub struct SubspaceBuf<'a> {
    /// Class mean (d).
    pub mean: &'a mut [f32],
    /// Orthonormal basis rows.
    pub basis: &'a mut [f32],
    /// Shrinkage weights `w`.
    pub shrink: &'a mut [f32],
    /// `B = A U^T`, row-major k x r.
    pub proj: &'a mut [f32],
    /// `Q(mean)`.
    pub target_mean: &'a mut [f32],
}

impl<S: AsRef<[f32]>> Subspace<S> {
    /// Assembles a subspace predictor from stored parts, checking every size.
    // Inline: a device builds a view of each class's stored parts at every classification.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        inputs: usize,
        outputs: usize,
        rank: usize,
        mean: Option<S>,
        basis: S,
        shrink: S,
        proj: Option<S>,
        target_mean: Option<S>,
    ) -> Result<Self> {
        if inputs == 0 || outputs == 0 || rank > inputs {
            return Err(Error::InvalidParameter);
        }
        if let Some(m) = &mean {
            check_len(inputs, m.as_ref().len())?;
        }
        // Absurd sizes saturate, and no slice is that long.
        check_len(rank.saturating_mul(inputs), basis.as_ref().len())?;
        check_len(rank, shrink.as_ref().len())?;
        match (&proj, &target_mean) {
            (Some(p), Some(t)) => {
                check_len(outputs.saturating_mul(rank), p.as_ref().len())?;
                check_len(outputs, t.as_ref().len())?;
            }
            (None, None) => check_len(inputs, outputs)?,
            _ => return Err(Error::InvalidParameter),
        }
        Ok(Subspace {
            inputs,
            outputs,
            rank,
            mean,
            basis,
            shrink,
            proj,
            target_mean,
        })
    }
    /// Input dimension.
    pub fn inputs(&self) -> usize {
        self.inputs
    }
    /// Target outputs `k`.
    pub fn outputs(&self) -> usize {
        self.outputs
    }
    /// Dimension of the class's span.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// The class mean, when affine.
    pub fn mean(&self) -> Option<&[f32]> {
        self.mean.as_ref().map(|m| m.as_ref())
    }
    /// Orthonormal basis, `rank x inputs`.
    pub fn basis(&self) -> &[f32] {
        self.basis.as_ref()
    }
    /// Shrinkage weights `w` (`rank`), in (0, 1], decreasing.
    pub fn shrink(&self) -> &[f32] {
        self.shrink.as_ref()
    }
    /// `B = A U^T`, `outputs x rank` (None with an identity target).
    pub fn proj(&self) -> Option<&[f32]> {
        self.proj.as_ref().map(|p| p.as_ref())
    }
    /// `Q(mean)` (None with an identity target).
    pub fn target_mean(&self) -> Option<&[f32]> {
        self.target_mean.as_ref().map(|t| t.as_ref())
    }
    /// A borrowed view.
    pub fn view(&self) -> Subspace<&[f32]> {
        Subspace {
            inputs: self.inputs,
            outputs: self.outputs,
            rank: self.rank,
            mean: self.mean(),
            basis: self.basis(),
            shrink: self.shrink(),
            proj: self.proj(),
            target_mean: self.target_mean(),
        }
    }

    /// Mean squared disagreement `||P(x) - Q(x)||^2 / k` given `qx = Q(x)` (ignored for an
    /// identity target). `scratch` needs [`distance_scratch_len`] f32s.
    pub fn distance(&self, x: &[f32], qx: &[f32], scratch: &mut [f32]) -> Result<f32> {
        let (d, r) = (self.inputs, self.rank);
        check_len(d, x.len())?;
        if scratch.len() < distance_scratch_len(d, r) {
            return Err(Error::BufferTooSmall);
        }
        let (z, rest) = split_buf(scratch, d)?;
        let (u, _) = split_buf(rest, r)?;
        z.copy_from_slice(x);
        if let Some(m) = self.mean() {
            z.iter_mut().zip(m).for_each(|(zi, mi)| *zi -= mi);
        }
        let w = self.shrink();
        // The sizes were checked by `from_parts`: r rows of d in the basis, r weights, and
        // k rows of r in B.
        for (ui, row) in u.iter_mut().zip(rows(self.basis(), r, d)) {
            *ui = dot(row, z);
        }
        match (self.proj(), self.target_mean()) {
            (Some(b), Some(tm)) => {
                check_len(self.outputs, qx.len())?;
                // p = w . u, then e = (Q(x) - Q(mu)) - B p.
                u.iter_mut().zip(w).for_each(|(ui, wi)| *ui *= wi);
                let mut s = 0.0f32;
                for ((q, t), row) in qx.iter().zip(tm).zip(rows(b, self.outputs, r)) {
                    let e = (q - t) - dot(row, u);
                    s += e * e;
                }
                Ok(s / self.outputs as f32)
            }
            _ => {
                // ||z - U^T diag(w) U z||^2 = ||z||^2 - sum (2 w_i - w_i^2) u_i^2 (U orthonormal).
                let mut s = linalg::norm2(z);
                for (wi, ui) in w.iter().zip(u.iter()) {
                    s -= (2.0 * wi - wi * wi) * ui * ui;
                }
                // A huge input overflows ||z||^2 (inf - inf = NaN): that is no distance, and
                // `max` would turn the NaN into 0, a perfect match.
                if !s.is_finite() {
                    return Err(Error::NonFinite);
                }
                Ok(s.max(0.0) / d as f32)
            }
        }
    }
}

/// Fits a class's closed-form predictor from its `m` samples (`samples`, row-major `m x d`,
/// overwritten: it is used as workspace) into `out`, which holds at most `cap` directions
/// (the strongest are kept). Returns the rank. No allocation: this is the device's
/// enrollment. `scratch` needs [`fit_scratch_len`]`(m, d, k)` f32s.
pub fn fit_into<T: AsRef<[f32]>>(
    target: &Target<T>,
    samples: &mut [f32],
    m: usize,
    opts: &FitOptions,
    cap: usize,
    out: SubspaceBuf<'_>,
    scratch: &mut [f32],
) -> Result<usize> {
    let (d, k) = (target.inputs(), target.outputs());
    if m == 0 {
        return Err(Error::EmptyClass);
    }
    // Absurd sizes saturate, and no buffer is that long.
    check_len(m.saturating_mul(d), samples.len())?;
    crate::error::check_finite(samples)?;
    opts.validate()?;
    check_len(d, out.mean.len())?;
    if out.basis.len() < cap.saturating_mul(d) || out.shrink.len() < cap {
        return Err(Error::BufferTooSmall);
    }
    let linear = matches!(target, Target::Linear(_));
    if linear && (out.proj.len() < k.saturating_mul(cap) || out.target_mean.len() < k) {
        return Err(Error::BufferTooSmall);
    }
    if scratch.len() < fit_scratch_len(m, d, k) {
        return Err(Error::BufferTooSmall);
    }
    // Workspace rank bound: the span of m samples in R^d. The products below fit: the
    // scratch holds them (checked just above).
    let wr = m.min(d);
    let (coef, rest) = split_buf(scratch, wr)?;
    let (gram, rest) = split_buf(rest, wr.saturating_mul(wr))?;
    let (kmat, rest) = split_buf(rest, wr.saturating_mul(wr))?;
    let (offdiag, rest) = split_buf(rest, wr)?;
    let (tmp, _) = split_buf(rest, k)?;

    // 1. Mean and centring.
    centre(samples, m, d, opts.affine, out.mean);

    // 2. Gram-Schmidt (two passes) with each sample's coordinates accumulated into K = R R^T,
    //    the Gram matrix of the samples in the basis U.
    gram.iter_mut().for_each(|v| *v = 0.0);
    // The basis so far is the first r rows of `samples` (r <= t < m, so every offset below
    // is within the m x d checked above).
    let mut r = 0usize;
    for t in 0..m {
        if t != r {
            // Sample t moves down to row r.
            let (head, tail) = split_buf(samples, t.saturating_mul(d))?;
            part(head, r.saturating_mul(d), d)?.copy_from_slice(part(tail, 0, d)?);
        }
        let (basis, rest) = split_buf(samples, r.saturating_mul(d))?;
        let v = part(rest, 0, d)?;
        let orig = libm::sqrtf(linalg::norm2(v));
        if orig == 0.0 {
            continue;
        }
        part(coef, 0, r)?.iter_mut().for_each(|c| *c = 0.0);
        for _pass in 0..2 {
            for (u, cj) in rows(basis, r, d).zip(coef.iter_mut()) {
                let c = dot(u, v);
                *cj += c;
                axpy(-c, u, v);
            }
        }
        let nrm = libm::sqrtf(linalg::norm2(v));
        let mut len = r;
        if nrm > opts.rank_tol * orig {
            // A new direction while there is room: `coef` holds wr, so r < wr.
            if let Some(c) = coef.get_mut(r) {
                let inv = 1.0 / nrm;
                v.iter_mut().for_each(|x| *x *= inv);
                *c = nrm;
                #[allow(clippy::arithmetic_side_effects)] // bound: r < wr = coef.len() (coef[r] exists)
                let grown = r + 1;
                r = grown;
                len = grown;
            }
        }
        let c = coef.get(..len).ok_or(Error::BufferTooSmall)?;
        for (row, ca) in rows_mut(gram, len, wr).zip(c) {
            for (g, cb) in row.iter_mut().zip(c) {
                *g += ca * cb;
            }
        }
    }
    // 3. Principal directions: K = V diag(s^2) V^T; new basis rows V^T U, weights
    //    w = s^2 / (s^2 + lambda); keep the strongest directions that pass the options.
    //    (r <= wr: the r x r products fit in the wr x wr parts.)
    let rr = r.saturating_mul(r);
    let kk = part(kmat, 0, rr)?;
    for (krow, grow) in rows_mut(kk, r, r).zip(rows(gram, r, wr)) {
        krow.iter_mut().zip(grow).for_each(|(k, g)| *k = *g);
    }
    let (vals, vecs) = (part(coef, 0, r)?, part(gram, 0, rr)?);
    linalg::sym_eigen(kk, r, vals, vecs, offdiag)?;
    let limit = if opts.max_rank == 0 { cap } else { cap.min(opts.max_rank as usize) };
    // `out.shrink` holds cap >= limit weights (checked above).
    let mut keep = 0;
    for ((&lam, s), kept) in vals.iter().zip(out.shrink.iter_mut()).take(limit).zip(1..) {
        let w = weight(lam, opts);
        if w <= 0.0 || w < opts.min_weight {
            break;
        }
        *s = w;
        keep = kept;
    }
    // `out.basis` holds cap >= keep rows of d (checked above).
    for (row, coords) in rows_mut(out.basis, keep, d).zip(rows(vecs, keep, r)) {
        row.iter_mut().for_each(|v| *v = 0.0);
        for (&c, u) in coords.iter().zip(rows(samples, r, d)) {
            axpy(c, u, row);
        }
    }
    let r = keep;

    // 4. B = A U^T and Q(mean), for a linear target.
    target_parts(target, r, out, tmp)?;
    Ok(r)
}

/// The weights of the directions kept from eigenvalues `vals` (decreasing), at most `cap`:
/// up to the first whose weight fails the options or whose eigenvalue is below `rank_tol^2`
/// times the largest (rounding noise of a squared product).
#[cfg(feature = "alloc")]
fn kept_weights(vals: &[f32], opts: &FitOptions, cap: usize) -> alloc::vec::Vec<f32> {
    let floor = vals.first().map_or(0.0, |v| v.max(0.0)) * opts.rank_tol * opts.rank_tol;
    let mut shrink = alloc::vec::Vec::with_capacity(cap);
    for &lam in vals.iter().take(cap) {
        let w = weight(lam, opts);
        if lam <= floor || w <= 0.0 || w < opts.min_weight {
            break;
        }
        shrink.push(w);
    }
    shrink
}

/// The most directions `m` samples in `d` dimensions can give under `max_rank`.
#[cfg(feature = "alloc")]
fn rank_cap(m: usize, d: usize, opts: &FitOptions) -> usize {
    match opts.max_rank {
        0 => m.min(d),
        r => m.min(d).min(r as usize),
    }
}

/// Checks the samples and options; the mean (zero unless affine) and the centred copy.
#[cfg(feature = "alloc")]
fn centred(samples: &[f32], m: usize, d: usize, opts: &FitOptions) -> Result<(alloc::vec::Vec<f32>, alloc::vec::Vec<f32>)> {
    crate::error::check_finite(samples)?;
    opts.validate()?;
    let mut mean = alloc::vec![0.0f32; d];
    let mut z = samples.to_vec();
    centre(&mut z, m, d, opts.affine, &mut mean);
    Ok((mean, z))
}

/// Eigenvalues (decreasing) and eigenvectors (rows) of a symmetric `n x n` matrix.
#[cfg(feature = "alloc")]
fn eigen(mut a: alloc::vec::Vec<f32>, n: usize) -> Result<(alloc::vec::Vec<f32>, alloc::vec::Vec<f32>)> {
    // `a` is n x n (else `sym_eigen` refuses it).
    let (mut vals, mut vecs, mut off) = (alloc::vec![0.0f32; n], alloc::vec![0.0f32; a.len()], alloc::vec![0.0f32; n]);
    linalg::sym_eigen(&mut a, n, &mut vals, &mut vecs, &mut off)?;
    Ok((vals, vecs))
}

/// The length of an `a x b` matrix on the heap. The sizes come from buffers that exist, so
/// it fits; `InvalidParameter` if it did not.
#[cfg(feature = "alloc")]
fn matrix_len(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(Error::InvalidParameter)
}

/// The shrinkage weight of a direction of squared singular value `lam` (0 = drop it).
pub(crate) fn weight(lam: f32, opts: &FitOptions) -> f32 {
    let lam = lam.max(0.0);
    if opts.ridge == 0.0 {
        if lam > 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        lam / (lam + opts.ridge)
    }
}

/// `B = A U^T` and `Q(mean)` of the `r` directions in `out`, for a linear target (nothing for
/// an identity target). `tmp` holds `k` values.
fn target_parts<T: AsRef<[f32]>>(target: &Target<T>, r: usize, out: SubspaceBuf<'_>, tmp: &mut [f32]) -> Result<()> {
    if let Target::Linear(l) = target {
        let (d, k) = (target.inputs(), target.outputs());
        let w = l.weight();
        let (tmp, _) = split_buf(tmp, k)?;
        // The callers size `out` for r directions: r rows of d in the basis, k rows of r in B.
        for (i, u) in rows(out.basis, r, d).enumerate() {
            linalg::gemv(w, k, d, u, None, tmp)?;
            // Column i of B.
            for (row, t) in rows_mut(out.proj, k, r).zip(tmp.iter()) {
                if let Some(b) = row.get_mut(i) {
                    *b = *t;
                }
            }
        }
        let (tm, _) = split_buf(out.target_mean, k)?;
        l.forward(out.mean, tm)?;
    }
    Ok(())
}

#[cfg(feature = "alloc")]
impl Subspace<alloc::vec::Vec<f32>> {
    /// Fits a class from its samples (row-major `m x d`) on the heap, by the fastest route:
    /// the scatter matrix for many samples, the Gram matrix when weak directions are dropped,
    /// else Gram-Schmidt ([`Subspace::fit_exact`]).
    pub fn fit<T: AsRef<[f32]>>(target: &Target<T>, samples: &[f32], m: usize, opts: &FitOptions) -> Result<Self> {
        let d = target.inputs();
        check_len(m.saturating_mul(d), samples.len())?;
        let cap = rank_cap(m, d, opts);
        if m >= COVARIANCE_FROM * d {
            return Self::fit_covariance(target, samples, m, opts, cap);
        }
        if opts.ridge > 0.0 && opts.min_weight > 0.0 {
            return Self::fit_gram(target, samples, m, opts, cap);
        }
        Self::fit_exact(target, samples, m, opts)
    }

    /// A class fitted exactly as a device enrolls it ([`fit_into`]: Gram-Schmidt, the same
    /// operations in the same order), on the heap: an enrollment on the host gives the
    /// device's bits. [`Subspace::fit`] may take faster routes to the same predictor up to
    /// rounding.
    pub fn fit_exact<T: AsRef<[f32]>>(target: &Target<T>, samples: &[f32], m: usize, opts: &FitOptions) -> Result<Self> {
        use alloc::vec;
        let (d, k) = (target.inputs(), target.outputs());
        check_len(m.saturating_mul(d), samples.len())?;
        let cap = rank_cap(m, d, opts);
        let linear = matches!(target, Target::Linear(_));
        let kb = if linear { k } else { 0 };
        let mut work = samples.to_vec();
        let (mut mean, mut basis, mut shrink) = (vec![0.0; d], vec![0.0; matrix_len(cap, d)?], vec![0.0; cap]);
        let (mut proj, mut tmean) = (vec![0.0; matrix_len(kb, cap)?], vec![0.0; kb]);
        let mut scratch = vec![0.0; fit_scratch_len(m, d, k)];
        let buf = SubspaceBuf {
            mean: &mut mean,
            basis: &mut basis,
            shrink: &mut shrink,
            proj: &mut proj,
            target_mean: &mut tmean,
        };
        let r = fit_into(target, &mut work, m, opts, cap, buf, &mut scratch)?;
        basis.truncate(matrix_len(r, d)?);
        shrink.truncate(r);
        proj.truncate(matrix_len(kb, r)?);
        Subspace::from_parts(
            d,
            k,
            r,
            opts.affine.then_some(mean),
            basis,
            shrink,
            linear.then_some(proj),
            linear.then_some(tmean),
        )
    }

    /// [`Subspace::fit`] for many more samples than dimensions: the principal directions
    /// are the eigenvectors of the `d x d` scatter matrix `Z^T Z` (one blocked product and
    /// one `d x d` eigen-decomposition) instead of Gram-Schmidt over the `m` samples (`O(m d^2)`
    /// level-1 work). The same predictor up to rounding; directions whose squared singular
    /// value is below `rank_tol^2` times the largest are the scatter's rounding noise and
    /// dropped.
    ///
    /// An input that is zero in every (centred) sample is a zero row and column of the
    /// scatter and a zero entry of every direction with a non-zero weight, so the scatter
    /// and its eigen-decomposition run on the other inputs only: a digit's 200 images and
    /// their shifts by up to 2 pixels leave 15% of MNIST's pixels blank, which leaves
    /// 0.85^3 = 61% of the `O(d^3)` eigen-decomposition's work.
    fn fit_covariance<T: AsRef<[f32]>>(target: &Target<T>, samples: &[f32], m: usize, opts: &FitOptions, cap: usize) -> Result<Self> {
        use crate::columns::{column_runs, gather_columns, live_columns, scatter_columns};
        let d = target.inputs();
        let (mean, mut z) = centred(samples, m, d, opts)?;
        let cols = live_columns(&z, m, d);
        let (dl, runs) = (cols.len(), column_runs(&cols));
        if dl < d {
            let mut zl = alloc::vec::Vec::with_capacity(matrix_len(m, dl)?);
            gather_columns(&z, d, &runs, &mut zl);
            z = zl;
        }
        let mut scatter = alloc::vec![0.0f32; matrix_len(dl, dl)?];
        linalg::matmul_tn(&z, m, dl, &z, dl, &mut scatter)?;
        drop(z);
        let (vals, vecs) = eigen(scatter, dl)?;
        let shrink = kept_weights(&vals, opts, cap);
        let r = shrink.len();
        let mut basis = alloc::vec![0.0f32; matrix_len(r, d)?];
        let kept = vecs.get(..matrix_len(r, dl)?).ok_or(Error::BufferTooSmall)?;
        scatter_columns(kept, &mut basis, d, &runs);
        Self::finish(target, r, opts, mean, basis, shrink)
    }

    /// [`Subspace::fit`] for fewer samples than dimensions when the options drop weak
    /// directions (ridge and `min_weight` > 0, as the device mode): the principal directions
    /// come from the `m x m` Gram matrix `Z Z^T` (one blocked product and one `m x m`
    /// eigen-decomposition), `U = diag(1/s) V^T Z` for the kept ones (one more product),
    /// instead of Gram-Schmidt over the samples (`O(m^2 d)` level-1 work). Like the scatter
    /// path it squares the samples' condition number, which only the directions that the
    /// weight threshold drops would feel: kept directions have `s^2 >= ridge min_weight /
    /// (1 - min_weight)`.
    fn fit_gram<T: AsRef<[f32]>>(target: &Target<T>, samples: &[f32], m: usize, opts: &FitOptions, cap: usize) -> Result<Self> {
        let d = target.inputs();
        let (mean, z) = centred(samples, m, d, opts)?;
        let mut gram = alloc::vec![0.0f32; matrix_len(m, m)?];
        linalg::matmul_nt(&z, m, d, &z, m, &mut gram)?;
        let (vals, vecs) = eigen(gram, m)?;
        let shrink = kept_weights(&vals, opts, cap);
        let r = shrink.len();
        let mut basis = alloc::vec![0.0f32; matrix_len(r, d)?];
        let kept = vecs.get(..matrix_len(r, m)?).ok_or(Error::BufferTooSmall)?;
        linalg::matmul_nn(kept, r, m, &z, d, &mut basis)?;
        for (row, &lam) in rows_mut(&mut basis, r, d).zip(&vals) {
            let inv = 1.0 / libm::sqrtf(lam);
            row.iter_mut().for_each(|v| *v *= inv);
        }
        Self::finish(target, r, opts, mean, basis, shrink)
    }

    /// The predictor from its mean, `r` orthonormal directions (rows of `basis`) and their
    /// weights: the target's parts added for a linear target.
    fn finish<T: AsRef<[f32]>>(
        target: &Target<T>,
        r: usize,
        opts: &FitOptions,
        mut mean: alloc::vec::Vec<f32>,
        mut vecs: alloc::vec::Vec<f32>,
        mut shrink: alloc::vec::Vec<f32>,
    ) -> Result<Self> {
        use alloc::vec;
        let (d, k) = (target.inputs(), target.outputs());
        let linear = matches!(target, Target::Linear(_));
        let kb = if linear { k } else { 0 };
        let (mut proj, mut tmean, mut tmp) = (vec![0.0; matrix_len(kb, r)?], vec![0.0; kb], vec![0.0; k]);
        let buf = SubspaceBuf {
            mean: &mut mean,
            basis: &mut vecs,
            shrink: &mut shrink,
            proj: &mut proj,
            target_mean: &mut tmean,
        };
        target_parts(target, r, buf, &mut tmp)?;
        Subspace::from_parts(
            d,
            k,
            r,
            opts.affine.then_some(mean),
            vecs,
            shrink,
            linear.then_some(proj),
            linear.then_some(tmean),
        )
    }

    /// The same predictor as a dense linear map `P(x) = W x + b` (for comparison with
    /// gradient descent, or to run it where only dense predictors are supported).
    pub fn to_dense<T: AsRef<[f32]>>(&self, target: &Target<T>) -> Result<crate::linear::Linear<alloc::vec::Vec<f32>>> {
        use alloc::vec;
        let (d, k, r) = (self.inputs, self.outputs, self.rank);
        check_len(d, target.inputs())?;
        check_len(k, target.outputs())?;
        // W = B diag(w) U, with B = U^T for an identity target (then k = d). The sizes were
        // checked by `from_parts`.
        let mut bm = vec![0.0; matrix_len(k, r)?];
        match self.proj() {
            Some(b) => {
                for (row, brow) in rows_mut(&mut bm, k, r).zip(rows(b, k, r)) {
                    for ((x, bji), wi) in row.iter_mut().zip(brow).zip(self.shrink()) {
                        *x = bji * wi;
                    }
                }
            }
            None => {
                // Row j of B is column j of U.
                for (i, (urow, wi)) in rows(self.basis(), r, d).zip(self.shrink()).enumerate() {
                    for (row, uij) in rows_mut(&mut bm, k, r).zip(urow) {
                        if let Some(x) = row.get_mut(i) {
                            *x = uij * wi;
                        }
                    }
                }
            }
        }
        let mut w = vec![0.0; matrix_len(k, d)?];
        linalg::matmul_nn(&bm, k, r, self.basis(), d, &mut w)?;
        // b = Q(mean) - W mean.
        let zero = vec![0.0; d];
        let mean = self.mean().unwrap_or(&zero);
        let mut qm = vec![0.0; k];
        target.forward(mean, &mut qm)?;
        let mut wm = vec![0.0; k];
        linalg::gemv(&w, k, d, mean, None, &mut wm)?;
        let b: alloc::vec::Vec<f32> = qm.iter().zip(&wm).map(|(q, w)| q - w).collect();
        crate::linear::Linear::from_parts(d, k, w, Some(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linear::{Init, Linear};
    use crate::rng::Rng;
    use crate::train::{fit_epoch, OptState, Optimizer, StepOptions};
    extern crate std;
    use std::vec::Vec;

    fn samples(m: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..m * d).map(|_| rng.normal()).collect()
    }

    fn dense_distance(p: &Linear<Vec<f32>>, t: &Target<Vec<f32>>, x: &[f32]) -> f32 {
        let k = p.outputs();
        let (mut a, mut b) = (std::vec![0.0; k], std::vec![0.0; k]);
        p.forward(x, &mut a).unwrap();
        t.forward(x, &mut b).unwrap();
        a.iter().zip(&b).map(|(u, v)| (u - v) * (u - v)).sum::<f32>() / k as f32
    }

    /// Many samples per dimension go through the scatter matrix, fewer with a weight
    /// threshold through the Gram matrix; the predictor equals the Gram-Schmidt one
    /// (`fit_into`) up to rounding, for every kind of target and option.
    #[test]
    fn scatter_and_gram_paths_equal_gram_schmidt() {
        for m in [COVARIANCE_FROM * 20 + 13, 17] {
            // Also with inputs blank in every sample, which the scatter path leaves out.
            for blank in [&[][..], &[0, 3, 4, 5, 19]] {
                scatter_or_gram_path_equals_gram_schmidt(m, blank);
            }
        }
    }

    fn scatter_or_gram_path_equals_gram_schmidt(m: usize, blank: &[usize]) {
        let (d, k) = (20, 30);
        // Samples near a 12-dimensional subspace plus small noise: rank d, fast-decaying
        // spectrum, as shifted images.
        let basis = samples(12, d, 3);
        let coef = samples(m, 12, 4);
        let noise = samples(m, d, 5);
        let mut xs = std::vec![0.0f32; m * d];
        for t in 0..m {
            for j in 0..d {
                let mut v = 0.05 * noise[t * d + j] + 1.0;
                for a in 0..12 {
                    v += coef[t * 12 + a] * basis[a * d + j];
                }
                xs[t * d + j] = if blank.contains(&j) { 0.0 } else { v };
            }
        }
        let mut rng = Rng::new(9);
        let linear = Target::Linear(Linear::new(d, k, false, Init::XavierNormal, &mut rng).unwrap());
        let identity = Target::Identity { dim: d };
        let queries = samples(6, d, 11);
        for target in [&identity, &linear] {
            for opts in [
                FitOptions::default(),
                FitOptions {
                    ridge: 10.0,
                    min_weight: 0.05,
                    ..Default::default()
                },
                FitOptions {
                    ridge: 1.0,
                    affine: false,
                    max_rank: 7,
                    ..Default::default()
                },
            ] {
                let fast = Subspace::fit(target, &xs, m, &opts).unwrap();
                // The Gram-Schmidt path, through fit_into.
                let kk = target.outputs();
                let cap = fast.rank().max(d);
                let (mut mean, mut b, mut w) = (std::vec![0.0; d], std::vec![0.0; cap * d], std::vec![0.0; cap]);
                let (mut proj, mut tm) = (std::vec![0.0; kk * cap], std::vec![0.0; kk]);
                let mut scratch = std::vec![0.0; fit_scratch_len(m, d, kk)];
                let mut work = xs.clone();
                let buf = SubspaceBuf {
                    mean: &mut mean,
                    basis: &mut b,
                    shrink: &mut w,
                    proj: &mut proj,
                    target_mean: &mut tm,
                };
                let r = fit_into(target, &mut work, m, &opts, cap, buf, &mut scratch).unwrap();
                assert_eq!(r, fast.rank(), "{opts:?}");
                let slow = Subspace::from_parts(
                    d,
                    kk,
                    r,
                    opts.affine.then_some(mean),
                    b[..r * d].to_vec(),
                    w[..r].to_vec(),
                    matches!(target, Target::Linear(_)).then(|| {
                        let mut p = std::vec![0.0; kk * r];
                        for j in 0..kk {
                            p[j * r..(j + 1) * r].copy_from_slice(&proj[j * r..j * r + r]);
                        }
                        p
                    }),
                    matches!(target, Target::Linear(_)).then_some(tm),
                )
                .unwrap();
                for (a, b) in fast.shrink().iter().zip(slow.shrink()) {
                    assert!((a - b).abs() <= 1e-3 * b.max(1e-3), "{opts:?}: weights {a} vs {b}");
                }
                let mut scr = std::vec![0.0; distance_scratch_len(d, cap) + kk];
                for q in queries.chunks_exact(d) {
                    let mut qx = std::vec![0.0; kk];
                    target.forward(q, &mut qx).unwrap();
                    let (a, b) = (fast.distance(q, &qx, &mut scr).unwrap(), slow.distance(q, &qx, &mut scr).unwrap());
                    assert!((a - b).abs() <= 2e-3 * b.abs().max(1e-3), "{opts:?}: distance {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn exact_on_the_span_and_equal_to_its_dense_form() {
        let (d, k, m) = (12, 9, 4);
        let mut rng = Rng::new(1);
        for target in [
            Target::Linear(Linear::new(d, k, true, Init::XavierNormal, &mut rng).unwrap()),
            Target::Identity { dim: d },
        ] {
            let kk = target.outputs();
            for affine in [true, false] {
                for ridge in [0.0, 0.5] {
                    let xs = samples(m, d, 2);
                    let opts = FitOptions {
                        ridge,
                        affine,
                        ..Default::default()
                    };
                    let s = Subspace::fit(&target, &xs, m, &opts).unwrap();
                    assert_eq!(s.rank(), if affine { m - 1 } else { m });
                    let dense = s.to_dense(&target).unwrap();
                    let mut scratch = std::vec![0.0; distance_scratch_len(d, s.rank())];
                    for x in xs.chunks_exact(d).chain(samples(3, d, 7).chunks_exact(d)) {
                        let mut qx = std::vec![0.0; kk];
                        target.forward(x, &mut qx).unwrap();
                        let a = s.distance(x, &qx, &mut scratch).unwrap();
                        let b = dense_distance(&dense, &target, x);
                        assert!((a - b).abs() <= 1e-4 * (1.0 + b), "{a} vs {b}");
                    }
                    if ridge == 0.0 {
                        // Training samples lie in the (affine) span: distance ~ 0.
                        for x in xs.chunks_exact(d) {
                            let mut qx = std::vec![0.0; kk];
                            target.forward(x, &mut qx).unwrap();
                            assert!(s.distance(x, &qx, &mut scratch).unwrap() < 1e-5);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn equals_gradient_descent_run_to_convergence() {
        // Ridge objective sum_t ||(W - A) z_t||^2 + lambda ||W||^2 is the MSE training loss
        // (mean over m samples and k outputs) with weight decay wd: lambda = m k wd / 2.
        let (d, k, m) = (10, 6, 5);
        let mut rng = Rng::new(11);
        let target = Target::Linear(Linear::new(d, k, true, Init::XavierNormal, &mut rng).unwrap());
        let xs = samples(m, d, 12);
        let mut ts = std::vec![0.0; m * k];
        target.forward_batch(&xs, m, &mut ts).unwrap();
        let wd = 0.02f32;
        let lambda = m as f32 * k as f32 * wd / 2.0;
        let closed = Subspace::fit(
            &target,
            &xs,
            m,
            &FitOptions {
                ridge: lambda,
                affine: true,
                rank_tol: 1e-4,
                ..Default::default()
            },
        )
        .unwrap()
        .to_dense(&target)
        .unwrap();

        let mut p = Linear::new(d, k, true, Init::Uniform, &mut Rng::new(3)).unwrap();
        let mut st = OptState::for_layer(&p);
        let opts = StepOptions {
            optimizer: Optimizer::sgd(0.3),
            weight_decay: wd,
            batch_size: m,
        };
        let order: Vec<u32> = (0..m as u32).collect();
        for _ in 0..20_000 {
            fit_epoch(&mut p, &mut st, &xs, &ts, &order, &opts).unwrap();
        }
        let max_w = closed
            .weight()
            .iter()
            .zip(p.weight())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let max_b = closed
            .bias()
            .unwrap()
            .iter()
            .zip(p.bias().unwrap())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max_w < 1e-3 && max_b < 1e-3, "weights differ by {max_w}, biases by {max_b}");

        // lambda = 0 without bias: GD from zero reaches the minimum-norm solution.
        let closed0 = Subspace::fit(
            &target,
            &xs,
            m,
            &FitOptions {
                ridge: 0.0,
                affine: false,
                rank_tol: 1e-4,
                ..Default::default()
            },
        )
        .unwrap()
        .to_dense(&target)
        .unwrap();
        let Target::Linear(a) = &target else { unreachable!() };
        let mut p0 = Linear::new(d, k, true, Init::Zeros, &mut Rng::new(0)).unwrap();
        p0.bias_mut().unwrap().copy_from_slice(a.bias().unwrap());
        let mut p0 = Linear::from_parts(d, k, p0.weight().to_vec(), None).unwrap();
        // Fit W x ~ A x (the target bias is matched exactly by copying it).
        let mut ts0 = std::vec![0.0; m * k];
        Linear::from_parts(d, k, a.weight().to_vec(), None)
            .unwrap()
            .forward_batch(&xs, m, &mut ts0)
            .unwrap();
        let mut st0 = OptState::for_layer(&p0);
        let opts0 = StepOptions { weight_decay: 0.0, ..opts };
        for _ in 0..20_000 {
            fit_epoch(&mut p0, &mut st0, &xs, &ts0, &order, &opts0).unwrap();
        }
        let max0 = closed0
            .weight()
            .iter()
            .zip(p0.weight())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max0 < 1e-3, "min-norm weights differ by {max0}");
    }

    #[test]
    fn errors_are_typed() {
        let t: Target<Vec<f32>> = Target::Identity { dim: 3 };
        assert_eq!(Subspace::fit(&t, &[], 0, &FitOptions::default()), Err(Error::EmptyClass));
        assert_eq!(
            Subspace::fit(&t, &[1.0, f32::NAN, 0.0], 1, &FitOptions::default()),
            Err(Error::NonFinite)
        );
        assert!(matches!(
            Subspace::fit(&t, &[1.0, 2.0], 1, &FitOptions::default()),
            Err(Error::DimensionMismatch { .. })
        ));
        let bad = FitOptions {
            ridge: -1.0,
            ..Default::default()
        };
        assert_eq!(Subspace::fit(&t, &[1.0, 2.0, 3.0], 1, &bad), Err(Error::InvalidParameter));
        // Capacity 2 keeps the two strongest of three directions.
        let mut xs = [3.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0];
        let (mut mean, mut basis, mut shrink) = ([0.0; 3], [0.0; 6], [0.0; 2]);
        let buf = SubspaceBuf {
            mean: &mut mean,
            basis: &mut basis,
            shrink: &mut shrink,
            proj: &mut [],
            target_mean: &mut [],
        };
        let opts = FitOptions {
            affine: false,
            ridge: 1.0,
            ..Default::default()
        };
        assert_eq!(fit_into(&t, &mut xs, 3, &opts, 2, buf, &mut [0.0; fit_scratch_len(3, 3, 3)]), Ok(2));
        assert!(
            (basis[0].abs() - 1.0).abs() < 1e-6 && (basis[5].abs() - 1.0).abs() < 1e-6,
            "{basis:?}"
        );
        assert!((shrink[0] - 0.9).abs() < 1e-6 && (shrink[1] - 0.8).abs() < 1e-6, "{shrink:?}");
        let buf = SubspaceBuf {
            mean: &mut mean,
            basis: &mut basis,
            shrink: &mut shrink,
            proj: &mut [],
            target_mean: &mut [],
        };
        assert_eq!(fit_into(&t, &mut xs, 3, &opts, 2, buf, &mut [0.0; 4]), Err(Error::BufferTooSmall));
    }
}
