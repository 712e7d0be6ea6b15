//! Application logic: board-independent, logging-free, host-testable.
//!
//! Here: recognising an erased MODEL region. The protocol loop (classify, enroll) lives in
//! `device.rs`; both run unchanged on the boards and in host unit tests
//! (`cargo test --lib --target x86_64-unknown-linux-gnu`).

/// How many leading bytes of the MODEL region [`model_state`] looks at.
pub const MODEL_PROBE_LEN: usize = 16;

/// What the MODEL region holds, judged from its first [`MODEL_PROBE_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// The region is erased (all 0xFF, as flash after an erase) or blank (all 0x00, as RAM
    /// that QEMU has not loaded anything into), or empty: no model.
    Erased,
    /// Something is there; whether it is a valid model is for `ldl_core` to decide.
    Present,
}

/// Classifies the MODEL region by its first bytes: [`ModelState::Erased`] when they are all
/// 0xFF or all 0x00.
pub fn model_state(region: &[u8]) -> ModelState {
    let head = region.get(..MODEL_PROBE_LEN).unwrap_or(region);
    if head.iter().all(|&b| b == 0xFF) || head.iter().all(|&b| b == 0x00) {
        ModelState::Erased
    } else {
        ModelState::Present
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    #[test]
    fn model_state_of_regions() {
        assert_eq!(model_state(&[0xFF; 4096]), ModelState::Erased);
        assert_eq!(model_state(&[0x00; 4096]), ModelState::Erased);
        assert_eq!(model_state(&[]), ModelState::Erased);
        assert_eq!(model_state(&[0xFF; 3]), ModelState::Erased);
        let mut m = [0xFFu8; 4096];
        m[15] = 0x4C;
        assert_eq!(model_state(&m), ModelState::Present);
        // Only the head counts: a model starts at the region start.
        let mut m = [0xFFu8; 4096];
        m[100] = 1;
        assert_eq!(model_state(&m), ModelState::Erased);
        assert_eq!(model_state(b"LDL1 model bytes..."), ModelState::Present);
    }

    /// Cross-platform determinism of `ldl_core::Rng`: the same constants are checked on the
    /// target under QEMU (tests/determinism.rs).
    #[test]
    fn ldl_core_rng_matches_target() {
        let mut r = ldl_core::Rng::new(1);
        assert_eq!(r.next_u32(), 0x7FF7_8DE4);
        assert_eq!(r.next_u32(), 0x9A17_0265);
        assert_eq!(ldl_core::Rng::new(2019).next_u32(), 0xF61C_044E);
        // Box-Muller through libm (f64 log, sqrt, cos): bit-identical on both.
        assert_eq!(ldl_core::Rng::new(7).normal().to_bits(), 0xBEA1_016B);
    }
}
