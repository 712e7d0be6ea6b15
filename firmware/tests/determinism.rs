//! On-target check that `ldl_core` runs on the Cortex-M4F and gives, bit for bit, the numbers
//! it gives on the host (the same constants are asserted by the host unit test
//! `app::tests::ldl_core_rng_matches_target`).
#![no_std]
#![no_main]

use ldl_firmware as _; // board: defmt logger, panic handler

#[defmt_test::tests]
mod tests {
    use defmt::assert_eq;
    use ldl_core::Rng;

    #[test]
    fn rng_next_u32_matches_host() {
        let mut r = Rng::new(1);
        assert_eq!(r.next_u32(), 0x7FF7_8DE4);
        assert_eq!(r.next_u32(), 0x9A17_0265);
        assert_eq!(Rng::new(2019).next_u32(), 0xF61C_044E);
    }

    #[test]
    fn rng_normal_matches_host() {
        // f64 Box-Muller through libm: exercises the FPU-less f64 path and libm.
        assert_eq!(Rng::new(7).normal().to_bits(), 0xBEA1_016B);
    }

    #[test]
    fn core_error_formats_with_defmt() {
        // The `defmt` feature of ldl-core: errors can be logged from the firmware.
        defmt::info!("ldl_core error: {}", ldl_core::Error::CapacityFull);
        assert_eq!(ldl_core::LABEL_LEN, 16);
    }
}
