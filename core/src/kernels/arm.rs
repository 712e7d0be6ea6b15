//! Hand-written kernels for the inner loops on hard-float Arm (written for the Cortex-M4F's
//! FPv4-SP; VFPv2 instructions only, Arm or Thumb), behind safe wrappers.
//!
//! LLVM loads the operands of the unrolled loops one `vldr` at a time into scattered
//! registers; these load 8 floats per `vldmia` into consecutive registers. Each kernel is a
//! naked function with the AAPCS-VFP calling convention (pointers and counts in r0-r3,
//! floats in s0, result in s0): the compiler treats s0-s15 as clobbered by any call, and the
//! kernels save and restore the callee-saved s16-s23 they use, so no register of the caller
//! is touched behind its back (no `sreg` operands are needed, which `asm!` would only accept
//! with the `vfp2` target feature). Each does exactly the floating-point operations of the
//! portable code, in the same order, so the results have the same bits.

/// `((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7))` where `s_i` sums `a[j][i] * b[j][i]`
/// over the blocks `j` in order, from +0.0, each step a rounded multiply then a rounded
/// add. Blocks beyond the shorter slice are ignored.
#[inline(always)]
pub(crate) fn dot_blocks(a: &[[f32; 8]], b: &[[f32; 8]]) -> f32 {
    let n = a.len().min(b.len());
    // SAFETY: the kernel reads `n` blocks of 8 f32s from each pointer, and both slices
    // hold at least `n` blocks; `[f32; 8]` is 4-aligned, as `vldmia` requires. It writes
    // no memory and follows the C ABI (see the module doc).
    unsafe { dot_blocks_kernel(a.as_ptr().cast(), b.as_ptr().cast(), n) }
}

/// `y[j] += alpha * x[j]` (a rounded multiply then a rounded add) over `n` blocks of 8.
#[inline(always)]
pub(crate) fn axpy_blocks(alpha: f32, x: &[[f32; 8]], y: &mut [[f32; 8]]) {
    let n = x.len().min(y.len());
    // SAFETY: the kernel reads `n` blocks of 8 f32s at `x` and reads then writes `n`
    // blocks at `y`; both slices hold at least `n` blocks, are 4-aligned and cannot
    // overlap (`y` is a unique borrow). It follows the C ABI (see the module doc).
    unsafe { axpy_blocks_kernel(alpha, x.as_ptr().cast(), y.as_mut_ptr().cast(), n) }
}

/// r0 = a, r1 = b, r2 = blocks; returns in s0. Accumulators s0-s7, a in s8-s15, b in
/// s16-s23 (saved).
// SAFETY (of the definition): a naked function is only its assembly; the callers above
// uphold what it reads.
#[unsafe(naked)]
unsafe extern "C" fn dot_blocks_kernel(a: *const f32, b: *const f32, blocks: usize) -> f32 {
    core::arch::naked_asm!(
        // Module-level assembly does not see the target's FPU: name it (Cortex-M4F).
        ".fpu fpv4-sp-d16",
        "vpush {{d8-d11}}",
        "movs r3, #0",
        "vmov s0, s1, r3, r3",
        "vmov s2, s3, r3, r3",
        "vmov s4, s5, r3, r3",
        "vmov s6, s7, r3, r3",
        "cmp r2, #0",
        "beq 3f",
        "2:",
        "vldmia r0!, {{s8-s15}}",
        "vldmia r1!, {{s16-s23}}",
        "vmla.f32 s0, s8, s16",
        "vmla.f32 s1, s9, s17",
        "vmla.f32 s2, s10, s18",
        "vmla.f32 s3, s11, s19",
        "vmla.f32 s4, s12, s20",
        "vmla.f32 s5, s13, s21",
        "vmla.f32 s6, s14, s22",
        "vmla.f32 s7, s15, s23",
        "subs r2, r2, #1",
        "bne 2b",
        "3:",
        "vadd.f32 s0, s0, s4",
        "vadd.f32 s1, s1, s5",
        "vadd.f32 s2, s2, s6",
        "vadd.f32 s3, s3, s7",
        "vadd.f32 s0, s0, s1",
        "vadd.f32 s2, s2, s3",
        "vadd.f32 s0, s0, s2",
        "vpop {{d8-d11}}",
        "bx lr",
    )
}

/// s0 = alpha, r0 = x, r1 = y, r2 = blocks. x in s8-s15, y in s16-s23 (saved).
// SAFETY (of the definition): a naked function is only its assembly; the callers above
// uphold what it reads and writes.
#[unsafe(naked)]
unsafe extern "C" fn axpy_blocks_kernel(alpha: f32, x: *const f32, y: *mut f32, blocks: usize) {
    core::arch::naked_asm!(
        ".fpu fpv4-sp-d16",
        "cmp r2, #0",
        "beq 3f",
        "vpush {{d8-d11}}",
        "2:",
        "vldmia r0!, {{s8-s15}}",
        "vldmia r1, {{s16-s23}}",
        "vmla.f32 s16, s0, s8",
        "vmla.f32 s17, s0, s9",
        "vmla.f32 s18, s0, s10",
        "vmla.f32 s19, s0, s11",
        "vmla.f32 s20, s0, s12",
        "vmla.f32 s21, s0, s13",
        "vmla.f32 s22, s0, s14",
        "vmla.f32 s23, s0, s15",
        "vstmia r1!, {{s16-s23}}",
        "subs r2, r2, #1",
        "bne 2b",
        "vpop {{d8-d11}}",
        "3:",
        "bx lr",
    )
}

/// The correctly rounded square root, in hardware (`vsqrt.f32`; IEEE 754 requires the
/// same bits as libm's software `sqrtf`).
#[inline(always)]
pub(crate) fn sqrt(x: f32) -> f32 {
    // SAFETY: the kernel reads and writes s0 only and follows the C ABI.
    unsafe { sqrt_kernel(x) }
}

/// s0 = x; returns sqrt(x) in s0.
// SAFETY (of the definition): a naked function is only its assembly.
#[unsafe(naked)]
unsafe extern "C" fn sqrt_kernel(x: f32) -> f32 {
    core::arch::naked_asm!(".fpu fpv4-sp-d16", "vsqrt.f32 s0, s0", "bx lr",)
}

/// `sum a[j] * b[j]` over `groups` groups of 8 (`a` int8 bytes, `b` i16), exactly, in
/// an i64: the Cortex-M4's DSP instructions, two multiply-accumulates per `smlald`.
#[inline(always)]
pub(crate) fn dot_i8_i16_groups(a: &[[u8; 8]], b: &[[i16; 8]]) -> i64 {
    let n = a.len().min(b.len());
    // SAFETY: the kernel reads `n` groups of 8 bytes at `a` and of 8 i16 at `b`; both
    // slices hold `n` groups and the wrapper in `compact` passes 4-aligned pointers
    // (`ldrd`/`ldm` need word alignment). It writes no memory and follows the C ABI.
    unsafe { dot_i8_i16_kernel(a.as_ptr().cast(), b.as_ptr().cast(), n) }
}

/// r0 = a (int8), r1 = b (i16), r2 = groups of 8; returns the i64 sum in r0:r1.
/// Accumulator r3 (low) : r12 (high); r4-r11 saved. Per group: the two words of 8 bytes
/// sign-extended in pairs (`sxtb16`: bytes 0 and 2, then 1 and 3), the i16 pairs
/// repacked to match (`pkhbt`/`pkhtb`), four `smlald`.
// SAFETY (of the definition): a naked function is only its assembly; the caller above
// upholds what it reads.
#[unsafe(naked)]
unsafe extern "C" fn dot_i8_i16_kernel(a: *const u8, b: *const i16, groups: usize) -> i64 {
    core::arch::naked_asm!(
        "push {{r4-r11}}",
        "movs r3, #0",
        "mov.w r12, #0",
        "cmp r2, #0",
        "beq 3f",
        "2:",
        "ldrd r4, r5, [r0], #8",
        "ldm r1!, {{r6-r9}}",
        "sxtb16 r10, r4",
        "sxtb16 r11, r4, ror #8",
        "pkhbt r4, r6, r7, lsl #16",
        "pkhtb r6, r7, r6, asr #16",
        "smlald r3, r12, r10, r4",
        "smlald r3, r12, r11, r6",
        "sxtb16 r10, r5",
        "sxtb16 r11, r5, ror #8",
        "pkhbt r5, r8, r9, lsl #16",
        "pkhtb r8, r9, r8, asr #16",
        "smlald r3, r12, r10, r5",
        "smlald r3, r12, r11, r8",
        "subs r2, r2, #1",
        "bne 2b",
        "3:",
        "mov r0, r3",
        "mov r1, r12",
        "pop {{r4-r11}}",
        "bx lr",
    )
}
