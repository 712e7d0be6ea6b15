//! Benchmark firmware: instruction counts and stack depth under QEMU (`bench.sh`, with
//! `../shared/tools/qemu-insn-count`). Boots like the real firmware (model read in place from
//! the MODEL region, same `Device` and const generics as `main.rs`).
//!
//! Default mode (a model in the MODEL region), each counted between the marker functions
//! `bench_start` / `bench_end`:
//!
//! 1. one classification, as the serial loop does it (`Device::handle(Request::Classify)`:
//!    sample bytes -> f32, `Preprocess::apply`, `classify` over the model's classes);
//! 2. one enrollment of 5 samples (`EnrollStart` + 5 `EnrollSample`: preprocessing, shift
//!    augmentation when the model asks for it, the closed-form fit, the save to the store).
//!
//! Then the stack: the whole unused stack below the current stack pointer is painted with a
//! pattern, the firmware's serial loop (`Device::serve`, fed protocol frames from memory:
//! decode, handle, encode the reply) classifies one sample, and the deepest word no longer
//! holding the pattern gives the peak stack depth; the same for an enrollment of 5 samples,
//! a `Forget` of that class, an `Info` and a `List`, and the boot (board, model check, store
//! load). Logged (defmt) as `stack: boot B, classification B, enrollment B, forget B,
//! info+list B` (depth from the top of the stack, this binary's `main` frame included),
//! `serial loop: classification B, ...` (the part below the caller of `Device::serve`) and
//! `below main: boot B (main at B from the top)`; -1 = not measured. This binary's `main`
//! is not the firmware's: bench.sh adds these parts to the depth of the firmware's own
//! `main` frame (read from its ELF) to give the firmware's figures.
//!
//! Mode `dot` (semihosting argument `dot`; no model needed): only `DOT_CALLS` calls of
//! `bench_dot` (`ldl_core::linalg::dot`, not inlined) on 784 values, between the markers:
//! the instructions counted, divided by `DOT_CALLS * 784`, are the instructions per
//! multiply-accumulate of the inner loop, call and loop overhead included.
//!
//! The samples are synthetic MNIST-like images (a deterministic `ldl_core::Rng` stream of
//! pixel values 0..255, three quarters of them 0), so no data is needed on the target.
//! Exit code: 0 ok, 2 no/bad model, 3 classification failed, 4 enrollment refused (the rest
//! still measured), 5 a stack measurement failed (the stack reached the statics, or the
//! serial loop did not answer as expected).
#![no_std]
#![no_main]
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use core::convert::Infallible;
use cortex_m_rt::entry;
use ldl_core::enroll::Enrolled;
use ldl_core::protocol::{self, FrameReader, ModelStatus, Push, Request, Response, MAX_FRAME_LEN};
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
/// Bytes of a reply frame buffer, as in `main.rs`.
const TX: usize = 2048;
/// Request frames fed to the serial loop: an enrollment of 5 samples (the largest script).
const SCRIPT: usize = 6 * (MAX_FRAME_LEN + 16);

static ENROLLED: ConstStaticCell<Enrolled<D, K, R, C>> = ConstStaticCell::new(Enrolled::new());
static WORKSPACE: ConstStaticCell<[f32; WORK]> = ConstStaticCell::new([0.0; WORK]);
static SAMPLE: ConstStaticCell<[u8; 4 * D]> = ConstStaticCell::new([0; 4 * D]);
static VEC_A: ConstStaticCell<[f32; D]> = ConstStaticCell::new([0.0; D]);
static VEC_B: ConstStaticCell<[f32; D]> = ConstStaticCell::new([0.0; D]);
static RX: ConstStaticCell<FrameReader<MAX_FRAME_LEN>> = ConstStaticCell::new(FrameReader::new());
static TXBUF: ConstStaticCell<[u8; TX]> = ConstStaticCell::new([0; TX]);
static INPUT: ConstStaticCell<[u8; SCRIPT]> = ConstStaticCell::new([0; SCRIPT]);
static OUTPUT: ConstStaticCell<[u8; TX]> = ConstStaticCell::new([0; TX]);

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

/// `ldl_core::linalg::dot`, not inlined, so its calls can be counted alone.
// SAFETY: a unique symbol name (nothing else in the image defines it).
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

/// Stack painting: the whole unused stack, from the end of the statics up to just below the
/// stack pointer, is filled with [`stack::PAINT`]; after the code under test has run, the
/// lowest word that lost the pattern is as deep as the stack went (a frame reserved but
/// never written is not counted: this is the high-water mark of what was touched).
///
/// Sound on this board: one thread, no interrupt enabled, so nothing but the code under
/// test uses the memory below the stack pointer; the painting loop stores through raw
/// pointers, calls nothing and stops [`stack::MARGIN`] bytes below the stack pointer it read,
/// so its own frame is not touched. A word the code under test wrote with exactly the pattern would be missed: the
/// figure is a lower bound with that (2^-32 per word) caveat.
mod stack {
    #![allow(unsafe_code)]

    extern "C" {
        /// Top of the stack (cortex-m-rt: the end of RAM), exclusive.
        static _stack_start: u32;
        /// Lowest address the stack may use (cortex-m-rt: the end of the statics).
        static _stack_end: u32;
    }

    /// The fill pattern.
    pub const PAINT: u32 = 0xDEAD_C0DE;

    /// A painted window: words `[lo, hi)`.
    pub struct Painted {
        lo: usize,
        hi: usize,
    }

    fn top() -> usize {
        // Only the address of the linker symbol is taken.
        (&raw const _stack_start) as usize
    }

    /// Bytes left unpainted just below the stack pointer: the painting function may read the
    /// stack pointer before its prologue pushes registers (shrink-wrapping), so the words
    /// right below it are its own frame.
    pub const MARGIN: usize = 256;

    /// Paints the stack below the current stack pointer (minus [`MARGIN`]).
    #[inline(never)]
    pub fn paint() -> Painted {
        let sp = (cortex_m::register::msp::read() as usize & !3).saturating_sub(MARGIN);
        let floor = ((&raw const _stack_end) as usize + 3) & !3;
        let lo = floor.min(sp);
        let mut a = lo;
        while a < sp {
            // SAFETY: [floor, sp) is the unused part of the stack region (between the
            // statics and this function's frame): RAM no live object occupies, 4-aligned,
            // and nothing else runs (see the module doc).
            unsafe { core::ptr::write_volatile(core::ptr::with_exposed_provenance_mut::<u32>(a), PAINT) };
            a += 4;
        }
        Painted { lo, hi: sp }
    }

    /// Peak stack depth (bytes from the top of the stack) since `p` was painted; `None` if
    /// the deepest painted word was overwritten too (the stack reached the statics).
    pub fn peak(p: &Painted) -> Option<usize> {
        let mut a = p.lo;
        while a < p.hi {
            // SAFETY: a word of the window painted by `paint`, RAM in the stack region.
            let v = unsafe { core::ptr::read_volatile(core::ptr::with_exposed_provenance::<u32>(a)) };
            if v != PAINT {
                break;
            }
            a += 4;
        }
        if a == p.lo && p.lo < p.hi {
            return None;
        }
        Some(top() - a)
    }

    /// Stack depth (bytes from the top of the stack) of the caller of [`paint`] when it
    /// painted (its frame and those above it), so `peak - depth` is what the code it ran
    /// afterwards used below it.
    pub fn depth(p: &Painted) -> usize {
        top() - (p.hi + MARGIN)
    }
}

/// A serial link over memory: reads `input`, then reports the end of the stream (a read of
/// 0 bytes, which ends `Device::serve`); keeps the first bytes written.
struct Script<'i, 'o> {
    input: &'i [u8],
    pos: usize,
    output: &'o mut [u8],
    written: usize,
}

impl embedded_io::ErrorType for Script<'_, '_> {
    type Error = Infallible;
}

impl embedded_io::Read for Script<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let rest = self.input.get(self.pos..).unwrap_or(&[]);
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

impl embedded_io::ReadReady for Script<'_, '_> {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(true)
    }
}

impl embedded_io::Write for Script<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        let room = self.output.len().saturating_sub(self.written);
        let n = buf.len().min(room);
        if let (Some(dst), Some(src)) = (self.output.get_mut(self.written..self.written + n), buf.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.written += n;
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Appends one request frame to `script` at `*len`.
fn push_frame(script: &mut [u8], len: &mut usize, id: u32, req: &Request<'_>) -> bool {
    let Some(dst) = script.get_mut(*len..) else { return false };
    match protocol::encode(id, req, dst) {
        Ok(n) => {
            *len += n;
            true
        }
        Err(_) => false,
    }
}

/// The last reply frame in `bytes`, decoded into `f(response)`.
fn last_reply(bytes: &mut [u8], rx: &mut FrameReader<MAX_FRAME_LEN>, f: impl Fn(&Response) -> bool) -> bool {
    let mut ok = false;
    for &b in bytes.iter() {
        if let Push::Frame(n) = rx.push(b) {
            ok = matches!(protocol::decode::<Response>(rx.frame(n)), Ok((_, r)) if f(&r));
        }
    }
    ok
}

fn dot_mode(va: &mut [f32; D], vb: &mut [f32; D]) -> ! {
    for (i, (a, b)) in va.iter_mut().zip(vb.iter_mut()).enumerate() {
        *a = (i % 13) as f32 * 0.25;
        *b = (i % 7) as f32 - 3.0;
    }
    let mut s = 0.0f32;
    bench_start();
    for _ in 0..DOT_CALLS {
        s += bench_dot(core::hint::black_box(va), core::hint::black_box(vb));
    }
    bench_end();
    core::hint::black_box(s);
    board::exit(0)
}

fn has_arg(want: &str) -> bool {
    let Ok(args) = semihosting::experimental::env::args::<256>() else {
        return false;
    };
    (&args).into_iter().any(|a| matches!(a, Ok(s) if s == want))
}

/// The serial loop fed from memory: `input` holds the request frames, `output` the replies.
struct Link<'a> {
    input: &'a mut [u8; SCRIPT],
    rx: &'a mut FrameReader<MAX_FRAME_LEN>,
    tx: &'a mut [u8; TX],
    output: &'a mut [u8; TX],
}

impl Link<'_> {
    /// Paints the stack, serves `script` (`len` bytes of frames) and checks the last reply;
    /// the peak stack depth, or `None` if the measurement or the check failed.
    fn serve<F: embedded_storage::nor_flash::NorFlash>(
        &mut self,
        dev: &mut Device<'_, F, D, K, R, C>,
        button: &mut board::Button,
        len: usize,
        check: impl Fn(&Response) -> bool,
    ) -> Option<(usize, usize)> {
        let mut script = Script {
            input: self.input.get(..len).unwrap_or(&[]),
            pos: 0,
            output: self.output.as_mut_slice(),
            written: 0,
        };
        let p = stack::paint();
        let Ok(()) = dev.serve(&mut script, button, self.rx, self.tx.as_mut_slice());
        let peak = stack::peak(&p);
        let written = script.written;
        let ok = last_reply(self.output.get_mut(..written).unwrap_or(&mut []), self.rx, check);
        peak.filter(|_| ok).map(|v| (v, v.saturating_sub(stack::depth(&p))))
    }

    /// [`Link::serve`] of these requests.
    fn run<F: embedded_storage::nor_flash::NorFlash>(
        &mut self,
        dev: &mut Device<'_, F, D, K, R, C>,
        button: &mut board::Button,
        reqs: &[Request<'_>],
        check: impl Fn(&Response) -> bool,
    ) -> Option<(usize, usize)> {
        let mut len = 0;
        for (id, r) in reqs.iter().enumerate() {
            if !push_frame(self.input.as_mut_slice(), &mut len, id as u32 + 1, r) {
                return None;
            }
        }
        self.serve(dev, button, len, check)
    }

    /// [`Link::serve`] of an enrollment of 5 synthetic samples.
    fn run_enroll<F: embedded_storage::nor_flash::NorFlash>(
        &mut self,
        dev: &mut Device<'_, F, D, K, R, C>,
        button: &mut board::Button,
        label: ldl_core::Label,
        rng: &mut ldl_core::Rng,
        sample: &mut [u8; 4 * D],
    ) -> Option<(usize, usize)> {
        let mut len = 0;
        let mut ok = push_frame(self.input.as_mut_slice(), &mut len, 1, &Request::EnrollStart { label, samples: 5 });
        for i in 0..5 {
            image(rng, sample);
            ok &= push_frame(
                self.input.as_mut_slice(),
                &mut len,
                2 + i,
                &Request::EnrollSample { data: &sample[..] },
            );
        }
        if !ok {
            return None;
        }
        self.serve(dev, button, len, |r| matches!(r, Response::Enrolled { .. }))
    }
}

#[entry]
fn main() -> ! {
    let boot_paint = stack::paint();
    let Some(mut b) = board::take() else { board::exit(1) };
    let (Some(enrolled), Some(work), Some(sample), Some(va), Some(vb)) = (
        ENROLLED.try_take(),
        WORKSPACE.try_take(),
        SAMPLE.try_take(),
        VEC_A.try_take(),
        VEC_B.try_take(),
    ) else {
        board::exit(1)
    };
    if has_arg("dot") {
        dot_mode(va, vb)
    }
    let (Some(rx), Some(tx), Some(input), Some(output)) = (RX.try_take(), TXBUF.try_take(), INPUT.try_take(), OUTPUT.try_take()) else {
        board::exit(1)
    };
    let (mut dev, boot) = Device::new(board::model(), enrolled, work, ROWS, b.store, SLOT);
    let boot_stack = stack::peak(&boot_paint);
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
    // A model whose enrolled classes would not fit (k > K) is refused: no enrollment stack.
    let enrolled = matches!(r, Response::Enrolled { .. });

    // 3. Peak stack of the serial loop: one classification, an enrollment, a forget.
    let mut link = Link { input, rx, tx, output };
    image(&mut rng, sample);
    let c = link.run(&mut dev, &mut b.button, &[Request::Classify { sample: &sample[..] }], |r| {
        matches!(r, Response::Classified(_))
    });
    let Ok(label) = ldl_core::label("stack") else { board::exit(5) };
    let i = link.run(&mut dev, &mut b.button, &[Request::Info, Request::List], |r| {
        matches!(r, Response::Listed { .. })
    });
    let mut e = None;
    let mut f = None;
    if enrolled {
        e = link.run_enroll(&mut dev, &mut b.button, label.clone(), &mut rng, sample);
        f = link.run(&mut dev, &mut b.button, &[Request::Forget { label }], |r| {
            matches!(r, Response::Forgotten)
        });
        if dev.enrolled().len() != 1 {
            f = None;
        }
    }
    let top = |v: Option<(usize, usize)>| v.map_or(-1, |v| v.0 as i32);
    let below = |v: Option<(usize, usize)>| v.map_or(-1, |v| v.1 as i32);
    let main_depth = stack::depth(&boot_paint);
    defmt::info!(
        "stack: boot {=i32} B, classification {=i32} B, enrollment {=i32} B, forget {=i32} B, info+list {=i32} B",
        boot_stack.map_or(-1, |v| v as i32),
        top(c),
        top(e),
        top(f),
        top(i)
    );
    defmt::info!(
        "serial loop: classification {=i32} B, enrollment {=i32} B, forget {=i32} B, info+list {=i32} B",
        below(c),
        below(e),
        below(f),
        below(i)
    );
    defmt::info!(
        "below main: boot {=i32} B (main at {=u32} B from the top)",
        boot_stack.map_or(-1, |v| v.saturating_sub(main_depth) as i32),
        main_depth as u32
    );
    let ok = boot_stack.is_some() && c.is_some() && i.is_some() && (!enrolled || (e.is_some() && f.is_some()));
    board::exit(match (enrolled, ok) {
        (_, false) => 5,
        (false, true) => 4,
        (true, true) => 0,
    })
}
