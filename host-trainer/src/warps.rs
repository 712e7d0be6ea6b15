//! Enrollment variants of an image beyond shifts, for the validation sweep of issue 14
//! (`ldl tune --warps`): small rotations, scalings, shears and stroke thickness, screened on
//! validation (docs/invariances.md). The winner, set 9 (rotations by 15 degrees and shears
//! by 0.25), is what devices run, from the core ([`ldl_core::augment::WARPS`], whose bits
//! are the device's); this module's copies are for the sweep only.

/// The variant sets the sweep knows, by index: what each adds to every support image (the
/// image itself is always kept). Each variant is then shifted as the image is.
pub const SETS: &[&str] = &[
    "none",
    "rot+-10",
    "scale.9/1.1",
    "thick+-",
    "shear+-.25",
    "rot+-10,scale",
    "rot+-15",
    "rot+-10,20",
    "rot+-10,shear",
    "rot+-15,shear",
];

/// Set `UNSHIFTED + i` adds the variants of set `i` without shifting them.
pub const UNSHIFTED: u8 = 10;

/// A set's name, `unshifted ` before the names of sets from [`UNSHIFTED`] on.
pub fn name(set: u8) -> String {
    let (pre, i) = if set >= UNSHIFTED {
        ("unshifted ", set - UNSHIFTED)
    } else {
        ("", set)
    };
    match SETS.get(i as usize) {
        Some(n) => format!("{pre}{n}"),
        None => "?".into(),
    }
}

/// How many variants set `set` adds per image (`None`: no such set).
pub fn count(set: u8) -> Option<usize> {
    if set >= UNSHIFTED {
        return count(set - UNSHIFTED).filter(|_| set - UNSHIFTED < UNSHIFTED);
    }
    Some(match set {
        0 => 0,
        1..=4 | 6 => 2,
        5 | 7..=9 => 4,
        _ => return None,
    })
}

/// The variants of `img` (`w x h`, row-major) of set `set`, each `w h` values, in order.
pub fn variants(img: &[f32], w: usize, h: usize, set: u8) -> Vec<Vec<f32>> {
    let rot = |deg: f32| {
        let (s, c) = deg.to_radians().sin_cos();
        affine(img, w, h, [c, -s, s, c])
    };
    let scale = |f: f32| affine(img, w, h, [f, 0.0, 0.0, f]);
    match set {
        1 => vec![rot(10.0), rot(-10.0)],
        2 => vec![scale(0.9), scale(1.1)],
        3 => vec![morph(img, w, h, true), morph(img, w, h, false)],
        4 => vec![affine(img, w, h, [1.0, 0.25, 0.0, 1.0]), affine(img, w, h, [1.0, -0.25, 0.0, 1.0])],
        5 => vec![rot(10.0), rot(-10.0), scale(0.9), scale(1.1)],
        7 => vec![rot(10.0), rot(-10.0), rot(20.0), rot(-20.0)],
        8 => vec![
            rot(10.0),
            rot(-10.0),
            affine(img, w, h, [1.0, 0.25, 0.0, 1.0]),
            affine(img, w, h, [1.0, -0.25, 0.0, 1.0]),
        ],
        9 => vec![
            rot(15.0),
            rot(-15.0),
            affine(img, w, h, [1.0, 0.25, 0.0, 1.0]),
            affine(img, w, h, [1.0, -0.25, 0.0, 1.0]),
        ],
        6 => vec![rot(15.0), rot(-15.0)],
        _ => Vec::new(),
    }
}

/// The query alignments the sweep knows (`ldl tune --aligns`), by index: a name and the
/// 2x2 matrices (row-major, forward) a query is also seen through; a class's distance is
/// then its least over the query and these. 0 is the query alone; each matrix costs one more
/// classification on a device.
pub const ALIGNS: &[(&str, &[[f32; 4]])] = &[
    ("none", &[]),
    ("rot+-10", &[rotation(10.0), rotation(-10.0)]),
    ("rot+-15", &[rotation(15.0), rotation(-15.0)]),
    ("shear+-.25", &[shear(0.25), shear(-0.25)]),
    ("rot+-15,shear+-.25", &[rotation(15.0), rotation(-15.0), shear(0.25), shear(-0.25)]),
    ("shear+-.15", &[shear(0.15), shear(-0.15)]),
    ("shear+-.35", &[shear(0.35), shear(-0.35)]),
    ("shear+-.45", &[shear(0.45), shear(-0.45)]),
    ("shear+-.55", &[shear(0.55), shear(-0.55)]),
];

/// The rotation by `deg` degrees (one of +-10, +-15: `const` has no sine).
const fn rotation(deg: f32) -> [f32; 4] {
    let (s, c) = match deg as i32 {
        10 => (0.173_648_18, 0.984_807_7),
        -10 => (-0.173_648_18, 0.984_807_7),
        15 => (0.258_819_04, 0.965_925_8),
        -15 => (-0.258_819_04, 0.965_925_8),
        _ => panic!("rotation: only +-10 and +-15 degrees"),
    };
    [c, -s, s, c]
}

/// The shear `x += k y`.
const fn shear(k: f32) -> [f32; 4] {
    [1.0, k, 0.0, 1.0]
}

/// The alignment variants of `img` (`w x h`): `img` mapped by each matrix of
/// `ALIGNS[set]`, in order (none for an unknown set).
pub fn aligned(img: &[f32], w: usize, h: usize, set: u8) -> Vec<Vec<f32>> {
    ALIGNS
        .get(set as usize)
        .map_or(&[][..], |a| a.1)
        .iter()
        .map(|&m| affine(img, w, h, m))
        .collect()
}

/// `img` mapped by the 2x2 matrix `m` (row-major) about its centre: the output at `p` is
/// the input at `centre + m^-1 (p - centre)`, bilinear, 0 outside
/// ([`ldl_core::augment::warp`], which takes the inverse).
fn affine(img: &[f32], w: usize, h: usize, m: [f32; 4]) -> Vec<f32> {
    let det = m[0] * m[3] - m[1] * m[2];
    let inv = [m[3] / det, -m[1] / det, -m[2] / det, m[0] / det];
    let mut out = vec![0.0; w * h];
    ldl_core::augment::warp(img, w, h, &inv, &mut out).expect("out has the image's size");
    out
}

/// Grey dilation (`thicker`) or erosion over the pixel and its 4 neighbours (0 outside).
fn morph(img: &[f32], w: usize, h: usize, thicker: bool) -> Vec<f32> {
    let at = |x: isize, y: isize| -> f32 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0.0
        } else {
            img[y as usize * w + x as usize]
        }
    };
    let mut out = vec![0.0; w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let n = [at(x, y), at(x - 1, y), at(x + 1, y), at(x, y - 1), at(x, y + 1)];
            out[y as usize * w + x as usize] = if thicker {
                n.iter().copied().fold(f32::MIN, f32::max)
            } else {
                n.iter().copied().fold(f32::MAX, f32::min)
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_keep_the_size_and_identity_maps_are_exact() {
        let img: Vec<f32> = (0..36).map(|i| ((i * 7) % 5) as f32).collect();
        assert_eq!(affine(&img, 6, 6, [1.0, 0.0, 0.0, 1.0]), img);
        for set in 0..SETS.len() as u8 {
            let v = variants(&img, 6, 6, set);
            assert_eq!(v.len(), count(set).unwrap());
            assert!(v.iter().all(|x| x.len() == 36));
        }
        assert!(count(2 * UNSHIFTED).is_none());
        assert_eq!(count(UNSHIFTED + 9), Some(4));
        // A 90-degree rotation of a lit pixel right of centre moves it below or above.
        let mut dot = vec![0.0; 25];
        dot[2 * 5 + 4] = 1.0;
        let r = affine(&dot, 5, 5, [0.0, -1.0, 1.0, 0.0]);
        assert!((r[4 * 5 + 2] - 1.0).abs() < 1e-5 || (r[2] - 1.0).abs() < 1e-5, "{r:?}");
        let t = morph(&dot, 5, 5, true);
        assert_eq!(t.iter().filter(|&&v| v == 1.0).count(), 4);
        assert!(morph(&dot, 5, 5, false).iter().all(|&v| v == 0.0));
    }
}
