//! The device: the model read in place, the enrolled classes in the store (flash, read a
//! direction at a time; `ldl_core::store`), and the serial protocol loop
//! (`ldl_core::protocol`). Board-independent and logging-free: generic over `embedded-io`
//! (serial), `embedded-hal` (button) and `embedded-storage` (flash), so it runs unchanged in
//! host unit tests.
//!
//! RAM is one workspace sized for the board (`ldl_core::budget::Sizes::workspace`): the
//! images of an enrollment in progress, then either the enrollment's fit (its Gram matrix)
//! or a classification.

use embedded_hal::digital::InputPin;
use embedded_io::{Read, ReadReady, Write};
use embedded_storage::nor_flash::NorFlash;
use ldl_core::budget::Sizes;
use ldl_core::classify::{scratch_len, Classes};
use ldl_core::fit::{fit_scratch_len, Samples};
use ldl_core::format::{ModelView, MAX_CLASSES};
use ldl_core::protocol::{self, Classified, ErrorCode, FrameReader, Info, ModelStatus, Push, Request, Response};
use ldl_core::store::{classify_joined, Loaded, ModelKey, Store};
use ldl_core::Error;
use ldl_core::Label;

use crate::app::{model_state, ModelState};

/// Samples a button press enrolls (sent as `EnrollSample` frames afterwards).
pub const BUTTON_SAMPLES: u16 = 5;

/// Validates the MODEL region for a device of `d` inputs: no model (erased), a valid one, or
/// why it is refused.
pub fn check_model(region: &[u8], d: usize) -> Result<ModelView<'_>, ModelStatus> {
    if model_state(region) == ModelState::Erased {
        return Err(ModelStatus::Absent);
    }
    let invalid = |e: Error| ModelStatus::Invalid { code: e.into() };
    // The file's length is in its prefix; the region is larger.
    let len = ldl_core::format::file_len(region).ok_or(invalid(Error::Truncated))?;
    let view = ModelView::parse(region.get(..len).ok_or(invalid(Error::Truncated))?).map_err(invalid)?;
    if view.inputs() != d {
        return Err(invalid(Error::DimensionMismatch {
            expected: d as u32,
            found: view.inputs() as u32,
        }));
    }
    Ok(view)
}

/// The enrollment in progress: its class, its samples so far, and the token its samples
/// must carry (so that a host's stray samples cannot complete another's enrollment).
struct Enrollment {
    label: Label,
    of: u16,
    got: u16,
    token: u16,
}

/// How an enrollment sample was taken.
enum Step {
    /// More samples to come.
    Progress { got: u16, of: u16 },
    /// The class is enrolled (and saved).
    Enrolled { label: Label, rank: u16 },
}

/// What happened at boot, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boot {
    /// The model.
    pub model: ModelStatus,
    /// The store (`None`: no valid model, so no store was read).
    pub store: Option<Result<Loaded, Error>>,
}

/// The device state: a model, up to `C` enrolled classes in the store, the workspace.
pub struct Device<'a, F, const C: usize> {
    model: Result<ModelView<'a>, ModelStatus>,
    key: Option<ModelKey>,
    store: Option<&'a mut Store<C>>,
    sizes: Sizes,
    work: &'a mut [f32],
    enrolling: Option<Enrollment>,
    /// The token of the last enrollment started (they count up from boot).
    last_token: u16,
    flash: F,
    button_down: bool,
}

impl<'a, F: NorFlash, const C: usize> Device<'a, F, C> {
    /// Boots: validates the model in `model_region` (in place) for a device of `sizes`, and
    /// with a valid model loads the enrolled classes' index from `flash` (two slots of
    /// `slot_size` bytes) into `store` (kept in a static: its index is not small). `work`
    /// needs `sizes.workspace()` f32s.
    // Not inlined: inlined into `main`, the model check's and the store load's temporaries
    // would stay in `main`'s frame, under every request the serial loop answers.
    #[inline(never)]
    pub fn new(
        model_region: &'a [u8],
        work: &'a mut [f32],
        store: &'a mut Store<C>,
        sizes: Sizes,
        mut flash: F,
        slot_size: u32,
    ) -> (Self, Boot) {
        let mut model = check_model(model_region, sizes.inputs);
        if let Ok(v) = &model {
            // Its classification must fit the workspace next to the enrollment images.
            let fits = scratch_len(v).is_ok_and(|n| n <= sizes.model_scratch()) && work.len() >= sizes.workspace();
            if !fits {
                model = Err(ModelStatus::Invalid {
                    code: ErrorCode::BufferTooSmall,
                });
            }
        }
        let mut key = None;
        let mut usable = None;
        let mut loaded = None;
        if let Ok(v) = &model {
            match ModelKey::of(v, v.crc()) {
                Ok(k) => {
                    let r = store.open(&flash, slot_size).and_then(|()| {
                        let l = store.load(&mut flash, &k, work)?;
                        // Stored classes (with the model's alignment) must fit the
                        // classification scratch too.
                        let need = ldl_core::store::joined_scratch_len(v, store)?;
                        if need > sizes.model_scratch() {
                            store.unload();
                            return Ok(Loaded::Refused(ldl_core::store::LoadError::Corrupt(Error::BufferTooSmall)));
                        }
                        Ok(l)
                    });
                    usable = Some(r.is_ok());
                    key = Some(k);
                    loaded = Some(r);
                }
                Err(e) => {
                    model = Err(ModelStatus::Invalid { code: e.into() });
                }
            }
        }
        let status = match &model {
            Ok(v) => ModelStatus::Valid { crc: v.crc() },
            Err(s) => *s,
        };
        let dev = Device {
            model,
            key,
            store: if usable == Some(true) { Some(store) } else { None },
            sizes,
            work,
            enrolling: None,
            last_token: 0,
            flash,
            button_down: false,
        };
        (
            dev,
            Boot {
                model: status,
                store: loaded,
            },
        )
    }

    /// The enrolled classes (`None`: no valid model, or no usable store).
    pub fn store(&self) -> Option<&Store<C>> {
        self.store.as_deref()
    }

    /// The flash (e.g. to release it).
    pub fn flash(&mut self) -> &mut F {
        &mut self.flash
    }

    // Stack: a `Response` is about 1.3 KB (a `List` or `Info` reply holds 64 labels), so the
    // request functions below write theirs once, in place in `handle`'s return slot (which is
    // `answer`'s local): their errors and intermediate results are small values, and the
    // reply is built only at the end. Each is its own non-inlined function: inlined into
    // `handle`, every arm's temporaries would share one frame, so a classification would
    // reserve the stack of the largest arm.

    /// Every class's label, the model's first, into `out`.
    fn fill_labels(&self, out: &mut heapless::Vec<Label, MAX_CLASSES>) {
        if let Ok(v) = &self.model {
            let stored = self.store.iter().flat_map(|s| s.entries().iter().map(|e| e.label.clone()));
            for l in v.labels().chain(stored) {
                if out.push(l).is_err() {
                    break;
                }
            }
        }
    }

    /// Directions an enrolled class keeps: the board's rank, or the model's if lower.
    fn rank_cap(&self, v: &ModelView<'_>) -> usize {
        match v.fit().max_rank {
            0 => self.sizes.rank,
            r => self.sizes.rank.min(r as usize),
        }
    }

    /// The model's enrollment geometry: `(width, height)` when it shifts images.
    fn geometry(v: &ModelView<'_>) -> Option<(usize, usize)> {
        let p = v.preprocess();
        match p.image {
            Some(im) if p.shift > 0 => Some((im.width as usize, im.height as usize)),
            _ => None,
        }
    }

    /// How many images an enrollment of `n` fits: `n` and, when the model adds warped copies
    /// of enrolled images (`Preprocess::fill`), those copies (`ldl_core::augment::fill`).
    fn filled(v: &ModelView<'_>, n: usize) -> usize {
        let p = v.preprocess();
        match p.image {
            Some(_) if p.fill > 0 => n.saturating_mul(1 + ldl_core::augment::warps_per_image(n, p.fill)),
            _ => n,
        }
    }

    #[inline(never)]
    fn list(&self) -> Response {
        let mut r = Response::Listed {
            labels: heapless::Vec::new(),
        };
        if let Response::Listed { labels } = &mut r {
            self.fill_labels(labels);
        }
        r
    }

    #[inline(never)]
    fn info(&self) -> Response {
        let (inputs, outputs, max_rank) = match &self.model {
            Ok(v) => (v.inputs() as u32, v.outputs() as u32, self.rank_cap(v)),
            Err(_) => (0, 0, self.sizes.rank),
        };
        let mut r = Response::Info(Info {
            protocol: protocol::VERSION,
            model: match &self.model {
                Ok(v) => ModelStatus::Valid { crc: v.crc() },
                Err(s) => *s,
            },
            inputs,
            outputs,
            classes: 0,
            capacity: C as u16,
            enrolled: self.store.as_ref().map_or(0, |s| s.len()) as u16,
            max_rank: max_rank as u16,
            max_samples: self.sizes.images.min(u16::MAX as usize) as u16,
            labels: heapless::Vec::new(),
            enrolling: self.enrolling.as_ref().map(|e| protocol::Enrolling {
                label: e.label.clone(),
                got: e.got,
                of: e.of,
            }),
        });
        if let Response::Info(info) = &mut r {
            self.fill_labels(&mut info.labels);
            info.classes = info.labels.len() as u16;
        }
        r
    }

    /// Answers one request.
    // Not inlined: inlined into the serial loop, its temporaries would add to its frame.
    #[inline(never)]
    pub fn handle(&mut self, req: Request<'_>) -> Response {
        match req {
            Request::Info => self.info(),
            Request::List => self.list(),
            Request::Classify { sample } => self.classify(sample),
            Request::EnrollStart { label, samples } => self.enroll_start_reply(label, samples),
            Request::EnrollSample { token, data } => self.enroll_sample(token, data),
            Request::Forget { label } => match self.forget(&label) {
                Ok(()) => Response::Forgotten,
                Err(code) => Response::Error { code },
            },
            Request::EnrollAbort => match self.enrolling.take() {
                Some(e) => Response::EnrollAborted { label: e.label },
                None => Response::Error {
                    code: ErrorCode::NotEnrolling,
                },
            },
        }
    }

    fn view(&self) -> Result<&ModelView<'a>, ErrorCode> {
        self.model.as_ref().map_err(|_| ErrorCode::NoModel)
    }

    /// Where the enrollment images end in the workspace.
    fn images_len(&self) -> usize {
        (self.sizes.images * self.sizes.inputs).min(self.work.len())
    }

    #[inline(never)]
    fn classify(&mut self, sample: &[u8]) -> Response {
        let mut distances = heapless::Vec::new();
        match self.classify_into(sample, &mut distances) {
            Ok((class, label, c)) => Response::Classified(Classified {
                class,
                label,
                distances,
                novelty: c.novelty,
                unknown: c.class.is_none(),
                score: c.score,
            }),
            Err(code) => Response::Error { code },
        }
    }

    /// Classifies `sample` with the model's novelty rule: the distances into `distances`,
    /// and the class, its label and the core's decision (novelty score, unknown).
    fn classify_into(
        &mut self,
        sample: &[u8],
        distances: &mut heapless::Vec<f32, MAX_CLASSES>,
    ) -> Result<(u16, Label, ldl_core::classify::Classification), ErrorCode> {
        let at = self.images_len();
        let d = self.sizes.inputs;
        let view = self.model.as_ref().map_err(|_| ErrorCode::NoModel)?;
        let (_, scratch) = self.work.split_at_mut(at);
        let (x, rest) = scratch.split_at_mut(d.min(scratch.len()));
        protocol::read_sample(sample, x)?;
        view.preprocess().apply(x)?;
        let stored = self.store.as_ref().map_or(0, |s| s.len());
        let n = view.len() + stored;
        distances.resize(n, 0.0).map_err(|_| ErrorCode::CapacityFull)?;
        let c = match self.store.as_deref() {
            Some(s) => classify_joined(view, s, &mut self.flash, x, view.rule(), rest, distances)?,
            None => ldl_core::classify(view, x, view.rule(), rest, distances)?,
        };
        let nb = view.len();
        let label = if c.best < nb {
            view.label(c.best)
        } else {
            self.store
                .as_ref()
                .and_then(|s| s.entries().get(c.best - nb))
                .map(|e| e.label.clone())
        }
        .ok_or(ErrorCode::UnknownClass)?;
        Ok((c.best as u16, label, c))
    }

    /// Starts an enrollment; the reply carries its token.
    fn enroll_start_reply(&mut self, name: Label, samples: u16) -> Response {
        match self.enroll_start(name, samples) {
            Ok(of) => Response::EnrollProgress {
                token: self.last_token,
                got: 0,
                of,
            },
            Err(code) => Response::Error { code },
        }
    }

    /// Starts an enrollment (with a new token); the number of samples it takes. Everything
    /// that would refuse the class at the end is checked here, so a host learns it before
    /// sending images.
    #[inline(never)]
    fn enroll_start(&mut self, name: Label, samples: u16) -> Result<u16, ErrorCode> {
        self.enrolling = None;
        let view = self.view()?;
        if view.members() != 1 {
            return Err(ErrorCode::Unsupported);
        }
        if samples == 0 {
            return Err(ErrorCode::EmptyClass);
        }
        // The enrolled images and their warped copies share the board's image slots; the
        // copies are of images of the model's inputs.
        let p = view.preprocess();
        if p.fill > 0
            && p.image
                .is_some_and(|im| im.width as usize * im.height as usize != self.sizes.inputs)
        {
            return Err(ErrorCode::InvalidParameter);
        }
        let images = Self::filled(view, samples as usize);
        if images > self.sizes.images {
            return Err(ErrorCode::BufferTooSmall);
        }
        let store = self.store.as_deref().ok_or(ErrorCode::Storage)?;
        let key = self.key.ok_or(ErrorCode::Storage)?;
        if view.class_index(&name).is_some() || store.index_of(&name).is_some() {
            return Err(ErrorCode::DuplicateLabel);
        }
        if view.len() + store.len() >= MAX_CLASSES {
            return Err(ErrorCode::CapacityFull);
        }
        let fit = view.fit();
        store.room_for(&key, self.rank_cap(view), fit.affine)?;
        let p = view.preprocess();
        let d = self.sizes.inputs;
        let (w, s) = match Self::geometry(view) {
            Some((w, h)) if w.checked_mul(h) != Some(d) => return Err(ErrorCode::InvalidParameter),
            Some((w, _)) => (w, p.shift as usize),
            None => (d, 0),
        };
        // The board's buffers are sized for shifts up to its own: a larger one (up to 255
        // in a model file) would need more rows than any sizes formula should see.
        if s > self.sizes.shift {
            return Err(ErrorCode::BufferTooSmall);
        }
        let rows = images * ldl_core::augment::shift_count(s as u8);
        let kl = ldl_core::fit::linear_outputs(&view.target(0)?);
        if kl > self.sizes.outputs {
            return Err(ErrorCode::BufferTooSmall);
        }
        let need = fit_scratch_len(rows, d, w, s, kl, self.rank_cap(view));
        if need > self.work.len().saturating_sub(self.images_len()) {
            return Err(ErrorCode::BufferTooSmall);
        }
        self.last_token = self.last_token.wrapping_add(1);
        self.enrolling = Some(Enrollment {
            label: name,
            of: samples,
            got: 0,
            token: self.last_token,
        });
        Ok(samples)
    }

    #[inline(never)]
    fn enroll_sample(&mut self, token: u16, data: &[u8]) -> Response {
        match self.enroll_step(token, data) {
            Ok(Step::Progress { got, of }) => Response::EnrollProgress { token, got, of },
            Ok(Step::Enrolled { label, rank }) => Response::Enrolled { label, rank },
            Err(code) => Response::Error { code },
        }
    }

    /// Takes one enrollment sample of the enrollment `token`; with the last one, fits the
    /// class into the store.
    fn enroll_step(&mut self, token: u16, data: &[u8]) -> Result<Step, ErrorCode> {
        let d = self.sizes.inputs;
        let at = self.images_len();
        let view = self.model.as_ref().map_err(|_| ErrorCode::NoModel)?;
        let en = self.enrolling.as_mut().ok_or(ErrorCode::NotEnrolling)?;
        if en.token != token {
            return Err(ErrorCode::WrongEnrollment);
        }
        let (images, _) = self.work.split_at_mut(at);
        let start = en.got as usize * d;
        let x = images.get_mut(start..start + d).ok_or(ErrorCode::BufferTooSmall)?;
        protocol::read_sample(data, x)?;
        view.preprocess().apply(x)?;
        en.got += 1;
        if en.got < en.of {
            return Ok(Step::Progress { got: en.got, of: en.of });
        }
        let Some(en) = self.enrolling.take() else {
            return Err(ErrorCode::NotEnrolling);
        };
        let target = view.target(0)?;
        let key = self.key.ok_or(ErrorCode::Storage)?;
        let cap = self.rank_cap(view);
        let fit = view.fit();
        let p = view.preprocess();
        let (images, scratch) = self.work.split_at_mut(at);
        let n = en.of as usize;
        // The warped copies, into the image slots after the enrolled images.
        let n = match p.image {
            Some(im) if p.fill > 0 => ldl_core::augment::fill(images, n, im.width as usize, im.height as usize, p.fill)?,
            _ => n,
        };
        let samples = Samples {
            data: images.get(..n * d).ok_or(ErrorCode::BufferTooSmall)?,
            n,
            d,
            image: Self::geometry(view),
            shift: p.shift,
        };
        let store = self.store.as_deref_mut().ok_or(ErrorCode::Storage)?;
        let shape = store.enroll(&mut self.flash, &key, &en.label, &target, &samples, &fit, cap, scratch)?;
        Ok(Step::Enrolled {
            label: en.label,
            rank: shape.rank as u16,
        })
    }

    #[inline(never)]
    fn forget(&mut self, name: &str) -> Result<(), ErrorCode> {
        self.view()?;
        let key = self.key.ok_or(ErrorCode::Storage)?;
        let store = self.store.as_deref_mut().ok_or(ErrorCode::Storage)?;
        store.forget(&mut self.flash, &key, name)?;
        Ok(())
    }

    /// The button was pressed (a falling edge of the active-low pin): start enrolling a class
    /// named `btn1`, `btn2`, ... (the first free one) from the next [`BUTTON_SAMPLES`] samples.
    pub fn button_pressed(&mut self) -> Response {
        use core::fmt::Write as _;
        let mut name = None;
        for i in 1..=99u8 {
            let mut s = Label::new();
            if write!(s, "btn{i}").is_err() {
                break;
            }
            let taken = self.store.as_ref().is_some_and(|st| st.index_of(&s).is_some())
                || self.model.as_ref().is_ok_and(|v| v.class_index(&s).is_some());
            if !taken {
                name = Some(s);
                break;
            }
        }
        match name {
            Some(l) => self.enroll_start_reply(l, BUTTON_SAMPLES),
            None => Response::Error {
                code: ErrorCode::CapacityFull,
            },
        }
    }

    /// The serial loop: reads frames, answers each (an undecodable frame gets an `Error`
    /// reply with the id when it could be read, else 0), and polls the button between
    /// bytes (a press sends an unsolicited reply with id 0). Returns when the stream ends
    /// (`read` gives 0 bytes; never on a UART) or on an I/O error.
    // Not inlined: inlined into `main`, its frame would add to the boot's (model check).
    #[inline(never)]
    pub fn serve<S: Read + Write + ReadReady, B: InputPin, const N: usize>(
        &mut self,
        serial: &mut S,
        button: &mut B,
        rx: &mut FrameReader<N>,
        tx: &mut [u8],
    ) -> Result<(), S::Error> {
        let mut chunk = [0u8; 64];
        loop {
            if !serial.read_ready()? {
                let down = button.is_low().unwrap_or(false);
                if down && !self.button_down {
                    self.announce_press(serial, tx)?;
                }
                self.button_down = down;
                continue;
            }
            let n = serial.read(&mut chunk)?;
            let Some(bytes) = chunk.get(..n) else { return Ok(()) };
            if bytes.is_empty() {
                return Ok(());
            }
            for &b in bytes {
                match rx.push(b) {
                    Push::Pending => {}
                    Push::Overflow => send_error(serial, tx, 0, ErrorCode::FrameTooLong)?,
                    Push::Frame(len) => match protocol::decode::<Request<'_>>(rx.frame(len)) {
                        Ok((id, req)) => self.answer(serial, tx, id, req)?,
                        Err(e) => send_error(serial, tx, e.id.unwrap_or(0), e.kind.into())?,
                    },
                }
            }
        }
    }

    /// Starts the button's enrollment and sends the unsolicited reply (id 0).
    #[inline(never)]
    fn announce_press<S: Write>(&mut self, serial: &mut S, tx: &mut [u8]) -> Result<(), S::Error> {
        let r = self.button_pressed();
        send(serial, tx, 0, &r)
    }

    /// Answers one request on `serial`: the only `Response` of the serial loop.
    #[inline(never)]
    fn answer<S: Write>(&mut self, serial: &mut S, tx: &mut [u8], id: u32, req: Request<'_>) -> Result<(), S::Error> {
        let resp = self.handle(req);
        send(serial, tx, id, &resp)
    }
}

/// Encodes and writes one reply (a reply too large for `tx` becomes an error reply).
fn send<S: Write>(serial: &mut S, tx: &mut [u8], id: u32, resp: &Response) -> Result<(), S::Error> {
    match protocol::encode(id, resp, tx) {
        Ok(n) => write_frame(serial, tx, n),
        Err(e) => send_error(serial, tx, id, e.into()),
    }
}

/// Writes an error reply (not inlined: the `Response` it builds is as large as any).
#[inline(never)]
fn send_error<S: Write>(serial: &mut S, tx: &mut [u8], id: u32, code: ErrorCode) -> Result<(), S::Error> {
    let n = protocol::encode(id, &Response::Error { code }, tx).unwrap_or(0);
    write_frame(serial, tx, n)
}

/// Writes the first `n` bytes of `tx`.
fn write_frame<S: Write>(serial: &mut S, tx: &[u8], n: usize) -> Result<(), S::Error> {
    serial.write_all(tx.get(..n).unwrap_or(&[]))?;
    serial.flush()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use ldl_core::methods::{fit_compact, ClosedFormConfig};
    use ldl_core::protocol::{decode, encode, MAX_FRAME_LEN};
    use ldl_core::subspace::FitOptions;
    use ldl_core::{label, Model};

    const W: usize = 4;
    const D: usize = W * W;
    const C: usize = 3;
    const SIZES: Sizes = Sizes {
        inputs: D,
        width: W,
        shift: 1,
        outputs: 4,
        rank: 6,
        classes: C,
        images: 4,
    };
    const SLOT: u32 = 16 * 256;

    /// NOR flash in RAM (erase sets 0xFF, writes clear bits), 256-byte sectors.
    type MemFlash = ldl_core::testing::RamFlash<256>;

    use crate::testing::{Duplex, Pin};

    /// Raw samples of a class: ink in the middle of a 4 x 4 image.
    fn class(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = ldl_core::Rng::new(seed);
        let mut out = vec![0.0f32; n * D];
        for i in 0..n {
            for p in [5usize, 6, 9, 10] {
                out[i * D + p] = 2.0 * (1.0 + rng.next_f32()) * (1 + (seed as usize + p) % 3) as f32;
            }
        }
        out
    }

    /// A model of two classes: identity target (k = 0) or linear, shift 0 or 1, raw values
    /// scaled by 0.5 on the device.
    fn model(k: usize, shift: u8) -> (Model, Vec<u32>) {
        model_filled(k, shift, 0)
    }

    /// [`model`] whose enrollments add warped copies of their images while they stay within
    /// `fill` images (`Preprocess::fill`, model format version 3).
    fn model_filled(k: usize, shift: u8, fill: u8) -> (Model, Vec<u32>) {
        let pre = |x: Vec<f32>| x.iter().map(|v| v * 0.5).collect::<Vec<f32>>();
        let (a, b) = (pre(class(1, 3)), pre(class(2, 3)));
        let cfg = ClosedFormConfig {
            k,
            fit: FitOptions {
                ridge: 0.5,
                min_weight: 0.01,
                affine: k > 0,
                max_rank: 8,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut m = fit_compact(&[&a, &b], D, &["a", "b"], &cfg, Some((W, W)), shift, 3).unwrap();
        m.capacity = 5;
        m.threshold = Some(50.0);
        m.preprocess.scale = 0.5;
        m.preprocess.fill = fill;
        let bytes = ldl_core::format::encode(&m).unwrap();
        // Aligned, as in flash, and followed by erased bytes as in the region.
        let mut words = vec![0xFFFF_FFFFu32; bytes.len() / 4 + 64];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
        (m, words)
    }

    fn region(words: &[u32]) -> &[u8] {
        bytemuck::cast_slice(words)
    }

    fn frame(id: u32, r: &Request<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let n = encode(id, r, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn bytes_of(x: &[f32]) -> Vec<u8> {
        x.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn replies(out: &[u8]) -> Vec<(u32, Response)> {
        out.split(|&b| b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| decode::<Response>(&mut f.to_vec()).unwrap())
            .collect()
    }

    fn run<F: NorFlash>(dev: &mut Device<'_, F, C>, input: Vec<u8>) -> Vec<(u32, Response)> {
        let mut s = Duplex::new(input);
        let mut rx: FrameReader<MAX_FRAME_LEN> = FrameReader::new();
        let mut tx = vec![0u8; 2048];
        dev.serve(&mut s, &mut Pin(false), &mut rx, &mut tx).unwrap();
        replies(&s.output)
    }

    fn workspace() -> Vec<f32> {
        vec![0.0; SIZES.workspace()]
    }

    #[test]
    fn no_model_answers_info_and_refuses_the_rest() {
        for region_bytes in [vec![0xFFu8; 256], b"LDLM garbage that is no model at all".to_vec()] {
            let mut work = workspace();
            let aligned = ldl_core::format::Aligned::new(&region_bytes);
            let mut st1 = Store::empty();
            let (mut dev, boot) = Device::<_, C>::new(&aligned, &mut work, &mut st1, SIZES, MemFlash::new(2 * SLOT as usize), SLOT);
            assert!(boot.store.is_none());
            let mut input = frame(1, &Request::Info);
            input.extend(frame(
                2,
                &Request::Classify {
                    sample: &bytes_of(&[0.0; D]),
                },
            ));
            input.extend(frame(
                3,
                &Request::EnrollStart {
                    label: label("x").unwrap(),
                    samples: 1,
                },
            ));
            let out = run(&mut dev, input);
            let Response::Info(info) = &out[0].1 else { panic!("{out:?}") };
            assert_eq!(info.model, boot.model);
            assert!(!matches!(info.model, ModelStatus::Valid { .. }));
            assert_eq!(out[1], (2, Response::Error { code: ErrorCode::NoModel }));
            assert_eq!(out[2], (3, Response::Error { code: ErrorCode::NoModel }));
        }
    }

    /// A model built for a larger board (here a linear target wider than this device's
    /// workspace can classify) is refused at boot; the device still answers.
    #[test]
    fn a_model_too_large_for_the_workspace_is_refused_at_boot() {
        let (_, words) = model(2048, 0);
        let view = check_model(region(&words), D).unwrap();
        assert!(scratch_len(&view).unwrap() > SIZES.model_scratch());
        let mut work = workspace();
        let mut st = Store::empty();
        let (mut dev, boot) = Device::<_, C>::new(region(&words), &mut work, &mut st, SIZES, MemFlash::new(2 * SLOT as usize), SLOT);
        let refused = ModelStatus::Invalid {
            code: ErrorCode::BufferTooSmall,
        };
        assert_eq!(boot.model, refused);
        assert!(boot.store.is_none());
        let mut input = frame(1, &Request::Info);
        input.extend(frame(
            2,
            &Request::Classify {
                sample: &bytes_of(&[0.0; D]),
            },
        ));
        let out = run(&mut dev, input);
        let Response::Info(info) = &out[0].1 else { panic!("{out:?}") };
        assert_eq!(info.model, refused);
        assert_eq!(out[1], (2, Response::Error { code: ErrorCode::NoModel }));
    }

    /// Enrolls through the protocol and checks every answer against the host core (a copy
    /// of the model with the same class enrolled by `Model::enroll_capped`), bit for bit;
    /// then the refusals, a reboot on the same flash, forget, and the button.
    #[test]
    fn classify_enroll_list_forget_and_persist() {
        // The last: each of the 2 enrolled images adds a warped copy (4 image slots).
        for (k, shift, fill) in [(0usize, 1u8, 0u8), (0, 0, 0), (4, 1, 0), (0, 1, SIZES.images as u8)] {
            let (mut m, words) = model_filled(k, shift, fill);
            let mut work = workspace();
            let mut st2 = Store::empty();
            let (dev, boot) = Device::<_, C>::new(region(&words), &mut work, &mut st2, SIZES, MemFlash::new(0), SLOT);
            assert!(matches!(boot.model, ModelStatus::Valid { .. }));
            assert!(matches!(boot.store, Some(Err(_))), "no room for slots in an empty flash");
            drop(dev);
            let mut st3 = Store::empty();
            let (mut dev, boot) = Device::<_, C>::new(region(&words), &mut work, &mut st3, SIZES, MemFlash::new(2 * SLOT as usize), SLOT);
            assert_eq!(boot.store, Some(Ok(Loaded::Empty)));

            // Enroll "c" from 2 raw samples (scaled by 0.5 on the device).
            let raw = class(9, 2);
            let mut input = frame(
                10,
                &Request::EnrollStart {
                    label: label("c").unwrap(),
                    samples: 2,
                },
            );
            input.extend(frame(
                11,
                &Request::EnrollSample {
                    token: 1,
                    data: &bytes_of(&raw[..D]),
                },
            ));
            input.extend(frame(
                12,
                &Request::EnrollSample {
                    token: 1,
                    data: &bytes_of(&raw[..D - 1]),
                },
            )); // wrong length
            input.extend(frame(
                13,
                &Request::EnrollSample {
                    token: 1,
                    data: &bytes_of(&[f32::NAN; D]),
                },
            ));
            input.extend([1, 2, 3, 0]); // garbage
            input.extend(frame(
                14,
                &Request::EnrollSample {
                    token: 1,
                    data: &bytes_of(&raw[D..]),
                },
            ));
            input.extend(frame(
                15,
                &Request::EnrollSample {
                    token: 1,
                    data: &bytes_of(&raw[D..]),
                },
            ));
            input.extend(frame(16, &Request::List));
            let out = run(&mut dev, input);
            assert_eq!(out[0], (10, Response::EnrollProgress { token: 1, got: 0, of: 2 }));
            assert_eq!(out[1], (11, Response::EnrollProgress { token: 1, got: 1, of: 2 }));
            assert_eq!(
                out[2],
                (
                    12,
                    Response::Error {
                        code: ErrorCode::DimensionMismatch
                    }
                )
            );
            assert_eq!(
                out[3],
                (
                    13,
                    Response::Error {
                        code: ErrorCode::NonFinite
                    }
                )
            );
            assert!(matches!(out[4], (0, Response::Error { .. })));
            let Response::Enrolled { rank, .. } = out[5].1 else {
                panic!("{:?}", out[5])
            };
            assert!(rank >= 1 && rank as usize <= SIZES.rank);
            assert_eq!(
                out[6],
                (
                    15,
                    Response::Error {
                        code: ErrorCode::NotEnrolling
                    }
                )
            );
            let Response::Listed { labels } = &out[7].1 else { panic!() };
            assert_eq!(labels.iter().map(|l| l.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);

            // The host enrolls the same preprocessed samples, capped at the device's rank.
            let pre: Vec<f32> = raw.iter().map(|v| v * 0.5).collect();
            m.enroll_capped("c", &pre, 2, SIZES.rank).unwrap();
            let check = |dev: &mut Device<'_, MemFlash, C>, m: &Model| {
                let queries: Vec<Vec<f32>> = (0..6).map(|i| class(i % 3 + if i % 3 == 2 { 7 } else { 1 }, 1)).collect();
                let mut input = Vec::new();
                for (i, q) in queries.iter().enumerate() {
                    input.extend(frame(100 + i as u32, &Request::Classify { sample: &bytes_of(q) }));
                }
                let out = run(dev, input);
                for (i, q) in queries.iter().enumerate() {
                    let x: Vec<f32> = q.iter().map(|v| v * 0.5).collect();
                    let mut s = vec![0.0; scratch_len(m).unwrap()];
                    let mut d = vec![0.0; m.labels.len()];
                    let c = ldl_core::classify(m, &x, m.rule(), &mut s, &mut d).unwrap();
                    let Response::Classified(got) = &out[i].1 else {
                        panic!("{:?}", out[i])
                    };
                    assert_eq!(got.class as usize, c.best);
                    assert_eq!(got.label, m.labels[c.best]);
                    assert_eq!(got.unknown, c.class.is_none());
                    assert_eq!(
                        got.distances.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        d.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                    );
                }
            };
            check(&mut dev, &m);
            let out = run(
                &mut dev,
                frame(
                    1,
                    &Request::Classify {
                        sample: &bytes_of(&[1.0; D + 1]),
                    },
                ),
            );
            assert_eq!(
                out[0].1,
                Response::Error {
                    code: ErrorCode::DimensionMismatch
                }
            );

            // Duplicate, no samples, too many samples, forgetting a model class.
            let mut input = frame(
                1,
                &Request::EnrollStart {
                    label: label("a").unwrap(),
                    samples: 1,
                },
            );
            input.extend(frame(
                2,
                &Request::EnrollStart {
                    label: label("d").unwrap(),
                    samples: 0,
                },
            ));
            input.extend(frame(
                3,
                &Request::EnrollStart {
                    label: label("d").unwrap(),
                    samples: SIZES.images as u16 + 1,
                },
            ));
            input.extend(frame(
                4,
                &Request::Forget {
                    label: label("a").unwrap(),
                },
            ));
            let out = run(&mut dev, input);
            assert_eq!(
                out[0].1,
                Response::Error {
                    code: ErrorCode::DuplicateLabel
                }
            );
            assert_eq!(
                out[1].1,
                Response::Error {
                    code: ErrorCode::EmptyClass
                }
            );
            assert_eq!(
                out[2].1,
                Response::Error {
                    code: ErrorCode::BufferTooSmall
                }
            );
            assert_eq!(
                out[3].1,
                Response::Error {
                    code: ErrorCode::UnknownClass
                }
            );

            // A reboot with the same flash has "c", and answers the same.
            let flash = core::mem::replace(dev.flash(), MemFlash::new(0));
            drop(dev);
            let mut work2 = workspace();
            let mut st4 = Store::empty();
            let (mut dev2, boot) = Device::<_, C>::new(region(&words), &mut work2, &mut st4, SIZES, flash, SLOT);
            assert!(matches!(boot.store, Some(Ok(Loaded::Classes { count: 1, .. }))));
            check(&mut dev2, &m);
            let out = run(
                &mut dev2,
                frame(
                    5,
                    &Request::Forget {
                        label: label("c").unwrap(),
                    },
                ),
            );
            assert_eq!(out[0], (5, Response::Forgotten));
            assert_eq!(dev2.store().unwrap().len(), 0);
            // The button starts "btn1" with 5 samples: more than this device takes.
            assert_eq!(
                dev2.button_pressed(),
                Response::Error {
                    code: ErrorCode::BufferTooSmall
                }
            );
        }
    }

    /// An enrollment a host abandoned cannot be completed by another host's samples: they
    /// carry the wrong token and are refused; `Info` shows the enrollment in progress and
    /// `EnrollAbort` drops it; a new `EnrollStart` gets a new token.
    #[test]
    fn an_abandoned_enrollment_is_not_completed_by_stray_samples() {
        let (_, words) = model(0, 1);
        let mut work = workspace();
        let mut st = Store::empty();
        let (mut dev, _) = Device::<_, C>::new(region(&words), &mut work, &mut st, SIZES, MemFlash::new(2 * SLOT as usize), SLOT);
        let sample = |id: u32, token: u16, seed: u64| {
            frame(
                id,
                &Request::EnrollSample {
                    token,
                    data: &bytes_of(&class(seed, 1)),
                },
            )
        };
        // Host A starts "9" with 3 samples, sends one, and goes away.
        let mut input = frame(
            1,
            &Request::EnrollStart {
                label: label("9").unwrap(),
                samples: 3,
            },
        );
        input.extend(sample(2, 1, 9));
        let out = run(&mut dev, input);
        assert_eq!(out[0].1, Response::EnrollProgress { token: 1, got: 0, of: 3 });
        assert_eq!(out[1].1, Response::EnrollProgress { token: 1, got: 1, of: 3 });
        // Host B sends two samples of its own (no EnrollStart, any token but A's).
        let mut input = sample(3, 0, 4);
        input.extend(sample(4, 2, 4));
        input.extend(frame(5, &Request::Info));
        let out = run(&mut dev, input);
        for r in &out[..2] {
            assert_eq!(
                r.1,
                Response::Error {
                    code: ErrorCode::WrongEnrollment
                }
            );
        }
        let Response::Info(info) = &out[2].1 else { panic!("{out:?}") };
        assert_eq!(
            info.enrolling,
            Some(protocol::Enrolling {
                label: label("9").unwrap(),
                got: 1,
                of: 3
            })
        );
        assert_eq!(info.enrolled, 0);
        // B drops it; A's late sample finds no enrollment; a second abort has nothing to drop.
        let mut input = frame(6, &Request::EnrollAbort);
        input.extend(sample(7, 1, 9));
        input.extend(frame(8, &Request::EnrollAbort));
        input.extend(frame(9, &Request::Info));
        let out = run(&mut dev, input);
        assert_eq!(
            out[0].1,
            Response::EnrollAborted {
                label: label("9").unwrap()
            }
        );
        let not_enrolling = Response::Error {
            code: ErrorCode::NotEnrolling,
        };
        assert_eq!(out[1].1, not_enrolling);
        assert_eq!(out[2].1, not_enrolling);
        let Response::Info(info) = &out[3].1 else { panic!("{out:?}") };
        assert_eq!(info.enrolling, None);
        // A new enrollment gets a new token; the old one's samples are refused.
        let mut input = frame(
            10,
            &Request::EnrollStart {
                label: label("4").unwrap(),
                samples: 1,
            },
        );
        input.extend(sample(11, 1, 9));
        input.extend(sample(12, 2, 4));
        let out = run(&mut dev, input);
        assert_eq!(out[0].1, Response::EnrollProgress { token: 2, got: 0, of: 1 });
        assert_eq!(
            out[1].1,
            Response::Error {
                code: ErrorCode::WrongEnrollment
            }
        );
        assert!(
            matches!(&out[2].1, Response::Enrolled { label: l, .. } if l.as_str() == "4"),
            "{out:?}"
        );
        assert_eq!(dev.store().unwrap().len(), 1);
    }

    /// Samples whose fit overflows (3e38 in every input, with a linear target) are refused
    /// with `NON_FINITE`: nothing is stored, the earlier class stays, classification goes
    /// on, and a reboot loads every class (the store never holds a record it would refuse).
    /// A model asking for larger shifts than the board's is refused at `EnrollStart`.
    #[test]
    fn an_enrollment_that_overflows_is_refused_and_keeps_every_class() {
        let (_, words) = model(4, 1);
        let mut work = workspace();
        let mut st = Store::empty();
        let (mut dev, _) = Device::<_, C>::new(region(&words), &mut work, &mut st, SIZES, MemFlash::new(2 * SLOT as usize), SLOT);
        let enroll = |dev: &mut Device<'_, MemFlash, C>, name: &str, token: u16, rows: &[Vec<f32>]| {
            let mut input = frame(
                1,
                &Request::EnrollStart {
                    label: label(name).unwrap(),
                    samples: rows.len() as u16,
                },
            );
            for r in rows {
                input.extend(frame(2, &Request::EnrollSample { token, data: &bytes_of(r) }));
            }
            run(dev, input).pop().unwrap().1
        };
        assert!(matches!(enroll(&mut dev, "c", 1, &[class(9, 1)]), Response::Enrolled { .. }));
        let huge = vec![vec![3e38f32; D]; 2];
        assert_eq!(
            enroll(&mut dev, "h", 2, &huge),
            Response::Error {
                code: ErrorCode::NonFinite
            }
        );
        assert_eq!(dev.store().unwrap().len(), 1);
        let out = run(
            &mut dev,
            frame(
                3,
                &Request::Classify {
                    sample: &bytes_of(&class(1, 1)),
                },
            ),
        );
        assert!(matches!(&out[0].1, Response::Classified(c) if c.label.as_str() == "a"), "{out:?}");
        let flash = core::mem::replace(dev.flash(), MemFlash::new(0));
        drop(dev);
        let mut work2 = workspace();
        let mut st2 = Store::empty();
        let (_, boot) = Device::<_, C>::new(region(&words), &mut work2, &mut st2, SIZES, flash, SLOT);
        assert!(matches!(boot.store, Some(Ok(Loaded::Classes { count: 1, .. }))), "{boot:?}");

        // Shift 128 (a model file may say so): refused before any size is computed from it.
        let (mut m, _) = model(0, 1);
        m.preprocess.shift = 128;
        let bytes = ldl_core::format::encode(&m).unwrap();
        let mut big = vec![0xFFFF_FFFFu32; bytes.len() / 4 + 64];
        bytemuck::cast_slice_mut::<u32, u8>(&mut big)[..bytes.len()].copy_from_slice(&bytes);
        let mut work3 = workspace();
        let mut st3 = Store::empty();
        let (mut dev3, _) = Device::<_, C>::new(region(&big), &mut work3, &mut st3, SIZES, MemFlash::new(2 * SLOT as usize), SLOT);
        assert_eq!(
            enroll(&mut dev3, "s", 1, &[class(9, 1)]),
            Response::Error {
                code: ErrorCode::NotEnrolling
            }
        );
        let out = run(
            &mut dev3,
            frame(
                4,
                &Request::EnrollStart {
                    label: label("s").unwrap(),
                    samples: SIZES.images as u16,
                },
            ),
        );
        assert_eq!(
            out[0].1,
            Response::Error {
                code: ErrorCode::BufferTooSmall
            }
        );
    }

    /// A full store refuses at EnrollStart (before any image is sent) and keeps answering.
    #[test]
    fn a_full_store_refuses_at_the_start() {
        let (_, words) = model(0, 1);
        let mut work = workspace();
        let mut st5 = Store::empty();
        let (mut dev, _) = Device::<_, C>::new(region(&words), &mut work, &mut st5, SIZES, MemFlash::new(2 * SLOT as usize), SLOT);
        for (i, name) in ["p", "q", "r"].iter().enumerate() {
            let raw = class(20 + i as u64, 1);
            let mut input = frame(
                1,
                &Request::EnrollStart {
                    label: label(name).unwrap(),
                    samples: 1,
                },
            );
            input.extend(frame(
                2,
                &Request::EnrollSample {
                    token: i as u16 + 1,
                    data: &bytes_of(&raw),
                },
            ));
            let out = run(&mut dev, input);
            assert!(matches!(out[1].1, Response::Enrolled { .. }), "{out:?}");
        }
        let out = run(
            &mut dev,
            frame(
                3,
                &Request::EnrollStart {
                    label: label("s").unwrap(),
                    samples: 1,
                },
            ),
        );
        assert_eq!(
            out[0].1,
            Response::Error {
                code: ErrorCode::CapacityFull
            }
        );
        let out = run(
            &mut dev,
            frame(
                4,
                &Request::EnrollSample {
                    token: 3,
                    data: &bytes_of(&class(5, 1)),
                },
            ),
        );
        assert_eq!(
            out[0].1,
            Response::Error {
                code: ErrorCode::NotEnrolling
            }
        );
        let out = run(
            &mut dev,
            frame(
                5,
                &Request::Classify {
                    sample: &bytes_of(&class(5, 1)),
                },
            ),
        );
        assert!(matches!(out[0].1, Response::Classified(_)));
    }
}
