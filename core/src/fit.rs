//! The closed-form fit of a [`compact`] class from a few samples, as a
//! device enrolls one: without ever holding the augmented samples, and writing the class out
//! one direction at a time.
//!
//! A class is fitted on its samples and, for images, each sample's shifts by up to `s`
//! pixels ([`crate::augment`]): `m = n (2s + 1)^2` rows. The principal directions come from
//! the `m x m` Gram matrix of the (centred) rows, `U = diag(1/sqrt(lambda)) V^T Z`
//! ([`crate::subspace`]'s Gram route), so the only large buffer is that matrix:
//!
//! 1. **Gram matrix** without the shifted rows: `<shift_a I, shift_b J>` is a correlation of
//!    the two source images. When `I` has no ink within `s` pixels of its border, it equals
//!    `C_IJ(a - b) = sum_q I[q] J[q + a - b]`, so one correlation over `(4s + 1)^2` offsets
//!    gives a whole `(2s + 1)^2`-square block (81 correlations instead of 625 at `s = 2`);
//!    otherwise each shift of `I` is made once and correlated with `J` over `(2s + 1)^2`
//!    offsets. The images sit in zero-bordered canvases, where a 2-D offset is a 1-D one, so
//!    each correlation is one long dot product (the Arm kernel's).
//! 2. **Eigenpairs** of the strongest directions only ([`crate::eigen::top_eigenpairs`]), the
//!    vectors in the Gram matrix's own storage.
//! 3. **Directions**, one at a time: `sum_a v_(i,a) shift_a I_i` is, on the canvas, `(2s + 1)^2`
//!    long `axpy`s per image; then the direction is gathered over the live inputs, quantised
//!    and handed to the [`Sink`] with its scale (and `A û` for a linear target).
//!
//! Everything is `f32` code in a fixed order (and the shared `dot`/`axpy` kernels), so the
//! host's fit of a class has the device's bits.
//!
//! The sizes come from enrollment requests and model files: no input makes this module
//! panic or overflow (indexing, integer arithmetic and panics are denied below). [`fit`]
//! checks the sizes on entry; past that, an index or a size that would not fit (which those
//! checks leave no room for) is an error rather than a panic.
use core::ops::RangeInclusive;
use core::slice::{ChunksExact, ChunksExactMut};

use crate::augment::shift_count;
use crate::compact::{self, max_runs, quantize_i8, run_ranges, Shape};
use crate::eigen::{top_eigenpairs, top_matrix_len, top_scratch_len, vectors_at};
use crate::error::{check_len, Error, Result};
use crate::linalg::{axpy, dot};
use crate::linear::Target;
use crate::subspace::{weight, FitOptions};

/// The samples of one class: `n` rows of `d` values (preprocessed), and how each is
/// augmented: for images, every shift by up to `shift` pixels (`shift = 0`, or no image: the
/// rows as they are).
#[derive(Debug, Clone, Copy)]
pub struct Samples<'a> {
    /// Row-major `n x d`.
    pub data: &'a [f32],
    /// Rows.
    pub n: usize,
    /// Values per row.
    pub d: usize,
    /// `(width, height)` of an image row (`width * height == d`), if the rows are images.
    pub image: Option<(usize, usize)>,
    /// Shift augmentation in pixels (images only).
    pub shift: u8,
}

impl Samples<'_> {
    /// The shift actually applied (0 without an image).
    fn reach(&self) -> usize {
        if self.image.is_some() {
            self.shift as usize
        } else {
            0
        }
    }
    /// Rows after augmentation: `n (2s + 1)^2` (saturating: `usize::MAX` rows, which no
    /// buffer holds, when that overflows).
    pub fn rows(&self) -> usize {
        self.n.saturating_mul(shifts_per(self.reach()))
    }
    /// `(width, height)`: the image, or one row of `d`.
    fn geometry(&self) -> (usize, usize) {
        self.image.unwrap_or((self.d, 1))
    }
}

fn shifts_per(s: usize) -> usize {
    shift_count(s as u8)
}

/// Fails with `InvalidParameter` unless `w x h` images hold the `d <= u16::MAX` inputs and a
/// sideways shift by up to `s` pixels leaves some of the image. An image fewer than `s + 1`
/// rows high is allowed: its vertical shifts past the top or bottom are empty (a time series
/// is a one-row image whose sideways shifts are shifts in time).
fn check_geometry(w: usize, h: usize, s: usize, d: usize) -> Result<()> {
    if w.checked_mul(h) != Some(d) || (s > 0 && s >= w) || d > u16::MAX as usize {
        return Err(Error::InvalidParameter);
    }
    Ok(())
}

/// `-r..=r`.
fn offsets(r: usize) -> Result<RangeInclusive<isize>> {
    let hi = isize::try_from(r).map_err(|_| Error::InvalidParameter)?;
    Ok(neg(hi)?..=hi)
}

/// `-v` (`InvalidParameter` for `isize::MIN`, which no offset here is).
fn neg(v: isize) -> Result<isize> {
    v.checked_neg().ok_or(Error::InvalidParameter)
}

/// The shifts by up to `s` pixels, `(dx, dy)` in [`crate::augment::shifts`]' order: `(0, 0)`
/// first, then row by row from `(-s, -s)`, skipping `(0, 0)`: [`shifts_per`]`(s)` of them.
fn shifts(s: usize) -> Result<Shifts> {
    let offs = offsets(s)?;
    Ok(Shifts {
        row: offs.clone(),
        dy: 0,
        rows: offs.clone(),
        offs,
        first: true,
    })
}

/// The iterator of [`shifts`].
#[derive(Clone)]
struct Shifts {
    /// `-s..=s`.
    offs: RangeInclusive<isize>,
    /// The columns left of row `dy`.
    row: RangeInclusive<isize>,
    dy: isize,
    /// The rows after it.
    rows: RangeInclusive<isize>,
    /// `(0, 0)` is still to come.
    first: bool,
}

impl Iterator for Shifts {
    type Item = (isize, isize);

    #[inline]
    fn next(&mut self) -> Option<(isize, isize)> {
        if self.first {
            self.first = false;
            // Start on the first row, from its first column.
            self.dy = self.rows.next()?;
            return Some((0, 0));
        }
        loop {
            if let Some(dx) = self.row.next() {
                if dx != 0 || self.dy != 0 {
                    return Some((dx, self.dy));
                }
            } else {
                self.dy = self.rows.next()?;
                self.row = self.offs.clone();
            }
        }
    }
}

/// Writes the values of the `(2s + 1)^2` shifts, given in `rows` row by row from `(-s, -s)`
/// (`centre` that of `(0, 0)`, at row and column `mid = s`), to `out` in [`shifts`]' order:
/// the centre first, then the others (as many as `out` holds).
fn put_in_shift_order<'g, R>(out: &mut [f32], centre: f32, rows: impl Iterator<Item = R>, mid: usize)
where
    R: Iterator<Item = &'g f32>,
{
    let mut dst = out.iter_mut();
    let Some(o) = dst.next() else { return };
    *o = centre;
    for (y, row) in rows.enumerate() {
        for (x, &v) in row.enumerate() {
            if y == mid && x == mid {
                continue;
            }
            let Some(o) = dst.next() else { return };
            *o = v;
        }
    }
}

/// `(r + dy) stride + (r + dx)`: where offset `(dx, dy)` lies in a row-major grid of rows of
/// `stride` values whose centre is `(r, r)` (`None` before the grid or on overflow).
fn grid_at(dx: isize, dy: isize, r: usize, stride: usize) -> Option<usize> {
    let x = usize::try_from(dx.checked_add_unsigned(r)?).ok()?;
    let y = usize::try_from(dy.checked_add_unsigned(r)?).ok()?;
    y.checked_mul(stride)?.checked_add(x)
}

/// `a[at..at + len]` (`BufferTooSmall` past its end).
fn span(a: &[f32], at: usize, len: usize) -> Result<&[f32]> {
    a.get(at..).and_then(|a| a.get(..len)).ok_or(Error::BufferTooSmall)
}

/// `a[at..at + len]` (`BufferTooSmall` past its end).
fn span_mut(a: &mut [f32], at: usize, len: usize) -> Result<&mut [f32]> {
    a.get_mut(at..).and_then(|a| a.get_mut(..len)).ok_or(Error::BufferTooSmall)
}

/// Row `i` of rows of `len` values, `a[i len..(i + 1) len]` (`BufferTooSmall` past its end).
fn nth_row(a: &[f32], i: usize, len: usize) -> Result<&[f32]> {
    span(a, i.checked_mul(len).ok_or(Error::BufferTooSmall)?, len)
}

/// Row `i` of rows of `len` values, `a[i len..(i + 1) len]` (`BufferTooSmall` past its end).
fn nth_row_mut(a: &mut [f32], i: usize, len: usize) -> Result<&mut [f32]> {
    span_mut(a, i.checked_mul(len).ok_or(Error::BufferTooSmall)?, len)
}

/// The whole rows of `len` values of `a`, in order (none when `len` is 0: rows of no values
/// have nothing to go through).
fn rows_of(a: &[f32], len: usize) -> ChunksExact<'_, f32> {
    if len == 0 {
        <&[f32]>::default().chunks_exact(1)
    } else {
        a.chunks_exact(len)
    }
}

/// The whole rows of `len` values of `a`, in order (none when `len` is 0).
fn rows_of_mut(a: &mut [f32], len: usize) -> ChunksExactMut<'_, f32> {
    if len == 0 {
        <&mut [f32]>::default().chunks_exact_mut(1)
    } else {
        a.chunks_exact_mut(len)
    }
}

/// What a fit hands out, in order: the shape, then every word of the class (see
/// [`crate::compact`]'s layout).
pub trait Sink {
    /// The class's sizes, before its words.
    fn shape(&mut self, shape: &Shape) -> Result<()>;
    /// The next words.
    fn words(&mut self, words: &[f32]) -> Result<()>;
}

#[cfg(feature = "alloc")]
impl Sink for alloc::vec::Vec<f32> {
    fn shape(&mut self, _shape: &Shape) -> Result<()> {
        Ok(())
    }
    fn words(&mut self, words: &[f32]) -> Result<()> {
        self.extend_from_slice(words);
        Ok(())
    }
}

/// The most offsets a correlation takes per axis: `4s + 1` (the ink-free-border route).
const fn taps_max(s: usize) -> usize {
    s.saturating_mul(4).saturating_add(1)
}

/// A canvas of reach `r` for `w x h` images: rows of `w + 2r`, the image at column `r`, so
/// that a shift by up to `r` pixels is an offset of the row-major array.
#[derive(Clone, Copy)]
struct Canvas {
    w: usize,
    h: usize,
    r: usize,
}

impl Canvas {
    /// Row stride.
    const fn stride(&self) -> usize {
        self.w.saturating_add(self.r.saturating_mul(2))
    }
    /// f32s of the image's own rows (`h` rows of the stride).
    const fn rows_len(&self) -> usize {
        self.h.saturating_mul(self.stride())
    }
    /// f32s of the whole bordered canvas (`r` rows above and below) and `r` values of slack
    /// at each end, so that every window moved by up to `r` rows and columns stays inside.
    const fn full_len(&self) -> usize {
        let r2 = self.r.saturating_mul(2);
        self.h.saturating_add(r2).saturating_mul(self.stride()).saturating_add(r2)
    }
    /// Writes `img` into `rows`, an image-rows canvas (its border columns left as they are).
    fn put_rows(&self, img: &[f32], rows: &mut [f32]) -> Result<()> {
        // `rows` holds the h rows of the canvas, `img` those of the image.
        for (dst, src) in rows_of_mut(rows, self.stride()).zip(rows_of(img, self.w)) {
            span_mut(dst, self.r, self.w)?.copy_from_slice(src);
        }
        Ok(())
    }
    /// Writes `img` into `full`, a whole canvas (its border left as it is).
    fn put_full(&self, img: &[f32], full: &mut [f32]) -> Result<()> {
        let at = self.window(0, 0)?;
        self.put_rows(img, span_mut(full, at, self.rows_len())?)
    }
    /// Where the window of a whole canvas starts whose value at row-canvas position `q` is
    /// the image's at `q` moved by `(dx, dy)` (`|dx|, |dy| <= r`).
    fn window(&self, dx: isize, dy: isize) -> Result<usize> {
        // r + r stride + dy stride + dx
        grid_at(dx, dy, self.r, self.stride()).ok_or(Error::InvalidParameter)
    }
}

/// The two canvas buffers of a fit: one of image rows, one whole.
struct Canvases<'a> {
    rows: &'a mut [f32],
    full: &'a mut [f32],
}

impl Canvases<'_> {
    /// `c[(dy + r)(2r + 1) + dx + r] = sum_{y,x} a[y][x] b[y + dy][x + dx]` (terms outside
    /// either image are 0) for `|dx|, |dy| <= r`: `a` in the rows canvas and `b` in the whole
    /// one, zero bordered, each offset one dot product over the rows.
    fn correlate(&mut self, a: &[f32], b: &[f32], w: usize, h: usize, r: usize, c: &mut [f32]) -> Result<()> {
        let cv = Canvas { w, h, r };
        let rows = self.rows.get_mut(..cv.rows_len()).ok_or(Error::BufferTooSmall)?;
        let full = self.full.get_mut(..cv.full_len()).ok_or(Error::BufferTooSmall)?;
        rows.iter_mut().for_each(|v| *v = 0.0);
        full.iter_mut().for_each(|v| *v = 0.0);
        cv.put_rows(a, rows)?;
        cv.put_full(b, full)?;
        // The offsets row by row from (-r, -r), c in order. Along a row the windows start
        // one value apart.
        let mut out = c.iter_mut();
        let offs = offsets(r)?;
        let first = *offs.start();
        for dy in offs.clone() {
            let mut rest = full.get(cv.window(first, dy)?..).ok_or(Error::BufferTooSmall)?;
            for _ in offs.clone() {
                let win = rest.get(..rows.len()).ok_or(Error::BufferTooSmall)?;
                *out.next().ok_or(Error::BufferTooSmall)? = dot(rows, win);
                rest = rest.get(1..).unwrap_or_default();
            }
        }
        Ok(())
    }

    /// `dir += sum_a coef[a] shift_a(img)`, one `axpy` of the whole canvas per shift, the
    /// image rows then gathered.
    fn combine_shifts(&mut self, img: &[f32], w: usize, h: usize, s: usize, coef: &[f32], dir: &mut [f32]) -> Result<()> {
        let cv = Canvas { w, h, r: s };
        let rows = self.rows.get_mut(..cv.rows_len()).ok_or(Error::BufferTooSmall)?;
        let full = self.full.get_mut(..cv.full_len()).ok_or(Error::BufferTooSmall)?;
        rows.iter_mut().for_each(|v| *v = 0.0);
        full.iter_mut().for_each(|v| *v = 0.0);
        cv.put_full(img, full)?;
        let len = rows.len();
        if len == 0 {
            // No image rows: nothing to add.
            return Ok(());
        }
        // shift_a(img)[q] = img[q - (dx, dy)]: the window of (-dx, -dy), for the shifts in
        // order while there are coefficients. Along a row of shifts (dx from -s to s) the
        // windows start one value apart, backwards.
        let mut coefs = coef.iter();
        let offs = offsets(s)?;
        let last = *offs.end();
        let reach = len.checked_add(s.saturating_mul(2)).ok_or(Error::InvalidParameter)?;
        'shifts: {
            let Some(&k) = coefs.next() else { break 'shifts };
            axpy(k, span(full, cv.window(0, 0)?, len)?, rows);
            for dy in offs.clone() {
                let row = span(full, cv.window(neg(last)?, neg(dy)?)?, reach)?;
                for (dx, win) in offs.clone().zip(row.windows(len).rev()) {
                    if dx == 0 && dy == 0 {
                        continue;
                    }
                    let Some(&k) = coefs.next() else { break 'shifts };
                    axpy(k, win, rows);
                }
            }
        }
        // The image rows: h of the canvas's and of `dir`'s.
        for (src, dst) in rows_of(rows, cv.stride()).zip(rows_of_mut(dir, w)) {
            for (o, v) in dst.iter_mut().zip(span(src, s, w)?) {
                *o += v;
            }
        }
        Ok(())
    }
}

/// Scratch (f32s) that [`fit`] needs for `m` rows (samples after augmentation) of `d` values
/// laid out `width` wide, shift `s`, at most `cap` directions, and `k` the outputs of a
/// linear target (0 for an identity target: [`linear_outputs`]). Saturates: sizes from
/// untrusted values (a model file's shift, a host's sample count) that overflow give
/// `usize::MAX`, which no buffer holds.
pub const fn fit_scratch_len(m: usize, d: usize, width: usize, s: usize, k: usize, cap: usize) -> usize {
    let t = taps_max(s);
    let c = Canvas {
        w: width,
        h: match d.checked_div(width) {
            Some(h) => h,
            None => 0,
        },
        r: s.saturating_mul(2),
    };
    let count = if cap < m { cap } else { m };
    let parts = [
        top_matrix_len(m, count), // the Gram matrix, then the eigenvectors
        top_scratch_len(m),
        cap, // eigenvalues
        d,   // direction
        d,   // mean
        m,   // <row, mean>
        c.rows_len(),
        c.full_len(),        // canvases
        t.saturating_mul(t), // correlations
        d.div_ceil(32),      // live bitset
        max_runs(d),
        1,
        k,
        d.div_ceil(4), // one direction's words
        k,             // projection
    ];
    let mut total = 0usize;
    let mut rest: &[usize] = &parts;
    while let [part, tail @ ..] = rest {
        total = total.saturating_add(*part);
        rest = tail;
    }
    total
}

/// The `k` of [`fit_scratch_len`] for `target`: its outputs if it is linear, else 0.
pub fn linear_outputs<T: AsRef<[f32]>>(target: &Target<T>) -> usize {
    match target {
        Target::Linear(l) => l.outputs(),
        Target::Identity { .. } => 0,
    }
}

/// `buf` split after `len` values (`BufferTooSmall` if shorter).
fn carve(buf: &mut [f32], len: usize) -> Result<(&mut [f32], &mut [f32])> {
    buf.split_at_mut_checked(len).ok_or(Error::BufferTooSmall)
}

/// Fits a class from `samples` against `target` into the compact form, at most `cap`
/// directions (and `opts.max_rank` if set), handing the shape and then the words to `sink`.
/// No allocation: `scratch` needs [`fit_scratch_len`] f32s. Fails with `EmptyClass` (no
/// samples), `NonFinite` (a sample, or the fit), `InvalidParameter` (options, a shift that
/// does not leave the image, or a geometry that does not match `d`), `DimensionMismatch`,
/// `BufferTooSmall`, or the sink's error.
pub fn fit<T: AsRef<[f32]>>(
    target: &Target<T>,
    samples: &Samples<'_>,
    opts: &FitOptions,
    cap: usize,
    scratch: &mut [f32],
    sink: &mut impl Sink,
) -> Result<Shape> {
    let (d, k) = (target.inputs(), target.outputs());
    let n = samples.n;
    if n == 0 {
        return Err(Error::EmptyClass);
    }
    check_len(d, samples.d)?;
    // Saturated, a product that overflows is longer than any slice: refused as a mismatch.
    check_len(n.saturating_mul(d), samples.data.len())?;
    crate::error::check_finite(samples.data)?;
    opts.validate()?;
    let (w, h) = samples.geometry();
    let s = samples.reach();
    check_geometry(w, h, s, d)?;
    // m saturates, and so then does the scratch it needs: refused just below.
    let m = samples.rows();
    let linear = matches!(target, Target::Linear(_));
    let kl = linear_outputs(target);
    if scratch.len() < fit_scratch_len(m, d, w, s, kl, cap) {
        return Err(Error::BufferTooSmall);
    }
    let per = shifts_per(s);
    let side = s.saturating_mul(2).saturating_add(1);
    let t = taps_max(s);
    let canvas = Canvas {
        w,
        h,
        r: s.saturating_mul(2),
    };
    let (gram, rest) = carve(scratch, top_matrix_len(m, cap.min(m)))?;
    let (eig, rest) = carve(rest, top_scratch_len(m))?;
    let (vals, rest) = carve(rest, cap)?;
    let (dir, rest) = carve(rest, d)?;
    let (mean, rest) = carve(rest, d)?;
    let (rmean, rest) = carve(rest, m)?;
    let (rows_c, rest) = carve(rest, canvas.rows_len())?;
    let (full_c, rest) = carve(rest, canvas.full_len())?;
    let mut canv = Canvases {
        rows: rows_c,
        full: full_c,
    };
    let (corr, rest) = carve(rest, t.saturating_mul(t))?;
    let (bits, rest) = carve(rest, d.div_ceil(32))?;
    let (runs, rest) = carve(rest, max_runs(d))?;
    let (words, rest) = carve(rest, kl.saturating_add(d.div_ceil(4)).saturating_add(1))?;
    let proj = rest.get_mut(..kl).ok_or(Error::BufferTooSmall)?;
    let images = samples.data;
    let img = |i: usize| nth_row(images, i, d);

    // Live inputs: any row non-zero there (every input some shift of an inked pixel reaches).
    let bits: &mut [u32] = bytemuck::cast_slice_mut(bits);
    bits.iter_mut().for_each(|b| *b = 0);
    for i in 0..n {
        mark_live(img(i)?, w, h, s, bits)?;
    }
    let (nruns, live) = compact::runs_of(bits, d, runs)?;
    let runs = runs.get(..nruns).ok_or(Error::BufferTooSmall)?;

    // Mean (affine) and every row's product with it.
    mean.iter_mut().for_each(|v| *v = 0.0);
    if opts.affine {
        for i in 0..n {
            let x = img(i)?;
            for shift in shifts(s)? {
                add_shifted(x, w, h, shift, 1.0, mean);
            }
        }
        let mf = m as f32;
        mean.iter_mut().for_each(|v| *v /= mf);
        crate::error::check_finite(mean)?;
        // The products of image i's shifts are rmean[i per..(i + 1) per]; shift (dx, dy)'s
        // is the correlation's (dx, dy).
        for (i, rm) in (0..n).zip(rows_of_mut(rmean, per)) {
            canv.correlate(img(i)?, mean, w, h, s, corr)?;
            let grid = corr.get(..per).ok_or(Error::BufferTooSmall)?;
            let centre = *grid.get(per / 2).ok_or(Error::BufferTooSmall)?;
            put_in_shift_order(rm, centre, grid.chunks(side).map(|r| r.iter()), s);
        }
    }

    // 1. The Gram matrix of the rows (lower triangle).
    let square = gram
        .get_mut(..m.checked_mul(m).ok_or(Error::BufferTooSmall)?)
        .ok_or(Error::BufferTooSmall)?;
    gram_matrix(images, n, w, h, s, square, dir, &mut canv, corr)?;
    if opts.affine {
        let mm = crate::linalg::norm2(mean);
        for (t1, (row, &r1)) in rows_of_mut(square, m).zip(rmean.iter()).enumerate() {
            // Columns 0..=t1.
            let lower = rmean.get(..=t1).ok_or(Error::BufferTooSmall)?;
            for (g, &r2) in row.iter_mut().zip(lower) {
                *g = *g - r1 - r2 + mm;
            }
        }
    }

    // 2. The strongest directions that pass the options.
    let count = {
        let mut c = cap.min(m).min(live);
        if opts.max_rank > 0 {
            c = c.min(opts.max_rank as usize);
        }
        c
    };
    let mut top = 0.0f32;
    let r = top_eigenpairs(
        gram,
        m,
        count,
        |i, lam| {
            if i == 0 {
                top = lam.max(0.0);
            }
            let wgt = weight(lam, opts);
            lam > top * opts.rank_tol * opts.rank_tol && wgt > 0.0 && wgt >= opts.min_weight
        },
        vals,
        eig,
    )?;
    let vecs = span(gram, vectors_at(m), r.checked_mul(m).ok_or(Error::BufferTooSmall)?)?;
    let vals = vals.get(..r).ok_or(Error::BufferTooSmall)?;

    let shape = Shape {
        inputs: d,
        outputs: k,
        rank: r,
        runs: nruns,
        live,
        affine: opts.affine,
        linear,
    };
    sink.shape(&shape)?;
    sink.words(runs)?;
    if opts.affine {
        gather(mean, runs, dir)?;
        sink.words(dir.get(..live).ok_or(Error::BufferTooSmall)?)?;
    }
    if let Target::Linear(l) = target {
        l.forward(mean, proj)?;
        crate::error::check_finite(proj)?;
        sink.words(proj)?;
    }
    for &lam in vals {
        // Every part the store's loader checks is checked here first, so that the store
        // never holds a record it would refuse at boot.
        let wgt = weight(lam, opts);
        if !wgt.is_finite() {
            return Err(Error::NonFinite);
        }
        sink.words(&[wgt])?;
    }

    // 3. Each direction: sum over rows of v_t (row_t - mean) / sqrt(lambda).
    let kp = shape.proj_len();
    let words = words.get_mut(..shape.direction_words()).ok_or(Error::BufferTooSmall)?;
    for (v, &lam) in rows_of(vecs, m).zip(vals) {
        dir.iter_mut().for_each(|x| *x = 0.0);
        // The coefficients of image i's shifts are v[i per..(i + 1) per].
        for (i, coef) in (0..n).zip(rows_of(v, per)) {
            canv.combine_shifts(img(i)?, w, h, s, coef, dir)?;
        }
        let inv = 1.0 / crate::linalg::sqrt(lam);
        if opts.affine {
            let sv: f32 = v.iter().sum();
            for (x, mu) in dir.iter_mut().zip(mean.iter()) {
                *x = (*x - sv * mu) * inv;
            }
        } else {
            dir.iter_mut().for_each(|x| *x *= inv);
        }
        gather_in_place(dir, runs)?;
        let (scale_w, rest) = words.split_first_mut().ok_or(Error::BufferTooSmall)?;
        let (proj_w, row_w) = rest.split_at_mut_checked(kp).ok_or(Error::BufferTooSmall)?;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(row_w);
        bytes.iter_mut().for_each(|b| *b = 0);
        let live_dir = dir.get_mut(..live).ok_or(Error::BufferTooSmall)?;
        let scale = quantize_i8(live_dir, bytes.get_mut(..live).ok_or(Error::BufferTooSmall)?)?;
        *scale_w = scale;
        if let Target::Linear(l) = target {
            // A û over the live inputs, û the direction as stored.
            for (x, &b) in live_dir.iter_mut().zip(bytes.iter()) {
                *x = b as i8 as f32 * scale;
            }
            let a = l.weight();
            for (j, p) in proj_w.iter_mut().enumerate() {
                *p = dot_runs(nth_row(a, j, d)?, runs, live_dir)?;
            }
        }
        if !scale_w.is_finite() || proj_w.iter().any(|p| !p.is_finite()) {
            return Err(Error::NonFinite);
        }
        sink.words(words)?;
    }
    Ok(shape)
}

/// Host fits ([`fit_owned`]) take the device's route ([`fit`], whose bits a device
/// enrollment gives) up to this many rows, or the input dimension if larger; beyond it the
/// `d x d` scatter route of [`crate::subspace::Subspace::fit`], then the same quantisation:
/// the same class up to rounding, for supports far larger than a device enrolls (whose
/// `m x m` Gram matrix and its `O(m^3)` eigen-decomposition would dominate).
#[cfg(feature = "alloc")]
pub const GRAM_ROWS: usize = 1024;

/// `len` zeros, or `BufferTooSmall` when they cannot be allocated (a size from absurd
/// values, saturated at `usize::MAX`).
#[cfg(feature = "alloc")]
fn zeros(len: usize) -> Result<alloc::vec::Vec<f32>> {
    let mut v = alloc::vec::Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::BufferTooSmall)?;
    v.resize(len, 0.0);
    Ok(v)
}

/// A class fitted on the host into a [`compact::Compact`] (see [`fit`]; [`GRAM_ROWS`] says
/// when the result is a device's bit for bit).
#[cfg(feature = "alloc")]
pub fn fit_owned<T: AsRef<[f32]>>(
    target: &Target<T>,
    samples: &Samples<'_>,
    opts: &FitOptions,
    cap: usize,
) -> Result<compact::Compact<alloc::vec::Vec<f32>>> {
    use alloc::vec;
    let (d, k) = (target.inputs(), target.outputs());
    let m = samples.rows();
    let (w, h) = samples.geometry();
    let s = samples.reach();
    if m <= GRAM_ROWS.max(d) {
        let mut scratch = zeros(fit_scratch_len(m, d, w, s, linear_outputs(target), cap))?;
        let mut words = alloc::vec::Vec::new();
        let shape = fit(target, samples, opts, cap, &mut scratch, &mut words)?;
        return compact::Compact::from_parts(shape, words);
    }
    // The scatter route on the augmented rows.
    check_len(d, samples.d)?;
    check_len(samples.n.saturating_mul(d), samples.data.len())?;
    check_geometry(w, h, s, d)?;
    let per = shifts_per(s);
    let mut rows = zeros(m.saturating_mul(d))?;
    // Image i's shifts are rows i per..(i + 1) per.
    let band = per.checked_mul(d).ok_or(Error::BufferTooSmall)?;
    for (x, shifted) in rows_of(samples.data, d).zip(rows_of_mut(&mut rows, band)) {
        for (out, shift) in rows_of_mut(shifted, d).zip(shifts(s)?) {
            add_shifted(x, w, h, shift, 1.0, out);
        }
    }
    let mut o = *opts;
    let limit = if opts.max_rank == 0 { cap } else { cap.min(opts.max_rank as usize) };
    o.max_rank = u16::try_from(limit.min(u16::MAX as usize)).unwrap_or(u16::MAX);
    let sub = crate::subspace::Subspace::fit(target, &rows, m, &o)?;
    let mut bits = vec![0u32; d.div_ceil(32)];
    for i in 0..samples.n {
        mark_live(nth_row(samples.data, i, d)?, w, h, s, &mut bits)?;
    }
    let mut runs = vec![0.0f32; max_runs(d)];
    let (nruns, live) = compact::runs_of(&bits, d, &mut runs)?;
    let shape = Shape {
        inputs: d,
        outputs: k,
        rank: sub.rank().min(live),
        runs: nruns,
        live,
        affine: opts.affine,
        linear: matches!(target, Target::Linear(_)),
    };
    let runs = runs.get(..nruns).ok_or(Error::BufferTooSmall)?;
    let mut words = runs.to_vec();
    let mut buf = vec![0.0f32; d];
    if let Some(mu) = sub.mean() {
        gather(mu, runs, &mut buf)?;
        words.extend_from_slice(buf.get(..live).ok_or(Error::BufferTooSmall)?);
    }
    if let Some(tm) = sub.target_mean() {
        words.extend_from_slice(tm);
    }
    words.extend_from_slice(sub.shrink().get(..shape.rank).ok_or(Error::BufferTooSmall)?);
    let mut row_w = vec![0.0f32; shape.row_words()];
    for i in 0..shape.rank {
        gather(nth_row(sub.basis(), i, d)?, runs, &mut buf)?;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut row_w);
        bytes.iter_mut().for_each(|b| *b = 0);
        let live_buf = buf.get_mut(..live).ok_or(Error::BufferTooSmall)?;
        let scale = quantize_i8(live_buf, bytes.get_mut(..live).ok_or(Error::BufferTooSmall)?)?;
        words.push(scale);
        if let Target::Linear(l) = target {
            for (x, &b) in live_buf.iter_mut().zip(bytes.iter()) {
                *x = b as i8 as f32 * scale;
            }
            for j in 0..k {
                words.push(dot_runs(nth_row(l.weight(), j, d)?, runs, live_buf)?);
            }
        }
        words.extend_from_slice(&row_w);
    }
    let c = compact::Compact::from_parts(shape, words)?;
    c.check_finite()?;
    Ok(c)
}

/// `row . v` for `v` given over the live inputs (`live`) and `row` over every input: one dot
/// product per run, added in order.
fn dot_runs(row: &[f32], runs: &[f32], live: &[f32]) -> Result<f32> {
    let mut acc = 0.0f32;
    for (inputs, at) in run_ranges(runs) {
        let (a, b) = (row.get(inputs), live.get(at));
        acc += dot(a.ok_or(Error::BufferTooSmall)?, b.ok_or(Error::BufferTooSmall)?);
    }
    Ok(acc)
}

/// `out[..live] = v` over the runs.
fn gather(v: &[f32], runs: &[f32], out: &mut [f32]) -> Result<()> {
    for (inputs, at) in run_ranges(runs) {
        let src = v.get(inputs).ok_or(Error::BufferTooSmall)?;
        out.get_mut(at).ok_or(Error::BufferTooSmall)?.copy_from_slice(src);
    }
    Ok(())
}

/// Gathers `v`'s live inputs to its front (each run moves down or stays).
fn gather_in_place(v: &mut [f32], runs: &[f32]) -> Result<()> {
    for (inputs, at) in run_ranges(runs) {
        // Both places inside `v`, where `copy_within` takes them.
        if v.get(inputs.clone()).is_none() || v.get(at.clone()).is_none() {
            return Err(Error::BufferTooSmall);
        }
        v.copy_within(inputs, at.start);
    }
    Ok(())
}

/// Marks in `bits` every input that a shift by up to `s` of a non-zero pixel of `img` reaches.
fn mark_live(img: &[f32], w: usize, h: usize, s: usize, bits: &mut [u32]) -> Result<()> {
    for (y, row) in rows_of(img, w).take(h).enumerate() {
        for (x, &v) in row.iter().enumerate() {
            if v == 0.0 {
                continue;
            }
            // The pixels within s of (x, y), clipped to the image (the ends saturate, then
            // the clip takes them back).
            let ys = y.saturating_sub(s)..y.saturating_add(s).saturating_add(1).min(h);
            let xs = x.saturating_sub(s)..x.saturating_add(s).saturating_add(1).min(w);
            for yy in ys {
                let at = yy.checked_mul(w).ok_or(Error::InvalidParameter)?;
                let from = at.checked_add(xs.start).ok_or(Error::InvalidParameter)?;
                let to = at.checked_add(xs.end).ok_or(Error::InvalidParameter)?;
                for j in from..to {
                    *bits.get_mut(j / 32).ok_or(Error::BufferTooSmall)? |= 1 << (j % 32);
                }
            }
        }
    }
    Ok(())
}

/// `out += alpha * shift(img)` with `shift(img)[y][x] = img[y - dy][x - dx]` (0 outside).
fn add_shifted(img: &[f32], w: usize, h: usize, (dx, dy): (isize, isize), alpha: f32, out: &mut [f32]) {
    // Output row y takes image row y - dy, and within it output x takes image x - dx: the
    // rows (values) of the output start |dy| (|dx|) later for a positive shift, the image's
    // for a negative one. The pairs run out together at the image's edge.
    let (ux, uy) = (dx.unsigned_abs(), dy.unsigned_abs());
    let (sy, oy) = if dy >= 0 { (0, uy) } else { (uy, 0) };
    let (sx, ox) = if dx >= 0 { (0, ux) } else { (ux, 0) };
    let src_rows = rows_of(img, w).take(h).skip(sy);
    let dst_rows = rows_of_mut(out, w).take(h).skip(oy);
    for (src, dst) in src_rows.zip(dst_rows) {
        let (src, dst) = (src.get(sx..).unwrap_or_default(), dst.get_mut(ox..).unwrap_or_default());
        for (o, &v) in dst.iter_mut().zip(src) {
            *o += alpha * v;
        }
    }
}

/// Whether `img` is zero within `s` pixels of its border.
fn blank_border(img: &[f32], w: usize, h: usize, s: usize) -> bool {
    if s == 0 {
        return true;
    }
    let inked = |v: &[f32]| v.iter().any(|&v| v != 0.0);
    for (y, row) in rows_of(img, w).take(h).enumerate() {
        // The first and last s rows whole (y + s >= h), and s values at both ends of every
        // row (the whole row if it is narrower).
        let all = y < s || y >= h.saturating_sub(s);
        if all && inked(row) {
            return false;
        }
        let left = row.get(..s).unwrap_or(row);
        let right = row.get(row.len().saturating_sub(s)..).unwrap_or(row);
        if inked(left) || inked(right) {
            return false;
        }
    }
    true
}

/// Row `a`'s entries of a block of the Gram matrix, from column `col` of the matrix's row
/// `out`: all `per` of them, or only those up to `a` in a block on the diagonal (the lower
/// triangle).
fn block(out: &mut [f32], col: usize, per: usize, diagonal: Option<usize>) -> Result<&mut [f32]> {
    let out = out.get_mut(col..);
    let out = match diagonal {
        Some(a) => out.and_then(|o| o.get_mut(..=a)),
        None => out.and_then(|o| o.get_mut(..per)),
    };
    out.ok_or(Error::BufferTooSmall)
}

/// The lower triangle of the Gram matrix of the `n (2s + 1)^2` rows (see the module doc),
/// into `gram` (`m x m`); `row` needs `d` f32s.
#[allow(clippy::too_many_arguments)]
fn gram_matrix(
    images: &[f32],
    n: usize,
    w: usize,
    h: usize,
    s: usize,
    gram: &mut [f32],
    row: &mut [f32],
    canv: &mut Canvases<'_>,
    corr: &mut [f32],
) -> Result<()> {
    let d = w.checked_mul(h).ok_or(Error::InvalidParameter)?;
    let per = shifts_per(s);
    let m = n.checked_mul(per).ok_or(Error::InvalidParameter)?;
    let s2 = s.checked_mul(2).ok_or(Error::InvalidParameter)?;
    let side = s2.checked_add(1).ok_or(Error::InvalidParameter)?;
    let band_len = per.checked_mul(m).ok_or(Error::InvalidParameter)?;
    let row = row.get_mut(..d).ok_or(Error::BufferTooSmall)?;
    // A correlation of reach 2s has rows of `taps` offsets; the (2s + 1)^2 of them that one
    // shift a meets (all b) are a square of it, whose middle value is `middle` after its
    // first and last `corner` after it.
    let taps = taps_max(s);
    let si = isize::try_from(s).map_err(|_| Error::InvalidParameter)?;
    let middle = grid_at(0, 0, s, taps).ok_or(Error::InvalidParameter)?;
    let corner = grid_at(si, si, s, taps).ok_or(Error::InvalidParameter)?;
    let img = |i: usize| nth_row(images, i, d);
    for i in 0..n {
        // Rows i per..(i + 1) per of the matrix: the shifts a of image i.
        let band = nth_row_mut(gram, i, band_len)?;
        for j in 0..=i {
            let (a_i, a_j) = (img(i)?, img(j)?);
            // Entry (a, b) of block (i, j) is row a of the band at column j per + b; only
            // the lower triangle: b <= a when j = i.
            let col = j.checked_mul(per).ok_or(Error::InvalidParameter)?;
            // With I's border blank, <shift_a I, shift_b J> = C_IJ(a - b); with J's,
            // <shift_b J, shift_a I> = C_JI(b - a).
            let margin = if blank_border(a_i, w, h, s) {
                Some((a_i, a_j, false))
            } else if blank_border(a_j, w, h, s) {
                Some((a_j, a_i, true))
            } else {
                None
            };
            if let Some((first, second, flip)) = margin {
                canv.correlate(first, second, w, h, s2, corr)?;
                for (a, ((ax, ay), out)) in shifts(s)?.zip(rows_of_mut(band, m)).enumerate() {
                    // Entry b is the correlation's (a - b), or (b - a) flipped: over b row by
                    // row, the square around (a) or (-a) backwards, or forwards.
                    let (cx, cy) = if flip { (neg(ax)?, neg(ay)?) } else { (ax, ay) };
                    let at = grid_at(cx, cy, s, taps).ok_or(Error::InvalidParameter)?;
                    let square = corr.get(at..).and_then(|c| c.get(..=corner)).ok_or(Error::BufferTooSmall)?;
                    let centre = *square.get(middle).ok_or(Error::BufferTooSmall)?;
                    // The square's rows: `side` values every `taps` (taps > side).
                    let rows = square.chunks(taps).map(|r| r.get(..side).unwrap_or_default());
                    let out = block(out, col, per, (j == i).then_some(a))?;
                    if flip {
                        put_in_shift_order(out, centre, rows.map(|r| r.iter()), s);
                    } else {
                        put_in_shift_order(out, centre, rows.rev().map(|r| r.iter().rev()), s);
                    }
                }
            } else {
                // Each shift of I made once: <R, shift_b J> = sum_p R[p] J[p - b], the
                // correlation's -b: over b row by row, the correlation backwards.
                for (a, (shift, out)) in shifts(s)?.zip(rows_of_mut(band, m)).enumerate() {
                    row.iter_mut().for_each(|v| *v = 0.0);
                    add_shifted(a_i, w, h, shift, 1.0, row);
                    canv.correlate(row, a_j, w, h, s, corr)?;
                    let grid = corr.get(..per).ok_or(Error::BufferTooSmall)?;
                    let centre = *grid.get(per / 2).ok_or(Error::BufferTooSmall)?;
                    let out = block(out, col, per, (j == i).then_some(a))?;
                    put_in_shift_order(out, centre, grid.chunks(side).rev().map(|r| r.iter().rev()), s);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment;
    use crate::compact::Compact;
    use crate::linear::{Init, Linear};
    use crate::rng::Rng;
    use crate::subspace::Subspace;
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    /// Index of shift `(dx, dy)` in [`shifts`]' order.
    fn index_of(s: usize, dx: isize, dy: isize) -> usize {
        if dx == 0 && dy == 0 {
            return 0;
        }
        let side = 2 * s + 1;
        let k = (dy + s as isize) as usize * side + (dx + s as isize) as usize;
        let centre = side * side / 2;
        if k < centre {
            k + 1
        } else {
            k
        }
    }

    /// Sizes computed from untrusted values (a model file's shift of 128, a host's sample
    /// count) saturate at `usize::MAX`, which no buffer holds, instead of overflowing (a
    /// panic in a debug build, a small wrapped size in a release one).
    #[test]
    fn sizes_from_absurd_values_saturate() {
        assert_eq!(fit_scratch_len(usize::MAX / 2, 784, 28, 2, 0, 40), usize::MAX);
        assert_eq!(fit_scratch_len(10, 784, 28, usize::MAX / 3, 0, 40), usize::MAX);
        assert_eq!(fit_scratch_len(10, 784, 28, 2, usize::MAX, 40), usize::MAX);
        assert!(fit_scratch_len(125, 784, 28, 2, 0, 32) < 1 << 20);
        let s = Shape {
            inputs: usize::MAX,
            outputs: usize::MAX,
            rank: usize::MAX,
            runs: 1,
            live: usize::MAX,
            affine: true,
            linear: true,
        };
        assert_eq!(s.words(), usize::MAX);
        assert_eq!(compact::distance_scratch_len(&s), usize::MAX);
        assert_eq!(crate::store::class_len(&s), usize::MAX);
        assert_eq!(crate::store::slot_len(usize::MAX, 100, 4096), usize::MAX);
        assert_eq!(crate::store::slot_len(10, 100, 0), usize::MAX);
        assert_eq!(crate::eigen::top_matrix_len(usize::MAX, 2), usize::MAX);
    }

    #[test]
    fn shift_order_is_augments() {
        for s in 0..=3usize {
            let (w, h) = (9, 8);
            let img: Vec<f32> = (0..w * h).map(|i| i as f32 + 1.0).collect();
            let per = shifts_per(s);
            let mut want = vec![0.0; per * w * h];
            augment::shifts(&img, w, h, s as u8, &mut want).unwrap();
            assert_eq!(shifts(s).unwrap().count(), per);
            for (a, (dx, dy)) in shifts(s).unwrap().enumerate() {
                let mut got = vec![0.0; w * h];
                add_shifted(&img, w, h, (dx, dy), 1.0, &mut got);
                assert_eq!(got, want[a * w * h..(a + 1) * w * h], "s={s} a={a}");
                assert_eq!(index_of(s, dx, dy), a);
            }
        }
    }

    /// Digit-like images: a blob of ink, some with ink up to the border.
    fn images(n: usize, w: usize, h: usize, seed: u64, border: bool) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut out = vec![0.0f32; n * w * h];
        for i in 0..n {
            for y in 3..h - 3 {
                for x in 3..w - 3 {
                    if rng.next_f32() < 0.4 {
                        out[i * w * h + y * w + x] = rng.next_f32();
                    }
                }
            }
            if border && i % 2 == 1 {
                out[i * w * h + w + 1] = 0.7; // within 2 pixels of the border
            }
        }
        out
    }

    fn materialised(xs: &[f32], n: usize, w: usize, h: usize, s: u8) -> Vec<f32> {
        let per = augment::shift_count(s);
        let d = w * h;
        let mut rows = vec![0.0; n * per * d];
        for i in 0..n {
            augment::shifts(&xs[i * d..(i + 1) * d], w, h, s, &mut rows[i * per * d..(i + 1) * per * d]).unwrap();
        }
        rows
    }

    /// The streamed Gram matrix equals the products of the materialised rows, on both
    /// routes (blank borders, ink on the border).
    #[test]
    fn gram_matrix_equals_the_materialised_rows() {
        let (w, h) = (12, 11);
        for (s, border) in [(0usize, false), (1, false), (2, false), (2, true), (3, true)] {
            let n = 3;
            let xs = images(n, w, h, 5 + s as u64, border);
            let rows = materialised(&xs, n, w, h, s as u8);
            assert_streamed_gram(&xs, &rows, n, w, h, s);
        }
    }

    /// The Gram matrix [`gram_matrix`] streams from `n` images `xs` (`w x h`, shifts by up
    /// to `s`) equals the products of the materialised `rows`, entry by entry.
    fn assert_streamed_gram(xs: &[f32], rows: &[f32], n: usize, w: usize, h: usize, s: usize) {
        let (d, m) = (w * h, n * shifts_per(s));
        let mut gram = vec![f32::NAN; m * m];
        let cv = Canvas { w, h, r: 2 * s };
        let (mut row, mut crows, mut full, mut corr) = (
            vec![0.0; d],
            vec![0.0; cv.rows_len()],
            vec![0.0; cv.full_len()],
            vec![0.0; taps_max(s).pow(2)],
        );
        let mut canv = Canvases {
            rows: &mut crows,
            full: &mut full,
        };
        gram_matrix(xs, n, w, h, s, &mut gram, &mut row, &mut canv, &mut corr).unwrap();
        for t1 in 0..m {
            for t2 in 0..=t1 {
                let want: f32 = rows[t1 * d..(t1 + 1) * d]
                    .iter()
                    .zip(&rows[t2 * d..(t2 + 1) * d])
                    .map(|(a, b)| a * b)
                    .sum();
                let got = gram[t1 * m + t2];
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "w={w} h={h} s={s} ({t1},{t2}): {got} vs {want}"
                );
            }
        }
    }

    /// Images lower than the shift (a time series is one row): the vertical shifts past the
    /// top or bottom are empty rows, and the streamed Gram matrix is still the materialised
    /// rows' products (ink everywhere, so the route that shifts each image).
    #[test]
    fn low_images_and_series_shift_sideways_only() {
        for (w, h) in [(40usize, 1usize), (30, 2)] {
            for s in 1..=3usize {
                let (n, d) = (2, w * h);
                let mut rng = Rng::new(w as u64 + s as u64);
                let xs: Vec<f32> = (0..n * d).map(|_| rng.normal()).collect();
                let rows = materialised(&xs, n, w, h, s as u8);
                // A shift by dy >= h leaves nothing of the image.
                let per = shifts_per(s);
                let empty = (0..n * per).filter(|t| rows[t * d..(t + 1) * d].iter().all(|&v| v == 0.0)).count();
                let low = (2 * s + 1).saturating_sub(2 * h.min(s + 1) - 1).min(2 * s + 1);
                assert_eq!(empty, n * low * (2 * s + 1), "w={w} h={h} s={s}");
                check_geometry(w, h, s, d).unwrap();
                assert_streamed_gram(&xs, &rows, n, w, h, s);
            }
        }
        // A sideways shift as wide as the image is still refused.
        assert_eq!(check_geometry(3, 1, 3, 3), Err(Error::InvalidParameter));
    }

    fn fit_vec(target: &Target<Vec<f32>>, smp: &Samples<'_>, opts: &FitOptions, cap: usize) -> Result<Compact<Vec<f32>>> {
        let (w, _) = smp.geometry();
        let mut scratch = vec![0.0; fit_scratch_len(smp.rows(), smp.d, w, smp.reach(), linear_outputs(target), cap)];
        let mut words = Vec::new();
        let shape = fit(target, smp, opts, cap, &mut scratch, &mut words)?;
        Compact::from_parts(shape, words)
    }

    /// The compact class gives the f32 closed form's distances (the Gram route on the
    /// materialised rows) up to its 8-bit rounding, for every target kind and option.
    #[test]
    fn compact_fit_matches_the_f32_closed_form() {
        let (w, h) = (10, 10);
        let d = w * h;
        let mut rng = Rng::new(9);
        let linear = Target::Linear(Linear::new(d, 12, true, Init::XavierNormal, &mut rng).unwrap());
        let identity = Target::Identity { dim: d };
        for border in [false, true] {
            let n = 3;
            let xs = images(n, w, h, 21, border);
            let queries = images(4, w, h, 77, border);
            for s in [0u8, 1, 2] {
                let rows = materialised(&xs, n, w, h, s);
                let m = n * augment::shift_count(s);
                for target in [&identity, &linear] {
                    for opts in [
                        FitOptions {
                            ridge: 0.5,
                            min_weight: 0.05,
                            affine: false,
                            ..Default::default()
                        },
                        FitOptions {
                            ridge: 0.5,
                            min_weight: 0.05,
                            ..Default::default()
                        },
                    ] {
                        let cap = 6;
                        let smp = Samples {
                            data: &xs,
                            n,
                            d,
                            image: Some((w, h)),
                            shift: s,
                        };
                        let c = fit_vec(target, &smp, &opts, cap).unwrap();
                        c.check_finite().unwrap();
                        let f = Subspace::fit(
                            target,
                            &rows,
                            m,
                            &FitOptions {
                                max_rank: cap as u16,
                                ..opts
                            },
                        )
                        .unwrap();
                        assert_eq!(c.shape().rank, f.rank(), "s={s} {opts:?}");
                        for (a, b) in c.shrink().iter().zip(f.shrink()) {
                            assert!((a - b).abs() <= 1e-3, "weights {a} vs {b}");
                        }
                        let k = target.outputs();
                        let mut sc = vec![0.0; crate::compact::distance_scratch_len(c.shape())];
                        let mut sf = vec![0.0; crate::subspace::distance_scratch_len(d, f.rank())];
                        for q in queries.chunks_exact(d) {
                            let mut qx = vec![0.0; k];
                            target.forward(q, &mut qx).unwrap();
                            let a = c.distance(q, &qx, &mut sc).unwrap();
                            let b = f.distance(q, &qx, &mut sf).unwrap();
                            assert!(
                                (a - b).abs() <= 0.03 * b.abs().max(1e-3),
                                "s={s} border={border} {opts:?}: {a} vs {b}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Beyond the Gram route's rows the host takes the scatter route: the same class up to
    /// rounding.
    #[test]
    fn many_rows_take_the_scatter_route_to_the_same_class() {
        let (w, h) = (8, 8);
        let d = w * h;
        let n = 41; // 41 x 25 = 1025 rows
        let xs = images(n, w, h, 41, false);
        let t: Target<Vec<f32>> = Target::Identity { dim: d };
        let opts = FitOptions {
            ridge: 2.0,
            min_weight: 0.05,
            affine: false,
            ..Default::default()
        };
        let smp = Samples {
            data: &xs,
            n,
            d,
            image: Some((w, h)),
            shift: 2,
        };
        assert!(smp.rows() > GRAM_ROWS.max(d));
        let scatter = fit_owned(&t, &smp, &opts, 10).unwrap();
        let mut words = Vec::new();
        let mut scratch = vec![0.0; fit_scratch_len(smp.rows(), d, w, 2, 0, 10)];
        let shape = fit(&t, &smp, &opts, 10, &mut scratch, &mut words).unwrap();
        let gram = Compact::from_parts(shape, words).unwrap();
        assert_eq!(scatter.shape(), gram.shape());
        let mut sc = vec![0.0; crate::compact::distance_scratch_len(gram.shape())];
        for q in images(5, w, h, 3, false).chunks_exact(d) {
            let (a, b) = (scatter.distance(q, q, &mut sc).unwrap(), gram.distance(q, q, &mut sc).unwrap());
            assert!((a - b).abs() <= 0.02 * b.max(1e-3), "{a} vs {b}");
        }
    }

    #[test]
    fn rows_and_errors() {
        let (w, h) = (8, 8);
        let d = w * h;
        let xs = images(2, w, h, 3, false);
        let t: Target<Vec<f32>> = Target::Identity { dim: d };
        let opts = FitOptions::default();
        let smp = Samples {
            data: &xs,
            n: 2,
            d,
            image: Some((w, h)),
            shift: 1,
        };
        assert_eq!(smp.rows(), 18);
        let c = fit_vec(&t, &smp, &opts, 40).unwrap();
        assert!(c.shape().rank <= 17);
        let none = Samples { n: 0, data: &[], ..smp };
        assert_eq!(fit_vec(&t, &none, &opts, 4).unwrap_err(), Error::EmptyClass);
        let mut nan = xs.clone();
        nan[3] = f32::NAN;
        assert_eq!(fit_vec(&t, &Samples { data: &nan, ..smp }, &opts, 4).unwrap_err(), Error::NonFinite);
        assert_eq!(
            fit_vec(&t, &Samples { shift: 8, ..smp }, &opts, 4).unwrap_err(),
            Error::InvalidParameter
        );
        assert_eq!(
            fit_vec(
                &t,
                &Samples {
                    image: Some((7, 9)),
                    ..smp
                },
                &opts,
                4
            )
            .unwrap_err(),
            Error::InvalidParameter
        );
        let mut small = vec![0.0; 10];
        assert_eq!(
            fit(&t, &smp, &opts, 4, &mut small, &mut Vec::new()).unwrap_err(),
            Error::BufferTooSmall
        );
        // Rows without an image: no shifts.
        let flat = Samples { image: None, ..smp };
        assert_eq!(flat.rows(), 2);
        assert_eq!(fit_vec(&t, &flat, &opts, 4).unwrap().shape().rank, 1);
    }
}
