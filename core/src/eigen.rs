//! The strongest eigenpairs of a symmetric matrix, without its whole eigenvector matrix:
//! what an enrollment needs from the `m x m` Gram matrix of a class's samples, whose `R`
//! strongest directions it keeps (`R` well below `m`).
//!
//! Householder reduction to tridiagonal form (in place, the reflectors kept where the matrix
//! was), the tridiagonal matrix's eigenvalues by the implicit QL algorithm without vectors,
//! the eigenvectors of the `count` largest by inverse iteration on the tridiagonal matrix
//! (re-orthogonalised within clusters, as LAPACK's `dstein`), and the reflectors applied to
//! them. About `4/3 m^3 + 2 count m^2` operations, in the matrix's own storage: once it is
//! tridiagonal the reflectors are packed into its lower half and the vectors written after
//! them ([`top_matrix_len`]), against `~6 m^3` and a second `m x m` matrix for the full QL
//! with vectors ([`crate::linalg::sym_eigen`]). Every step is plain `f32` code in a fixed
//! order, so the host and a Cortex-M give the same bits.
// Opts out of the crate's indexing and overflow lints: dense kernels on the m x m Gram
// matrix, whose only caller (`fit`) checks every size before calling; a checked access per
// element would cost the Cortex-M a branch in each inner loop.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::error::{Error, Result};
use crate::linalg::{axpy, dot, norm2, sqrt};

/// Householder reduction of the symmetric `n x n` matrix `a` (row-major; its lower triangle
/// is read) to the tridiagonal `T = Q^T A Q`: its diagonal into `diag`, its sub-diagonal into
/// `off` (`off[i]` couples rows `i - 1` and `i`; `off[0] = 0`). `Q = P_{n-1} ... P_1`, with
/// `P_i = I - u_i u_i^T / h_i` on the first `i` coordinates: `u_i` is kept in row `i` of `a`
/// (columns `0..i`) and `h_i` in `h[i]` (0: no reflection). EISPACK's `tred2` without its
/// accumulation of `Q`.
pub fn tridiagonalize(a: &mut [f32], n: usize, diag: &mut [f32], off: &mut [f32], h: &mut [f32]) -> Result<()> {
    crate::error::check_len(n * n, a.len())?;
    if diag.len() < n || off.len() < n || h.len() < n {
        return Err(Error::BufferTooSmall);
    }
    let e = &mut off[..n];
    for i in (1..n).rev() {
        let l = i - 1;
        let mut hi = 0.0f32;
        if l > 0 {
            let scale: f32 = a[i * n..i * n + l + 1].iter().map(|v| v.abs()).sum();
            if scale == 0.0 {
                e[i] = a[i * n + l];
            } else {
                for k in 0..=l {
                    a[i * n + k] /= scale;
                    hi += a[i * n + k] * a[i * n + k];
                }
                let f = a[i * n + l];
                let g = if f >= 0.0 { -sqrt(hi) } else { sqrt(hi) };
                e[i] = scale * g;
                hi -= f * g;
                a[i * n + l] = f - g;
                // p = A u / h over the active block, row by row on the lower triangle.
                let (top, row_i) = a.split_at_mut(i * n);
                let u = &row_i[..=l];
                let p = &mut e[..=l];
                p.iter_mut().for_each(|v| *v = 0.0);
                for j in 0..=l {
                    let row = &top[j * n..j * n + j];
                    p[j] += dot(row, &u[..j]) + top[j * n + j] * u[j];
                    axpy(u[j], row, &mut p[..j]);
                }
                let mut f = 0.0f32;
                for j in 0..=l {
                    p[j] /= hi;
                    f += p[j] * u[j];
                }
                let hh = f / (hi + hi);
                // A -= u q^T + q u^T on the lower triangle, q = p - hh u.
                for j in 0..=l {
                    let f = u[j];
                    let g = p[j] - hh * f;
                    p[j] = g;
                    let (rj, pk, uk) = (&mut top[j * n..j * n + j + 1], &p[..=j], &u[..=j]);
                    for ((a, &pk), &uk) in rj.iter_mut().zip(pk).zip(uk) {
                        *a -= f * pk + g * uk;
                    }
                }
            }
        } else {
            e[i] = a[i * n + l];
        }
        h[i] = hi;
    }
    if n > 0 {
        e[0] = 0.0;
        h[0] = 0.0;
    }
    for i in 0..n {
        diag[i] = a[i * n + i];
    }
    Ok(())
}

/// `sqrt(x^2 + y^2)` without overflow, in `f32` and the same operations everywhere (libm's
/// `hypotf` works in `f64`, which a Cortex-M4F does in software).
fn hypot(x: f32, y: f32) -> f32 {
    let (x, y) = (x.abs(), y.abs());
    let (a, b) = if x >= y { (x, y) } else { (y, x) };
    if a == 0.0 {
        return 0.0;
    }
    let r = b / a;
    a * sqrt(1.0 + r * r)
}

/// Every eigenvalue of the tridiagonal matrix (`diag`, `off` as [`tridiagonalize`] gives
/// them), in decreasing order, into `values`: the implicit QL algorithm with Wilkinson
/// shifts (EISPACK's `tql1`). `work` holds `n` values.
pub fn tridiagonal_eigenvalues(diag: &[f32], off: &[f32], values: &mut [f32], work: &mut [f32]) -> Result<()> {
    let n = diag.len();
    if off.len() < n || values.len() < n || work.len() < n {
        return Err(Error::BufferTooSmall);
    }
    let d = &mut values[..n];
    let e = &mut work[..n];
    d.copy_from_slice(diag);
    if n == 0 {
        return Ok(());
    }
    e[..n - 1].copy_from_slice(&off[1..n]);
    e[n - 1] = 0.0;
    // Negligible against the largest row of the whole matrix (see `sym_eigen`).
    let tst1 = (0..n).map(|l| d[l].abs() + e[l].abs()).fold(0.0f32, f32::max);
    // An infinite entry makes every other one "negligible" (inf <= inf): refuse it.
    if !tst1.is_finite() {
        return Err(Error::NonFinite);
    }
    for l in 0..n {
        let mut iter = 0;
        loop {
            let mut m = l;
            while m + 1 < n {
                if e[m].abs() <= f32::EPSILON * tst1 {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iter += 1;
            if iter > 100 {
                return Err(Error::NonFinite);
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = hypot(g, 1.0);
            g = d[m] - d[l] + e[l] / (g + if g >= 0.0 { r.abs() } else { -r.abs() });
            let (mut s, mut c, mut p) = (1.0f32, 1.0f32, 0.0f32);
            let mut i = m;
            let mut underflow = false;
            while i > l {
                i -= 1;
                let f = s * e[i];
                let b = c * e[i];
                r = hypot(f, g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if underflow {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    // Decreasing order (selection: n is at most a few hundred).
    for i in 0..n {
        let mut best = i;
        for j in i + 1..n {
            if d[j] > d[best] {
                best = j;
            }
        }
        d.swap(i, best);
    }
    if d.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite);
    }
    Ok(())
}

/// `T - lambda I` factored with partial pivoting (LAPACK's `dlagtf`): `U` with diagonal
/// `u0`, super-diagonals `u1`, `u2`, the multipliers `mult` and where rows were swapped.
struct Factor<'w> {
    u0: &'w mut [f32],
    u1: &'w mut [f32],
    u2: &'w mut [f32],
    mult: &'w mut [f32],
    swap: &'w mut [f32],
}

impl Factor<'_> {
    fn factor(&mut self, diag: &[f32], off: &[f32], lambda: f32, tiny: f32) {
        let n = diag.len();
        // The row being eliminated: its entries at columns k and k + 1.
        let (mut p0, mut p1) = (diag[0] - lambda, if n > 1 { off[1] } else { 0.0 });
        for k in 0..n.saturating_sub(1) {
            let (sub, dg, sup) = (off[k + 1], diag[k + 1] - lambda, if k + 2 < n { off[k + 2] } else { 0.0 });
            if p0.abs() >= sub.abs() {
                let piv = if p0 == 0.0 { tiny } else { p0 };
                let m = sub / piv;
                (self.u0[k], self.u1[k], self.u2[k], self.mult[k], self.swap[k]) = (piv, p1, 0.0, m, 0.0);
                (p0, p1) = (dg - m * p1, sup);
            } else {
                let m = p0 / sub;
                (self.u0[k], self.u1[k], self.u2[k], self.mult[k], self.swap[k]) = (sub, dg, sup, m, 1.0);
                (p0, p1) = (p1 - m * dg, -m * sup);
            }
        }
        self.u0[n - 1] = p0;
    }

    /// Solves `(T - lambda I) x = b` in place; pivots below `tiny` in magnitude count as
    /// `tiny` (the eigenvalue is exact to rounding, so `T - lambda I` is singular to it).
    fn solve(&self, b: &mut [f32], tiny: f32) {
        let n = b.len();
        // Forward: apply the row operations to b.
        for k in 0..n.saturating_sub(1) {
            if self.swap[k] != 0.0 {
                let (rk, rk1) = (b[k], b[k + 1]);
                b[k] = rk1;
                b[k + 1] = rk - self.mult[k] * rk1;
            } else {
                b[k + 1] -= self.mult[k] * b[k];
            }
        }
        // Back substitution.
        let piv = |v: f32| {
            if v.abs() < tiny {
                if v < 0.0 {
                    -tiny
                } else {
                    tiny
                }
            } else {
                v
            }
        };
        for k in (0..n).rev() {
            let mut s = b[k];
            if k + 1 < n {
                s -= self.u1[k] * b[k + 1];
            }
            if k + 2 < n {
                s -= self.u2[k] * b[k + 2];
            }
            b[k] = s / piv(self.u0[k]);
        }
    }
}

/// Scratch (f32s) that [`top_eigenpairs`] needs besides the matrix.
pub const fn top_scratch_len(n: usize) -> usize {
    n.saturating_mul(10)
}

/// Where [`top_eigenpairs`] leaves the eigenvectors in its matrix buffer: after the packed
/// reflectors (`n (n - 1) / 2` values).
pub const fn vectors_at(n: usize) -> usize {
    n.saturating_mul(n.saturating_sub(1)) / 2
}

/// f32s of the matrix buffer [`top_eigenpairs`] needs for an `n x n` matrix and `count`
/// vectors: the matrix, or the packed reflectors and the vectors, whichever is more.
pub const fn top_matrix_len(n: usize, count: usize) -> usize {
    let packed = vectors_at(n).saturating_add(count.saturating_mul(n));
    let full = n.saturating_mul(n);
    if packed > full {
        packed
    } else {
        full
    }
}

/// Inverse iterations per eigenvector (each solve gains a factor of about the distance to
/// the next eigenvalue over rounding; two are enough from a random start, one more settles
/// clusters after re-orthogonalisation).
const ITERATIONS: usize = 3;

/// The largest eigenvalues of the symmetric `n x n` matrix in `a[..n * n]` (destroyed), in
/// decreasing order, into `values`, and their unit eigenvectors: at most `count`, and only
/// while `keep(i, value_i)` holds (it is asked in order and the first `false` stops).
/// Returns how many were kept, `r`; eigenvector `i` is then `a[vectors_at(n) + i n..][..n]`.
/// `a` needs [`top_matrix_len`]`(n, count)` f32s and `scratch` [`top_scratch_len`]`(n)`.
/// Eigenvectors are defined up to sign; these are deterministic.
pub fn top_eigenpairs(
    a: &mut [f32],
    n: usize,
    count: usize,
    mut keep: impl FnMut(usize, f32) -> bool,
    values: &mut [f32],
    scratch: &mut [f32],
) -> Result<usize> {
    if count > n || a.len() < top_matrix_len(n, count) || values.len() < count || scratch.len() < top_scratch_len(n) {
        return Err(Error::BufferTooSmall);
    }
    if n == 0 || count == 0 {
        return Ok(0);
    }
    let (diag, rest) = scratch.split_at_mut(n);
    let (off, rest) = rest.split_at_mut(n);
    let (h, rest) = rest.split_at_mut(n);
    let (all, rest) = rest.split_at_mut(n);
    let (work, rest) = rest.split_at_mut(n);
    let (u0, rest) = rest.split_at_mut(n);
    let (u1, rest) = rest.split_at_mut(n);
    let (u2, rest) = rest.split_at_mut(n);
    let (mult, swap) = rest.split_at_mut(n);
    tridiagonalize(&mut a[..n * n], n, diag, off, h)?;
    tridiagonal_eigenvalues(diag, off, all, work)?;
    let count = (0..count).take_while(|&i| keep(i, all[i])).count();
    values[..count].copy_from_slice(&all[..count]);
    // Pack the reflectors (row i: its first i values) to the front; each moves down or
    // stays, before any later row is read.
    for i in 1..n {
        a.copy_within(i * n..i * n + i, vectors_at(i));
    }
    let (packed, rest) = a.split_at_mut(vectors_at(n));

    // Scale of T, for the pivot floor, the separation of close eigenvalues and clusters.
    let norm = (0..n)
        .map(|i| diag[i].abs() + off[i].abs() + if i + 1 < n { off[i + 1].abs() } else { 0.0 })
        .fold(0.0f32, f32::max);
    let rows = &mut rest[..count * n];
    if norm == 0.0 {
        // T = 0: any orthonormal vectors; the unit vectors.
        rows.iter_mut().for_each(|v| *v = 0.0);
        for k in 0..count {
            rows[k * n + k] = 1.0;
        }
        return Ok(count);
    }
    let eps = f32::EPSILON * norm;
    let tiny = eps;
    let cluster = 1e-3 * norm;
    let mut fac = Factor { u0, u1, u2, mult, swap };
    let mut rng = crate::rng::Rng::new(0x5EED_E16E);
    let mut first = 0usize; // first vector of the current cluster
    let mut prev = f32::INFINITY;
    for (k, &value) in values[..count].iter().enumerate() {
        let mut lambda = value;
        if k > 0 && prev - value > cluster {
            first = k;
        }
        // Eigenvalues closer than rounding would give the same vector: move this one apart.
        if k > 0 && prev - lambda < 10.0 * eps {
            lambda = prev - 10.0 * eps;
        }
        prev = lambda;
        fac.factor(diag, off, lambda, tiny);
        let (done, rest) = rows.split_at_mut(k * n);
        let x = &mut rest[..n];
        for v in x.iter_mut() {
            *v = rng.uniform(-1.0, 1.0);
        }
        for _ in 0..ITERATIONS {
            fac.solve(x, tiny);
            for j in first..k {
                let v = &done[j * n..(j + 1) * n];
                let c = dot(v, x);
                axpy(-c, v, x);
            }
            // Scale by the largest entry first, so that the norm cannot overflow.
            let big = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            if !big.is_finite() {
                return Err(Error::NonFinite);
            }
            if big == 0.0 {
                x.iter_mut().for_each(|v| *v = 1.0);
                continue;
            }
            let inv = 1.0 / big;
            x.iter_mut().for_each(|v| *v *= inv);
            let inv = 1.0 / sqrt(norm2(x));
            x.iter_mut().for_each(|v| *v *= inv);
        }
    }

    // Back to the original basis: x = P_{n-1} ... P_1 y.
    for k in 0..count {
        let x = &mut rows[k * n..(k + 1) * n];
        for i in 1..n {
            if h[i] == 0.0 {
                continue;
            }
            let u = &packed[vectors_at(i)..vectors_at(i) + i];
            let s = dot(u, &x[..i]) / h[i];
            axpy(-s, u, &mut x[..i]);
        }
    }
    if rows.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::sym_eigen;
    use crate::rng::Rng;
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    fn gram(m: usize, d: usize, seed: u64, decay: f32) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let xs: Vec<f32> = (0..m * d).map(|i| rng.normal() / (1.0 + decay * (i % d) as f32)).collect();
        let mut g = vec![0.0f32; m * m];
        for i in 0..m {
            for j in 0..m {
                g[i * m + j] = dot(&xs[i * d..(i + 1) * d], &xs[j * d..(j + 1) * d]);
            }
        }
        g
    }

    /// The top eigenpairs equal the full QL's (vectors up to sign), each vector is a unit
    /// eigenvector (small residual) and they are orthogonal.
    #[test]
    fn top_eigenpairs_equal_the_full_decomposition() {
        for (m, d, count, decay) in [
            (1, 3, 1, 0.0),
            (2, 5, 2, 0.0),
            (30, 50, 10, 0.3),
            (125, 784, 32, 0.05),
            (60, 20, 25, 0.0),
        ] {
            let g = gram(m, d, m as u64, decay);
            let mut a = vec![0.0; top_matrix_len(m, count)];
            a[..m * m].copy_from_slice(&g);
            let mut full = g.clone();
            let mut vals = vec![0.0; count];
            let mut scratch = vec![0.0; top_scratch_len(m)];
            assert_eq!(top_eigenpairs(&mut a, m, count, |_, _| true, &mut vals, &mut scratch), Ok(count));
            let vecs = a[vectors_at(m)..vectors_at(m) + count * m].to_vec();
            let (mut fv, mut fvec, mut off) = (vec![0.0; m], vec![0.0; m * m], vec![0.0; m]);
            sym_eigen(&mut full, m, &mut fv, &mut fvec, &mut off).unwrap();
            let top = fv[0].abs().max(1e-30);
            for k in 0..count {
                assert!((vals[k] - fv[k]).abs() <= 1e-5 * top, "m={m} value {k}: {} vs {}", vals[k], fv[k]);
                let v = &vecs[k * m..(k + 1) * m];
                // Residual ||G v - lambda v|| relative to the largest eigenvalue.
                let mut res = 0.0f32;
                for i in 0..m {
                    let gv = dot(&g[i * m..(i + 1) * m], v);
                    res += (gv - vals[k] * v[i]).powi(2);
                }
                assert!(libm::sqrtf(res) <= 1e-4 * top, "m={m} residual {k}: {}", libm::sqrtf(res));
                for j in 0..=k {
                    let c = dot(v, &vecs[j * m..(j + 1) * m]);
                    let want = if j == k { 1.0 } else { 0.0 };
                    assert!((c - want).abs() < 2e-3, "m={m} <v{k}, v{j}> = {c}");
                }
                // Same direction as the full solver's where the eigenvalue is well separated.
                let sep =
                    (if k > 0 { fv[k - 1] - fv[k] } else { f32::INFINITY }).min(if k + 1 < m { fv[k] - fv[k + 1] } else { f32::INFINITY });
                if sep > 1e-2 * top {
                    let c = dot(v, &fvec[k * m..(k + 1) * m]).abs();
                    assert!((c - 1.0).abs() < 1e-3, "m={m} vector {k} differs: |cos| {c}");
                }
            }
        }
    }

    /// Repeated eigenvalues (a cluster) still give orthonormal vectors spanning the space.
    #[test]
    fn clusters_get_orthonormal_vectors() {
        // diag(5, 3, 3, 3, 1) rotated by a random orthogonal matrix.
        let n = 5;
        let mut q = vec![0.0f32; n * n];
        let mut rng = Rng::new(3);
        q.iter_mut().for_each(|v| *v = rng.normal());
        crate::linalg::orthonormalize_rows(&mut q, n, n, 1e-4).unwrap();
        let lam = [5.0f32, 3.0, 3.0, 3.0, 1.0];
        let mut a = vec![0.0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|t| lam[t] * q[t * n + i] * q[t * n + j]).sum();
            }
        }
        let orig = a.clone();
        a.resize(top_matrix_len(n, 4), 0.0);
        let mut vals = vec![0.0; 4];
        let mut scratch = vec![0.0; top_scratch_len(n)];
        top_eigenpairs(&mut a, n, 4, |_, _| true, &mut vals, &mut scratch).unwrap();
        let vecs = a[vectors_at(n)..vectors_at(n) + 4 * n].to_vec();
        for k in 0..4 {
            assert!((vals[k] - lam[k]).abs() < 1e-4, "{vals:?}");
            let v = &vecs[k * n..(k + 1) * n];
            for i in 0..n {
                let av = dot(&orig[i * n..(i + 1) * n], v);
                assert!((av - vals[k] * v[i]).abs() < 1e-3);
            }
            for j in 0..k {
                assert!(dot(v, &vecs[j * n..(j + 1) * n]).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn zero_and_bad_sizes() {
        let mut a = vec![0.0f32; top_matrix_len(3, 2)];
        let mut vals = vec![9.0; 2];
        let mut scratch = vec![0.0; top_scratch_len(3)];
        assert_eq!(top_eigenpairs(&mut a, 3, 2, |_, _| true, &mut vals, &mut scratch), Ok(2));
        assert_eq!(vals, [0.0, 0.0]);
        assert_eq!(a[vectors_at(3)..vectors_at(3) + 6], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(
            top_eigenpairs(&mut a, 3, 4, |_, _| true, &mut vals, &mut scratch),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(
            top_eigenpairs(&mut a, 3, 2, |_, _| true, &mut vals, &mut scratch[..5]),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(
            top_eigenpairs(&mut a[..5], 3, 1, |_, _| true, &mut vals, &mut scratch),
            Err(Error::BufferTooSmall)
        );
        let mut nan = vec![f32::NAN; 4];
        assert!(top_eigenpairs(&mut nan, 2, 1, |_, _| true, &mut vals, &mut scratch).is_err());
        // More vectors than half the matrix holds: the buffer grows past n x n.
        assert!(top_matrix_len(4, 4) > 16);
    }
}
