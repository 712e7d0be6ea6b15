//! A small, seedable, portable random generator (xoshiro128++ seeded by SplitMix64).
//!
//! Written here rather than taken from `rand` so that a seed gives the same stream, bit for
//! bit, on the host and on a Cortex-M, with no dependency whose stream may change between
//! versions. Normal samples use Box-Muller in f64 through libm.

/// The generator. `Clone` it to fork a reproducible stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Rng {
    s: [u32; 4],
    /// Box-Muller makes normals in pairs; the second waits here.
    spare: Option<f32>,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator from a 64-bit seed.
    pub fn new(seed: u64) -> Self {
        let mut st = seed;
        let a = splitmix64(&mut st);
        let b = splitmix64(&mut st);
        let mut s = [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32];
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng { s, spare: None }
    }

    /// An independent generator for sub-task `index` (trial, class, ensemble member...),
    /// so that work can be split across threads and still give the same numbers.
    pub fn derive(seed: u64, index: u64) -> Self {
        let mut st = seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let _ = splitmix64(&mut st);
        Rng::new(splitmix64(&mut st))
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(7).wrapping_add(s[0]);
        let t = s[1] << 9;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(11);
        result
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        ((self.next_u32() as u64) << 32) | self.next_u32() as u64
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Standard normal (mean 0, variance 1), Box-Muller: each pair of uniforms gives two
    /// normals (cosine and sine), the second returned by the next call.
    pub fn normal(&mut self) -> f32 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        let r = libm::sqrt(-2.0 * libm::log(u1));
        let (sin, cos) = libm::sincos(2.0 * core::f64::consts::PI * u2);
        self.spare = Some((r * sin) as f32);
        (r * cos) as f32
    }

    /// Uniform integer in [0, n), unbiased (Lemire's method). Returns 0 when n == 0.
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg().checked_rem(n).unwrap_or(0);
        loop {
            // Two u32 factors: the product fits a u64 exactly.
            let m = u64::from(self.next_u32()).wrapping_mul(u64::from(n));
            if (m as u32) >= threshold {
                return (m >> 32) as u32;
            }
        }
    }

    /// Partial Fisher-Yates: moves a uniform random sample of `k` of `xs` (in random
    /// order) to its front, drawing exactly `k` numbers; the rest keeps what is left.
    /// `k` past the length is the length.
    pub fn sample_front<T>(&mut self, xs: &mut [T], k: usize) {
        let n = xs.len();
        for i in 0..k.min(n) {
            let j = i.saturating_add(self.below(n.saturating_sub(i) as u32) as usize);
            xs.swap(i, j);
        }
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i.saturating_add(1) as u32) as usize;
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_known_values() {
        let mut a = Rng::new(2019);
        let mut b = Rng::new(2019);
        for _ in 0..100 {
            assert_eq!(a.next_u32(), b.next_u32());
        }
        let mut c = Rng::new(2020);
        assert_ne!(Rng::new(2019).next_u64(), c.next_u64());
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut r = Rng::new(7);
        let n = 200_000;
        let (mut s, mut s2) = (0.0f64, 0.0f64);
        for _ in 0..n {
            let v = r.normal() as f64;
            s += v;
            s2 += v * v;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut r = Rng::new(1);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let v = r.below(7);
            assert!(v < 7);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn sample_front_is_the_partial_shuffle() {
        let (mut a, mut b) = (Rng::new(9), Rng::new(9));
        let mut xs: [u32; 10] = core::array::from_fn(|i| i as u32);
        a.sample_front(&mut xs, 4);
        // The same draws by hand.
        let mut ys: [u32; 10] = core::array::from_fn(|i| i as u32);
        for i in 0..4 {
            let j = i + b.below((10 - i) as u32) as usize;
            ys.swap(i, j);
        }
        assert_eq!(xs, ys);
        assert_eq!(a.next_u32(), b.next_u32(), "exactly k draws");
        let mut sorted = xs;
        sorted.sort();
        assert_eq!(sorted, core::array::from_fn(|i| i as u32), "a permutation");
        // k past the length shuffles the whole slice: still a permutation, and it draws.
        let before = xs;
        a.sample_front(&mut xs, 99);
        let mut sorted = xs;
        sorted.sort();
        assert_eq!(sorted, core::array::from_fn(|i| i as u32));
        assert_ne!(xs, before, "ten draws leave the order changed for this seed");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut r = Rng::new(3);
        let mut xs = [0u32, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        r.shuffle(&mut xs);
        let mut sorted = xs;
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_ne!(xs, sorted);
    }
}
