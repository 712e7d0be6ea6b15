//! Every kernel that needs `unsafe`: the Cortex-M4F's assembly loops, the host's AVX-512
//! Adam step and matrixmultiply's strided gemm, each behind a safe function that checks
//! what the unsafe code relies on. The rest of the crate denies `unsafe_code`.
//!
//! Each kernel does the same floating-point operations, in the same order, as the portable
//! code it replaces, so host and device results keep the same bits.
#![allow(unsafe_code)]

#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
pub(crate) mod arm;
#[cfg(feature = "alloc")]
pub(crate) mod gemm;
#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod x86;

#[cfg(feature = "alloc")]
pub(crate) use gemm::sgemm;
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub(crate) use x86::Avx512;

/// Proof that the AVX-512 kernels may run; on a build without them there is no value of
/// this type, so code holding an `Option<Avx512>` always takes the portable path.
#[cfg(not(all(feature = "std", target_arch = "x86_64")))]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Avx512 {}

#[cfg(not(all(feature = "std", target_arch = "x86_64")))]
impl Avx512 {
    /// Never: this build has no AVX-512 kernels.
    pub(crate) fn detect() -> Option<Self> {
        None
    }
    /// Unreachable (no value of the type exists).
    pub(crate) fn run<R>(self, _f: impl FnOnce() -> R) -> R {
        match self {}
    }
    /// Unreachable (no value of the type exists).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn adam_row_dot(
        self,
        _u: &crate::train::AdamStep,
        _w: &mut [f32],
        _m: &mut [f32],
        _v: &mut [f32],
        _x: &[f32],
        _c: f32,
        _wd: f32,
        _xn: &[f32],
    ) -> f32 {
        match self {}
    }
}
