//! matrixmultiply's blocked SIMD gemm (the kernel nalgebra itself uses for large products)
//! behind one bounds check.

use crate::error::{Error, Result};

/// A matrix operand: its elements start at `data[0]` and element `(i, j)` is at
/// `data[i * strides.0 + j * strides.1]`.
pub(crate) struct Strided<T> {
    pub data: T,
    pub strides: (usize, usize),
}

/// The index one past the last element a `rows x cols` operand with these strides reads.
fn span(rows: usize, cols: usize, s: (usize, usize)) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    rows.checked_sub(1)?
        .checked_mul(s.0)?
        .checked_add(cols.checked_sub(1)?.checked_mul(s.1)?)?
        .checked_add(1)
}

/// `C (m x n) = A (m x p) B (p x n)`, overwriting `C`. Fails (and touches nothing) when an
/// operand's strides reach past its slice, or `C`'s strides make two of its elements one
/// (so that every write lands on its own element).
pub(crate) fn sgemm(m: usize, p: usize, n: usize, a: Strided<&[f32]>, b: Strided<&[f32]>, c: Strided<&mut [f32]>) -> Result<()> {
    let fits = |rows, cols, s, len| span(rows, cols, s).is_some_and(|e| e <= len);
    let distinct = n <= 1 || m <= 1 || c.strides.0 != c.strides.1;
    if !(fits(m, p, a.strides, a.data.len()) && fits(p, n, b.strides, b.data.len()) && fits(m, n, c.strides, c.data.len()) && distinct) {
        return Err(Error::DimensionMismatch {
            expected: span(m, n, c.strides).unwrap_or(usize::MAX) as u32,
            found: c.data.len() as u32,
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let st = |s: usize| s as isize;
    // SAFETY: every element the kernel reads of A and B and writes of C lies inside its
    // slice (the spans under their strides were checked above); C is a unique borrow, so no
    // write aliases A or B.
    unsafe {
        matrixmultiply::sgemm(
            m,
            p,
            n,
            1.0,
            a.data.as_ptr(),
            st(a.strides.0),
            st(a.strides.1),
            b.data.as_ptr(),
            st(b.strides.0),
            st(b.strides.1),
            0.0,
            c.data.as_mut_ptr(),
            st(c.strides.0),
            st(c.strides.1),
        );
    }
    Ok(())
}
