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
use ldl_core::protocol::{self, FrameReader, ModelStatus, Request, Response, MAX_FRAME_LEN};
use ldl_firmware::board::{self, config};
use ldl_firmware::device::Device;
use static_cell::ConstStaticCell;

/// The board's sizes, as the firmware's `main.rs`.
const SIZES: ldl_core::budget::Sizes = config::SIZES;
const D: usize = SIZES.inputs;
const C: usize = SIZES.classes;
const WORK: usize = SIZES.workspace();
const SLOT: u32 = SIZES.slot_bytes(config::ERASE_SIZE) as u32;
/// Calls of `bench_dot` (784 multiply-accumulates each).
const DOT_CALLS: usize = 100;
/// Bytes of a reply frame buffer, as in `main.rs`.
const TX: usize = 2048;
/// Images an enrollment takes (the board's most).
const SHOTS: u16 = SIZES.images as u16;
/// Largest reply the bench decodes (a `List` or `Info` of the few classes here).
const REPLY: usize = 1024;

static WORKSPACE: ConstStaticCell<[f32; WORK]> = ConstStaticCell::new([0.0; WORK]);
static STORE: ConstStaticCell<ldl_core::store::Store<C>> = ConstStaticCell::new(ldl_core::store::Store::empty());
static SAMPLE: ConstStaticCell<[u8; D]> = ConstStaticCell::new([0; D]);
static RX: ConstStaticCell<FrameReader<MAX_FRAME_LEN>> = ConstStaticCell::new(FrameReader::new());
static TXBUF: ConstStaticCell<[u8; TX]> = ConstStaticCell::new([0; TX]);
static FRAME: ConstStaticCell<[u8; MAX_FRAME_LEN]> = ConstStaticCell::new([0; MAX_FRAME_LEN]);
static REPLY_BYTES: ConstStaticCell<[u8; REPLY]> = ConstStaticCell::new([0; REPLY]);

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

/// Side of the square images, and the box in the middle where a digit's ink is.
const SIDE: usize = 28;
const INK: core::ops::Range<usize> = 4..24;

/// A synthetic MNIST-like image as protocol sample bytes (8-bit, as a host sends pixels):
/// raw values 0..255, a third of the pixels of the central 20 x 20 box inked, the border
/// blank (as MNIST's digits).
fn image(rng: &mut ldl_core::Rng, out: &mut [u8; D]) {
    for (i, c) in out.iter_mut().enumerate() {
        let (y, x) = (i / SIDE, i % SIDE);
        let r = rng.next_u32();
        *c = if INK.contains(&y) && INK.contains(&x) && r.is_multiple_of(3) {
            (r >> 8) as u8
        } else {
            0
        };
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

/// A request of a script, its frame made when the serial loop reaches it (a script of whole
/// frames would not fit the RAM of the smaller boards next to the workspace).
#[derive(Clone)]
enum Req {
    Classify,
    Info,
    List,
    Forget(ldl_core::Label),
    EnrollStart(ldl_core::Label, u16),
    /// A sample of the enrollment of this token.
    EnrollSample(u16),
}

/// A serial link over memory: reads the frames of `reqs`, made one at a time into `frame`
/// (samples drawn from `rng` into `sample`), then reports the end of the stream (a read of 0
/// bytes, which ends `Device::serve`); keeps the bytes of the last reply (decoded after the
/// serial loop, so that its decoding does not count in the loop's stack).
struct Script<'a> {
    reqs: &'a [Req],
    next: usize,
    frame: &'a mut [u8; MAX_FRAME_LEN],
    len: usize,
    pos: usize,
    sample: &'a mut [u8; D],
    rng: &'a mut ldl_core::Rng,
    reply: &'a mut [u8; REPLY],
    /// Bytes of the reply being received, and of the last complete one.
    got: usize,
    last: usize,
}

impl Script<'_> {
    /// Makes the next request's frame; false at the end of the script.
    fn refill(&mut self) -> bool {
        let Some(req) = self.reqs.get(self.next).cloned() else {
            return false;
        };
        let id = self.next as u32 + 1;
        self.next += 1;
        if matches!(req, Req::Classify | Req::EnrollSample(_)) {
            image(self.rng, self.sample);
        }
        let r = match req {
            Req::Classify => Request::Classify { sample: &self.sample[..] },
            Req::Info => Request::Info,
            Req::List => Request::List,
            Req::Forget(label) => Request::Forget { label },
            Req::EnrollStart(label, samples) => Request::EnrollStart { label, samples },
            Req::EnrollSample(token) => Request::EnrollSample {
                token,
                data: &self.sample[..],
            },
        };
        match protocol::encode(id, &r, self.frame) {
            Ok(n) => {
                (self.len, self.pos) = (n, 0);
                true
            }
            Err(_) => false,
        }
    }
}

impl embedded_io::ErrorType for Script<'_> {
    type Error = Infallible;
}

impl embedded_io::Read for Script<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if self.pos >= self.len && !self.refill() {
            return Ok(0);
        }
        let rest = self.frame.get(self.pos..self.len).unwrap_or(&[]);
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

impl embedded_io::ReadReady for Script<'_> {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(true)
    }
}

impl embedded_io::Write for Script<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            if let Some(slot) = self.reply.get_mut(self.got) {
                *slot = b;
            }
            self.got += 1;
            if b == 0 {
                (self.last, self.got) = (self.got, 0);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Whether the reply frame in `bytes` (up to its delimiter) decodes to one `check` accepts.
#[inline(never)]
fn last_reply_is(bytes: &mut [u8], check: impl Fn(&Response) -> bool) -> bool {
    matches!(protocol::decode::<Response>(bytes), Ok((_, r)) if check(&r))
}

fn dot_mode(work: &mut [f32; WORK]) -> ! {
    let (va, vb) = work.split_at_mut(D);
    let (Ok(va), Some(vb)) = (<&mut [f32; D]>::try_from(va), vb.first_chunk_mut::<D>()) else {
        board::exit(1)
    };
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

/// The serial loop fed from memory, one script at a time.
struct Link<'a> {
    frame: &'a mut [u8; MAX_FRAME_LEN],
    sample: &'a mut [u8; D],
    rng: &'a mut ldl_core::Rng,
    rx: &'a mut FrameReader<MAX_FRAME_LEN>,
    tx: &'a mut [u8; TX],
    reply: &'a mut [u8; REPLY],
}

impl Link<'_> {
    /// Paints the stack, serves `reqs` and checks the last reply: the peak stack depth (and
    /// the part below the caller), or `None` if the measurement or the check failed.
    fn run<F: embedded_storage::nor_flash::NorFlash>(
        &mut self,
        dev: &mut Device<'_, F, C>,
        button: &mut board::Button,
        reqs: &[Req],
        check: impl Fn(&Response) -> bool,
    ) -> Option<(usize, usize)> {
        let mut script = Script {
            reqs,
            next: 0,
            frame: self.frame,
            len: 0,
            pos: 0,
            sample: self.sample,
            rng: self.rng,
            reply: self.reply,
            got: 0,
            last: 0,
        };
        let p = stack::paint();
        let Ok(()) = dev.serve(&mut script, button, self.rx, self.tx.as_mut_slice());
        let peak = stack::peak(&p);
        let last = script.last;
        let ok = last_reply_is(self.reply.get_mut(..last).unwrap_or(&mut []), check);
        peak.filter(|_| ok).map(|v| (v, v.saturating_sub(stack::depth(&p))))
    }
}

#[entry]
fn main() -> ! {
    let boot_paint = stack::paint();
    let Some(mut b) = board::take() else { board::exit(1) };
    let (Some(work), Some(sample)) = (WORKSPACE.try_take(), SAMPLE.try_take()) else {
        board::exit(1)
    };
    if has_arg("dot") {
        dot_mode(work)
    }
    let (Some(rx), Some(tx), Some(frame), Some(reply), Some(store)) = (
        RX.try_take(),
        TXBUF.try_take(),
        FRAME.try_take(),
        REPLY_BYTES.try_take(),
        STORE.try_take(),
    ) else {
        board::exit(1)
    };
    let (mut dev, boot) = Device::<_, C>::new(board::model(), work, store, SIZES, b.store, SLOT);
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

    // 2. One enrollment of the board's most images (with `one`: of one image, which a model
    //    with warped copies fills the free image slots with).
    let shots = if has_arg("one") { 1 } else { SHOTS };
    let Ok(label) = ldl_core::label("bench") else { board::exit(4) };
    bench_start();
    let mut r = dev.handle(Request::EnrollStart { label, samples: shots });
    let token = match r {
        Response::EnrollProgress { token, .. } => token,
        _ => 0,
    };
    for _ in 0..shots {
        image(&mut rng, sample);
        r = dev.handle(Request::EnrollSample { token, data: &sample[..] });
    }
    bench_end();
    // A model the device cannot enroll into (e.g. a target wider than it is built for) is
    // refused: no enrollment stack.
    let enrolled = matches!(r, Response::Enrolled { .. });
    if let Response::Enrolled { rank, .. } = r {
        defmt::info!("bench: enrolled a class of rank {=u16} from {=u16} images", rank, shots);
    } else {
        defmt::warn!("bench: enrollment refused: {}", defmt::Debug2Format(&r));
    }

    // 3. Peak stack of the serial loop: a classification, Info and List, an enrollment, a
    //    forget.
    let mut link = Link {
        frame,
        sample,
        rng: &mut rng,
        rx,
        tx,
        reply,
    };
    let c = link.run(&mut dev, &mut b.button, &[Req::Classify], |r| matches!(r, Response::Classified(_)));
    let Ok(label) = ldl_core::label("stack") else { board::exit(5) };
    let i = link.run(&mut dev, &mut b.button, &[Req::Info, Req::List], |r| {
        matches!(r, Response::Listed { .. })
    });
    let mut e = None;
    let mut f = None;
    if enrolled {
        let mut reqs: heapless::Vec<Req, 16> = heapless::Vec::new();
        let _ = reqs.push(Req::EnrollStart(label.clone(), SHOTS));
        // Tokens count up from boot: the next enrollment's is one more.
        for _ in 0..SHOTS {
            let _ = reqs.push(Req::EnrollSample(token.wrapping_add(1)));
        }
        e = link.run(&mut dev, &mut b.button, &reqs, |r| matches!(r, Response::Enrolled { .. }));
        f = link.run(&mut dev, &mut b.button, &[Req::Forget(label)], |r| matches!(r, Response::Forgotten));
        if dev.store().map_or(0, |s| s.len()) != 1 {
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
