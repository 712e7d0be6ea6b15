//! Inputs that are zero in every sample, and copying the others in and out.
//!
//! A column of the inputs that is zero in every sample adds nothing to a product with them,
//! and with no weight decay its weights get a zero gradient at every step: they never move.
//! MNIST's digits leave 116 of 784 pixels blank in the whole test set, and 42% (200 samples)
//! to 80% (1 sample) in one class's training samples. So batch evaluation
//! ([`crate::batch`]), training without weight decay ([`crate::methods::GradientTrainer`])
//! and the closed form's scatter path work on the live columns only, and so do the host
//! trainer's MLP and logistic regression.
// Opts out of the crate's indexing and overflow lints: host only (alloc), on matrices the
// trainer allocated to the sizes it indexes them with.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use alloc::vec;
use alloc::vec::Vec;

/// The columns that are non-zero (or not a number) in at least one of the `n` samples of the
/// row-major `xs` (`d` per row). When every sample is zero, column 0 alone, so that every
/// product keeps a shape.
pub fn live_columns(xs: &[f32], n: usize, d: usize) -> Vec<usize> {
    let mut any = vec![false; d];
    for x in xs.chunks_exact(d.max(1)).take(n) {
        any.iter_mut().zip(x).for_each(|(a, &v)| *a |= v != 0.0);
    }
    let mut cols: Vec<usize> = (0..d).filter(|&i| any[i]).collect();
    if cols.is_empty() && d > 0 {
        cols.push(0);
    }
    cols
}

/// The ascending `cols` as ranges `a..b` of consecutive columns, for copying a row's live
/// columns a run at a time (an image's rows of pixels that are ever inked).
pub fn column_runs(cols: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &c in cols {
        match out.last_mut() {
            Some(r) if r.1 == c => r.1 += 1,
            _ => out.push((c, c + 1)),
        }
    }
    out
}

/// Number of columns in `runs`.
pub fn run_width(runs: &[(usize, usize)]) -> usize {
    runs.iter().map(|&(a, b)| b - a).sum()
}

/// Appends the columns in `runs` of each row of the row-major `rows` (`d` per row) to `out`.
pub fn gather_columns(rows: &[f32], d: usize, runs: &[(usize, usize)], out: &mut Vec<f32>) {
    for row in rows.chunks_exact(d.max(1)) {
        runs.iter().for_each(|&(a, b)| out.extend_from_slice(&row[a..b]));
    }
}

/// The inverse of [`gather_columns`]: writes the rows of `compact` (the columns in `runs`,
/// one after another) back into those columns of the rows of `rows` (`d` per row); the other
/// columns keep their values.
pub fn scatter_columns(compact: &[f32], rows: &mut [f32], d: usize, runs: &[(usize, usize)]) {
    for (row, c) in rows.chunks_exact_mut(d.max(1)).zip(compact.chunks_exact(run_width(runs).max(1))) {
        let mut off = 0;
        for &(a, b) in runs {
            row[a..b].copy_from_slice(&c[off..off + b - a]);
            off += b - a;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_columns_and_their_runs() {
        let xs = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, f32::NAN];
        assert_eq!(live_columns(&xs, 2, 5), [1, 4]);
        assert_eq!(live_columns(&[0.0; 6], 2, 3), [0]);
        assert_eq!(live_columns(&[], 0, 0), [0usize; 0]);
        assert_eq!(column_runs(&[0, 1, 2, 5, 6, 9]), [(0, 3), (5, 7), (9, 10)]);
        assert_eq!(column_runs(&[]), []);
        assert_eq!(run_width(&[(0, 3), (5, 7), (9, 10)]), 6);
    }

    #[test]
    fn gather_then_scatter_round_trips_and_leaves_the_rest() {
        let rows = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let runs = [(0, 1), (2, 4)];
        let mut out = vec![9.0];
        gather_columns(&rows, 4, &runs, &mut out);
        assert_eq!(out, [9.0, 1.0, 3.0, 4.0, 5.0, 7.0, 8.0]);
        let mut back = [0.0; 8];
        scatter_columns(&out[1..], &mut back, 4, &runs);
        assert_eq!(back, [1.0, 0.0, 3.0, 4.0, 5.0, 0.0, 7.0, 8.0]);
    }
}
