//! A class's closed-form predictor in the form a microcontroller keeps it: its directions in
//! 8 bits over the inputs the class ever uses.
//!
//! The closed form ([`crate::subspace`]) stores a class as `r` orthonormal directions of `d`
//! values in `f32`: 75 KB per class at `r = 24`, `d = 784`. Here each direction is stored
//! with one scale and `int8` values (TFLite's per-axis convention: `q = round(u / s)`,
//! `s = max |u| / 127`), and only over the class's *live* inputs: an input that is zero in
//! every (centred) sample of the class is zero in every direction, so the directions skip it
//! (MNIST, 5 images and their 2-pixel shifts: 62% of the pixels are live). A class is a few
//! words of header and then one record per direction, so a device can write a class to
//! flash one direction at a time and read it back the same way ([`Directions`]).
//!
//! A distance quantises the query (centred, over the live inputs) to `i16` with one scale and
//! takes exact integer dot products with the directions (`i64`), so the host and a Cortex-M
//! get the same bits whatever order their kernels sum in; what is `f32` around them is the
//! same operations in the same order everywhere.
//!
//! # Layout
//!
//! In 4-byte little-endian words, for a [`Shape`] (`d` inputs, `k` target outputs, rank `r`,
//! `runs` runs covering `live` inputs; `affine`: a mean is kept; `linear`: the member's
//! target is linear):
//!
//! | words | what |
//! |---|---|
//! | `runs` | the live inputs: `u32 = start \| len << 16` per run, increasing, disjoint |
//! | `live` | `f32` mean over the live inputs (only if `affine`) |
//! | `k` | `f32` `Q(mean)` (only if `linear`) |
//! | `r` | `f32` shrinkage weights `w` |
//! | then per direction: `1` | `f32` scale `s_i` |
//! | `k` | `f32` `A û_i`, the target applied to the direction as stored (only if `linear`) |
//! | `ceil(live / 4)` | `int8` values over the live inputs, 4 per word (byte `j` is input `j`), zero padded |
//!
//! Sizes here come from model files, flash and enrollment requests: no input makes this
//! module panic or overflow (indexing, integer arithmetic and panics are denied below).
use core::ops::Range;

use crate::error::{check_len, Error, Result};
use crate::linalg::dot;

/// Runs of live inputs separated by fewer dead inputs than this are merged: a run costs a
/// word and a pass of the gather, a dead input in a direction a byte.
pub const MIN_GAP: usize = 4;

/// Largest `int8` magnitude a direction is quantised to.
const Q8: f32 = 127.0;
/// Largest `i16` magnitude a query is quantised to.
const Q16: f32 = 32767.0;

/// The sizes a compact class's layout follows from (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape {
    /// Input dimension `d`.
    pub inputs: usize,
    /// Target outputs `k` (`d` for an identity target).
    pub outputs: usize,
    /// Directions `r`.
    pub rank: usize,
    /// Runs of live inputs.
    pub runs: usize,
    /// Live inputs (the sum of the runs' lengths).
    pub live: usize,
    /// A mean is kept (an affine subspace).
    pub affine: bool,
    /// The member's target is linear (a projection per direction and `Q(mean)` are kept).
    pub linear: bool,
}

impl Shape {
    /// Words of `int8` values of one direction.
    pub const fn row_words(&self) -> usize {
        self.live.div_ceil(4)
    }
    /// `k` for a linear target, else 0.
    pub const fn proj_len(&self) -> usize {
        if self.linear {
            self.outputs
        } else {
            0
        }
    }
    /// Words of one direction's record: scale, projection, values.
    pub const fn direction_words(&self) -> usize {
        self.proj_len().saturating_add(self.row_words()).saturating_add(1)
    }
    /// Words before the first direction: runs, mean, `Q(mean)`, weights.
    pub const fn head_words(&self) -> usize {
        let mean = if self.affine { self.live } else { 0 };
        self.runs
            .saturating_add(mean)
            .saturating_add(self.proj_len())
            .saturating_add(self.rank)
    }
    /// Words of the whole class (saturating: a shape from untrusted bytes whose size
    /// overflows is `usize::MAX`, larger than any record).
    pub const fn words(&self) -> usize {
        self.head_words().saturating_add(self.rank.saturating_mul(self.direction_words()))
    }
    /// Most words a class of `rank` directions can take for `d` inputs and `k` outputs: all
    /// inputs live in one run, with a mean. (Splitting a run drops at least [`MIN_GAP`]
    /// inputs, a word per direction and [`MIN_GAP`] words of mean, for one word more.)
    pub const fn max_words(inputs: usize, outputs: usize, rank: usize, linear: bool) -> usize {
        Shape {
            inputs,
            outputs,
            rank,
            runs: 1,
            live: inputs,
            affine: true,
            linear,
        }
        .words()
    }

    /// Checks the sizes against each other (not the runs themselves: [`check_runs`]).
    pub fn validate(&self) -> Result<()> {
        let ok = self.inputs >= 1
            && self.inputs <= u16::MAX as usize
            && self.outputs >= 1
            && self.live <= self.inputs
            && self.rank <= self.live
            && self.runs <= self.live
            && (self.runs == 0) == (self.live == 0)
            && (self.linear || self.outputs == self.inputs);
        if ok {
            Ok(())
        } else {
            Err(Error::Malformed)
        }
    }

    /// Words of the whole class, with every step checked (for sizes read from a file).
    pub fn checked_words(&self) -> Result<usize> {
        self.validate()?;
        let dir = 1usize
            .checked_add(self.proj_len())
            .and_then(|v| v.checked_add(self.row_words()))
            .ok_or(Error::Malformed)?;
        self.head_words()
            .checked_add(self.rank.checked_mul(dir).ok_or(Error::Malformed)?)
            .ok_or(Error::Malformed)
    }
}

/// One run of live inputs from its word.
fn run(word: f32) -> (usize, usize) {
    let w = word.to_bits();
    ((w & 0xFFFF) as usize, (w >> 16) as usize)
}

/// A run's word.
fn run_word(start: usize, len: usize) -> f32 {
    f32::from_bits(start as u32 | (len as u32) << 16)
}

/// The runs as pairs of index ranges: where each run lies among the inputs, and where its
/// values lie among the live inputs (after the runs before it). The ends saturate (only a
/// slice of absurdly many runs gets there), and a saturated range is refused by the `get`
/// it is used with.
pub(crate) fn run_ranges(runs: &[f32]) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
    runs.iter().scan(0usize, |at, &w| {
        let (s, l) = run(w);
        let live = *at..at.saturating_add(l);
        *at = live.end;
        Some((s..s.saturating_add(l), live))
    })
}

/// Checks that the run words are increasing, disjoint, non-empty, inside `inputs` and cover
/// `live` inputs.
pub fn check_runs(runs: &[f32], inputs: usize, live: usize) -> Result<()> {
    let mut next = 0usize;
    let mut total = 0usize;
    for (i, &w) in runs.iter().enumerate() {
        let (s, l) = run(w);
        // Both halves of a word: `s + l` does not saturate (and would be refused if it did).
        if l == 0 || (i > 0 && s <= next) || s < next || s.saturating_add(l) > inputs {
            return Err(Error::Malformed);
        }
        next = s.saturating_add(l);
        // bound: the runs so far are disjoint, in order and end by `next` (checked just
        // above), so their lengths add up to at most `next`.
        #[allow(clippy::arithmetic_side_effects)]
        {
            total += l;
        }
    }
    if total != live {
        return Err(Error::Malformed);
    }
    Ok(())
}

/// Writes the runs of the inputs marked in `live` (a bitset, bit `j % 32` of word `j / 32`),
/// merging runs separated by fewer than [`MIN_GAP`] dead inputs, into `out`; returns the
/// number of runs and of inputs they cover. `out` needs [`max_runs`]`(inputs)` words.
pub fn runs_of(live: &[u32], inputs: usize, out: &mut [f32]) -> Result<(usize, usize)> {
    let bit = |j: usize| live.get(j / 32).is_some_and(|w| w >> (j % 32) & 1 == 1);
    let (mut n, mut covered) = (0usize, 0usize);
    // A run from its first and last input.
    let mut emit = |(first, last): (usize, usize)| -> Result<()> {
        let len = (first..last).len().checked_add(1).ok_or(Error::BufferTooSmall)?;
        *out.get_mut(n).ok_or(Error::BufferTooSmall)? = run_word(first, len);
        n = n.checked_add(1).ok_or(Error::BufferTooSmall)?;
        covered = covered.checked_add(len).ok_or(Error::BufferTooSmall)?;
        Ok(())
    };
    let mut cur: Option<(usize, usize)> = None;
    for j in 0..inputs {
        if !bit(j) {
            continue;
        }
        cur = match cur {
            // Fewer than MIN_GAP dead inputs between the run's last input and `j` (that is,
            // `j - last <= MIN_GAP`): the run goes on.
            Some((first, last)) if (last..j).len() <= MIN_GAP => Some((first, j)),
            Some(run) => {
                emit(run)?;
                Some((j, j))
            }
            None => Some((j, j)),
        };
    }
    if let Some(run) = cur {
        emit(run)?;
    }
    Ok((n, covered))
}

/// Most runs [`runs_of`] can write for `inputs` inputs.
pub const fn max_runs(inputs: usize) -> usize {
    inputs.div_ceil(MIN_GAP + 1)
}

/// Quantises `v` to `int8` bytes in `out` (symmetric, one scale: `q = round(v / s)`,
/// `s = max |v| / 127`); returns `s` (0 for a zero vector, whose bytes are 0).
pub fn quantize_i8(v: &[f32], out: &mut [u8]) -> Result<f32> {
    check_len(v.len(), out.len())?;
    let big = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if !big.is_finite() {
        return Err(Error::NonFinite);
    }
    if big == 0.0 {
        out.iter_mut().for_each(|b| *b = 0);
        return Ok(0.0);
    }
    let inv = Q8 / big;
    for (o, &x) in out.iter_mut().zip(v) {
        *o = round_clamp(x * inv, Q8) as i8 as u8;
    }
    Ok(big / Q8)
}

/// `||a||^2`, as [`crate::linalg::norm2`], always inlined: [`distance`] takes one per run.
#[inline(always)]
fn norm2(a: &[f32]) -> f32 {
    dot(a, a)
}

/// Rounds half away from zero and clamps to `[-lim, lim]`; the same operations everywhere.
#[inline(always)]
fn round_clamp(x: f32, lim: f32) -> i32 {
    let r = if x >= 0.0 { x + 0.5 } else { x - 0.5 };
    let r = if r > lim {
        lim
    } else if r < -lim {
        -lim
    } else {
        r
    };
    r as i32
}

/// Quantises `z` to `i16` in `out` with one scale (`max |z| / 32767`), truncating (one
/// instruction on a Cortex-M4F; 15 bits are far more than the 8-bit directions use);
/// returns the scale (0 for a zero vector).
fn quantize_i16(z: &[f32], out: &mut [i16]) -> Result<f32> {
    let big = z.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if !big.is_finite() {
        return Err(Error::NonFinite);
    }
    if big == 0.0 {
        out.iter_mut().for_each(|q| *q = 0);
        return Ok(0.0);
    }
    let inv = Q16 / big;
    for (o, &x) in out.iter_mut().zip(z) {
        // |x inv| <= 32767 up to rounding, which truncation takes back below.
        *o = (x * inv) as i32 as i16;
    }
    Ok(big / Q16)
}

/// `sum a[j] * b[j]` of `int8` bytes and `i16` values, exactly (the shorter length; on a
/// target wider than 32 bits the sum saturates at the `i64` range, which takes more than 2^41
/// values to reach). On a Cortex-M4F whole groups of 8 go through its DSP instructions (2
/// instructions per multiply-accumulate); integer sums have one value whatever the order.
pub fn dot_i8_i16(a: &[u8], b: &[i16]) -> i64 {
    let n = a.len().min(b.len());
    let (a, b) = (a.get(..n).unwrap_or_default(), b.get(..n).unwrap_or_default());
    let (mut total, done) = crate::linalg::dot_i8_i16_fast(a, b).unwrap_or((0, 0));
    let (a, b) = (a.get(done..).unwrap_or_default(), b.get(done..).unwrap_or_default());
    for (ca, cb) in a.chunks(256).zip(b.chunks(256)) {
        let mut s = 0i32;
        // bound: |x y| <= 128 * 32768 = 2^22 and a chunk holds at most 256 products, so
        // |s| <= 2^30 fits an i32 (LLVM vectorises this block).
        #[allow(clippy::arithmetic_side_effects)]
        for (&x, &y) in ca.iter().zip(cb) {
            s += x as i8 as i32 * y as i32;
        }
        total = accumulate(total, s);
    }
    total
}

/// `total + s` for [`dot_i8_i16`], whose running sum of `len` products stays within
/// `len * 128 * 32768 = len * 2^22` in magnitude.
#[inline(always)]
fn accumulate(total: i64, s: i32) -> i64 {
    // bound: on a 32-bit target (the Cortex-M) a slice has under 2^31 values, so the sum
    // stays below 2^53.
    #[cfg(target_pointer_width = "32")]
    #[allow(clippy::arithmetic_side_effects)]
    let sum = total + i64::from(s);
    // A wider target could hold 2^41 values: saturate there.
    #[cfg(not(target_pointer_width = "32"))]
    let sum = total.saturating_add(i64::from(s));
    sum
}

/// Where a distance gets a class's directions from: in place (a model file, a host model)
/// or read piece by piece (flash through `embedded-storage`).
pub trait Directions {
    /// The words of direction `i` (scale, projection, values; [`Shape::direction_words`]),
    /// in place or read into `buf`.
    fn direction<'s>(&'s mut self, i: usize, buf: &'s mut [f32]) -> Result<&'s [f32]>;
}

/// Directions of a class whose words are in memory.
pub struct InPlace<'w> {
    words: &'w [f32],
    stride: usize,
}

impl Directions for InPlace<'_> {
    fn direction<'s>(&'s mut self, i: usize, _buf: &'s mut [f32]) -> Result<&'s [f32]> {
        let at = i.checked_mul(self.stride).ok_or(Error::Malformed)?;
        let end = at.checked_add(self.stride).ok_or(Error::Malformed)?;
        self.words.get(at..end).ok_or(Error::Malformed)
    }
}

/// Scratch (f32s) that [`distance`] needs for a class of this shape.
pub const fn distance_scratch_len(shape: &Shape) -> usize {
    // z over the live inputs, its i16 form, the directions' u, the error (linear), one
    // direction read from flash.
    shape
        .live
        .saturating_add(shape.live.div_ceil(2))
        .saturating_add(shape.rank)
        .saturating_add(shape.proj_len())
        .saturating_add(shape.direction_words())
}

/// The class's mean squared disagreement `||P(x) - Q(x)||^2 / k` for `x`, given `qx = Q(x)`
/// (used only with a linear target): `head` holds the class's words before its directions,
/// `dirs` gives them. See the module doc for the arithmetic.
pub fn distance(shape: &Shape, head: &[f32], dirs: &mut impl Directions, x: &[f32], qx: &[f32], scratch: &mut [f32]) -> Result<f32> {
    shape.validate()?;
    check_len(shape.head_words(), head.len())?;
    check_len(shape.inputs, x.len())?;
    if shape.linear {
        check_len(shape.outputs, qx.len())?;
    }
    if scratch.len() < distance_scratch_len(shape) {
        return Err(Error::BufferTooSmall);
    }
    let (live, r, kp) = (shape.live, shape.rank, shape.proj_len());
    // The lengths were checked above; a split that does not fit is an error all the same.
    let (runs, rest) = head.split_at_checked(shape.runs).ok_or(Error::Malformed)?;
    let (mean, rest) = rest.split_at_checked(if shape.affine { live } else { 0 }).ok_or(Error::Malformed)?;
    let (tmean, shrink) = rest.split_at_checked(kp).ok_or(Error::Malformed)?;
    let (z, rest) = scratch.split_at_mut_checked(live).ok_or(Error::BufferTooSmall)?;
    let (zq, rest) = rest.split_at_mut_checked(live.div_ceil(2)).ok_or(Error::BufferTooSmall)?;
    let (u, rest) = rest.split_at_mut_checked(r).ok_or(Error::BufferTooSmall)?;
    let (err, buf) = rest.split_at_mut_checked(kp).ok_or(Error::BufferTooSmall)?;
    let zq: &mut [i16] = bytemuck::cast_slice_mut(zq);
    let zq = zq.get_mut(..live).ok_or(Error::BufferTooSmall)?;

    // z = x - mean over the live inputs; ||z||^2 over every input (the dead ones are x).
    let mut at = 0usize;
    let mut dead = 0.0f32;
    let mut prev = 0usize;
    let mut bad = false;
    for &w in runs {
        let (s, l) = run(w);
        // Both halves of a word: `s + l` does not saturate (and would be refused if it did).
        let end = s.saturating_add(l);
        match (x.get(prev..s), x.get(s..end), z.get_mut(at..).and_then(|z| z.get_mut(..l))) {
            (Some(gap), Some(src), Some(dst)) => {
                dead += norm2(gap);
                dst.copy_from_slice(src);
                // bound: z[at..at + l] is there, so at + l <= z.len().
                #[allow(clippy::arithmetic_side_effects)]
                {
                    at += l;
                }
            }
            _ => bad = true,
        }
        prev = end;
    }
    if bad || at != live {
        return Err(Error::Malformed);
    }
    dead += norm2(x.get(prev..).unwrap_or_default());
    if shape.affine {
        z.iter_mut().zip(mean).for_each(|(v, m)| *v -= m);
    }
    let zz = norm2(z) + dead;
    if !zz.is_finite() {
        return Err(Error::NonFinite);
    }
    let sz = quantize_i16(z, zq)?;

    // u_i = s_i s_z (q_i . zq), exactly summed.
    let mut dirs_ok = true;
    for (i, (ui, &wi)) in u.iter_mut().zip(shrink).enumerate() {
        let words = dirs.direction(i, buf)?;
        let Some((&scale, rest)) = words.split_first() else {
            dirs_ok = false;
            break;
        };
        let (proj, row) = rest.split_at_checked(kp).ok_or(Error::Malformed)?;
        let bytes: &[u8] = bytemuck::cast_slice(row);
        let t = dot_i8_i16(bytes.get(..live).ok_or(Error::Malformed)?, zq);
        *ui = t as f32 * (scale * sz);
        if shape.linear {
            // e = (Q(x) - Q(mean)) - sum_i (A û_i) w_i u_i, one direction at a time.
            if i == 0 {
                for ((e, q), t) in err.iter_mut().zip(qx).zip(tmean) {
                    *e = q - t;
                }
            }
            let p = wi * *ui;
            for (e, b) in err.iter_mut().zip(proj) {
                *e -= b * p;
            }
        }
    }
    if !dirs_ok {
        return Err(Error::Malformed);
    }
    if shape.linear {
        if r == 0 {
            for ((e, q), t) in err.iter_mut().zip(qx).zip(tmean) {
                *e = q - t;
            }
        }
        let s = norm2(err);
        if !s.is_finite() {
            return Err(Error::NonFinite);
        }
        return Ok(s / shape.outputs as f32);
    }
    // ||z - U^T diag(w) U z||^2 = ||z||^2 - sum (2 w_i - w_i^2) u_i^2 for orthonormal U
    // (the stored directions are orthonormal up to their 8-bit rounding).
    let mut s = zz;
    for (&w, &ui) in shrink.iter().zip(u.iter()) {
        s -= (2.0 * w - w * w) * ui * ui;
    }
    if !s.is_finite() {
        return Err(Error::NonFinite);
    }
    Ok(s.max(0.0) / shape.inputs as f32)
}

/// A compact class whose words are in memory (a model file read in place, a host model).
#[derive(Debug, Clone)]
pub struct Compact<S> {
    shape: Shape,
    words: S,
}

/// Equal when the shapes are and every word has the same bits (the words hold bytes, which
/// read as floats may be NaN).
impl<S: AsRef<[f32]>> PartialEq for Compact<S> {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.words.as_ref(), other.words.as_ref());
        self.shape == other.shape && a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }
}

impl<S: AsRef<[f32]>> Compact<S> {
    /// A class from its shape and words, checking the sizes and the runs (not whether the
    /// `f32` parts are finite: [`Compact::check_finite`]).
    pub fn from_parts(shape: Shape, words: S) -> Result<Self> {
        check_len(shape.checked_words()?, words.as_ref().len())?;
        let runs = words.as_ref().get(..shape.runs).ok_or(Error::Malformed)?;
        check_runs(runs, shape.inputs, shape.live)?;
        Ok(Compact { shape, words })
    }
    /// The sizes.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    /// Every word of the class.
    pub fn words(&self) -> &[f32] {
        self.words.as_ref()
    }
    // The words' length was checked against the shape in `from_parts`: the parts below are
    // all there (empty if they were not).
    fn runs(&self) -> &[f32] {
        self.words.as_ref().get(..self.shape.runs).unwrap_or_default()
    }
    /// The words before the first direction.
    pub fn head(&self) -> &[f32] {
        self.words.as_ref().get(..self.shape.head_words()).unwrap_or_default()
    }
    /// The shrinkage weights.
    pub fn shrink(&self) -> &[f32] {
        let h = self.head();
        h.len().checked_sub(self.shape.rank).and_then(|at| h.get(at..)).unwrap_or_default()
    }
    /// A borrowed view.
    pub fn view(&self) -> Compact<&[f32]> {
        Compact {
            shape: self.shape,
            words: self.words.as_ref(),
        }
    }
    /// Fails with `NonFinite` when a mean, weight, scale or projection is NaN or infinite.
    pub fn check_finite(&self) -> Result<()> {
        check_finite_parts(&self.shape, self.head(), &mut self.directions(), &mut [])
    }
    /// The directions, in place.
    pub fn directions(&self) -> InPlace<'_> {
        InPlace {
            words: self.words.as_ref().get(self.shape.head_words()..).unwrap_or_default(),
            stride: self.shape.direction_words(),
        }
    }
    /// See [`distance`].
    pub fn distance(&self, x: &[f32], qx: &[f32], scratch: &mut [f32]) -> Result<f32> {
        distance(&self.shape, self.head(), &mut self.directions(), x, qx, scratch)
    }
    /// Direction `i` over every input, dequantised (`s_i q_i`, 0 on the dead inputs).
    pub fn direction_f32(&self, i: usize, out: &mut [f32]) -> Result<()> {
        check_len(self.shape.inputs, out.len())?;
        let mut dirs = self.directions();
        let words = dirs.direction(i, &mut [])?;
        let (scale, rest) = words.split_first().ok_or(Error::Malformed)?;
        let bytes: &[u8] = bytemuck::cast_slice(rest.get(self.shape.proj_len()..).ok_or(Error::Malformed)?);
        out.iter_mut().for_each(|v| *v = 0.0);
        for (inputs, at) in run_ranges(self.runs()) {
            let dst = out.get_mut(inputs).ok_or(Error::Malformed)?;
            for (o, &b) in dst.iter_mut().zip(bytes.get(at).ok_or(Error::Malformed)?) {
                *o = b as i8 as f32 * *scale;
            }
        }
        Ok(())
    }
}

/// Fails with `NonFinite` when an `f32` part of the class (mean, `Q(mean)`, weights, scales,
/// projections) is NaN or infinite; reads the directions through `dirs` into `buf`.
pub fn check_finite_parts(shape: &Shape, head: &[f32], dirs: &mut impl Directions, buf: &mut [f32]) -> Result<()> {
    crate::error::check_finite(head.get(shape.runs..).ok_or(Error::Malformed)?)?;
    for i in 0..shape.rank {
        let w = dirs.direction(i, buf)?;
        crate::error::check_finite(w.get(..shape.proj_len().saturating_add(1)).ok_or(Error::Malformed)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn runs_merge_small_gaps_and_round_trip() {
        // Live: 0..3, 5..6 (gap 2: merged), 12..14 (gap 6: new run), 99.
        let mut bits = [0u32; 4];
        for j in [0, 1, 2, 5, 12, 13, 99] {
            bits[j / 32] |= 1 << (j % 32);
        }
        let mut out = [0.0f32; 30];
        let (n, live) = runs_of(&bits, 100, &mut out).unwrap();
        assert_eq!(n, 3);
        let got: Vec<(usize, usize)> = out[..n].iter().map(|&w| run(w)).collect();
        assert_eq!(got, [(0, 6), (12, 2), (99, 1)]);
        assert_eq!(live, 9);
        check_runs(&out[..n], 100, 9).unwrap();
        assert_eq!(check_runs(&out[..n], 99, 9), Err(Error::Malformed));
        assert_eq!(check_runs(&out[..n], 100, 8), Err(Error::Malformed));
        let overlap = [run_word(0, 6), run_word(5, 2)];
        assert_eq!(check_runs(&overlap, 100, 8), Err(Error::Malformed));
        let empty = [run_word(3, 0)];
        assert_eq!(check_runs(&empty, 100, 0), Err(Error::Malformed));
        assert!(max_runs(100) >= 20);
    }

    #[test]
    fn quantisation_rounds_and_clamps() {
        let v = [0.5f32, -1.0, 0.25, 0.0];
        let mut q = [0u8; 4];
        let s = quantize_i8(&v, &mut q).unwrap();
        assert_eq!(s, 1.0 / 127.0);
        assert_eq!(q.map(|b| b as i8), [64, -127, 32, 0]);
        assert_eq!(quantize_i8(&[0.0; 4], &mut q), Ok(0.0));
        assert_eq!(quantize_i8(&[f32::INFINITY, 0.0, 0.0, 0.0], &mut q), Err(Error::NonFinite));
        let mut z = [0i16; 3];
        let s = quantize_i16(&[2.0, -1.0, 1e-9], &mut z).unwrap();
        assert_eq!(z, [32767, -16383, 0]);
        assert_eq!(s, 2.0 / 32767.0);
        assert_eq!(round_clamp(1e30, 127.0), 127);
        assert_eq!(round_clamp(-2.5, 127.0), -3);
    }

    #[test]
    fn integer_dot_is_exact() {
        let a: Vec<u8> = (0..1000).map(|i| ((i * 37 % 255) - 127) as i8 as u8).collect();
        let b: Vec<i16> = (0..1000).map(|i| ((i * 7919 % 65535) - 32767) as i16).collect();
        let want: i64 = a.iter().zip(&b).map(|(&x, &y)| x as i8 as i64 * y as i64).sum();
        assert_eq!(dot_i8_i16(&a, &b), want);
        let worst = vec![128u8; 600];
        let bw = vec![-32767i16; 600];
        assert_eq!(dot_i8_i16(&worst, &bw), 600 * 128 * 32767);
    }

    /// A class built by hand: its distance equals the f32 formula on the dequantised
    /// directions up to the query's 16-bit rounding.
    #[test]
    fn distance_follows_the_dequantised_class() {
        let d = 10;
        for (affine, linear) in [(false, false), (true, false), (false, true), (true, true)] {
            let k = if linear { 3 } else { d };
            // Live inputs 1..4 and 6..9 (two runs).
            let runs = [run_word(1, 3), run_word(6, 3)];
            let live = 6;
            let shape = Shape {
                inputs: d,
                outputs: k,
                rank: 2,
                runs: 2,
                live,
                affine,
                linear,
            };
            let dirs_f = [[0.5f32, 0.5, 0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]];
            let mean = [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6];
            let a: Vec<f32> = (0..k * d).map(|i| ((i * 13 % 7) as f32 - 3.0) / 4.0).collect();
            let full = |v: &[f32]| {
                let mut f = vec![0.0f32; d];
                f[1..4].copy_from_slice(&v[..3]);
                f[6..9].copy_from_slice(&v[3..]);
                f
            };
            let apply = |v: &[f32]| -> Vec<f32> { (0..k).map(|j| (0..d).map(|c| a[j * d + c] * v[c]).sum()).collect() };
            let shrink = [0.9f32, 0.5];
            let mut words: Vec<f32> = runs.to_vec();
            if affine {
                words.extend(mean);
            }
            let mu = if affine { full(&mean) } else { vec![0.0; d] };
            if linear {
                words.extend(apply(&mu));
            }
            words.extend(shrink);
            let mut deq = Vec::new();
            for u in &dirs_f {
                let mut q = vec![0u8; shape.row_words() * 4];
                let s = quantize_i8(u, &mut q[..live]).unwrap();
                words.push(s);
                let uq: Vec<f32> = q[..live].iter().map(|&b| b as i8 as f32 * s).collect();
                let uq = full(&uq);
                if linear {
                    words.extend(apply(&uq));
                }
                words.extend(bytemuck::cast_slice::<u8, f32>(&q));
                deq.push(uq);
            }
            let c = Compact::from_parts(shape, words).unwrap();
            c.check_finite().unwrap();
            let x: Vec<f32> = (0..d).map(|i| (i as f32 * 0.7).sin()).collect();
            let qx = apply(&x);
            let mut scratch = vec![0.0; distance_scratch_len(&shape)];
            let got = c.distance(&x, &qx, &mut scratch).unwrap();
            // The f32 formula.
            let z: Vec<f32> = x.iter().zip(&mu).map(|(a, b)| a - b).collect();
            let us: Vec<f32> = deq.iter().map(|u| u.iter().zip(&z).map(|(a, b)| a * b).sum()).collect();
            let want = if linear {
                let qz = apply(&z);
                let e: Vec<f32> = (0..k)
                    .map(|j| qz[j] - (0..2).map(|i| apply(&deq[i])[j] * shrink[i] * us[i]).sum::<f32>())
                    .collect();
                e.iter().map(|v| v * v).sum::<f32>() / k as f32
            } else {
                (z.iter().map(|v| v * v).sum::<f32>()
                    - (0..2)
                        .map(|i| (2.0 * shrink[i] - shrink[i] * shrink[i]) * us[i] * us[i])
                        .sum::<f32>())
                    / d as f32
            };
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1e-3),
                "{affine} {linear}: {got} vs {want}"
            );
            let mut back = vec![0.0; d];
            c.direction_f32(1, &mut back).unwrap();
            assert_eq!(back, deq[1]);
            // Errors.
            assert!(matches!(
                c.distance(&x[..d - 1], &qx, &mut scratch),
                Err(Error::DimensionMismatch { .. })
            ));
            let mut big = x.clone();
            big[0] = f32::MAX;
            big[9] = f32::MAX;
            assert_eq!(c.distance(&big, &qx, &mut scratch), Err(Error::NonFinite));
            assert_eq!(c.distance(&x, &qx, &mut scratch[..3]), Err(Error::BufferTooSmall));
        }
    }
}
