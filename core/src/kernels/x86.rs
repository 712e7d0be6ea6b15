//! AVX-512 on x86-64 hosts: one Adam step fused with the next dot product, and a way to
//! run the trainer's row loop compiled for these features. Only reachable through an
//! [`Avx512`] token, which exists only on a CPU that has every feature used here.
// Opts out of the crate's indexing and overflow lints: host-only loops over lengths taken
// as the minimum of their slices.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::train::AdamStep;

/// Proof that this CPU has AVX-512F, AVX-512VL, AVX2 and FMA, the features the functions
/// here are compiled with: calling them is sound only then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// The token, when the CPU has every feature (cached by `std`: a few loads).
    pub(crate) fn detect() -> Option<Self> {
        let all = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        all.then_some(Avx512(()))
    }

    /// Runs `f` inlined into a function compiled for AVX-512 (16 floats per instruction).
    /// Rust never contracts `a * b + c` into a fused multiply-add and `sqrt`/division are
    /// exact in IEEE arithmetic, so `f` gives the same bits as in the portable build.
    #[inline(always)]
    pub(crate) fn run<R>(self, f: impl FnOnce() -> R) -> R {
        // SAFETY: the token exists only when `detect` found every feature `with_avx512`
        // enables, the only requirement of a target_feature function.
        unsafe { with_avx512(f) }
    }

    /// [`AdamStep::apply`] on a row `w` with the gradient `c * x + wd * w`, then
    /// `dot(w, xn)` of the updated row, in one pass.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn adam_row_dot(
        self,
        u: &AdamStep,
        w: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        x: &[f32],
        c: f32,
        wd: f32,
        xn: &[f32],
    ) -> f32 {
        // SAFETY: as in `run`: every feature `adam_row_dot` enables was detected.
        unsafe { adam_row_dot(u, w, m, v, x, c, wd, xn) }
    }
}

#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
#[inline]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// [`AdamStep::apply`], then `dot(w, xn)` of the updated row, in one pass with
/// AVX-512. Each block of 16 weights takes the optimiser's update in exactly the portable
/// code's operations (separate multiplies and adds, IEEE `sqrt` and division), then its
/// products with `xn` are added into 8 accumulators, low half then high half, so that
/// accumulator `i` sums elements `i, i + 8, ...` in order, as [`dot`] does; the tail and the
/// final pairwise sum are `dot`'s too. So both results have the same bits as the two-pass
/// portable code (tested). Sound only on a CPU with the features it enables.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn adam_row_dot(u: &AdamStep, w: &mut [f32], m: &mut [f32], v: &mut [f32], x: &[f32], c: f32, wd: f32, xn: &[f32]) -> f32 {
    use core::arch::x86_64::*;
    let n = w.len().min(m.len()).min(v.len()).min(x.len()).min(xn.len());
    let blocks = n / 16;
    let (vc, vwd) = (_mm512_set1_ps(c), _mm512_set1_ps(wd));
    let (va1, va2, vb1, vb2) = (
        _mm512_set1_ps(u.beta1),
        _mm512_set1_ps(u.beta2),
        _mm512_set1_ps(u.one_minus_beta1),
        _mm512_set1_ps(u.one_minus_beta2),
    );
    let (vss, visb, veps) = (_mm512_set1_ps(u.step_size), _mm512_set1_ps(u.inv_sqrt_bc2), _mm512_set1_ps(u.eps));
    let vfloor = _mm512_set1_ps(u.floor);
    // The moment floor on 16 lanes: keep the lanes not below the floor (NaN is unordered,
    // so kept), zero the others.
    let floor = |v: __m512| _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_NLT_UQ>(_mm512_abs_ps(v), vfloor), v);
    let mut acc = _mm256_setzero_ps();
    for b in 0..blocks {
        let o = b * 16;
        // SAFETY: o + 16 <= n, and n is at most each slice's length.
        let (wp, mp, vp) = unsafe { (w.as_mut_ptr().add(o), m.as_mut_ptr().add(o), v.as_mut_ptr().add(o)) };
        let (xp, np) = unsafe { (x.as_ptr().add(o), xn.as_ptr().add(o)) };
        let (wv, mv, vv, xv, nv) = unsafe {
            (
                _mm512_loadu_ps(wp),
                _mm512_loadu_ps(mp),
                _mm512_loadu_ps(vp),
                _mm512_loadu_ps(xp),
                _mm512_loadu_ps(np),
            )
        };
        let g = _mm512_add_ps(_mm512_mul_ps(vc, xv), _mm512_mul_ps(vwd, wv));
        let mv = floor(_mm512_add_ps(_mm512_mul_ps(va1, mv), _mm512_mul_ps(vb1, g)));
        let vv = floor(_mm512_add_ps(_mm512_mul_ps(va2, vv), _mm512_mul_ps(_mm512_mul_ps(vb2, g), g)));
        let denom = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vv), visb), veps);
        let wv = _mm512_sub_ps(wv, _mm512_div_ps(_mm512_mul_ps(vss, mv), denom));
        unsafe {
            _mm512_storeu_ps(mp, mv);
            _mm512_storeu_ps(vp, vv);
            _mm512_storeu_ps(wp, wv);
        }
        let prod = _mm512_mul_ps(wv, nv);
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(prod));
        acc = _mm256_add_ps(acc, _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(prod))));
    }
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds 8 f32s.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let mut tail = 0.0f32;
    let full = n / 8 * 8;
    for j in blocks * 16..n {
        let g = c * x[j] + wd * w[j];
        u.apply_one(&mut w[j], &mut m[j], &mut v[j], g);
        if j < full {
            lanes[j % 8] += w[j] * xn[j];
        } else {
            tail += w[j] * xn[j];
        }
    }
    crate::linalg::dot_finish(&lanes, tail)
}
