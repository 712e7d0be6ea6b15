//! The device: the model read in place, the enrolled classes (in RAM and in flash), and the
//! serial protocol loop (`ldl_core::protocol`). Board-independent and logging-free: generic
//! over `embedded-io` (serial), `embedded-hal` (button) and `embedded-storage` (flash), so it
//! runs unchanged in host unit tests.

use embedded_hal::digital::InputPin;
use embedded_io::{Read, ReadReady, Write};
use embedded_storage::nor_flash::NorFlash;
use ldl_core::augment;
use ldl_core::classify::{classify, scratch_len, Classes};
use ldl_core::enroll::{Enrolled, Joined};
use ldl_core::format::{ModelView, MAX_CLASSES};
use ldl_core::model::Label;
use ldl_core::protocol::{self, Classified, ErrorCode, FrameReader, Info, ModelStatus, Push, Request, Response};
use ldl_core::subspace::fit_scratch_len;
use ldl_core::Error;

use crate::app::{model_state, ModelState};
use crate::persist::{Loaded, Slots, StoreError};

/// Samples a button press enrolls (sent as `EnrollSample` frames afterwards).
pub const BUTTON_SAMPLES: u16 = 5;

/// f32s of the workspace for `rows` enrollment rows of `d` values: the rows, then a scratch
/// area for the fit (up to `k_max` target outputs) or for one classification.
pub const fn work_len(d: usize, rows: usize, k_max: usize) -> usize {
    let fit = fit_scratch_len(rows, d, k_max);
    // Classification: x (d) + Q(x) (k <= k_max) + a subspace's scratch (d + rank <= 2d).
    let cls = d + k_max + 2 * d;
    d * rows + if fit > cls { fit } else { cls }
}

/// Validates the MODEL region: no model (erased), a valid one, or why it is refused.
pub fn check_model<const D: usize>(region: &[u8]) -> Result<ModelView<'_>, ModelStatus> {
    if model_state(region) == ModelState::Erased {
        return Err(ModelStatus::Absent);
    }
    let invalid = |e: Error| ModelStatus::Invalid { code: e.into() };
    // The file's length is in its prefix; the region is larger.
    let len = model_file_len(region).ok_or(invalid(Error::Truncated))?;
    let view = ModelView::parse(region.get(..len).ok_or(invalid(Error::Truncated))?).map_err(invalid)?;
    if view.inputs() != D {
        return Err(invalid(Error::DimensionMismatch {
            expected: D as u32,
            found: view.inputs() as u32,
        }));
    }
    Ok(view)
}

/// Length of the model file at the start of `region`, from its fixed prefix.
fn model_file_len(region: &[u8]) -> Option<usize> {
    let word = |i: usize| -> Option<usize> {
        let mut a = [0u8; 4];
        a.copy_from_slice(region.get(i..i + 4)?);
        Some(u32::from_le_bytes(a) as usize)
    };
    let (h, w) = (word(8)?, word(12)?);
    let start = ldl_core::format::HEADER_OFFSET.checked_add(h)?.div_ceil(16).checked_mul(16)?;
    start.checked_add(w)?.checked_add(ldl_core::format::CRC_LEN)
}

struct Enrolling {
    label: Label,
    of: u16,
    got: u16,
    per: usize,
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
    /// The store (`None`: no model, so no store was read).
    pub store: Option<Result<Loaded, StoreError>>,
}

/// The device state. `D` inputs; the enrolled classes `Enrolled<D, K, R, C>`.
pub struct Device<'a, F, const D: usize, const K: usize, const R: usize, const C: usize> {
    model: Result<ModelView<'a>, ModelStatus>,
    enrolled: &'a mut Enrolled<D, K, R, C>,
    work: &'a mut [f32],
    rows: usize,
    enrolling: Option<Enrolling>,
    flash: F,
    slots: Option<Slots>,
    button_down: bool,
}

impl<'a, F: NorFlash, const D: usize, const K: usize, const R: usize, const C: usize> Device<'a, F, D, K, R, C> {
    /// Boots: validates the model in `model_region` (in place), and with a valid model loads
    /// the enrolled classes from `flash` (two slots of `slot_size` bytes). `work` holds
    /// `rows` enrollment rows and the scratch area (see [`work_len`]).
    // Not inlined: inlined into `main`, the model check's and the store load's temporaries
    // would stay in `main`'s frame, under every request the serial loop answers.
    #[inline(never)]
    pub fn new(
        model_region: &'a [u8],
        enrolled: &'a mut Enrolled<D, K, R, C>,
        work: &'a mut [f32],
        rows: usize,
        mut flash: F,
        slot_size: u32,
    ) -> (Self, Boot) {
        enrolled.clear();
        let mut model = check_model::<D>(model_region);
        if let Ok(v) = &model {
            // Its classification must fit the scratch area.
            let need = scratch_len(v).map(|n| n + D);
            let have = work.len().saturating_sub(D * rows);
            if need.map_or(true, |n| n > have) {
                model = Err(ModelStatus::Invalid {
                    code: ErrorCode::BUFFER_TOO_SMALL,
                });
            }
        }
        let mut slots = None;
        let mut store = None;
        if let Ok(v) = &model {
            let crc = v.crc();
            let r = Slots::new(&flash, slot_size).and_then(|mut s| {
                let l = s.load(&mut flash, enrolled, crc);
                slots = Some(s);
                l
            });
            store = Some(r);
        }
        let status = match &model {
            Ok(v) => ModelStatus::Valid { crc: v.crc() },
            Err(s) => *s,
        };
        let dev = Device {
            model,
            enrolled,
            work,
            rows,
            enrolling: None,
            flash,
            slots,
            button_down: false,
        };
        (dev, Boot { model: status, store })
    }

    /// The enrolled classes.
    pub fn enrolled(&self) -> &Enrolled<D, K, R, C> {
        self.enrolled
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
            for l in v.labels().chain(self.enrolled.labels().iter().cloned()) {
                if out.push(l).is_err() {
                    break;
                }
            }
        }
    }

    fn augment_factor(&self, v: &ModelView<'_>) -> usize {
        let p = v.preprocess();
        match p.image {
            Some(_) if p.shift > 0 => augment::shift_count(p.shift),
            _ => 1,
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
        let (inputs, outputs, per) = match &self.model {
            Ok(v) => (v.inputs() as u32, v.outputs() as u32, self.augment_factor(v)),
            Err(_) => (0, 0, 1),
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
            enrolled: self.enrolled.len() as u16,
            max_rank: R as u16,
            max_samples: (self.rows / per).min(u16::MAX as usize) as u16,
            labels: heapless::Vec::new(),
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
            Request::EnrollStart { label, samples } => match self.enroll_start(label, samples) {
                Ok(of) => Response::EnrollProgress { got: 0, of },
                Err(code) => Response::Error { code },
            },
            Request::EnrollSample { data } => self.enroll_sample(data),
            Request::Forget { label } => match self.forget(&label) {
                Ok(()) => Response::Forgotten,
                Err(code) => Response::Error { code },
            },
        }
    }

    fn view(&self) -> Result<&ModelView<'a>, ErrorCode> {
        self.model.as_ref().map_err(|_| ErrorCode::NO_MODEL)
    }

    #[inline(never)]
    fn classify(&mut self, sample: &[u8]) -> Response {
        let mut distances = heapless::Vec::new();
        match self.classify_into(sample, &mut distances) {
            Ok((class, label, novelty, unknown)) => Response::Classified(Classified {
                class,
                label,
                distances,
                novelty,
                unknown,
            }),
            Err(code) => Response::Error { code },
        }
    }

    /// Classifies `sample`: the distances into `distances`, and the class, its label, the
    /// novelty score and whether the sample is unknown.
    fn classify_into(
        &mut self,
        sample: &[u8],
        distances: &mut heapless::Vec<f32, MAX_CLASSES>,
    ) -> Result<(u16, Label, f32, bool), ErrorCode> {
        let view = self.model.as_ref().map_err(|_| ErrorCode::NO_MODEL)?;
        let (_, scratch) = self.work.split_at_mut((D * self.rows).min(self.work.len()));
        let (x, rest) = scratch.split_at_mut(D.min(scratch.len()));
        protocol::read_sample(sample, x)?;
        view.preprocess().apply(x)?;
        let joined = Joined {
            base: view,
            extra: &*self.enrolled,
        };
        let n = joined.len();
        distances.resize(n, 0.0).map_err(|_| ErrorCode::CAPACITY_FULL)?;
        let c = classify(&joined, x, view.threshold(), rest, distances)?;
        let nb = view.len();
        let label = if c.best < nb {
            view.label(c.best)
        } else {
            self.enrolled.labels().get(c.best - nb).cloned()
        }
        .ok_or(ErrorCode::UNKNOWN_CLASS)?;
        Ok((c.best as u16, label, c.novelty, c.class.is_none()))
    }

    /// Starts an enrollment; the number of samples it takes.
    #[inline(never)]
    fn enroll_start(&mut self, name: Label, samples: u16) -> Result<u16, ErrorCode> {
        self.enrolling = None;
        let view = self.view()?;
        if view.members() != 1 {
            return Err(ErrorCode::UNSUPPORTED);
        }
        if samples == 0 {
            return Err(ErrorCode::EMPTY_CLASS);
        }
        if view.class_index(&name).is_some() || self.enrolled.index_of(&name).is_some() {
            return Err(ErrorCode::DUPLICATE_LABEL);
        }
        if self.enrolled.len() >= C || view.len() + self.enrolled.len() >= MAX_CLASSES {
            return Err(ErrorCode::CAPACITY_FULL);
        }
        let per = self.augment_factor(view);
        if let (Some(img), true) = (view.preprocess().image, per > 1) {
            if img.width as usize * img.height as usize != D {
                return Err(ErrorCode::INVALID_PARAMETER);
            }
        }
        if samples as usize * per > self.rows {
            return Err(ErrorCode::BUFFER_TOO_SMALL);
        }
        self.enrolling = Some(Enrolling {
            label: name,
            of: samples,
            got: 0,
            per,
        });
        Ok(samples)
    }

    #[inline(never)]
    fn enroll_sample(&mut self, data: &[u8]) -> Response {
        match self.enroll_step(data) {
            Ok(Step::Progress { got, of }) => Response::EnrollProgress { got, of },
            Ok(Step::Enrolled { label, rank }) => Response::Enrolled { label, rank },
            Err(code) => Response::Error { code },
        }
    }

    /// Takes one enrollment sample; with the last one, fits and saves the class.
    fn enroll_step(&mut self, data: &[u8]) -> Result<Step, ErrorCode> {
        let view = self.model.as_ref().map_err(|_| ErrorCode::NO_MODEL)?;
        let en = self.enrolling.as_mut().ok_or(ErrorCode::NOT_ENROLLING)?;
        let (rows, scratch) = self.work.split_at_mut((D * self.rows).min(self.work.len()));
        let x = scratch.get_mut(..D).ok_or(ErrorCode::BUFFER_TOO_SMALL)?;
        protocol::read_sample(data, x)?;
        view.preprocess().apply(x)?;
        let at = en.got as usize * en.per * D;
        let dst = rows.get_mut(at..at + en.per * D).ok_or(ErrorCode::BUFFER_TOO_SMALL)?;
        match (view.preprocess().image, en.per > 1) {
            (Some(img), true) => {
                augment::shifts(x, img.width as usize, img.height as usize, view.preprocess().shift, dst)?;
            }
            _ => dst.copy_from_slice(x),
        }
        en.got += 1;
        if en.got < en.of {
            return Ok(Step::Progress { got: en.got, of: en.of });
        }
        let Some(en) = self.enrolling.take() else {
            return Err(ErrorCode::NOT_ENROLLING);
        };
        let m = en.of as usize * en.per;
        let target = view.target(0)?;
        let need = fit_scratch_len(m, D, target.outputs());
        let (rows, scratch) = self.work.split_at_mut((D * self.rows).min(self.work.len()));
        let samples = rows.get_mut(..m * D).ok_or(ErrorCode::BUFFER_TOO_SMALL)?;
        let scratch = scratch.get_mut(..need).ok_or(ErrorCode::BUFFER_TOO_SMALL)?;
        let rank = self.enrolled.enroll(&en.label, &target, samples, m, &view.fit(), scratch)?;
        self.save()?;
        Ok(Step::Enrolled {
            label: en.label,
            rank: rank as u16,
        })
    }

    #[inline(never)]
    fn forget(&mut self, name: &str) -> Result<(), ErrorCode> {
        self.view()?;
        self.enrolled.forget(name)?;
        self.save()
    }

    fn save(&mut self) -> Result<(), ErrorCode> {
        let crc = self.view()?.crc();
        let slots = self.slots.as_mut().ok_or(ErrorCode::STORAGE)?;
        slots.save(&mut self.flash, self.enrolled, crc).map_err(|_| ErrorCode::STORAGE)?;
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
            let taken = self.enrolled.index_of(&s).is_some() || self.model.as_ref().is_ok_and(|v| v.class_index(&s).is_some());
            if !taken {
                name = Some(s);
                break;
            }
        }
        match name {
            Some(l) => match self.enroll_start(l, BUTTON_SAMPLES) {
                Ok(of) => Response::EnrollProgress { got: 0, of },
                Err(code) => Response::Error { code },
            },
            None => Response::Error {
                code: ErrorCode::CAPACITY_FULL,
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
                    Push::Overflow => send_error(serial, tx, 0, ErrorCode::FRAME_TOO_LONG)?,
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
    use crate::persist::tests::CutFlash;
    use core::convert::Infallible;
    use ldl_core::methods::{fit_closed_form, ClosedFormConfig};
    use ldl_core::model::label;
    use ldl_core::model::{ImageSpec, Model};
    use ldl_core::protocol::{decode, encode, MAX_FRAME_LEN};
    use ldl_core::subspace::FitOptions;

    const D: usize = 16;
    type E = Enrolled<D, 4, 8, 3>;
    const ROWS: usize = 20;
    const SLOT: u32 = 8 * 256;

    /// Serial mock: reads come from `input` in chunks, writes go to `output`.
    struct Duplex {
        input: Vec<u8>,
        pos: usize,
        output: Vec<u8>,
    }
    impl embedded_io::ErrorType for Duplex {
        type Error = Infallible;
    }
    impl Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
            let n = (self.input.len() - self.pos).min(buf.len()).min(7);
            buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }
    impl ReadReady for Duplex {
        fn read_ready(&mut self) -> Result<bool, Infallible> {
            Ok(true)
        }
    }
    impl Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), Infallible> {
            Ok(())
        }
    }
    struct Pin(bool);
    impl embedded_hal::digital::ErrorType for Pin {
        type Error = Infallible;
    }
    impl InputPin for Pin {
        fn is_high(&mut self) -> Result<bool, Infallible> {
            Ok(!self.0)
        }
        fn is_low(&mut self) -> Result<bool, Infallible> {
            Ok(self.0)
        }
    }

    fn class(seed: u64, m: usize) -> Vec<f32> {
        let mut rng = ldl_core::Rng::new(seed);
        let c: Vec<f32> = (0..D).map(|_| 3.0 * rng.normal()).collect();
        (0..m * D).map(|i| c[i % D] + 0.2 * rng.normal()).collect()
    }

    fn model(k: usize, shift: u8) -> (Model, Vec<u32>) {
        let (a, b) = (class(1, 4), class(2, 4));
        let cfg = ClosedFormConfig {
            k,
            fit: FitOptions {
                ridge: 0.5,
                max_rank: 8,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut m = fit_closed_form(&[&a, &b], D, &["a", "b"], &cfg, 3).unwrap();
        m.capacity = 5;
        m.threshold = Some(50.0);
        m.preprocess.scale = 0.5;
        if shift > 0 {
            m.preprocess.image = Some(ImageSpec {
                width: 4,
                height: 4,
                source_width: 0,
                source_height: 0,
            });
            m.preprocess.shift = shift;
        }
        let bytes = ldl_core::format::encode(&m).unwrap();
        // Aligned, as in flash, and followed by erased bytes as in the region.
        let mut words = vec![0xFFFF_FFFFu32; bytes.len() / 4 + 64];
        bytemuck_copy(&mut words, &bytes);
        (m, words)
    }

    fn bytemuck_copy(words: &mut [u32], bytes: &[u8]) {
        for (i, c) in bytes.chunks(4).enumerate() {
            let mut a = [0xFFu8; 4];
            a[..c.len()].copy_from_slice(c);
            words[i] = u32::from_le_bytes(a);
        }
    }

    fn region(words: &[u32]) -> &[u8] {
        // SAFETY-free view: u32 -> bytes through a copy would lose alignment, so reinterpret.
        let ptr = words.as_ptr().cast::<u8>();
        #[allow(unsafe_code)]
        // SAFETY: a u32 slice is readable as 4x as many bytes, alignment 1 <= 4.
        unsafe {
            core::slice::from_raw_parts(ptr, words.len() * 4)
        }
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

    struct Rig {
        enrolled: Box<E>,
        work: Vec<f32>,
    }
    fn rig() -> Rig {
        Rig {
            enrolled: Box::new(E::new()),
            work: vec![0.0; work_len(D, ROWS, D.max(4))],
        }
    }

    fn run<F: NorFlash>(dev: &mut Device<'_, F, D, 4, 8, 3>, input: Vec<u8>) -> Vec<(u32, Response)> {
        let mut s = Duplex {
            input,
            pos: 0,
            output: Vec::new(),
        };
        let mut rx: FrameReader<MAX_FRAME_LEN> = FrameReader::new();
        let mut tx = vec![0u8; 2048];
        dev.serve(&mut s, &mut Pin(false), &mut rx, &mut tx).unwrap();
        replies(&s.output)
    }

    #[test]
    fn no_model_answers_info_and_refuses_the_rest() {
        for region_bytes in [vec![0xFFu8; 256], b"LDLM garbage that is no model at all".to_vec()] {
            let mut r = rig();
            let words: Vec<u32> = region_bytes
                .chunks(4)
                .map(|c| {
                    let mut a = [0u8; 4];
                    a[..c.len()].copy_from_slice(c);
                    u32::from_le_bytes(a)
                })
                .collect();
            let (mut dev, boot) = Device::new(
                region(&words),
                &mut r.enrolled,
                &mut r.work,
                ROWS,
                CutFlash::new(2 * SLOT as usize),
                SLOT,
            );
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
            assert_eq!(out[1], (2, Response::Error { code: ErrorCode::NO_MODEL }));
            assert_eq!(out[2], (3, Response::Error { code: ErrorCode::NO_MODEL }));
        }
    }

    #[test]
    fn classify_enroll_list_forget_and_persist() {
        for (k, shift) in [(4usize, 0u8), (0, 0), (0, 1)] {
            let (mut m, words) = model(k, shift);
            let mut r = rig();
            let mut flash = CutFlash::new(2 * SLOT as usize);
            let (dev, boot) = Device::new(region(&words), &mut r.enrolled, &mut r.work, ROWS, CutFlash::new(0), SLOT);
            assert!(matches!(boot.model, ModelStatus::Valid { .. }));
            assert!(boot.store.unwrap().is_err(), "no room for slots in an empty flash");
            drop(dev);
            let (mut dev, boot) = Device::new(
                region(&words),
                &mut r.enrolled,
                &mut r.work,
                ROWS,
                core::mem::replace(&mut flash, CutFlash::new(0)),
                SLOT,
            );
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
                    data: &bytes_of(&raw[..D]),
                },
            ));
            input.extend(frame(
                12,
                &Request::EnrollSample {
                    data: &bytes_of(&raw[..D - 1]),
                },
            )); // wrong length
            input.extend(frame(
                13,
                &Request::EnrollSample {
                    data: &bytes_of(&[f32::NAN; D]),
                },
            ));
            input.extend([1, 2, 3, 0]); // garbage
            input.extend(frame(
                14,
                &Request::EnrollSample {
                    data: &bytes_of(&raw[D..]),
                },
            ));
            input.extend(frame(
                15,
                &Request::EnrollSample {
                    data: &bytes_of(&raw[D..]),
                },
            ));
            input.extend(frame(16, &Request::List));
            let out = run(&mut dev, input);
            assert_eq!(out[0], (10, Response::EnrollProgress { got: 0, of: 2 }));
            assert_eq!(out[1], (11, Response::EnrollProgress { got: 1, of: 2 }));
            assert_eq!(
                out[2],
                (
                    12,
                    Response::Error {
                        code: ErrorCode::DIMENSION_MISMATCH
                    }
                )
            );
            assert_eq!(
                out[3],
                (
                    13,
                    Response::Error {
                        code: ErrorCode::NON_FINITE
                    }
                )
            );
            assert!(matches!(out[4], (0, Response::Error { .. })));
            assert!(
                matches!(&out[5], (14, Response::Enrolled { rank, .. }) if *rank >= 1),
                "{:?}",
                out[5]
            );
            assert_eq!(
                out[6],
                (
                    15,
                    Response::Error {
                        code: ErrorCode::NOT_ENROLLING
                    }
                )
            );
            let Response::Listed { labels } = &out[7].1 else { panic!() };
            assert_eq!(labels.iter().map(|l| l.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);

            // The host enrolls the same (preprocessed, augmented) samples.
            let mut pre: Vec<f32> = raw.iter().map(|v| v * 0.5).collect();
            if shift > 0 {
                let per = augment::shift_count(shift);
                let mut aug = vec![0.0; 2 * per * D];
                for i in 0..2 {
                    augment::shifts(&pre[i * D..(i + 1) * D], 4, 4, shift, &mut aug[i * per * D..(i + 1) * per * D]).unwrap();
                }
                pre = aug;
            }
            m.enroll("c", &pre, pre.len() / D).unwrap();

            // Classification equals the host's, bit for bit.
            let mut input = Vec::new();
            let queries: Vec<Vec<f32>> = (0..6).map(|i| class(i % 3 + if i % 3 == 2 { 7 } else { 1 }, 1)).collect();
            for (i, q) in queries.iter().enumerate() {
                input.extend(frame(100 + i as u32, &Request::Classify { sample: &bytes_of(q) }));
            }
            let out = run(&mut dev, input);
            for (i, q) in queries.iter().enumerate() {
                let x: Vec<f32> = q.iter().map(|v| v * 0.5).collect();
                let mut s = vec![0.0; scratch_len(&m).unwrap()];
                let mut d = vec![0.0; 3];
                let c = classify(&m, &x, m.threshold, &mut s, &mut d).unwrap();
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
                    code: ErrorCode::DIMENSION_MISMATCH
                }
            );

            // Duplicate, capacity, forget.
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
                    samples: 200,
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
                    code: ErrorCode::DUPLICATE_LABEL
                }
            );
            assert_eq!(
                out[1].1,
                Response::Error {
                    code: ErrorCode::EMPTY_CLASS
                }
            );
            assert_eq!(
                out[2].1,
                Response::Error {
                    code: ErrorCode::BUFFER_TOO_SMALL
                }
            );
            assert_eq!(
                out[3].1,
                Response::Error {
                    code: ErrorCode::UNKNOWN_CLASS
                }
            );

            // A reboot with the same flash has "c", bit for bit.
            let before = dev.enrolled().clone();
            let flash = core::mem::replace(dev.flash(), CutFlash::new(0));
            drop(dev);
            let mut r2 = rig();
            let (mut dev2, boot) = Device::new(region(&words), &mut r2.enrolled, &mut r2.work, ROWS, flash, SLOT);
            assert!(matches!(boot.store, Some(Ok(Loaded::Classes { count: 1, .. }))));
            assert_eq!(dev2.enrolled().labels(), before.labels());
            assert_eq!(dev2.enrolled().predictor(0).unwrap(), before.predictor(0).unwrap());
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
            // The button starts "btn1".
            let r = dev2.button_pressed();
            if shift == 0 {
                assert_eq!(
                    r,
                    Response::EnrollProgress {
                        got: 0,
                        of: BUTTON_SAMPLES
                    }
                );
            } else {
                // 5 samples x 9 shifts do not fit 20 rows.
                assert_eq!(
                    r,
                    Response::Error {
                        code: ErrorCode::BUFFER_TOO_SMALL
                    }
                );
            }
        }
    }
}
