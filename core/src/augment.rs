//! Enrollment augmentation for images: a class's span made to cover small shifts of its
//! samples. A linear subspace cannot represent a translation, so adding the shifted copies to
//! the support set lets one or a few images stand for a digit drawn a pixel to the side.

use crate::error::{check_len, Error, Result};

/// Number of images [`shifts`] writes for a maximal shift `s`: `(2s + 1)^2`.
pub const fn shift_count(s: u8) -> usize {
    let n = 2 * s as usize + 1;
    n * n
}

/// Writes `image` (row-major `height x width`) shifted by every `(dx, dy)` with
/// `|dx|, |dy| <= s` into `out` (the unshifted image first), filling uncovered pixels with 0
/// (the background once ink = 1). Returns the number of images written.
pub fn shifts(image: &[f32], width: usize, height: usize, s: u8, out: &mut [f32]) -> Result<usize> {
    let n = width * height;
    check_len(n, image.len())?;
    let count = shift_count(s);
    if out.len() < count * n {
        return Err(Error::BufferTooSmall);
    }
    if s as usize >= width.max(1) || s as usize >= height.max(1) {
        return Err(Error::InvalidParameter);
    }
    let s = s as isize;
    let mut idx = 0;
    // (0, 0) first, then the others in a fixed order.
    let write = |dx: isize, dy: isize, idx: usize, out: &mut [f32]| {
        let dst = &mut out[idx * n..(idx + 1) * n];
        for y in 0..height as isize {
            for x in 0..width as isize {
                let (sx, sy) = (x - dx, y - dy);
                dst[(y as usize) * width + x as usize] = if sx >= 0 && sy >= 0 && (sx as usize) < width && (sy as usize) < height {
                    image[sy as usize * width + sx as usize]
                } else {
                    0.0
                };
            }
        }
    };
    write(0, 0, idx, out);
    idx += 1;
    for dy in -s..=s {
        for dx in -s..=s {
            if dx != 0 || dy != 0 {
                write(dx, dy, idx, out);
                idx += 1;
            }
        }
    }
    Ok(idx)
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
}
