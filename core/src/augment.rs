//! Enrollment augmentation for images: a class's span made to cover small shifts of its
//! samples. A linear subspace cannot represent a translation, so adding the shifted copies to
//! the support set lets one or a few images stand for a digit drawn a pixel to the side.
use crate::error::{check_len, Error, Result};
use crate::linear::{rows, rows_mut};

/// Number of images [`shifts`] writes for a maximal shift `s`: `(2s + 1)^2`.
#[allow(clippy::arithmetic_side_effects)] // bound: s <= 255, so n <= 511 and n * n <= 261_121
pub const fn shift_count(s: u8) -> usize {
    let n = 2 * s as usize + 1;
    n * n
}

/// Writes `image` (row-major `height x width`) shifted by every `(dx, dy)` with
/// `|dx|, |dy| <= s` into `out` (the unshifted image first), filling uncovered pixels with 0
/// (the background once ink = 1). Returns the number of images written.
pub fn shifts(image: &[f32], width: usize, height: usize, s: u8, out: &mut [f32]) -> Result<usize> {
    // Absurd sizes saturate, and no slice is that long.
    let n = width.saturating_mul(height);
    check_len(n, image.len())?;
    let count = shift_count(s);
    if out.len() < count.saturating_mul(n) {
        return Err(Error::BufferTooSmall);
    }
    // A sideways shift must leave some of the image; vertical shifts past a low image (a
    // time series is one row) are empty, as `crate::fit` fits them.
    if usize::from(s) >= width.max(1) || height == 0 {
        return Err(Error::InvalidParameter);
    }
    let s = isize::from(s);
    // (0, 0) first, then the others in a fixed order (dy outer, dx inner, increasing).
    // s <= 255: the negation never saturates.
    let around = s.saturating_neg()..=s;
    let offsets = core::iter::once((0, 0)).chain(
        around
            .clone()
            .flat_map(move |dy| around.clone().map(move |dx| (dx, dy)))
            .filter(|&(dx, dy)| dx != 0 || dy != 0),
    );
    // `out` holds `count` images of `n` (checked above), one per offset.
    for ((dx, dy), dst) in offsets.zip(rows_mut(out, count, n)) {
        shift(image, width, height, dx, dy, dst);
    }
    Ok(count)
}

/// Writes `image` (`height x width`) shifted by `(dx, dy)` into `dst` (the same size):
/// `dst[y][x] = image[y - dy][x - dx]`, 0 where that is outside the image.
fn shift(image: &[f32], width: usize, height: usize, dx: isize, dy: isize, dst: &mut [f32]) {
    // Down by `dy` rows (up when negative): `dy` blank rows first, or `-dy` rows skipped.
    let a = dy.unsigned_abs();
    let (blank, skip) = if dy >= 0 { (a, 0) } else { (0, a) };
    let sources = core::iter::repeat_n(None, blank)
        .chain(rows(image, height, width).skip(skip).map(Some))
        .chain(core::iter::repeat(None));
    for (row, src) in rows_mut(dst, height, width).zip(sources) {
        match src {
            Some(src) => shift_row(src, dx, row),
            None => row.iter_mut().for_each(|v| *v = 0.0),
        }
    }
}

/// Writes the row `src` shifted right by `dx` (left when negative) into `dst` (as long):
/// `dst[x] = src[x - dx]`, 0 where that is outside the row.
fn shift_row(src: &[f32], dx: isize, dst: &mut [f32]) {
    let a = dx.unsigned_abs();
    if dx >= 0 {
        // dst[a..] = src[..width - a], the first `a` pixels blank.
        let (blank, body) = dst.split_at_mut(a.min(dst.len()));
        blank.iter_mut().for_each(|v| *v = 0.0);
        body.iter_mut().zip(src).for_each(|(v, s)| *v = *s);
    } else {
        // dst[..width - a] = src[a..], the last `a` pixels blank.
        let src = src.get(a..).unwrap_or_default();
        let (body, blank) = dst.split_at_mut(src.len().min(dst.len()));
        body.iter_mut().zip(src).for_each(|(v, s)| *v = *s);
        blank.iter_mut().for_each(|v| *v = 0.0);
    }
}

/// Most passes [`blur`] takes.
pub const MAX_BLUR: u8 = 3;

/// Smooths `image` (row-major `height x width`) in place with `passes` passes of the
/// separable binomial kernel `[1, 2, 1] / 4` along rows, then along columns; pixels outside
/// the image count as 0 (the background once ink = 1). Linear and cheap: a device applies it
/// to every sample it enrolls and every query, so a class and a query are compared after the
/// same smoothing, which makes a stroke drawn a little thicker, thinner or off by a fraction
/// of a pixel look more like the enrolled one. Each output is
/// `0.25 * left + 0.5 * centre + 0.25 * right` in that order, the same bits everywhere.
/// `passes` 0 leaves `image` as it is; more than [`MAX_BLUR`] is `InvalidParameter`.
pub fn blur(image: &mut [f32], width: usize, height: usize, passes: u8) -> Result<()> {
    check_len(width.saturating_mul(height), image.len())?;
    if passes > MAX_BLUR {
        return Err(Error::InvalidParameter);
    }
    if width == 0 || height == 0 {
        return Ok(());
    }
    for _ in 0..passes {
        for row in image.chunks_exact_mut(width) {
            smooth(row.iter_mut());
        }
        for x in 0..width {
            smooth(image.iter_mut().skip(x).step_by(width));
        }
    }
    Ok(())
}

/// One `[1, 2, 1] / 4` pass along a line of pixels (0 beyond both ends), in place.
fn smooth<'a>(line: impl Iterator<Item = &'a mut f32>) {
    let mut line = line.peekable();
    let mut prev = 0.0f32;
    while let Some(v) = line.next() {
        let cur = *v;
        let next = line.peek().map_or(0.0, |n| **n);
        *v = 0.25 * prev + 0.5 * cur + 0.25 * next;
        prev = cur;
    }
}

/// The warped copies [`fill`] adds of an enrolled image, in order: rotations by +15 and -15
/// degrees, then horizontal shears by +0.25 and -0.25 (x moves by 0.25 y), each about the
/// image's centre. Each is given by the inverse of its 2x2 matrix, row-major: the copy's
/// pixel at `p` is the image's at `centre + inv (p - centre)` ([`warp`]). Chosen on the
/// MNIST validation split (docs/invariances.md).
pub const WARPS: [[f32; 4]; 4] = [
    // Rotation by +15 degrees: the inverse is the rotation by -15 (cos, sin of 15 degrees).
    [0.965_925_8, 0.258_819_04, -0.258_819_04, 0.965_925_8],
    [0.965_925_8, -0.258_819_04, 0.258_819_04, 0.965_925_8],
    // Shear x += 0.25 y: the inverse is x -= 0.25 y.
    [1.0, -0.25, 0.0, 1.0],
    [1.0, 0.25, 0.0, 1.0],
];

/// Writes `image` (row-major `height x width`) warped by the inverse matrix `inv` (row-major
/// 2x2, see [`WARPS`]) into `out` (as large): `out` at pixel `(x, y)` is `image` at
/// `c + inv ((x, y) - c)`, `c` the centre `((width - 1) / 2, (height - 1) / 2)`, bilinearly
/// interpolated, with pixels outside the image 0. Fixed-order `f32`, the same bits
/// everywhere.
pub fn warp(image: &[f32], width: usize, height: usize, inv: &[f32; 4], out: &mut [f32]) -> Result<()> {
    let n = width.saturating_mul(height);
    check_len(n, image.len())?;
    check_len(n, out.len())?;
    if width == 0 {
        return Ok(());
    }
    let [a, b, c, d] = *inv;
    let cx = 0.5 * (width as f32 - 1.0);
    let cy = 0.5 * (height as f32 - 1.0);
    // The pixel at integer (x, y), 0 outside.
    let at = |x: i32, y: i32| -> f32 {
        match (usize::try_from(x), usize::try_from(y)) {
            (Ok(x), Ok(y)) if x < width => y
                .checked_mul(width)
                .and_then(|r| r.checked_add(x))
                .and_then(|i| image.get(i))
                .copied()
                .unwrap_or(0.0),
            _ => 0.0,
        }
    };
    for (y, row) in out.chunks_exact_mut(width).enumerate() {
        let dy = y as f32 - cy;
        for (x, o) in row.iter_mut().enumerate() {
            let dx = x as f32 - cx;
            let sx = cx + (a * dx + b * dy);
            let sy = cy + (c * dx + d * dy);
            let (x0, y0) = (floor(sx), floor(sy));
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            let (x1, y1) = (x0.saturating_add(1), y0.saturating_add(1));
            let top = (1.0 - fx) * at(x0, y0) + fx * at(x1, y0);
            let bottom = (1.0 - fx) * at(x0, y1) + fx * at(x1, y1);
            *o = (1.0 - fy) * top + fy * bottom;
        }
    }
    Ok(())
}

/// The largest integer `<= v` (saturating at the ends of `i32`; NaN gives 0): `core` has no
/// `f32::floor` without the standard library.
fn floor(v: f32) -> i32 {
    let t = v as i32;
    if (t as f32) > v {
        t.saturating_sub(1)
    } else {
        t
    }
}

/// Most images [`fill`] may fill.
pub const MAX_FILL: u8 = 64;

/// How many warped copies of each of `n` enrolled images [`fill`] adds so that at most
/// `slots` images result: `min(WARPS.len(), slots / n - 1)`, 0 when `n` is 0 or fills them.
pub fn warps_per_image(n: usize, slots: u8) -> usize {
    match usize::from(slots).checked_div(n) {
        Some(per) => per.saturating_sub(1).min(WARPS.len()),
        None => 0,
    }
}

/// Enrollment augmentation for images beyond shifts: the first `n` images of `images`
/// (row-major `height x width` each) are followed by their warped copies ([`WARPS`], in that
/// order, [`warps_per_image`]`(n, slots)` of each: image 0's copies, then image 1's, ...)
/// while the enrollment stays within `slots` images, the room a 5-image board already has
/// when it enrolls fewer. Each image (and copy) is then shifted as the enrollment's images
/// are ([`shifts`]), so the rows never exceed `slots (2s + 1)^2`. Returns how many images
/// `images` now starts with, `n (1 + warps_per_image(n, slots))`. `BufferTooSmall` when
/// `images` holds fewer, `InvalidParameter` for `slots > MAX_FILL`.
pub fn fill(images: &mut [f32], n: usize, width: usize, height: usize, slots: u8) -> Result<usize> {
    if slots > MAX_FILL {
        return Err(Error::InvalidParameter);
    }
    let d = width.saturating_mul(height);
    let v = warps_per_image(n, slots);
    // v <= 4, n <= slots / (v + 1) when v > 0: no overflow; 0 copies otherwise.
    let total = n.saturating_mul(v.saturating_add(1));
    if images.len() < total.saturating_mul(d) || images.len() < n.saturating_mul(d) {
        return Err(Error::BufferTooSmall);
    }
    if v == 0 || d == 0 {
        return Ok(n);
    }
    let (sources, copies) = images.split_at_mut(n.saturating_mul(d));
    for (img, out) in sources.chunks_exact(d).zip(copies.chunks_exact_mut(v.saturating_mul(d))) {
        for (inv, dst) in WARPS.iter().zip(out.chunks_exact_mut(d)) {
            warp(img, width, height, inv, dst)?;
        }
    }
    Ok(total)
}

/// Query alignments a model may name ([`crate::Preprocess::align`]), by index: the
/// warps (inverse matrices, as [`WARPS`]) a query is also seen through when it is
/// classified. A class's distance is then its least over the query and these warps, so a
/// digit written with more or less slant than the enrolled ones still meets its class; each
/// warp costs one more pass over the classes. 0 is the query alone; 1 slants it both ways
/// (x moves by +-0.25 y), chosen on the MNIST validation split (docs/invariances.md).
pub const ALIGNS: [&[[f32; 4]]; 2] = [&[], &[[1.0, -0.25, 0.0, 1.0], [1.0, 0.25, 0.0, 1.0]]];

/// A query alignment of `width x height` images: the warps of one entry of [`ALIGNS`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// The warps ([`warp`]'s inverse matrices), none for the query alone.
    pub warps: &'static [[f32; 4]],
}

impl Alignment {
    /// Alignment `align` of [`ALIGNS`] for `width x height` images; `None` for 0 (the
    /// query alone). `InvalidParameter` for an index past [`ALIGNS`], or an alignment of
    /// an empty image.
    pub fn of(align: u8, width: usize, height: usize) -> Result<Option<Alignment>> {
        let warps = *ALIGNS.get(usize::from(align)).ok_or(Error::InvalidParameter)?;
        if warps.is_empty() {
            return Ok(None);
        }
        if width == 0 || height == 0 {
            return Err(Error::InvalidParameter);
        }
        Ok(Some(Alignment { width, height, warps }))
    }

    /// Each class's least distance over `x` and its warps: `pass(view, scratch, out)` fills
    /// `out` with every class's distance of one view, and `distances` ends with the least of
    /// each class over the views (a distance that overflowed, NaN, loses to any finite one).
    /// `scratch` holds a warped view and one view's distances, then what `pass` needs
    /// ([`Alignment::scratch_len`]).
    pub fn least(
        &self,
        x: &[f32],
        scratch: &mut [f32],
        distances: &mut [f32],
        mut pass: impl FnMut(&[f32], &mut [f32], &mut [f32]) -> Result<()>,
    ) -> Result<()> {
        let (view, rest) = scratch.split_at_mut_checked(x.len()).ok_or(Error::BufferTooSmall)?;
        let (other, rest) = rest.split_at_mut_checked(distances.len()).ok_or(Error::BufferTooSmall)?;
        pass(x, rest, distances)?;
        for inv in self.warps {
            warp(x, self.width, self.height, inv, view)?;
            pass(view, rest, other)?;
            keep_least(distances, other);
        }
        Ok(())
    }

    /// f32s of scratch [`Alignment::least`] takes before its pass's own: a view of `inputs`
    /// values and `classes` distances.
    pub const fn scratch_len(inputs: usize, classes: usize) -> usize {
        inputs.saturating_add(classes)
    }
}

/// Keeps in `least` each class's smaller distance of `least` and `view` (one view's
/// distances): a distance that overflowed (NaN or infinite) loses to any finite one. The one
/// rule of [`Alignment::least`] and the host's batch path.
pub(crate) fn keep_least(least: &mut [f32], view: &[f32]) {
    for (d, &o) in least.iter_mut().zip(view) {
        if o.is_finite() && (d.is_nan() || o < *d) {
            *d = o;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_move_pixels_and_fill_with_zero() {
        // 3x3 image with a single lit pixel in the centre.
        let mut img = [0.0f32; 9];
        img[4] = 1.0;
        let mut out = [9.0f32; 81];
        assert_eq!(shifts(&img, 3, 3, 1, &mut out).unwrap(), 9);
        assert_eq!(&out[..9], &img);
        // Every shift lights exactly one pixel, and all nine positions are covered.
        let mut lit = [0; 9];
        for k in 0..9 {
            let im = &out[k * 9..(k + 1) * 9];
            assert_eq!(im.iter().filter(|&&v| v == 1.0).count(), 1);
            assert_eq!(im.iter().filter(|&&v| v == 0.0).count(), 8);
            lit[im.iter().position(|&v| v == 1.0).unwrap()] += 1;
        }
        assert_eq!(lit, [1; 9]);
        assert_eq!(shifts(&img, 3, 3, 1, &mut [0.0; 80]), Err(Error::BufferTooSmall));
        assert_eq!(shifts(&img, 3, 3, 3, &mut [0.0; 49 * 9]), Err(Error::InvalidParameter));
        assert_eq!(shift_count(2), 25);
    }

    #[test]
    fn blur_spreads_a_pixel_binomially_and_keeps_its_mass_inside() {
        let mut img = [0.0f32; 25];
        img[12] = 16.0;
        blur(&mut img, 5, 5, 1).unwrap();
        #[rustfmt::skip]
        let want = [
            0.0, 0.0, 0.0, 0.0, 0.0,
            0.0, 1.0, 2.0, 1.0, 0.0,
            0.0, 2.0, 4.0, 2.0, 0.0,
            0.0, 1.0, 2.0, 1.0, 0.0,
            0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        assert_eq!(img, want);
        // At the border, what leaves the image is lost (zero background).
        let mut corner = [0.0f32; 9];
        corner[0] = 16.0;
        blur(&mut corner, 3, 3, 1).unwrap();
        assert_eq!(corner, [4.0, 2.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        // Non-square: rows and columns are not mixed up.
        let mut wide = [0.0f32, 4.0, 0.0, 0.0, 0.0, 0.0];
        blur(&mut wide, 3, 2, 1).unwrap();
        assert_eq!(wide, [0.5, 1.0, 0.5, 0.25, 0.5, 0.25]);
        let mut same = want;
        blur(&mut same, 5, 5, 0).unwrap();
        assert_eq!(same, want);
        assert_eq!(blur(&mut img, 5, 4, 1), Err(Error::DimensionMismatch { expected: 20, found: 25 }));
        assert_eq!(blur(&mut img, 5, 5, MAX_BLUR + 1), Err(Error::InvalidParameter));
        blur(&mut [], 0, 0, 2).unwrap();
    }

    #[test]
    fn warps_are_the_chosen_rotations_and_shears() {
        let (s, c) = 15f64.to_radians().sin_cos();
        let (s, c) = (s as f32, c as f32);
        assert_eq!(WARPS[0], [c, s, -s, c]);
        assert_eq!(WARPS[1], [c, -s, s, c]);
        // The identity is exact; a 90-degree turn moves a pixel right of centre below it.
        let img: [f32; 25] = core::array::from_fn(|i| (i * 7 % 5) as f32);
        let mut out = [9.0f32; 25];
        warp(&img, 5, 5, &[1.0, 0.0, 0.0, 1.0], &mut out).unwrap();
        assert_eq!(out, img);
        let mut dot = [0.0f32; 25];
        dot[2 * 5 + 4] = 1.0;
        warp(&dot, 5, 5, &[0.0, 1.0, -1.0, 0.0], &mut out).unwrap();
        let lit: [usize; 1] = [out.iter().position(|&v| v == 1.0).unwrap()];
        assert_eq!(lit, [22]);
        assert_eq!(out.iter().filter(|&&v| v != 0.0).count(), 1);
        // A shear keeps the middle row and moves the others.
        let mut bar = [0.0f32; 25];
        bar[2] = 1.0;
        bar[22] = 1.0;
        bar[12] = 1.0;
        warp(&bar, 5, 5, &[1.0, -0.5, 0.0, 1.0], &mut out).unwrap();
        assert_eq!((out[12], out[1], out[23]), (1.0, 1.0, 1.0));
        assert_eq!(
            warp(&img, 5, 4, &WARPS[0], &mut out),
            Err(Error::DimensionMismatch { expected: 20, found: 25 })
        );
        assert_eq!(floor(-0.5), -1);
        assert_eq!(floor(2.0), 2);
        assert_eq!(floor(f32::NAN), 0);
    }

    #[test]
    fn fill_adds_copies_into_free_slots_only() {
        assert_eq!(warps_per_image(1, 5), 4);
        assert_eq!(warps_per_image(2, 5), 1);
        assert_eq!(warps_per_image(3, 5), 0);
        assert_eq!(warps_per_image(5, 5), 0);
        assert_eq!(warps_per_image(0, 5), 0);
        assert_eq!(warps_per_image(1, 0), 0);
        assert_eq!(warps_per_image(1, 64), 4);
        let img: [f32; 9] = [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0];
        let mut buf = [0.0f32; 9 * 5];
        buf[..9].copy_from_slice(&img);
        assert_eq!(fill(&mut buf, 1, 3, 3, 5).unwrap(), 5);
        assert_eq!(&buf[..9], &img);
        let mut want = [0.0f32; 9];
        warp(&img, 3, 3, &WARPS[2], &mut want).unwrap();
        assert_eq!(&buf[27..36], &want);
        // Two images, five slots: one copy each, image 0's first.
        let mut two = [0.0f32; 9 * 4];
        two[..9].copy_from_slice(&img);
        two[9..18].copy_from_slice(&want);
        assert_eq!(fill(&mut two, 2, 3, 3, 5).unwrap(), 4);
        let mut w0 = [0.0f32; 9];
        warp(&img, 3, 3, &WARPS[0], &mut w0).unwrap();
        assert_eq!(&two[18..27], &w0);
        assert_eq!(fill(&mut buf, 1, 3, 3, 0).unwrap(), 1);
        assert_eq!(fill(&mut buf[..36], 1, 3, 3, 5), Err(Error::BufferTooSmall));
        assert_eq!(fill(&mut buf, 1, 3, 3, MAX_FILL + 1), Err(Error::InvalidParameter));
    }
}
