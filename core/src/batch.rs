//! Many samples at once on the host: every class's distance for a whole test set through
//! large matrix products, instead of one matrix-vector product per sample and class.
//!
//! Two pieces of algebra make it fast. A dense predictor's distance is
//! `||D x + e||^2` with `D = W - A`, `e = b - a`; when `k > d` it is cheaper as
//! `x^T G x + 2 h.x + e.e` with `G = D^T D` (d x d) and `h = D^T e`, and `x^T G x` takes
//! half of `X G` by symmetry (column panels of `G`, each with only the rows from its own
//! down, those below doubled: `gram_panels`). A closed-form class
//! costs two thin products (`X U^T`, then `k x r`), since its predictor has rank r.
//!
//! Both products run only on the inputs that are non-zero in some sample (`live_columns`):
//! a column of `X` that is zero throughout adds nothing to them.
// Opts out of the crate's indexing and overflow lints: host only (alloc), on matrices the
// trainer allocated to the sizes it indexes them with.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::classify::Classes;
use crate::columns::{column_runs, gather_columns, live_columns};
use crate::error::{check_len, Error, Result};
use crate::linalg::{self, dot, matmul_nn, matmul_nt};

use crate::linear::Target;
use crate::predictor::Predictor;
use alloc::vec;
use alloc::vec::Vec;

/// Rows per block: bounds memory (a block of stacked per-class products), keeps blocks in
/// cache and gives the cores several blocks each (10 for MNIST's test set).
const BLOCK: usize = 1024;

/// Fills `out` (row-major `n x C`) with every class's distance for each of the `n` samples
/// in `xs` (row-major `n x d`), averaged over ensemble members: the same numbers as
/// [`crate::classify()`] gives one sample at a time, up to rounding.
///
/// The classes of a member are evaluated together: the Gram matrices of all dense classes
/// side by side, and the bases of all closed-form classes stacked, so each block of samples
/// costs one large matrix product per kind instead of one small one per class.
///
/// With a query alignment ([`Classes::alignment`]) a class's distance is its least over
/// each sample and its warps, as [`crate::classify()`] takes it (one member only).
pub fn distances(classes: &impl Classes, xs: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
    let Some(al) = classes.alignment()? else {
        return plain(classes, xs, n, out);
    };
    if classes.members() != 1 {
        return Err(Error::InvalidParameter);
    }
    plain(classes, xs, n, out)?;
    let d = classes.target(0)?.inputs();
    check_len(n * d, xs.len())?;
    let mut view = vec![0.0; xs.len()];
    let mut other = vec![0.0; out.len()];
    for inv in al.warps {
        for (x, v) in xs.chunks_exact(d).zip(view.chunks_exact_mut(d)) {
            crate::augment::warp(x, al.width, al.height, inv, v)?;
        }
        plain(classes, &view, n, &mut other)?;
        crate::augment::keep_least(out, &other);
    }
    Ok(())
}

/// [`distances`] without an alignment: of the samples as they are.
fn plain(classes: &impl Classes, xs: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
    let c = classes.len();
    if c == 0 {
        return Err(Error::EmptyClass);
    }
    check_len(n * c, out.len())?;
    out.iter_mut().for_each(|v| *v = 0.0);
    let members = classes.members();
    // The live columns' runs, found once for the members' input size `live.0`.
    let mut live: Option<(usize, Live)> = None;
    for m in 0..members {
        let target = classes.target(m)?;
        let d = target.inputs();
        check_len(n * d, xs.len())?;
        if live.as_ref().map(|l| l.0) != Some(d) {
            live = Some((d, Live::of(xs, n, d)));
        }
        let Some((_, live)) = live.as_ref() else {
            return Err(Error::EmptyClass);
        };
        let stacked = Stacked::new(classes, m, target, n, live)?;
        // Blocks are independent: with `parallel` they go to different cores. A sample's
        // distances do not depend on the block it is in, so neither do the results.
        let starts: Vec<usize> = (0..n).step_by(BLOCK).collect();
        let blocks = crate::parallel::map_init(&starts, || (Vec::new(), Vec::new()), |bufs, &s| stacked.block(xs, n, s, bufs));
        for (&start, block) in starts.iter().zip(blocks) {
            let block = block?;
            out[start * c..start * c + block.len()]
                .iter_mut()
                .zip(&block)
                .for_each(|(o, v)| *o += v / members as f32);
        }
    }
    if out.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite);
    }
    Ok(())
}

/// The inputs that are non-zero in some sample, as runs of consecutive columns.
struct Live {
    runs: Vec<(usize, usize)>,
    /// How many (`dc`).
    count: usize,
}

impl Live {
    fn of(xs: &[f32], n: usize, d: usize) -> Live {
        let cols = live_columns(xs, n, d);
        Live {
            runs: column_runs(&cols),
            count: cols.len(),
        }
    }
}

/// One member's classes, prepared for blocks of samples: the Gram matrices' lower panels
/// side by side, the closed-form bases one under another.
struct Stacked<'a> {
    target: Target<&'a [f32]>,
    preds: Vec<Predictor<&'a [f32]>>,
    prepared: Vec<Prepared>,
    live: &'a Live,
    panels: Vec<Panel>,
    /// Gram classes (slots of `panels`).
    ng: usize,
    /// The bases over the live columns, stacked (`rt x dc`); class `j`'s starts at row
    /// `uoff[j]`.
    ustack: Vec<f32>,
    uoff: Vec<usize>,
    rt: usize,
    /// Whether some class needs `Q(x)` of the block.
    need_q: bool,
}

impl<'a> Stacked<'a> {
    fn new(classes: &'a impl Classes, m: usize, target: Target<&'a [f32]>, n: usize, live: &'a Live) -> Result<Self> {
        let (c, d, dc) = (classes.len(), target.inputs(), live.count);
        let preds: Vec<Predictor<&[f32]>> = (0..c).map(|j| classes.predictor(m, j)).collect::<Result<_>>()?;
        let mut prepared: Vec<Prepared> = crate::parallel::map(&preds, |p| prepare(&target, p, n, dc, &live.runs))
            .into_iter()
            .collect::<Result<_>>()?;
        let gram_classes: Vec<usize> = (0..c).filter(|&j| matches!(prepared[j], Prepared::Gram { .. })).collect();
        let panels = {
            let grams: Vec<&[f32]> = gram_classes
                .iter()
                .map(|&j| match &prepared[j] {
                    Prepared::Gram { g, .. } => g.as_slice(),
                    _ => &[],
                })
                .collect();
            gram_panels(&grams, dc)
        };
        for &j in &gram_classes {
            // The panels hold the Gram matrices from here on: free each class's copy.
            if let Prepared::Gram { g, .. } = &mut prepared[j] {
                drop(core::mem::take(g));
            }
        }
        let mut ustack = Vec::new();
        let mut uoff = vec![0usize; c];
        for (j, p) in preds.iter().enumerate() {
            if let Predictor::Subspace(s) = p {
                uoff[j] = ustack.len() / dc.max(1);
                gather_columns(s.basis(), d, &live.runs, &mut ustack);
            }
        }
        let need_q = preds.iter().any(|p| match p {
            Predictor::Dense(_) => true,
            Predictor::Subspace(s) => s.proj().is_some(),
            // A compact class computes its Q(x) sample by sample, as `classify` does.
            Predictor::Compact(_) => false,
        }) && gram_classes.len() != c;
        Ok(Stacked {
            rt: ustack.len() / dc.max(1),
            target,
            preds,
            prepared,
            live,
            panels,
            ng: gram_classes.len(),
            ustack,
            uoff,
            need_q,
        })
    }

    /// The distances (row-major `nb x c`) of the block of samples from `start`, with reused
    /// buffers for its live columns and its `X U^T` (fresh ones per block cost page faults
    /// and zeroing as large as the product's output).
    fn block(&self, xs: &[f32], n: usize, start: usize, bufs: &mut (Vec<f32>, Vec<f32>)) -> Result<Vec<f32>> {
        let (xc_buf, xu_buf) = bufs;
        let (d, k, dc, rt) = (self.target.inputs(), self.target.outputs(), self.live.count, self.rt);
        let nb = BLOCK.min(n - start);
        let xb = &xs[start * d..(start + nb) * d];
        let xcb = if dc < d {
            xc_buf.clear();
            gather_columns(xb, d, &self.live.runs, xc_buf);
            &xc_buf[..]
        } else {
            xb
        };
        let mut qx = Vec::new();
        if self.need_q {
            qx = vec![0.0; nb * k];
            self.target.forward_batch(xb, nb, &mut qx)?;
        }
        let quad = quadratic_forms(&self.panels, self.ng, xcb, nb, dc)?;
        xu_buf.resize(nb * rt, 0.0);
        let xu = &mut xu_buf[..nb * rt];
        if rt > 0 {
            matmul_nt(xcb, nb, dc, &self.ustack, rt, xu)?;
        }
        let norms: Vec<f32> = xb.chunks_exact(d).map(linalg::norm2).collect();
        let ctx = Block {
            target: &self.target,
            xb,
            xcb,
            dc,
            qx: &qx,
            quad: &quad,
            xu,
            rt,
            norms: &norms,
            nb,
            d,
            k,
        };
        let c = self.preds.len();
        let mut block = vec![0.0f32; nb * c];
        let mut slot = 0;
        for (j, (p, prep)) in self.preds.iter().zip(&self.prepared).enumerate() {
            let dist = class_distances(p, prep, &ctx, slot, self.uoff[j])?;
            if matches!(prep, Prepared::Gram { .. }) {
                slot += 1;
            }
            for (i, v) in dist.iter().enumerate() {
                block[i * c + j] = *v;
            }
        }
        Ok(block)
    }
}

/// One block of samples and the products shared by its classes.
struct Block<'a> {
    target: &'a Target<&'a [f32]>,
    xb: &'a [f32],
    /// The same samples' live columns only (`dc` per sample).
    xcb: &'a [f32],
    dc: usize,
    qx: &'a [f32],
    /// `x^T G x` of each Gram class (slot-major: `quad[slot * nb + i]`).
    quad: &'a [f32],
    xu: &'a [f32],
    rt: usize,
    norms: &'a [f32],
    nb: usize,
    d: usize,
    k: usize,
}

/// Index of the closest class for each sample.
pub fn predict(classes: &impl Classes, xs: &[f32], n: usize) -> Result<Vec<usize>> {
    let c = classes.len();
    let mut dist = vec![0.0; n * c];
    distances(classes, xs, n, &mut dist)?;
    Ok(dist
        .chunks_exact(c)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::INFINITY), |b, (i, &v)| if v < b.1 { (i, v) } else { b })
                .0
        })
        .collect())
}

/// Width of a column panel of the Gram matrices.
const PANEL: usize = 64;

/// One column panel `i0..i1` of every Gram matrix, for `x^T G x` at half the cost of `X G`:
/// rows `i0..d` of the panel's columns, side by side over the classes (row-major
/// `(d - i0) x (ng * w)`, `w = i1 - i0`), rows below the panel doubled. Then
/// `x^T G x = sum over panels of x[i0..i1] . (x[i0..] G'[i0.., i0..i1])`: each pair of
/// panels `I < J` counted once, doubled, by symmetry.
struct Panel {
    i0: usize,
    i1: usize,
    op: Vec<f32>,
}

fn gram_panels(grams: &[&[f32]], d: usize) -> Vec<Panel> {
    let ng = grams.len();
    if ng == 0 {
        return Vec::new();
    }
    (0..d)
        .step_by(PANEL)
        .map(|i0| {
            let i1 = (i0 + PANEL).min(d);
            let w = i1 - i0;
            let mut op = vec![0.0; (d - i0) * ng * w];
            for r in i0..d {
                let scale = if r < i1 { 1.0 } else { 2.0 };
                let row = &mut op[(r - i0) * ng * w..(r - i0 + 1) * ng * w];
                for (slot, g) in grams.iter().enumerate() {
                    let src = &g[r * d + i0..r * d + i1];
                    row[slot * w..(slot + 1) * w].iter_mut().zip(src).for_each(|(o, v)| *o = scale * v);
                }
            }
            Panel { i0, i1, op }
        })
        .collect()
}

/// `x^T G x` for each of the `nb` samples of `xb` and each of the `ng` Gram matrices held by
/// `panels`, slot-major.
fn quadratic_forms(panels: &[Panel], ng: usize, xb: &[f32], nb: usize, d: usize) -> Result<Vec<f32>> {
    let mut quad = vec![0.0f32; ng * nb];
    let mut xs = Vec::new();
    let mut z = Vec::new();
    for p in panels {
        let (i0, w) = (p.i0, p.i1 - p.i0);
        // The samples' columns i0..d, contiguous for the product.
        xs.clear();
        for x in xb.chunks_exact(d) {
            xs.extend_from_slice(&x[i0..]);
        }
        z.clear();
        z.resize(nb * ng * w, 0.0);
        matmul_nn(&xs, nb, d - i0, &p.op, ng * w, &mut z)?;
        for (i, x) in xb.chunks_exact(d).enumerate() {
            let xp = &x[i0..p.i1];
            let zi = &z[i * ng * w..(i + 1) * ng * w];
            for slot in 0..ng {
                quad[slot * nb + i] += dot(xp, &zi[slot * w..(slot + 1) * w]);
            }
        }
    }
    Ok(quad)
}

enum Prepared {
    /// Dense, many samples: G = D^T D, h = D^T e, ee = e.e.
    Gram { g: Vec<f32>, h: Vec<f32>, ee: f32 },
    /// Dense, direct: P(X) then compare with Q(X).
    Direct,
    /// Closed form: U mean.
    Subspace { umean: Vec<f32> },
    /// One sample at a time through the device's own code (compact classes: their integer
    /// products give the device's bits).
    PerSample,
}

/// Chooses how to evaluate a class on `n` samples. The Gram form costs `k d^2` once plus
/// about `n d (d + PANEL) / 2` (the panels), the direct form `n k d`. So it wins for many
/// samples even at `k = d` (the naive form), not only for `k > d`.
///
/// The Gram form is built on the `dc` live columns (in `runs`) only: `G` is `dc x dc`, `h`
/// has `dc` entries.
fn prepare(target: &Target<&[f32]>, p: &Predictor<&[f32]>, n: usize, dc: usize, runs: &[(usize, usize)]) -> Result<Prepared> {
    let (d, k) = (target.inputs(), target.outputs());
    let gram_cost = (k * dc * dc) as u64 + (n * dc * (dc + PANEL) / 2) as u64;
    match p {
        Predictor::Dense(l) if gram_cost < (n * k * d) as u64 => {
            // D = W - A (A = I for an identity target, where k = d); e = b - a.
            let mut dm = l.weight().to_vec();
            let mut e = l.bias().map_or(vec![0.0; k], |b| b.to_vec());
            match target {
                Target::Linear(a) => {
                    dm.iter_mut().zip(a.weight()).for_each(|(x, y)| *x -= y);
                    if let Some(ab) = a.bias() {
                        e.iter_mut().zip(ab).for_each(|(x, y)| *x -= y);
                    }
                }
                Target::Identity { .. } => (0..k.min(d)).for_each(|i| dm[i * d + i] -= 1.0),
            }
            if dc < d {
                let full = core::mem::take(&mut dm);
                dm.reserve(k * dc);
                gather_columns(&full, d, runs, &mut dm);
            }
            // Only the lower panels of G are read (`gram_panels`): half the product.
            let mut g = vec![0.0; dc * dc];
            linalg::gram_lower_panels(&dm, k, dc, PANEL, &mut g)?;
            let mut h = vec![0.0; dc];
            linalg::gemv_t(&dm, k, dc, &e, &mut h)?;
            Ok(Prepared::Gram { g, h, ee: dot(&e, &e) })
        }
        Predictor::Dense(_) => Ok(Prepared::Direct),
        Predictor::Subspace(s) => {
            let r = s.rank();
            let mut umean = vec![0.0; r];
            if let Some(mu) = s.mean() {
                linalg::gemv(s.basis(), r, d, mu, None, &mut umean)?;
            }
            Ok(Prepared::Subspace { umean })
        }
        Predictor::Compact(_) => Ok(Prepared::PerSample),
    }
}

fn class_distances(p: &Predictor<&[f32]>, prep: &Prepared, b: &Block<'_>, gram_slot: usize, uoff: usize) -> Result<Vec<f32>> {
    let Block {
        target,
        xb,
        xcb,
        dc,
        qx,
        quad,
        xu,
        rt,
        norms,
        nb,
        d,
        k,
    } = *b;
    let mut dist = vec![0.0; nb];
    match (p, prep) {
        (_, Prepared::Gram { h, ee, .. }) => {
            for i in 0..nb {
                let x = &xcb[i * dc..(i + 1) * dc];
                let v = quad[gram_slot * nb + i] + 2.0 * dot(h, x) + ee;
                // NaN (an overflow) stays NaN, for the caller's finiteness check.
                dist[i] = if v.is_finite() { v.max(0.0) / k as f32 } else { f32::NAN };
            }
        }
        (Predictor::Dense(l), Prepared::Direct) => {
            let mut px = vec![0.0; nb * k];
            l.forward_batch(xb, nb, &mut px)?;
            for i in 0..nb {
                let (a, b) = (&px[i * k..(i + 1) * k], &qx[i * k..(i + 1) * k]);
                dist[i] = a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum::<f32>() / k as f32;
            }
        }
        (Predictor::Subspace(s), Prepared::Subspace { umean }) => {
            let r = s.rank();
            let w = s.shrink();
            // u = U (x - mu) for the block, from the stacked product.
            let mut u = vec![0.0; nb * r];
            for i in 0..nb {
                for t in 0..r {
                    u[i * r + t] = xu[i * rt + uoff + t] - umean[t];
                }
            }
            match (s.proj(), s.target_mean()) {
                (Some(bm), Some(tm)) => {
                    // p = w . u; e = (Q(x) - Q(mu)) - B p.
                    for row in u.chunks_exact_mut(r.max(1)).take(nb) {
                        row.iter_mut().zip(w).for_each(|(a, wi)| *a *= wi);
                    }
                    let mut pb = vec![0.0; nb * k];
                    matmul_nt(&u, nb, r, bm, k, &mut pb)?;
                    for i in 0..nb {
                        let mut acc = 0.0f32;
                        for j in 0..k {
                            let e = qx[i * k + j] - tm[j] - pb[i * k + j];
                            acc += e * e;
                        }
                        dist[i] = acc / k as f32;
                    }
                }
                _ => {
                    // ||z||^2 - sum (2 w - w^2) u^2 with ||z||^2 = ||x||^2 - 2 x.mu + ||mu||^2.
                    let c: Vec<f32> = w.iter().map(|wi| 2.0 * wi - wi * wi).collect();
                    let (mu_dot, mu_n2) = match s.mean() {
                        Some(mu) => (Some(mu), linalg::norm2(mu)),
                        None => (None, 0.0),
                    };
                    for i in 0..nb {
                        let x = &xb[i * d..(i + 1) * d];
                        let mut acc = norms[i];
                        if let Some(mu) = mu_dot {
                            acc += mu_n2 - 2.0 * dot(x, mu);
                        }
                        acc -= u[i * r..(i + 1) * r].iter().zip(&c).map(|(ui, ci)| ci * ui * ui).sum::<f32>();
                        dist[i] = if acc.is_finite() { acc.max(0.0) / d as f32 } else { f32::NAN };
                    }
                }
            }
        }
        (Predictor::Compact(cp), Prepared::PerSample) => {
            let mut scratch = vec![0.0; crate::compact::distance_scratch_len(cp.shape())];
            let mut q = vec![0.0; if cp.shape().linear { k } else { 0 }];
            for (i, x) in xb.chunks_exact(d).enumerate().take(nb) {
                if cp.shape().linear {
                    target.forward(x, &mut q)?;
                }
                dist[i] = cp.distance(x, &q, &mut scratch)?;
            }
        }
        _ => return Err(Error::InvalidParameter),
    }
    Ok(dist)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The panelled `x^T G x` equals the plain double sum, for a size with several panels
    /// and a last, narrower one.
    #[test]
    fn panelled_quadratic_forms_equal_the_plain_sum() {
        let (d, ng, nb) = (2 * PANEL + 22, 3, 7);
        let mut rng = Rng::new(5);
        let grams: Vec<Vec<f32>> = (0..ng)
            .map(|_| {
                // G = M^T M, symmetric.
                let m: Vec<f32> = (0..d * d).map(|_| rng.normal()).collect();
                let mut g = vec![0.0; d * d];
                linalg::matmul_tn(&m, d, d, &m, d, &mut g).unwrap();
                g
            })
            .collect();
        let refs: Vec<&[f32]> = grams.iter().map(Vec::as_slice).collect();
        let panels = gram_panels(&refs, d);
        assert_eq!(panels.len(), 3);
        let xb: Vec<f32> = (0..nb * d).map(|_| rng.normal()).collect();
        let quad = quadratic_forms(&panels, ng, &xb, nb, d).unwrap();
        for (slot, g) in grams.iter().enumerate() {
            for i in 0..nb {
                let x = &xb[i * d..(i + 1) * d];
                let mut want = 0.0f64;
                for r in 0..d {
                    for c in 0..d {
                        want += x[r] as f64 * g[r * d + c] as f64 * x[c] as f64;
                    }
                }
                let got = quad[slot * nb + i] as f64;
                assert!((got - want).abs() <= 1e-4 * want.abs(), "slot {slot} sample {i}: {got} vs {want}");
            }
        }
        assert!(gram_panels(&[], d).is_empty());
    }
}
