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

use crate::augment::shift_count;
use crate::compact::{self, max_runs, quantize_i8, Shape};
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
    /// Rows after augmentation: `n (2s + 1)^2`.
    pub fn rows(&self) -> usize {
        self.n * shifts_per(self.reach())
    }
    /// `(width, height)`: the image, or one row of `d`.
    fn geometry(&self) -> (usize, usize) {
        self.image.unwrap_or((self.d, 1))
    }
}

fn shifts_per(s: usize) -> usize {
    shift_count(s as u8)
}

/// `(dx, dy)` of shift `a` in [`crate::augment::shifts`]' order: `(0, 0)` first, then row by
/// row from `(-s, -s)`, skipping `(0, 0)`.
fn shift_at(s: usize, a: usize) -> (isize, isize) {
    if a == 0 {
        return (0, 0);
    }
    let side = 2 * s + 1;
    let centre = (side * side) / 2;
    let k = if a <= centre { a - 1 } else { a };
    ((k % side) as isize - s as isize, (k / side) as isize - s as isize)
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
    fn put_rows(&self, img: &[f32], rows: &mut [f32]) {
        let st = self.stride();
        for y in 0..self.h {
            rows[y * st + self.r..y * st + self.r + self.w].copy_from_slice(&img[y * self.w..(y + 1) * self.w]);
        }
    }
    /// Writes `img` into `full`, a whole canvas (its border left as it is).
    fn put_full(&self, img: &[f32], full: &mut [f32]) {
        let at = self.window(0, 0);
        self.put_rows(img, &mut full[at..at + self.rows_len()]);
    }
    /// Where the window of a whole canvas starts whose value at row-canvas position `q` is
    /// the image's at `q` moved by `(dx, dy)`.
    fn window(&self, dx: isize, dy: isize) -> usize {
        let st = self.stride() as isize;
        (self.r as isize + self.r as isize * st + dy * st + dx) as usize
    }
}

/// The two canvas buffers of a fit: one of image rows, one whole.
struct Canvases<'a> {
    rows: &'a mut [f32],
    full: &'a mut [f32],
}

impl Canvases<'_> {
    /// `c[off(dx, dy, r)] = sum_{y,x} a[y][x] b[y + dy][x + dx]` (terms outside either image
    /// are 0) for `|dx|, |dy| <= r`: `a` in the rows canvas and `b` in the whole one, zero
    /// bordered, each offset one dot product over the rows.
    fn correlate(&mut self, a: &[f32], b: &[f32], w: usize, h: usize, r: usize, c: &mut [f32]) {
        let cv = Canvas { w, h, r };
        let (rows, full) = (&mut self.rows[..cv.rows_len()], &mut self.full[..cv.full_len()]);
        rows.iter_mut().for_each(|v| *v = 0.0);
        full.iter_mut().for_each(|v| *v = 0.0);
        cv.put_rows(a, rows);
        cv.put_full(b, full);
        let ri = r as isize;
        for dy in -ri..=ri {
            for dx in -ri..=ri {
                let at = cv.window(dx, dy);
                c[off(dx, dy, r)] = dot(rows, &full[at..at + rows.len()]);
            }
        }
    }

    /// `dir += sum_a coef[a] shift_a(img)`, one `axpy` of the whole canvas per shift, the
    /// image rows then gathered.
    fn combine_shifts(&mut self, img: &[f32], w: usize, h: usize, s: usize, coef: &[f32], dir: &mut [f32]) {
        let cv = Canvas { w, h, r: s };
        let (rows, full) = (&mut self.rows[..cv.rows_len()], &mut self.full[..cv.full_len()]);
        rows.iter_mut().for_each(|v| *v = 0.0);
        full.iter_mut().for_each(|v| *v = 0.0);
        cv.put_full(img, full);
        for (a, &k) in coef.iter().enumerate() {
            let (dx, dy) = shift_at(s, a);
            // shift_a(img)[q] = img[q - (dx, dy)].
            let at = cv.window(-dx, -dy);
            axpy(k, &full[at..at + rows.len()], rows);
        }
        let st = cv.stride();
        for y in 0..h {
            let src = &rows[y * st + s..y * st + s + w];
            for (o, v) in dir[y * w..(y + 1) * w].iter_mut().zip(src) {
                *o += v;
            }
        }
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
    let mut i = 0;
    while i < parts.len() {
        total = total.saturating_add(parts[i]);
        i += 1;
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
    check_len(n * d, samples.data.len())?;
    crate::error::check_finite(samples.data)?;
    opts.validate()?;
    let (w, h) = samples.geometry();
    let s = samples.reach();
    if w * h != d || (s > 0 && (s >= w || s >= h)) || d > u16::MAX as usize {
        return Err(Error::InvalidParameter);
    }
    let per = shifts_per(s);
    let m = n * per;
    let linear = matches!(target, Target::Linear(_));
    let kl = linear_outputs(target);
    if scratch.len() < fit_scratch_len(m, d, w, s, kl, cap) {
        return Err(Error::BufferTooSmall);
    }
    let t = taps_max(s);
    let canvas = Canvas { w, h, r: 2 * s };
    let (gram, rest) = scratch.split_at_mut(top_matrix_len(m, cap.min(m)));
    let (eig, rest) = rest.split_at_mut(top_scratch_len(m));
    let (vals, rest) = rest.split_at_mut(cap);
    let (dir, rest) = rest.split_at_mut(d);
    let (mean, rest) = rest.split_at_mut(d);
    let (rmean, rest) = rest.split_at_mut(m);
    let (rows_c, rest) = rest.split_at_mut(canvas.rows_len());
    let (full_c, rest) = rest.split_at_mut(canvas.full_len());
    let mut canv = Canvases {
        rows: rows_c,
        full: full_c,
    };
    let (corr, rest) = rest.split_at_mut(t * t);
    let (bits, rest) = rest.split_at_mut(d.div_ceil(32));
    let (runs, rest) = rest.split_at_mut(max_runs(d));
    let (words, rest) = rest.split_at_mut(1 + kl + d.div_ceil(4));
    let proj = &mut rest[..kl];
    let images = samples.data;
    let img = |i: usize| &images[i * d..(i + 1) * d];

    // Live inputs: any row non-zero there (every input some shift of an inked pixel reaches).
    let bits: &mut [u32] = bytemuck::cast_slice_mut(bits);
    bits.iter_mut().for_each(|b| *b = 0);
    for i in 0..n {
        mark_live(img(i), w, h, s, bits);
    }
    let (nruns, live) = compact::runs_of(bits, d, runs)?;

    // Mean (affine) and every row's product with it.
    mean.iter_mut().for_each(|v| *v = 0.0);
    if opts.affine {
        for i in 0..n {
            for a in 0..per {
                add_shifted(img(i), w, h, shift_at(s, a), 1.0, mean);
            }
        }
        let mf = m as f32;
        mean.iter_mut().for_each(|v| *v /= mf);
        crate::error::check_finite(mean)?;
        for i in 0..n {
            canv.correlate(img(i), mean, w, h, s, corr);
            for a in 0..per {
                let (dx, dy) = shift_at(s, a);
                rmean[i * per + a] = corr[off(dx, dy, s)];
            }
        }
    }

    // 1. The Gram matrix of the rows (lower triangle).
    gram_matrix(images, n, w, h, s, &mut gram[..m * m], dir, &mut canv, corr);
    if opts.affine {
        let mm = crate::linalg::norm2(mean);
        for t1 in 0..m {
            for t2 in 0..=t1 {
                gram[t1 * m + t2] = gram[t1 * m + t2] - rmean[t1] - rmean[t2] + mm;
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
    let vecs = &gram[vectors_at(m)..vectors_at(m) + r * m];

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
    sink.words(&runs[..nruns])?;
    if opts.affine {
        gather(mean, &runs[..nruns], dir);
        sink.words(&dir[..live])?;
    }
    if let Target::Linear(l) = target {
        l.forward(mean, proj)?;
        crate::error::check_finite(proj)?;
        sink.words(proj)?;
    }
    for &lam in &vals[..r] {
        // Every part the store's loader checks is checked here first, so that the store
        // never holds a record it would refuse at boot.
        let wgt = weight(lam, opts);
        if !wgt.is_finite() {
            return Err(Error::NonFinite);
        }
        sink.words(&[wgt])?;
    }

    // 3. Each direction: sum over rows of v_t (row_t - mean) / sqrt(lambda).
    let (kp, rw) = (shape.proj_len(), shape.row_words());
    let words = &mut words[..1 + kp + rw];
    for (kk, &lam) in vals[..r].iter().enumerate() {
        let v = &vecs[kk * m..(kk + 1) * m];
        dir.iter_mut().for_each(|x| *x = 0.0);
        for i in 0..n {
            canv.combine_shifts(img(i), w, h, s, &v[i * per..(i + 1) * per], dir);
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
        gather_in_place(dir, &runs[..nruns]);
        let (head, row_w) = words.split_at_mut(1 + kp);
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(row_w);
        bytes.iter_mut().for_each(|b| *b = 0);
        let scale = quantize_i8(&dir[..live], &mut bytes[..live])?;
        head[0] = scale;
        if let Target::Linear(l) = target {
            // A û over the live inputs, û the direction as stored.
            for (x, &b) in dir[..live].iter_mut().zip(bytes.iter()) {
                *x = b as i8 as f32 * scale;
            }
            let a = l.weight();
            for (j, p) in head[1..].iter_mut().enumerate() {
                let row = &a[j * d..(j + 1) * d];
                let mut acc = 0.0f32;
                let mut at = 0;
                for &rw in &runs[..nruns] {
                    let (st, len) = run_of(rw);
                    acc += dot(&row[st..st + len], &dir[at..at + len]);
                    at += len;
                }
                *p = acc;
            }
        }
        if head.iter().any(|p| !p.is_finite()) {
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
        let mut scratch = vec![0.0; fit_scratch_len(m, d, w, s, linear_outputs(target), cap)];
        let mut words = alloc::vec::Vec::new();
        let shape = fit(target, samples, opts, cap, &mut scratch, &mut words)?;
        return compact::Compact::from_parts(shape, words);
    }
    // The scatter route on the augmented rows.
    check_len(d, samples.d)?;
    check_len(samples.n * d, samples.data.len())?;
    if w * h != d || (s > 0 && (s >= w || s >= h)) || d > u16::MAX as usize {
        return Err(Error::InvalidParameter);
    }
    let per = shifts_per(s);
    let mut rows = vec![0.0f32; m * d];
    for i in 0..samples.n {
        for a in 0..per {
            let t = i * per + a;
            add_shifted(
                &samples.data[i * d..(i + 1) * d],
                w,
                h,
                shift_at(s, a),
                1.0,
                &mut rows[t * d..(t + 1) * d],
            );
        }
    }
    let mut o = *opts;
    let limit = if opts.max_rank == 0 { cap } else { cap.min(opts.max_rank as usize) };
    o.max_rank = u16::try_from(limit.min(u16::MAX as usize)).unwrap_or(u16::MAX);
    let sub = crate::subspace::Subspace::fit(target, &rows, m, &o)?;
    let mut bits = vec![0u32; d.div_ceil(32)];
    for i in 0..samples.n {
        mark_live(&samples.data[i * d..(i + 1) * d], w, h, s, &mut bits);
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
    let runs = &runs[..nruns];
    let mut words = runs.to_vec();
    let mut buf = vec![0.0f32; d];
    if let Some(mu) = sub.mean() {
        gather(mu, runs, &mut buf);
        words.extend_from_slice(&buf[..live]);
    }
    if let Some(tm) = sub.target_mean() {
        words.extend_from_slice(tm);
    }
    words.extend_from_slice(&sub.shrink()[..shape.rank]);
    let mut row_w = vec![0.0f32; shape.row_words()];
    for i in 0..shape.rank {
        gather(&sub.basis()[i * d..(i + 1) * d], runs, &mut buf);
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut row_w);
        bytes.iter_mut().for_each(|b| *b = 0);
        let scale = quantize_i8(&buf[..live], &mut bytes[..live])?;
        words.push(scale);
        if let Target::Linear(l) = target {
            for (x, &b) in buf[..live].iter_mut().zip(bytes.iter()) {
                *x = b as i8 as f32 * scale;
            }
            for j in 0..k {
                let row = &l.weight()[j * d..(j + 1) * d];
                let mut acc = 0.0f32;
                let mut at = 0;
                for &rw in runs {
                    let (st, len) = run_of(rw);
                    acc += dot(&row[st..st + len], &buf[at..at + len]);
                    at += len;
                }
                words.push(acc);
            }
        }
        words.extend_from_slice(&row_w);
    }
    let c = compact::Compact::from_parts(shape, words)?;
    c.check_finite()?;
    Ok(c)
}

fn run_of(w: f32) -> (usize, usize) {
    let b = w.to_bits();
    ((b & 0xFFFF) as usize, (b >> 16) as usize)
}

/// `out[..live] = v` over the runs.
fn gather(v: &[f32], runs: &[f32], out: &mut [f32]) {
    let mut at = 0;
    for &rw in runs {
        let (s, l) = run_of(rw);
        out[at..at + l].copy_from_slice(&v[s..s + l]);
        at += l;
    }
}

/// Gathers `v`'s live inputs to its front (each run moves down or stays).
fn gather_in_place(v: &mut [f32], runs: &[f32]) {
    let mut at = 0;
    for &rw in runs {
        let (s, l) = run_of(rw);
        v.copy_within(s..s + l, at);
        at += l;
    }
}

/// Marks in `bits` every input that a shift by up to `s` of a non-zero pixel of `img` reaches.
fn mark_live(img: &[f32], w: usize, h: usize, s: usize, bits: &mut [u32]) {
    for y in 0..h {
        for x in 0..w {
            if img[y * w + x] == 0.0 {
                continue;
            }
            for yy in y.saturating_sub(s)..(y + s + 1).min(h) {
                for xx in x.saturating_sub(s)..(x + s + 1).min(w) {
                    let j = yy * w + xx;
                    bits[j / 32] |= 1 << (j % 32);
                }
            }
        }
    }
}

/// `out += alpha * shift(img)` with `shift(img)[y][x] = img[y - dy][x - dx]` (0 outside).
fn add_shifted(img: &[f32], w: usize, h: usize, (dx, dy): (isize, isize), alpha: f32, out: &mut [f32]) {
    for y in 0..h as isize {
        let sy = y - dy;
        if sy < 0 || sy >= h as isize {
            continue;
        }
        let (x0, x1) = ((dx.max(0)) as usize, (w as isize + dx.min(0)) as usize);
        let src = &img[sy as usize * w..(sy as usize + 1) * w];
        let dst = &mut out[y as usize * w..(y as usize + 1) * w];
        for x in x0..x1 {
            dst[x] += alpha * src[(x as isize - dx) as usize];
        }
    }
}

/// Index of offset `(dx, dy)` in a correlation of reach `r` (`(2r + 1)` offsets per axis).
fn off(dx: isize, dy: isize, r: usize) -> usize {
    let t = 2 * r + 1;
    (dy + r as isize) as usize * t + (dx + r as isize) as usize
}

/// Whether `img` is zero within `s` pixels of its border.
fn blank_border(img: &[f32], w: usize, h: usize, s: usize) -> bool {
    if s == 0 {
        return true;
    }
    for y in 0..h {
        let row = &img[y * w..(y + 1) * w];
        let all = y < s || y + s >= h;
        if all && row.iter().any(|&v| v != 0.0) {
            return false;
        }
        if row[..s].iter().chain(&row[w - s..]).any(|&v| v != 0.0) {
            return false;
        }
    }
    true
}

/// The lower triangle of the Gram matrix of the `n (2s + 1)^2` rows (see the module doc).
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
) {
    let d = w * h;
    let per = shifts_per(s);
    let m = n * per;
    let img = |i: usize| &images[i * d..(i + 1) * d];
    for i in 0..n {
        for j in 0..=i {
            let (a_i, a_j) = (img(i), img(j));
            // With I's border blank, <shift_a I, shift_b J> = C_IJ(a - b); with J's,
            // <shift_b J, shift_a I> = C_JI(b - a).
            let margin = if blank_border(a_i, w, h, s) {
                Some((a_i, a_j, 1))
            } else if blank_border(a_j, w, h, s) {
                Some((a_j, a_i, -1))
            } else {
                None
            };
            if let Some((first, second, sign)) = margin {
                canv.correlate(first, second, w, h, 2 * s, corr);
                for a in 0..per {
                    let (ax, ay) = shift_at(s, a);
                    for b in 0..per {
                        let (t1, t2) = (i * per + a, j * per + b);
                        if t2 > t1 {
                            continue;
                        }
                        let (bx, by) = shift_at(s, b);
                        gram[t1 * m + t2] = corr[off(sign * (ax - bx), sign * (ay - by), 2 * s)];
                    }
                }
            } else {
                // Each shift of I made once: <R, shift_b J> = sum_p R[p] J[p - b].
                for a in 0..per {
                    row[..d].iter_mut().for_each(|v| *v = 0.0);
                    add_shifted(a_i, w, h, shift_at(s, a), 1.0, row);
                    canv.correlate(&row[..d], a_j, w, h, s, corr);
                    for b in 0..per {
                        let (t1, t2) = (i * per + a, j * per + b);
                        if t2 > t1 {
                            continue;
                        }
                        let (bx, by) = shift_at(s, b);
                        gram[t1 * m + t2] = corr[off(-bx, -by, s)];
                    }
                }
            }
        }
    }
}

/// Index of shift `(dx, dy)` in [`shift_at`]'s order.
#[cfg(test)]
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
            for a in 0..per {
                let mut got = vec![0.0; w * h];
                let (dx, dy) = shift_at(s, a);
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
        let d = w * h;
        for (s, border) in [(0usize, false), (1, false), (2, false), (2, true), (3, true)] {
            let n = 3;
            let xs = images(n, w, h, 5 + s as u64, border);
            let rows = materialised(&xs, n, w, h, s as u8);
            let m = n * shifts_per(s);
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
            gram_matrix(&xs, n, w, h, s, &mut gram, &mut row, &mut canv, &mut corr);
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
                        "s={s} border={border} ({t1},{t2}): {got} vs {want}"
                    );
                }
            }
        }
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
