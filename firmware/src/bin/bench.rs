//! Benchmark firmware: instruction counts under QEMU (`bench.sh`, with
//! `../shared/tools/qemu-insn-count`). Boots like the real firmware (model read in place from
//! the MODEL region, same `Device` and const generics as `main.rs`), then runs, each between
//! the marker functions `bench_start` / `bench_end`:
//!
//! 1. one classification, as the serial loop does it (`Device::handle(Request::Classify)`:
//!    sample bytes -> f32, `Preprocess::apply`, `classify` over the model's classes);
//! 2. one enrollment of 5 samples (`EnrollStart` + 5 `EnrollSample`: preprocessing, shift
//!    augmentation when the model asks for it, the closed-form fit, the save to the store).
//!
//! Then `bench_dot` (a non-inlined wrapper of `ldl_core::linalg::dot`) runs `DOT_CALLS` times
//! on 784 values: the instructions counted inside it, divided by `DOT_CALLS * 784`, are the
//! instructions per multiply-accumulate of the inner loop.
//!
//! The samples are synthetic MNIST-like images (a deterministic `ldl_core::Rng` stream of
//! pixel values 0..255, three quarters of them 0), so no data is needed on the target.
//! Exit code: 0 ok, 2 no/bad model, 3 classification failed, 4 enrollment failed.
#![no_std]
#![no_main]
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use cortex_m_rt::entry;
use ldl_core::enroll::Enrolled;
use ldl_core::protocol::{ModelStatus, Request, Response};
use ldl_firmware::board;
use ldl_firmware::device::{work_len, Device};
use static_cell::ConstStaticCell;

const D: usize = 784;
const K: usize = 16;
const R: usize = 24;
const C: usize = 10;
const ROWS: usize = 128;
const WORK: usize = work_len(D, ROWS, D);
const SLOT: u32 = 802_816;
/// Calls of `bench_dot` (784 multiply-accumulates each).
const DOT_CALLS: usize = 100;

static ENROLLED: ConstStaticCell<Enrolled<D, K, R, C>> = ConstStaticCell::new(Enrolled::new());
static WORKSPACE: ConstStaticCell<[f32; WORK]> = ConstStaticCell::new([0.0; WORK]);
static SAMPLE: ConstStaticCell<[u8; 4 * D]> = ConstStaticCell::new([0; 4 * D]);
static VEC_A: ConstStaticCell<[f32; D]> = ConstStaticCell::new([0.0; D]);
static VEC_B: ConstStaticCell<[f32; D]> = ConstStaticCell::new([0.0; D]);

/// Start of a measured region (the counter plugin breaks on its address).
// SAFETY: a unique symbol name (nothing else in the image defines it), needed by the
// counter plugin to find the function.
#[allow(unsafe_code)]
#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_start() {
    core::hint::black_box(1u32);
}

/// End of a measured region.
// SAFETY: a unique symbol name (nothing else in the image defines it), needed by the
// counter plugin to find the function.
#[allow(unsafe_code)]
#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_end() {
    core::hint::black_box(2u32);
}

/// `ldl_core::linalg::dot`, not inlined, so its instructions can be counted alone.
// SAFETY: a unique symbol name (nothing else in the image defines it), needed by the
// counter plugin to find the function.
#[allow(unsafe_code)]
#[no_mangle]
#[inline(never)]
pub fn bench_dot(a: &[f32; D], b: &[f32; D]) -> f32 {
    ldl_core::linalg::dot(a, b)
}

/// A synthetic image (raw pixel values 0..255) as protocol sample bytes.
fn image(rng: &mut ldl_core::Rng, out: &mut [u8; 4 * D]) {
    for c in out.chunks_exact_mut(4) {
        let r = rng.next_u32();
        let v = if r.is_multiple_of(4) { (r >> 8) as u8 as f32 } else { 0.0 };
        c.copy_from_slice(&v.to_le_bytes());
    }
}

#[entry]
fn main() -> ! {
    let Some(b) = board::take() else { board::exit(1) };
    let (Some(enrolled), Some(work), Some(sample), Some(va), Some(vb)) = (
        ENROLLED.try_take(),
        WORKSPACE.try_take(),
        SAMPLE.try_take(),
        VEC_A.try_take(),
        VEC_B.try_take(),
    ) else {
        board::exit(1)
    };
    let (mut dev, boot) = Device::new(board::model(), enrolled, work, ROWS, b.store, SLOT);
    if !matches!(boot.model, ModelStatus::Valid { .. }) {
        defmt::error!("bench: no valid model in the MODEL region");
        board::exit(2)
    }
    let mut rng = ldl_core::Rng::new(1);

    // 1. One classification.
    image(&mut rng, sample);
    bench_start();
    let r = dev.handle(Request::Classify { sample: &sample[..] });
    bench_end();
    if !matches!(r, Response::Classified(_)) {
        board::exit(3)
    }

    // 2. One enrollment of 5 samples.
    let Ok(label) = ldl_core::label("bench") else { board::exit(4) };
    bench_start();
    let mut r = dev.handle(Request::EnrollStart { label, samples: 5 });
    for _ in 0..5 {
        image(&mut rng, sample);
        r = dev.handle(Request::EnrollSample { data: &sample[..] });
    }
    bench_end();
    let enrolled = matches!(r, Response::Enrolled { .. });

    // 3. The inner loop: DOT_CALLS x 784 multiply-accumulates inside bench_dot.
    for (i, (a, b)) in va.iter_mut().zip(vb.iter_mut()).enumerate() {
        *a = (i % 13) as f32 * 0.25;
        *b = (i % 7) as f32 - 3.0;
    }
    let mut s = 0.0f32;
    for _ in 0..DOT_CALLS {
        s += bench_dot(core::hint::black_box(va), core::hint::black_box(vb));
    }
    core::hint::black_box(s);
    board::exit(if enrolled { 0 } else { 4 })
}
