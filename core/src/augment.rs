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
    if usize::from(s) >= width.max(1) || usize::from(s) >= height.max(1) {
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
}
