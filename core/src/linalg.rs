//! Small dense kernels on row-major slices, shared by every method.
//!
//! Matrices are row-major slices: row `i` of an `r x c` matrix is `m[i*c..(i+1)*c]`; a linear
//! map R^d -> R^k is a `k x d` matrix whose row `i` produces output `i`. On the host
//! (alloc), large products go through matrixmultiply's blocked SIMD gemm.
//!
//! These kernels are written here rather than taken from a linear-algebra crate on purpose:
//! each runs in a fixed summation order (8 interleaved accumulators, then a fixed pairwise
//! sum and the tail), so the host and a Cortex-M4F compute the same bits for the same inputs,
//! and on the M4F they take a fraction of the instructions per multiply-add of a generic
//! library's loops (`dot`: 1.54, `firmware/bench.sh`). nalgebra is their test oracle, a
//! dev-dependency only (no_std builds never see it): `tests/oracle.rs` checks every kernel
//! here and in `eigen` against nalgebra in f64 on the same inputs, within stated rounding
//! bounds and bit for bit on integer inputs.
// Opts out of the crate's indexing and overflow lints: dense kernels whose public entry
// points check their slice lengths once (`check_len`); a checked access per element would
// cost the Cortex-M a branch per multiply-add and change nothing for valid sizes.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::error::{Error, Result};
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
use crate::kernels::arm;

/// `sqrt(x^2 + y^2)` without overflow or underflow, for the QL rotations. On a host, in f64
/// with the compiler's own square root: libm's `hypotf` ends in a hand-written legacy-SSE
/// `sqrtss`, which in code that also uses AVX registers stalls on every call (a third of the
/// eigen-solver's time in the device mode's fits). It differs from `hypotf` by at most one
/// unit in the last place (one rounding instead of two).
#[inline(always)]
fn hypot(x: f32, y: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        let (x, y) = (x as f64, y as f64);
        (x * x + y * y).sqrt() as f32
    }
    #[cfg(not(feature = "std"))]
    {
        libm::hypotf(x, y)
    }
}

/// Dot product with 8 interleaved accumulators: vectorises on the host, hides FPU latency on
/// a Cortex-M, and keeps the same summation order on both.
#[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    dot_finish(&acc, tail)
}

/// The last step of [`dot`]: its 8 accumulators summed pairwise, then the tail. Shared with
/// kernels that must give `dot`'s bits (the Arm kernel sums the same way in assembly).
#[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
#[inline(always)]
pub(crate) fn dot_finish(acc: &[f32; 8], tail: f32) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Dot product with 8 interleaved accumulators, for Arm (Cortex-M): the same summation
/// order as the generic version (accumulator `i` takes elements `i, i + 8, ...`, then the
/// same pairwise sum, then the tail), so host and device give the same bits. The blocks of 8
/// go through [`arm::dot_blocks`], a hand-written loop of two block loads (`vldmia`) and
/// eight `vmla.f32` (a rounded multiply then a rounded add, as on the host; not the fused
/// `vfma`): 12 instructions per 8 multiply-accumulates in the loop, 1.54 per
/// multiply-accumulate for a 784-long dot call included on a Cortex-M4F, against 3.65 for
/// what LLVM made of the same loop in Rust (`firmware/bench.sh`). Only on hard-float Arm
/// targets (`eabihf`: the kernels take and return floats in VFP registers).
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    let head = arm::dot_blocks(ca, cb);
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    head + tail
}

/// The correctly rounded square root: the hardware instruction on a Cortex-M4F (libm's
/// `sqrtf` is software there, about 100 instructions), libm elsewhere; IEEE 754 gives both
/// the same bits.
#[inline(always)]
pub fn sqrt(x: f32) -> f32 {
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    {
        arm::sqrt(x)
    }
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    {
        libm::sqrtf(x)
    }
}

/// `sum a[j] * b[j]` over whole groups of 8 of int8 `a` and i16 `b`, exactly, on the
/// Cortex-M4's DSP instructions; `None` elsewhere, or for pointers not 4-aligned.
#[inline(always)]
pub(crate) fn dot_i8_i16_fast(a: &[u8], b: &[i16]) -> Option<(i64, usize)> {
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    {
        if !(a.as_ptr() as usize).is_multiple_of(4) || !(b.as_ptr() as usize).is_multiple_of(4) {
            return None;
        }
        let (ga, _) = a.as_chunks::<8>();
        let (gb, _) = b.as_chunks::<8>();
        let n = ga.len().min(gb.len());
        Some((arm::dot_i8_i16_groups(&ga[..n], &gb[..n]), 8 * n))
    }
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    {
        let _ = (a, b);
        None
    }
}

/// Squared Euclidean norm.
#[inline]
pub fn norm2(a: &[f32]) -> f32 {
    dot(a, a)
}

/// `y += alpha * x`.
#[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
#[inline(always)]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `y += alpha * x`, for Arm: blocks of 8 through [`arm::axpy_blocks`] (block loads and
/// stores), then the rest; every element is the same rounded multiply then rounded add as
/// the generic version.
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
#[inline(always)]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (cx, rx) = x[..n].as_chunks::<8>();
    let (cy, ry) = y[..n].as_chunks_mut::<8>();
    arm::axpy_blocks(alpha, cx, cy);
    for (yi, xi) in ry.iter_mut().zip(rx) {
        *yi += alpha * xi;
    }
}

/// `out = W x (+ bias)` for a row-major `rows x cols` matrix `w`.
pub fn gemv(w: &[f32], rows: usize, cols: usize, x: &[f32], bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
    if w.len() != rows * cols || x.len() != cols || out.len() < rows {
        return Err(Error::DimensionMismatch {
            expected: (rows * cols) as u32,
            found: w.len() as u32,
        });
    }
    if let Some(b) = bias {
        crate::error::check_len(rows, b.len())?;
    }
    for (i, o) in out[..rows].iter_mut().enumerate() {
        let v = dot(&w[i * cols..(i + 1) * cols], x);
        *o = match bias {
            Some(b) => v + b[i],
            None => v,
        };
    }
    Ok(())
}

/// `out = W^T y` for a row-major `rows x cols` matrix `w` (`y` has `rows` entries, `out`
/// has `cols`).
pub fn gemv_t(w: &[f32], rows: usize, cols: usize, y: &[f32], out: &mut [f32]) -> Result<()> {
    if w.len() != rows * cols || y.len() != rows || out.len() < cols {
        return Err(Error::DimensionMismatch {
            expected: (rows * cols) as u32,
            found: w.len() as u32,
        });
    }
    let out = &mut out[..cols];
    out.iter_mut().for_each(|o| *o = 0.0);
    for (i, &yi) in y.iter().enumerate() {
        if yi != 0.0 {
            axpy(yi, &w[i * cols..(i + 1) * cols], out);
        }
    }
    Ok(())
}

/// `out (m x n) = A (m x p) * B^T` where `B` is `n x p`; all row-major. This is the shape of
/// "apply a linear map (B, as `n x p` weights) to a batch of inputs (A, one per row)".
/// Goes through matrixmultiply's blocked SIMD gemm (the kernel nalgebra itself uses for large
/// products), which is no_std and multi-threaded when the host enables its `threading`.
pub fn matmul_nt(a: &[f32], m: usize, p: usize, b: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
    // B^T (p x n): element (t, j) = b[j*p + t] -> row stride 1, column stride p.
    gemm(a, m, p, (p, 1), b, n, (1, p), out)
}

/// `out (m x n) = A^T * B` where `A` is `p x m` and `B` is `p x n`; all row-major.
pub fn matmul_tn(a: &[f32], p: usize, m: usize, b: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
    // A^T (m x p): element (i, t) = a[t*m + i] -> row stride 1, column stride m.
    gemm(a, m, p, (1, m), b, n, (n, 1), out)
}

/// `out (m x n) = A (m x p) * B` where `B` is `p x n`; all row-major.
pub fn matmul_nn(a: &[f32], m: usize, p: usize, b: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
    gemm(a, m, p, (p, 1), b, n, (n, 1), out)
}

/// `out (m x n, row-major) = A (m x p, strides sa) * B (p x n, strides sb)`, with bounds
/// checked before the kernel runs.
#[allow(clippy::too_many_arguments)]
fn gemm(a: &[f32], m: usize, p: usize, sa: (usize, usize), b: &[f32], n: usize, sb: (usize, usize), out: &mut [f32]) -> Result<()> {
    let span = |rows: usize, cols: usize, s: (usize, usize)| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * s.0 + (cols - 1) * s.1 + 1
        }
    };
    if a.len() != m * p || b.len() != p * n || out.len() != m * n || span(m, p, sa) > a.len() || span(p, n, sb) > b.len() {
        return Err(Error::DimensionMismatch {
            expected: (m * n) as u32,
            found: out.len() as u32,
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if p == 0 {
        out.iter_mut().for_each(|o| *o = 0.0);
        return Ok(());
    }
    #[cfg(feature = "alloc")]
    {
        use crate::kernels::gemm::Strided;
        let (a, b) = (Strided { data: a, strides: sa }, Strided { data: b, strides: sb });
        crate::kernels::sgemm(
            m,
            p,
            n,
            a,
            b,
            Strided {
                data: out,
                strides: (n, 1),
            },
        )?;
    }
    // Without alloc (a device), matrixmultiply's packing buffers are not available: plain
    // loops, which only small products reach there.
    #[cfg(not(feature = "alloc"))]
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for t in 0..p {
                acc += a[i * sa.0 + t * sa.1] * b[t * sb.0 + j * sb.1];
            }
            out[i * n + j] = acc;
        }
    }
    Ok(())
}

/// The lower block triangle of `D^T D` for a row-major `rows x cols` matrix `D`: for each
/// column panel `i0..i1` of width `panel`, rows `i0..cols` of those columns of the row-major
/// `cols x cols` `out` (entries above the panels' diagonal blocks are left as they are).
/// About half the work of the whole product, for callers that use only that part of a
/// symmetric result (`batch`'s `x^T G x`).
#[cfg(feature = "alloc")]
pub fn gram_lower_panels(dm: &[f32], rows: usize, cols: usize, panel: usize, out: &mut [f32]) -> Result<()> {
    use crate::kernels::gemm::Strided;
    if dm.len() != rows * cols || out.len() != cols * cols || panel == 0 {
        return Err(Error::DimensionMismatch {
            expected: (cols * cols) as u32,
            found: out.len() as u32,
        });
    }
    if rows == 0 {
        out.iter_mut().for_each(|v| *v = 0.0);
        return Ok(());
    }
    for i0 in (0..cols).step_by(panel) {
        let (m, n) = (cols - i0, (i0 + panel).min(cols) - i0);
        // A^T (m x rows) from column i0 on, B (rows x n) the same columns, C the panel's
        // rows i0.. of columns i0..i0 + n.
        let a = Strided {
            data: &dm[i0..],
            strides: (1, cols),
        };
        let b = Strided {
            data: &dm[i0..],
            strides: (cols, 1),
        };
        let c = Strided {
            data: &mut out[i0 * cols + i0..],
            strides: (cols, 1),
        };
        crate::kernels::sgemm(m, rows, n, a, b, c)?;
    }
    Ok(())
}

/// Orthonormalises the rows of `rows` (`n x d`, row-major) in place by modified Gram-Schmidt
/// with one re-orthogonalisation pass ("twice is enough"), moving the independent rows to the
/// front. A row whose remaining norm is below `rel_tol` times its original norm (or exactly
/// zero) is dropped as dependent. Returns the rank `r`; rows `r..n` are zeroed.
pub fn orthonormalize_rows(rows: &mut [f32], n: usize, d: usize, rel_tol: f32) -> Result<usize> {
    crate::error::check_len(n * d, rows.len())?;
    let mut r = 0usize;
    for i in 0..n {
        if i != r {
            // Move row i into slot r (slot r is free: it was a dropped row or is i itself).
            let (head, tail) = rows.split_at_mut(i * d);
            head[r * d..(r + 1) * d].copy_from_slice(&tail[..d]);
        }
        let (basis, rest) = rows.split_at_mut(r * d);
        let v = &mut rest[..d];
        let orig = libm::sqrtf(norm2(v));
        if orig == 0.0 || !orig.is_finite() {
            continue;
        }
        for _pass in 0..2 {
            for j in 0..r {
                let u = &basis[j * d..(j + 1) * d];
                let c = dot(u, v);
                axpy(-c, u, v);
            }
        }
        let nrm = libm::sqrtf(norm2(v));
        if nrm <= rel_tol * orig {
            continue;
        }
        let inv = 1.0 / nrm;
        v.iter_mut().for_each(|x| *x *= inv);
        r += 1;
    }
    rows[r * d..].iter_mut().for_each(|x| *x = 0.0);
    Ok(r)
}

/// In-place Cholesky factorisation of a symmetric positive-definite `n x n` matrix (row-major):
/// the lower triangle becomes `L` with `A = L L^T`. Fails with `NonFinite` if `A` is not
/// positive definite (in working precision).
pub fn cholesky(a: &mut [f32], n: usize) -> Result<()> {
    crate::error::check_len(n * n, a.len())?;
    for j in 0..n {
        let mut s = a[j * n + j] as f64;
        for p in 0..j {
            s -= (a[j * n + p] as f64) * (a[j * n + p] as f64);
        }
        if s <= 0.0 || !s.is_finite() {
            return Err(Error::NonFinite);
        }
        let ljj = libm::sqrt(s);
        a[j * n + j] = ljj as f32;
        for i in j + 1..n {
            let mut s = a[i * n + j] as f64;
            for p in 0..j {
                s -= (a[i * n + p] as f64) * (a[j * n + p] as f64);
            }
            a[i * n + j] = (s / ljj) as f32;
        }
        for i in 0..j {
            a[i * n + j] = 0.0;
        }
    }
    Ok(())
}

/// Solves `L L^T x = b` in place given the factor from [`cholesky`].
pub fn cholesky_solve(l: &[f32], n: usize, b: &mut [f32]) -> Result<()> {
    crate::error::check_len(n * n, l.len())?;
    crate::error::check_len(n, b.len())?;
    for i in 0..n {
        let mut s = b[i] as f64;
        for p in 0..i {
            s -= (l[i * n + p] as f64) * (b[p] as f64);
        }
        b[i] = (s / l[i * n + i] as f64) as f32;
    }
    for i in (0..n).rev() {
        let mut s = b[i] as f64;
        for p in i + 1..n {
            s -= (l[p * n + i] as f64) * (b[p] as f64);
        }
        b[i] = (s / l[i * n + i] as f64) as f32;
    }
    Ok(())
}

/// Eigen-decomposition of a symmetric `n x n` matrix (row-major): Householder reduction to
/// tridiagonal form, then the implicit QL algorithm (EISPACK's tred2/tql2). On return
/// `values[i]` are the eigenvalues in decreasing order and row `i` of `vectors` is the unit
/// eigenvector of `values[i]`. `a` is destroyed; `offdiag` is workspace of `n` values.
/// `O(n^3)` with a small constant, exact to working precision, no allocation: enrollment
/// on a device and large fits on the host both use it.
pub fn sym_eigen(a: &mut [f32], n: usize, values: &mut [f32], vectors: &mut [f32], offdiag: &mut [f32]) -> Result<()> {
    crate::error::check_len(n * n, a.len())?;
    if values.len() < n || vectors.len() < n * n || offdiag.len() < n {
        return Err(Error::BufferTooSmall);
    }
    if n == 0 {
        return Ok(());
    }
    let (d, e) = (&mut values[..n], &mut offdiag[..n]);
    householder_tridiagonal(a, n, d, e);
    accumulate_q(a, n, d, vectors);
    // Eigenvectors as rows (z = Q^T), so the QL rotations touch two contiguous rows.
    let z = &mut vectors[..n * n];
    for i in 0..n {
        for j in 0..n {
            z[i * n + j] = a[j * n + i];
        }
    }
    ql_implicit(d, e, z, n)?;
    sort_decreasing(d, z, n);
    if d.iter().any(|v| !v.is_finite()) || z.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite);
    }
    Ok(())
}

/// EISPACK's tred2, first half: Householder reduction of the symmetric `a` (lower triangle,
/// row-major) to tridiagonal form: `d` gets the reflectors' `h`, `e` the off-diagonal, and
/// `a` keeps the reflectors.
fn householder_tridiagonal(a: &mut [f32], n: usize, d: &mut [f32], e: &mut [f32]) {
    for i in (1..n).rev() {
        let l = i - 1;
        let mut h = 0.0f32;
        if l > 0 {
            let scale: f32 = a[i * n..i * n + l + 1].iter().map(|v| v.abs()).sum();
            if scale == 0.0 {
                e[i] = a[i * n + l];
            } else {
                for k in 0..=l {
                    a[i * n + k] /= scale;
                    h += a[i * n + k] * a[i * n + k];
                }
                let f = a[i * n + l];
                let g = if f >= 0.0 { -libm::sqrtf(h) } else { libm::sqrtf(h) };
                e[i] = scale * g;
                h -= f * g;
                a[i * n + l] = f - g;
                for j in 0..=l {
                    a[j * n + i] = a[i * n + j] / h;
                }
                // p = A u over the active block (lower triangle stored, row-major): row j
                // gives p[j] its dot with u and adds u[j] times itself to p[..j], so every
                // access runs along a row (EISPACK walks columns here: a cache miss per
                // element at n ~ 800).
                {
                    let (top, row_i) = a.split_at_mut(i * n);
                    let u = &row_i[..=l];
                    let p = &mut e[..=l];
                    p.iter_mut().for_each(|v| *v = 0.0);
                    for j in 0..=l {
                        let row = &top[j * n..j * n + j];
                        p[j] += dot(row, &u[..j]) + top[j * n + j] * u[j];
                        axpy(u[j], row, &mut p[..j]);
                    }
                }
                let mut f = 0.0f32;
                for j in 0..=l {
                    e[j] /= h;
                    f += e[j] * a[i * n + j];
                }
                let hh = f / (h + h);
                // A -= u q^T + q u^T on the lower triangle, row by row; row i (u) is split
                // off so the row update vectorises.
                let (top, row_i) = a.split_at_mut(i * n);
                for j in 0..=l {
                    let f = row_i[j];
                    let g = e[j] - hh * f;
                    e[j] = g;
                    let (rj, ek, ui) = (&mut top[j * n..j * n + j + 1], &e[..=j], &row_i[..=j]);
                    for ((a, &ek), &uk) in rj.iter_mut().zip(ek).zip(ui) {
                        *a -= f * ek + g * uk;
                    }
                }
            }
        } else {
            e[i] = a[i * n + l];
        }
        d[i] = h;
    }
    e[0] = 0.0;
}

/// EISPACK's tred2, second half: accumulates the reflectors kept in `a` into the orthogonal
/// `Q` (in `a`, with `A = Q T Q^T`) and moves `T`'s diagonal into `d`. `vectors` is scratch.
fn accumulate_q(a: &mut [f32], n: usize, d: &mut [f32], vectors: &mut [f32]) {
    d[0] = 0.0;
    for i in 0..n {
        if d[i] != 0.0 {
            // The block Q[..i, ..i] -= w g^T with g = Q[..i, ..i]^T u (u = row i, w =
            // column i), row by row; `vectors` is free until the copy below, so g lives
            // there.
            let g = &mut vectors[..i];
            g.iter_mut().for_each(|v| *v = 0.0);
            let (top, row_i) = a.split_at_mut(i * n);
            for k in 0..i {
                axpy(row_i[k], &top[k * n..k * n + i], g);
            }
            for k in 0..i {
                let w = top[k * n + i];
                axpy(-w, g, &mut top[k * n..k * n + i]);
            }
        }
        d[i] = a[i * n + i];
        a[i * n + i] = 1.0;
        for j in 0..i {
            a[j * n + i] = 0.0;
            a[i * n + j] = 0.0;
        }
    }
}

/// EISPACK's tql2: the implicit QL algorithm with Wilkinson shifts on the tridiagonal
/// matrix (`d`, `e`), rotating the eigenvector rows of `z` along. `NonFinite` when it does
/// not converge in 100 iterations per eigenvalue.
fn ql_implicit(d: &mut [f32], e: &mut [f32], z: &mut [f32], n: usize) -> Result<()> {
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    // An off-diagonal entry is negligible against the largest row of the whole tridiagonal
    // matrix (a norm: dropping it moves the eigenvalues by at most f32 rounding of that
    // norm). EISPACK's running maximum over the rows seen so far stalls in f32 when the
    // first rows are tiny, e.g. the scatter matrix of images whose border pixels are always
    // zero; a per-pair test can stall too.
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
                let (zi, zi1) = z.split_at_mut((i + 1) * n);
                let (zi, zi1) = (&mut zi[i * n..], &mut zi1[..n]);
                for (a, b) in zi.iter_mut().zip(zi1.iter_mut()) {
                    let f = *b;
                    *b = s * *a + c * f;
                    *a = c * *a - s * f;
                }
            }
            if underflow {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    Ok(())
}

/// Sorts the eigenvalues `d` in decreasing order, their rows of `z` with them (selection
/// sort: the same order of swaps as before, so the same result for equal values).
fn sort_decreasing(d: &mut [f32], z: &mut [f32], n: usize) {
    for i in 0..n {
        let mut best = i;
        for j in i + 1..n {
            if d[j] > d[best] {
                best = j;
            }
        }
        if best != i {
            d.swap(i, best);
            for k in 0..n {
                z.swap(i * n + k, best * n + k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lower panels equal the plain double sum of `D^T D`; nothing above them is written.
    #[cfg(feature = "alloc")]
    #[test]
    fn gram_lower_panels_fills_exactly_the_lower_block_triangle() {
        extern crate std;
        let (rows, cols, panel) = (7usize, 11usize, 4usize);
        let dm: std::vec::Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
        let mut out = std::vec![f32::NAN; cols * cols];
        gram_lower_panels(&dm, rows, cols, panel, &mut out).unwrap();
        for r in 0..cols {
            for c in 0..cols {
                let v = out[r * cols + c];
                if r >= c / panel * panel {
                    let want: f32 = (0..rows).map(|t| dm[t * cols + r] * dm[t * cols + c]).sum();
                    assert!((v - want).abs() <= 1e-5 * (1.0 + want.abs()), "({r}, {c}): {v} vs {want}");
                } else {
                    assert!(v.is_nan(), "({r}, {c}) above the panels was written");
                }
            }
        }
        assert!(gram_lower_panels(&dm, rows, cols, 0, &mut out).is_err());
        assert!(gram_lower_panels(&dm, rows, cols + 1, panel, &mut out).is_err());
    }

    fn naive_nt(a: &[f32], m: usize, p: usize, b: &[f32], n: usize) -> [f32; 64] {
        let mut o = [0.0; 64];
        for i in 0..m {
            for j in 0..n {
                o[i * n + j] = (0..p).map(|t| a[i * p + t] * b[j * p + t]).sum();
            }
        }
        o
    }

    #[test]
    fn dot_matches_naive_sum() {
        let a: [f32; 19] = core::array::from_fn(|i| i as f32 * 0.5 - 3.0);
        let b: [f32; 19] = core::array::from_fn(|i| 1.0 + (i % 3) as f32);
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
    }

    #[test]
    fn matmul_nt_and_nn_match_naive() {
        let (m, p, n) = (3, 5, 4);
        let a: [f32; 15] = core::array::from_fn(|i| (i as f32).sin());
        let b: [f32; 20] = core::array::from_fn(|i| (i as f32 * 0.7).cos());
        let mut out = [0.0f32; 12];
        matmul_nt(&a, m, p, &b, n, &mut out).unwrap();
        let want = naive_nt(&a, m, p, &b, n);
        for i in 0..12 {
            assert!((out[i] - want[i]).abs() < 1e-5, "{i}");
        }
        // B^T as a p x n matrix gives the same through matmul_nn.
        let mut bt = [0.0f32; 20];
        for j in 0..n {
            for t in 0..p {
                bt[t * n + j] = b[j * p + t];
            }
        }
        let mut out2 = [0.0f32; 12];
        matmul_nn(&a, m, p, &bt, n, &mut out2).unwrap();
        for i in 0..12 {
            assert!((out2[i] - want[i]).abs() < 1e-5);
        }
        assert!(matmul_nt(&a, m, p, &b, n, &mut [0.0; 11]).is_err());
    }

    #[test]
    fn gemv_and_transpose() {
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 x 3
        let mut o = [0.0; 2];
        gemv(&w, 2, 3, &[1.0, 0.0, -1.0], Some(&[0.5, -0.5]), &mut o).unwrap();
        assert_eq!(o, [-1.5, -2.5]);
        let mut t = [0.0; 3];
        gemv_t(&w, 2, 3, &[1.0, 1.0], &mut t).unwrap();
        assert_eq!(t, [5.0, 7.0, 9.0]);
        assert!(gemv(&w, 2, 3, &[1.0], None, &mut o).is_err());
    }

    #[test]
    fn gram_schmidt_finds_rank_and_orthonormal_basis() {
        // Row 2 = row 0 + row 1: rank 2; row 3 is zero.
        let mut m = [1.0, 2.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 3.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let r = orthonormalize_rows(&mut m, 4, 4, 1e-4).unwrap();
        assert_eq!(r, 2);
        for i in 0..2 {
            for j in 0..2 {
                let d = dot(&m[i * 4..i * 4 + 4], &m[j * 4..j * 4 + 4]);
                assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-5);
            }
        }
        assert!(m[8..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn eigen_diagonalises_a_symmetric_matrix() {
        let orig = [4.0f32, 1.0, 2.0, 1.0, 3.0, 0.5, 2.0, 0.5, 5.0];
        let mut a = orig;
        let (mut vals, mut vecs, mut off) = ([0.0f32; 3], [0.0f32; 9], [0.0f32; 3]);
        sym_eigen(&mut a, 3, &mut vals, &mut vecs, &mut off).unwrap();
        assert!(vals[0] >= vals[1] && vals[1] >= vals[2]);
        assert!((vals.iter().sum::<f32>() - 12.0).abs() < 1e-4);
        for i in 0..3 {
            let v = &vecs[i * 3..i * 3 + 3];
            assert!((norm2(v) - 1.0).abs() < 1e-5);
            for r in 0..3 {
                let av: f32 = (0..3).map(|c| orig[r * 3 + c] * v[c]).sum();
                assert!((av - vals[i] * v[r]).abs() < 1e-4, "A v != lambda v");
            }
        }
    }

    /// A scatter matrix with zero rows and columns, as the scatter of images with blank
    /// borders: exactly that many zero eigenvalues, and the rest reconstruct it. (The MNIST
    /// scatter on which the old running-maximum test stalled is checked in ldl-host:
    /// `experiment::tests::device_mode_fits_many_shots`.)
    #[test]
    fn eigen_of_a_scatter_with_zero_rows_converges() {
        extern crate std;
        let (n, m) = (200usize, 400usize);
        // Blank coordinates scattered as an image's border pixels are in row-major order.
        let blank = |j: usize| j % 20 < 3 || j % 20 > 16 || j < 20;
        let zero = (0..n).filter(|&j| blank(j)).count();
        let mut rng = crate::rng::Rng::new(8);
        // Samples with a decaying spectrum, the blank coordinates always 0.
        let mut xs = std::vec![0.0f32; m * n];
        for t in 0..m {
            for j in (0..n).filter(|&j| !blank(j)) {
                xs[t * n + j] = rng.normal() * (1.0 + 50.0 / (1 + j) as f32);
            }
        }
        let mut a = std::vec![0.0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..m).map(|t| xs[t * n + i] * xs[t * n + j]).sum();
            }
        }
        let orig = a.clone();
        let (mut vals, mut vecs, mut off) = (std::vec![0.0f32; n], std::vec![0.0f32; n * n], std::vec![0.0f32; n]);
        sym_eigen(&mut a, n, &mut vals, &mut vecs, &mut off).unwrap();
        let scale = vals[0];
        // Exactly `zero` eigenvalues are (numerically) zero; the rest reconstruct A.
        assert_eq!(vals.iter().filter(|v| v.abs() <= 1e-5 * scale).count(), zero);
        for i in 0..n {
            for j in 0..n {
                let r: f32 = (0..n).map(|t| vals[t] * vecs[t * n + i] * vecs[t * n + j]).sum();
                assert!(
                    (r - orig[i * n + j]).abs() <= 1e-4 * scale,
                    "({i}, {j}): {r} vs {}",
                    orig[i * n + j]
                );
            }
        }
    }

    #[test]
    fn eigen_reconstructs_random_symmetric_matrices() {
        let mut rng = crate::rng::Rng::new(4);
        for n in [1usize, 2, 7, 40] {
            let mut b = [0.0f32; 1600];
            for i in 0..n {
                for j in 0..=i {
                    let v = rng.normal();
                    b[i * n + j] = v;
                    b[j * n + i] = v;
                }
            }
            let orig = b;
            let (mut vals, mut vecs, mut off) = ([0.0f32; 40], [0.0f32; 1600], [0.0f32; 40]);
            sym_eigen(&mut b[..n * n], n, &mut vals, &mut vecs, &mut off).unwrap();
            for i in 0..n {
                if i + 1 < n {
                    assert!(vals[i] >= vals[i + 1]);
                }
                for j in 0..n {
                    // V^T V = I and sum_t lambda_t v_t v_t^T = A.
                    let vv = dot(&vecs[i * n..(i + 1) * n], &vecs[j * n..(j + 1) * n]);
                    assert!((vv - if i == j { 1.0 } else { 0.0 }).abs() < 1e-4, "n={n} orthogonality {vv}");
                    let a: f32 = (0..n).map(|t| vals[t] * vecs[t * n + i] * vecs[t * n + j]).sum();
                    assert!((a - orig[i * n + j]).abs() < 1e-4, "n={n} reconstruction");
                }
            }
        }
    }

    #[test]
    fn cholesky_solves_spd_and_rejects_indefinite() {
        let mut a = [4.0, 2.0, 2.0, 3.0];
        cholesky(&mut a, 2).unwrap();
        let mut b = [2.0, 1.0];
        cholesky_solve(&a, 2, &mut b).unwrap();
        // [4 2; 2 3] x = [2 1] -> x = [0.5, 0]
        assert!((b[0] - 0.5).abs() < 1e-6 && b[1].abs() < 1e-6);
        let mut bad = [1.0, 2.0, 2.0, 1.0];
        assert_eq!(cholesky(&mut bad, 2), Err(Error::NonFinite));
    }
}
