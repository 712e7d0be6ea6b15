//! Many samples at once on the host: every class's distance for a whole test set through
//! large matrix products, instead of one matrix-vector product per sample and class.
//!
//! Two pieces of algebra make it fast. A dense predictor's distance is
//! `||D x + e||^2` with `D = W - A`, `e = b - a`; when `k > d` it is cheaper as
//! `x^T G x + 2 h.x + e.e` with `G = D^T D` (d x d) and `h = D^T e`. A closed-form class
//! costs two thin products (`X U^T`, then `k x r`), since its predictor has rank r.

use crate::classify::Classes;
use crate::error::{check_len, Error, Result};
use crate::linalg::{self, dot, matmul_nn, matmul_nt, matmul_tn};
use crate::linear::Target;
use crate::predictor::Predictor;
use alloc::vec;
use alloc::vec::Vec;

/// Rows per block: bounds memory (a block of `k`-wide rows) and keeps blocks in cache.
const BLOCK: usize = 1024;

/// Fills `out` (row-major `n x C`) with every class's distance for each of the `n` samples
/// in `xs` (row-major `n x d`), averaged over ensemble members: the same numbers as
/// [`crate::classify()`] gives one sample at a time, up to rounding.
pub fn distances(classes: &impl Classes, xs: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
    let c = classes.len();
    if c == 0 {
        return Err(Error::EmptyClass);
    }
    check_len(n * c, out.len())?;
    out.iter_mut().for_each(|v| *v = 0.0);
    let members = classes.members();
    for m in 0..members {
        let target = classes.target(m)?;
        let (d, k) = (target.inputs(), target.outputs());
        check_len(n * d, xs.len())?;
        // Per-class precomputation, shared by all blocks.
        let prepared: Vec<Prepared> = (0..c).map(|j| prepare(&target, &classes.predictor(m, j)?)).collect::<Result<_>>()?;
        for start in (0..n).step_by(BLOCK) {
            let nb = BLOCK.min(n - start);
            let xb = &xs[start * d..(start + nb) * d];
            let mut qx = vec![0.0; nb * k];
            target.forward_batch(xb, nb, &mut qx)?;
            for (j, prep) in prepared.iter().enumerate() {
                let p = classes.predictor(m, j)?;
                let dist = class_distances(&p, prep, xb, &qx, nb, d, k)?;
                for (i, v) in dist.iter().enumerate() {
                    out[(start + i) * c + j] += v / members as f32;
                }
            }
        }
    }
    if out.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite);
    }
    Ok(())
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

enum Prepared {
    /// Dense with k > d: G = D^T D, h = D^T e, ee = e.e.
    Gram { g: Vec<f32>, h: Vec<f32>, ee: f32 },
    /// Dense, direct: P(X) then compare with Q(X).
    Direct,
    /// Closed form: U mean.
    Subspace { umean: Vec<f32> },
}

fn prepare(target: &Target<&[f32]>, p: &Predictor<&[f32]>) -> Result<Prepared> {
    let (d, k) = (target.inputs(), target.outputs());
    match p {
        Predictor::Dense(l) if k > d => {
            // D = W - A (A = I for an identity target, but then k = d); e = b - a.
            let mut dm = l.weight().to_vec();
            let mut e = l.bias().map_or(vec![0.0; k], |b| b.to_vec());
            if let Target::Linear(a) = target {
                dm.iter_mut().zip(a.weight()).for_each(|(x, y)| *x -= y);
                if let Some(ab) = a.bias() {
                    e.iter_mut().zip(ab).for_each(|(x, y)| *x -= y);
                }
            }
            let mut g = vec![0.0; d * d];
            matmul_tn(&dm, k, d, &dm, d, &mut g)?;
            let mut h = vec![0.0; d];
            linalg::gemv_t(&dm, k, d, &e, &mut h)?;
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
    }
}

fn class_distances(p: &Predictor<&[f32]>, prep: &Prepared, xb: &[f32], qx: &[f32], nb: usize, d: usize, k: usize) -> Result<Vec<f32>> {
    let mut dist = vec![0.0; nb];
    match (p, prep) {
        (_, Prepared::Gram { g, h, ee }) => {
            let mut y = vec![0.0; nb * d];
            matmul_nn(xb, nb, d, g, d, &mut y)?;
            for i in 0..nb {
                let x = &xb[i * d..(i + 1) * d];
                let v = dot(&y[i * d..(i + 1) * d], x) + 2.0 * dot(h, x) + ee;
                dist[i] = v.max(0.0) / k as f32;
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
            let mut u = vec![0.0; nb * r];
            matmul_nt(xb, nb, d, s.basis(), r, &mut u)?;
            for row in u.chunks_exact_mut(r.max(1)).take(nb) {
                row.iter_mut().zip(umean).for_each(|(a, b)| *a -= b);
            }
            let w = s.shrink();
            match (s.proj(), s.target_mean()) {
                (Some(b), Some(tm)) => {
                    // p = w . u; e = (Q(x) - Q(mu)) - B p.
                    for row in u.chunks_exact_mut(r.max(1)).take(nb) {
                        row.iter_mut().zip(w).for_each(|(a, wi)| *a *= wi);
                    }
                    let mut pb = vec![0.0; nb * k];
                    matmul_nt(&u, nb, r, b, k, &mut pb)?;
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
                    // ||z||^2 - sum (2 w - w^2) u^2, z = x - mu.
                    let zero = vec![0.0; d];
                    let mu = s.mean().unwrap_or(&zero);
                    let c: Vec<f32> = w.iter().map(|wi| 2.0 * wi - wi * wi).collect();
                    for i in 0..nb {
                        let x = &xb[i * d..(i + 1) * d];
                        let mut acc: f32 = x.iter().zip(mu).map(|(a, m)| (a - m) * (a - m)).sum();
                        if r > 0 {
                            acc -= u[i * r..(i + 1) * r].iter().zip(&c).map(|(ui, ci)| ci * ui * ui).sum::<f32>();
                        }
                        dist[i] = acc.max(0.0) / d as f32;
                    }
                }
            }
        }
        _ => return Err(Error::InvalidParameter),
    }
    Ok(dist)
}
