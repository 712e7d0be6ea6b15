//! The host side of the serial protocol (`core/PROTOCOL.md`): a client that talks to an LDL
//! device over any byte stream (a TCP port to QEMU, a serial port), encoding requests and
//! decoding replies with `ldl_core::protocol`, the same code the firmware runs.
//!
//! * Every request carries a fresh id (1, 2, ...; 0 is never used, the device keeps it for
//!   unsolicited replies and for frames whose id it could not read); replies with another id
//!   are skipped (stale replies, button events), except an `Error` with id 0, which is the
//!   device saying it could not read our frame.
//! * Every wait is bounded: the transport must return from `read` now and then (a TCP
//!   stream with a read timeout, see [`DeviceClient::connect_tcp`]; `WouldBlock` and
//!   `TimedOut` count as "nothing yet"), and a reply that does not come within the client's
//!   timeout is [`DeviceError::NoAnswer`].
//! * Errors are typed: no answer, garbage on the line, a protocol version mismatch, an error
//!   code sent by the device, a valid reply of the wrong kind, and I/O errors.

use ldl_core::protocol::{self, Classified, ErrorCode, FrameError, Info, Request, Response, DELIMITER, MAX_FRAME_LEN, VERSION};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

pub mod cli;
pub mod qemu;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The transport failed (connection refused or closed, ...).
    #[error("device I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended (the device or QEMU went away).
    #[error("the device closed the connection")]
    Closed,
    /// Nothing (or no complete reply) came within the timeout.
    #[error("no answer from the device within {0:?}")]
    NoAnswer(Duration),
    /// Bytes came that are not a valid reply frame.
    #[error("garbage from the device: {0}")]
    Garbage(String),
    /// The device speaks another protocol version.
    #[error("protocol version mismatch: the device speaks v{device}, this host v{host}")]
    VersionMismatch {
        /// The device's version.
        device: u8,
        /// Ours ([`VERSION`]).
        host: u8,
    },
    /// The device answered with an error code (`core/PROTOCOL.md` §4).
    #[error("the device refused: {} (code {})", .0.describe(), u8::from(*.0))]
    Device(ErrorCode),
    /// A valid reply, but not the one this request expects.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// The request could not be encoded (e.g. a sample longer than a frame holds).
    #[error("request not encodable: {0:?}")]
    Encode(FrameError),
    /// A bad argument (label too long, no samples).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The serial port could not be opened or set up.
    #[error("serial port {port}: {why}")]
    Port {
        /// The port's path.
        port: String,
        /// What went wrong.
        why: String,
    },
}

/// Bytes as hex, for messages about what came on the line.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// The answer to a classification.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Index of the closest class (the model's classes, then the enrolled ones).
    pub index: usize,
    /// Its label.
    pub label: String,
    /// Every class's distance, in class order.
    pub distances: Vec<f32>,
    /// The model's novelty score of the sample (for `best`, the closest class's distance).
    pub novelty: f32,
    /// Which score `novelty` is (the model file's).
    pub score: ldl_core::novelty::Score,
    /// The novelty is above the model's threshold (or every class is at the same distance).
    pub unknown: bool,
}

impl From<Classified> for Classification {
    fn from(c: Classified) -> Self {
        Classification {
            index: c.class as usize,
            label: c.label.as_str().to_string(),
            distances: c.distances.iter().copied().collect(),
            novelty: c.novelty,
            score: c.score,
            unknown: c.unknown,
        }
    }
}

/// A client of one device over the byte stream `T`.
pub struct DeviceClient<T: Read + Write> {
    io: T,
    next_id: u32,
    /// Bytes read after the last complete frame.
    pending: Vec<u8>,
    timeout: Duration,
    slow_timeout: Duration,
}

/// How long a TCP read waits before the client checks its deadline again.
const POLL: Duration = Duration::from_millis(50);

/// Any byte stream a device can be reached through (a serial port, a TCP socket).
pub trait Transport: Read + Write + Send {}
impl<T: Read + Write + Send> Transport for T {}

/// A client over whichever link [`connect`] opened.
pub type AnyClient = DeviceClient<Box<dyn Transport>>;

/// Opens a link to a device and checks its protocol version with an `Info` request.
///
/// `port` is a serial port (`/dev/ttyACM0`, `COM3`) opened at `baud` 8N1, or `tcp:HOST:PORT`
/// for a UART exposed on TCP (QEMU's `-serial tcp:...`). `timeout` bounds every reply (20
/// times as long for enrollment fits and flash writes).
pub fn connect(port: &str, baud: u32, timeout: Duration) -> Result<AnyClient, DeviceError> {
    let io: Box<dyn Transport> = if let Some(addr) = port.strip_prefix("tcp:") {
        Box::new(open_tcp(addr, timeout)?)
    } else {
        let fail = |e: serialport::Error| DeviceError::Port {
            port: port.to_string(),
            why: e.to_string(),
        };
        let sp = serialport::new(port, baud).timeout(POLL).open().map_err(fail)?;
        // Bytes the device sent before we listened (boot, an earlier session) are stale.
        sp.clear(serialport::ClearBuffer::All).map_err(fail)?;
        Box::new(sp)
    };
    let mut c = DeviceClient::new(io, timeout);
    c.resync()?;
    c.info()?; // checks the version
    Ok(c)
}

/// Connects over TCP, retrying until `timeout` (QEMU may not listen yet).
fn open_tcp(addr: impl ToSocketAddrs, timeout: Duration) -> Result<TcpStream, DeviceError> {
    let addrs: Vec<_> = addr.to_socket_addrs()?.collect();
    let deadline = Instant::now() + timeout;
    let stream = 'connect: loop {
        let mut last = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, Duration::from_millis(200)) {
                Ok(s) => break 'connect s,
                Err(e) => last = Some(e),
            }
        }
        if Instant::now() >= deadline {
            return Err(match last {
                Some(e) => DeviceError::Io(e),
                None => DeviceError::NoAnswer(timeout),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stream.set_read_timeout(Some(POLL))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl DeviceClient<TcpStream> {
    /// Connects over TCP (e.g. QEMU's `-serial tcp:127.0.0.1:PORT,server,nowait`), retrying
    /// until `timeout` (QEMU may not listen yet), then checks the device's protocol version
    /// with an `Info` request.
    pub fn connect_tcp(addr: impl ToSocketAddrs, timeout: Duration) -> Result<Self, DeviceError> {
        let stream = open_tcp(addr, timeout)?;
        let mut c = DeviceClient::new(stream, timeout);
        c.resync()?;
        c.info()?; // checks the version
        Ok(c)
    }
}

impl<T: Read + Write> DeviceClient<T> {
    /// A client over `io`, waiting at most `timeout` for each reply (and 20 times as long
    /// for the end of an enrollment and for `Forget`, which fit and write flash). `io`'s
    /// reads must return now and then (a read timeout) for the timeout to be kept.
    pub fn new(io: T, timeout: Duration) -> Self {
        DeviceClient {
            io,
            next_id: 1,
            pending: Vec::new(),
            timeout,
            slow_timeout: timeout * 20,
        }
    }

    /// Sets the reply timeout and the one for slow requests (enrollment fit, flash writes).
    pub fn set_timeouts(&mut self, timeout: Duration, slow: Duration) {
        self.timeout = timeout;
        self.slow_timeout = slow;
    }

    /// The transport.
    pub fn transport(&mut self) -> &mut T {
        &mut self.io
    }

    /// Gives the transport back.
    pub fn into_inner(self) -> T {
        self.io
    }

    /// What the device holds; fails with [`DeviceError::VersionMismatch`] when it speaks
    /// another protocol version.
    pub fn info(&mut self) -> Result<Info, DeviceError> {
        match self.request(&Request::Info, self.timeout)? {
            Response::Info(i) if i.protocol != VERSION => Err(DeviceError::VersionMismatch {
                device: i.protocol,
                host: VERSION,
            }),
            Response::Info(i) => Ok(i),
            r => Err(unexpected("Info", &r)),
        }
    }

    /// Classifies one raw sample (before the model's preprocessing).
    pub fn classify(&mut self, sample: &[f32]) -> Result<Classification, DeviceError> {
        let bytes = sample_bytes(sample)?;
        match self.request(&Request::Classify { sample: &bytes }, self.timeout)? {
            Response::Classified(c) => Ok(c.into()),
            r => Err(unexpected("Classified", &r)),
        }
    }

    /// Enrolls a new class `label` from raw `samples`; returns the rank of its fit.
    pub fn enroll(&mut self, label: &str, samples: &[&[f32]]) -> Result<u16, DeviceError> {
        let l = ldl_core::label(label).map_err(|_| DeviceError::Invalid(format!("label {label:?} longer than 16 bytes")))?;
        let n = u16::try_from(samples.len()).map_err(|_| DeviceError::Invalid("too many samples".into()))?;
        if n == 0 {
            return Err(DeviceError::Invalid("no samples".into()));
        }
        let token = match self.request(&Request::EnrollStart { label: l, samples: n }, self.timeout)? {
            Response::EnrollProgress { token, got: 0, of } if of == n => token,
            r => return Err(unexpected("EnrollProgress { got: 0 }", &r)),
        };
        let result = self.enroll_samples(label, token, samples);
        if result.is_err() {
            // Leave no enrollment armed on the device; the first error is the one to report.
            let _ = self.abort();
        }
        result
    }

    /// Sends the samples of the enrollment `token`; the rank after the last.
    fn enroll_samples(&mut self, label: &str, token: u16, samples: &[&[f32]]) -> Result<u16, DeviceError> {
        let n = samples.len();
        for (i, s) in samples.iter().enumerate() {
            let bytes = sample_bytes(s)?;
            let last = i + 1 == n;
            let wait = if last { self.slow_timeout } else { self.timeout };
            match self.request(&Request::EnrollSample { token, data: &bytes }, wait)? {
                Response::EnrollProgress { got, of, .. } if !last && got as usize == i + 1 && of as usize == n => {}
                Response::Enrolled { label: got, rank } if last && got.as_str() == label => return Ok(rank),
                r => return Err(unexpected(if last { "Enrolled" } else { "EnrollProgress" }, &r)),
            }
        }
        Err(DeviceError::Unexpected("enrollment did not finish".into()))
    }

    /// Drops the enrollment in progress on the device (one a host abandoned, or this one's
    /// after an error); returns the label it was enrolling. `NOT_ENROLLING` when there is
    /// none.
    pub fn abort(&mut self) -> Result<String, DeviceError> {
        match self.request(&Request::EnrollAbort, self.timeout)? {
            Response::EnrollAborted { label } => Ok(label.as_str().to_string()),
            r => Err(unexpected("EnrollAborted", &r)),
        }
    }

    /// Every class's label, the model's first.
    pub fn list(&mut self) -> Result<Vec<String>, DeviceError> {
        match self.request(&Request::List, self.timeout)? {
            Response::Listed { labels } => Ok(labels.iter().map(|l| l.as_str().to_string()).collect()),
            r => Err(unexpected("Listed", &r)),
        }
    }

    /// Removes an enrolled class.
    pub fn forget(&mut self, label: &str) -> Result<(), DeviceError> {
        let l = ldl_core::label(label).map_err(|_| DeviceError::Invalid(format!("label {label:?} longer than 16 bytes")))?;
        match self.request(&Request::Forget { label: l }, self.slow_timeout)? {
            Response::Forgotten => Ok(()),
            r => Err(unexpected("Forgotten", &r)),
        }
    }

    /// Starts from a clean line: sends a lone delimiter, which ends whatever partial frame
    /// the device may hold from an earlier writer (the device ignores empty frames), then an
    /// `Info` whose reply marks the end of everything the device still had to say (errors
    /// about earlier garbage, stale replies): all of it is discarded. A device still reading
    /// a long burst answers late, so this waits for that reply, not for a quiet line, up to
    /// the reply timeout (twice, in case the first `Info` was itself lost).
    pub fn resync(&mut self) -> Result<(), DeviceError> {
        self.pending.clear();
        self.send_raw(&[DELIMITER])?;
        let mut last = DeviceError::NoAnswer(self.timeout);
        for _ in 0..2 {
            let id = self.take_id();
            let mut buf = vec![0u8; MAX_FRAME_LEN];
            let n = protocol::encode(id, &Request::Info, &mut buf).map_err(DeviceError::Encode)?;
            self.send_raw(&buf[..n])?;
            let deadline = Instant::now() + self.timeout;
            loop {
                match self.recv_until(deadline, self.timeout) {
                    Ok((rid, _)) if rid == id => return Ok(()),
                    Ok(_) | Err(DeviceError::Garbage(_)) => continue,
                    Err(e @ DeviceError::NoAnswer(_)) => {
                        last = e;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(last)
    }

    /// The next request id (1, 2, ..., never 0: the device's own replies use 0).
    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Sends one request and waits for its reply. A device `Error` reply becomes
    /// [`DeviceError::Device`].
    pub fn request(&mut self, req: &Request<'_>, wait: Duration) -> Result<Response, DeviceError> {
        let id = self.take_id();
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let n = protocol::encode(id, req, &mut buf).map_err(DeviceError::Encode)?;
        self.send_raw(&buf[..n])?;
        let deadline = Instant::now() + wait;
        loop {
            let (rid, resp) = self.recv_until(deadline, wait)?;
            match resp {
                Response::Error { code } if rid == id || rid == 0 => return Err(DeviceError::Device(code)),
                r if rid == id => return Ok(r),
                _ => continue, // a stale reply or an unsolicited one (button)
            }
        }
    }

    /// Writes raw bytes (for tests that send garbage).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), DeviceError> {
        self.io.write_all(bytes)?;
        self.io.flush()?;
        Ok(())
    }

    /// Waits up to `wait` for the next reply frame, whatever its id.
    pub fn recv(&mut self, wait: Duration) -> Result<(u32, Response), DeviceError> {
        self.recv_until(Instant::now() + wait, wait)
    }

    fn recv_until(&mut self, deadline: Instant, wait: Duration) -> Result<(u32, Response), DeviceError> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == DELIMITER) {
                let mut frame: Vec<u8> = self.pending.drain(..=end).collect();
                if frame.len() == 1 {
                    continue; // empty frame
                }
                return match protocol::decode::<Response>(&mut frame) {
                    Ok(r) => Ok(r),
                    Err(e) => match e.kind {
                        FrameError::Version(v) => Err(DeviceError::VersionMismatch { device: v, host: VERSION }),
                        k => Err(DeviceError::Garbage(format!(
                            "undecodable reply frame ({k:?}, {} bytes: {})",
                            frame.len(),
                            hex(&frame[..frame.len().min(24)])
                        ))),
                    },
                };
            }
            if self.pending.len() > MAX_FRAME_LEN {
                let n = self.pending.len();
                self.pending.clear();
                return Err(DeviceError::Garbage(format!("{n} bytes without a frame delimiter")));
            }
            if Instant::now() >= deadline {
                return Err(DeviceError::NoAnswer(wait));
            }
            match self.io.read(&mut chunk) {
                Ok(0) => return Err(DeviceError::Closed),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => return Err(DeviceError::Io(e)),
            }
        }
    }
}

/// Enrolls `label` into a host copy of the device's model exactly as the firmware does:
/// each raw sample through the model's preprocessing, then the core's compact fit with the
/// model's shift augmentation ([`ldl_core::Model::enroll_capped`]), at most the directions the
/// device keeps (`device_rank`, its `Info::max_rank`, and the model's `fit.max_rank`). Used
/// to check a device's answers after it enrolled classes itself: the same bits.
pub fn enroll_like_device(model: &mut ldl_core::Model, label: &str, raws: &[Vec<f32>], device_rank: usize) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let pp = model.preprocess;
    let mut pre = Vec::with_capacity(raws.iter().map(Vec::len).sum());
    for s in raws {
        let mut x = s.clone();
        pp.apply(&mut x).context("preprocessing")?;
        pre.extend_from_slice(&x);
    }
    let cap = match model.fit.max_rank {
        0 => device_rank,
        r => device_rank.min(r as usize),
    };
    model
        .enroll_capped(label, &pre, raws.len(), cap)
        .with_context(|| format!("enrolling {label:?} on the host"))
}

fn sample_bytes(sample: &[f32]) -> Result<Vec<u8>, DeviceError> {
    if sample.len() > protocol::MAX_SAMPLE_VALUES {
        return Err(DeviceError::Invalid(format!(
            "a sample of {} values is longer than a frame holds ({})",
            sample.len(),
            protocol::MAX_SAMPLE_VALUES
        )));
    }
    let mut out = vec![0u8; 4 * sample.len()];
    let n = protocol::sample_bytes(sample, &mut out)
        .map_err(|e| DeviceError::Invalid(e.to_string()))?
        .len();
    out.truncate(n);
    Ok(out)
}

fn unexpected(want: &str, got: &Response) -> DeviceError {
    DeviceError::Unexpected(format!("expected {want}, got {got:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldl_core::protocol::{FrameReader, ModelStatus, Push};
    use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
    use std::thread::JoinHandle;

    /// One end of an in-memory duplex byte stream; reads time out after 20 ms.
    struct Pipe {
        tx: Sender<Vec<u8>>,
        rx: Receiver<Vec<u8>>,
        buf: Vec<u8>,
    }
    fn pipe() -> (Pipe, Pipe) {
        let (a_tx, b_rx) = channel();
        let (b_tx, a_rx) = channel();
        (
            Pipe {
                tx: a_tx,
                rx: a_rx,
                buf: Vec::new(),
            },
            Pipe {
                tx: b_tx,
                rx: b_rx,
                buf: Vec::new(),
            },
        )
    }
    impl Read for Pipe {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.buf.is_empty() {
                match self.rx.recv_timeout(Duration::from_millis(20)) {
                    Ok(b) => self.buf = b,
                    Err(RecvTimeoutError::Timeout) => return Err(ErrorKind::TimedOut.into()),
                    Err(RecvTimeoutError::Disconnected) => return Ok(0),
                }
            }
            let n = self.buf.len().min(out.len());
            out[..n].copy_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            Ok(n)
        }
    }
    impl Write for Pipe {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.tx.send(b.to_vec()).map_err(|_| std::io::Error::from(ErrorKind::BrokenPipe))?;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// Answers like a device.
        Good,
        /// Answers every request with bytes that are no frame.
        Garbage,
        /// Never answers.
        Silent,
        /// Answers with frames of protocol version 9.
        OtherVersion,
        /// Answers with a stray unsolicited reply (id 0) before the real one.
        Stray,
    }

    fn labels<C: FromIterator<ldl_core::Label>>(names: &[&str]) -> C {
        names.iter().map(|n| ldl_core::label(n).unwrap()).collect()
    }

    /// A fake device in a thread: a dummy "model" of 4 inputs and classes a, b; the class is
    /// the index of the largest of the first two values.
    fn fake(mode: Mode) -> (DeviceClient<Pipe>, JoinHandle<()>) {
        let (host, mut dev) = pipe();
        let h = std::thread::spawn(move || {
            let mut rx: FrameReader<MAX_FRAME_LEN> = FrameReader::new();
            let mut tx = vec![0u8; 4096];
            let mut classes = vec!["a".to_string(), "b".to_string()];
            let mut enrolling: Option<(String, u16, u16)> = None;
            let mut chunk = [0u8; 256];
            loop {
                let n = match dev.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(_) => continue,
                };
                for &b in &chunk[..n] {
                    let Push::Frame(len) = rx.push(b) else { continue };
                    let (id, resp) = match protocol::decode::<Request<'_>>(rx.frame(len)) {
                        Err(e) => (e.id.unwrap_or(0), Response::Error { code: e.kind.into() }),
                        Ok((id, req)) => (
                            id,
                            match req {
                                Request::Info => Response::Info(Info {
                                    protocol: VERSION,
                                    model: ModelStatus::Valid { crc: 1 },
                                    inputs: 4,
                                    outputs: 4,
                                    classes: classes.len() as u16,
                                    capacity: 3,
                                    enrolled: (classes.len() - 2) as u16,
                                    max_rank: 4,
                                    max_samples: 8,
                                    labels: labels(&classes.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
                                    enrolling: enrolling.as_ref().map(|(l, got, of)| protocol::Enrolling {
                                        label: ldl_core::label(l).unwrap(),
                                        got: *got,
                                        of: *of,
                                    }),
                                }),
                                Request::Classify { sample } => {
                                    let mut x = [0f32; 4];
                                    match protocol::read_sample(sample, &mut x) {
                                        Err(e) => Response::Error { code: e.into() },
                                        Ok(()) => {
                                            let c = usize::from(x[1] > x[0]);
                                            Response::Classified(Classified {
                                                class: c as u16,
                                                label: ldl_core::label(&classes[c]).unwrap(),
                                                distances: [x[0], x[1]].into_iter().collect(),
                                                novelty: x[c],
                                                unknown: x[c] > 10.0,
                                                score: ldl_core::novelty::Score::Best,
                                            })
                                        }
                                    }
                                }
                                Request::EnrollStart { label, samples } => {
                                    enrolling = Some((label.to_string(), 0, samples));
                                    Response::EnrollProgress {
                                        token: 7,
                                        got: 0,
                                        of: samples,
                                    }
                                }
                                Request::EnrollAbort => match enrolling.take() {
                                    Some((l, ..)) => Response::EnrollAborted {
                                        label: ldl_core::label(&l).unwrap(),
                                    },
                                    None => Response::Error {
                                        code: ErrorCode::NotEnrolling,
                                    },
                                },
                                Request::EnrollSample { token, data } => match enrolling.as_mut() {
                                    None => Response::Error {
                                        code: ErrorCode::NotEnrolling,
                                    },
                                    Some(_) if token != 7 => Response::Error {
                                        code: ErrorCode::WrongEnrollment,
                                    },
                                    Some(_) if protocol::read_sample(data, &mut [0f32; 4]).is_err() => Response::Error {
                                        code: ErrorCode::DimensionMismatch,
                                    },
                                    Some((l, got, of)) => {
                                        *got += 1;
                                        if got == of {
                                            let l = l.clone();
                                            classes.push(l.clone());
                                            enrolling = None;
                                            Response::Enrolled {
                                                label: ldl_core::label(&l).unwrap(),
                                                rank: 2,
                                            }
                                        } else {
                                            Response::EnrollProgress { token, got: *got, of: *of }
                                        }
                                    }
                                },
                                Request::List => Response::Listed {
                                    labels: labels(&classes.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
                                },
                                Request::Forget { label } => match classes.iter().position(|c| c == label.as_str()) {
                                    Some(i) if i >= 2 => {
                                        classes.remove(i);
                                        Response::Forgotten
                                    }
                                    _ => Response::Error {
                                        code: ErrorCode::UnknownClass,
                                    },
                                },
                            },
                        ),
                    };
                    let out: Vec<u8> = match mode {
                        Mode::Silent => continue,
                        Mode::Garbage => b"\x13\x37garbage\xff\x01\x00".to_vec(),
                        Mode::OtherVersion => {
                            // A frame of another version: same layout, version byte 9.
                            let payload = [9u8, id as u8, 5];
                            let k = protocol::frame_raw(&payload, &mut tx).unwrap();
                            tx[..k].to_vec()
                        }
                        Mode::Good | Mode::Stray => {
                            let mut f = Vec::new();
                            if mode == Mode::Stray {
                                let stray = Response::EnrollProgress { token: 1, got: 0, of: 5 };
                                let k = protocol::encode(0, &stray, &mut tx).unwrap();
                                f.extend_from_slice(&tx[..k]);
                            }
                            let k = protocol::encode(id, &resp, &mut tx).unwrap();
                            f.extend_from_slice(&tx[..k]);
                            f
                        }
                    };
                    // Byte by byte in two pieces: the client must reassemble frames.
                    let (a, b) = out.split_at(out.len() / 2);
                    if dev.write(a).is_err() || dev.write(b).is_err() {
                        return;
                    }
                }
            }
        });
        (DeviceClient::new(host, Duration::from_millis(500)), h)
    }

    #[test]
    fn talks_to_a_fake_device() {
        let (mut c, h) = fake(Mode::Good);
        let i = c.info().unwrap();
        assert_eq!((i.protocol, i.inputs, i.classes), (VERSION, 4, 2));
        let r = c.classify(&[1.0, 3.0, 0.0, 0.0]).unwrap();
        assert_eq!(
            r,
            Classification {
                index: 1,
                label: "b".into(),
                distances: vec![1.0, 3.0],
                novelty: 3.0,
                score: ldl_core::novelty::Score::Best,
                unknown: false
            }
        );
        let r = c.classify(&[20.0, 3.0, 0.0, 0.0]).unwrap();
        assert_eq!((r.index, r.unknown), (0, true));
        // Wrong length: the device's error code comes back typed.
        match c.classify(&[1.0]) {
            Err(DeviceError::Device(code)) => assert_eq!(code, ErrorCode::DimensionMismatch),
            r => panic!("{r:?}"),
        }
        let s = [0.5f32; 4];
        assert_eq!(c.enroll("new", &[&s, &s, &s]).unwrap(), 2);
        assert_eq!(c.list().unwrap(), vec!["a", "b", "new"]);
        c.forget("new").unwrap();
        assert_eq!(c.list().unwrap(), vec!["a", "b"]);
        let e = c.forget("a").unwrap_err();
        assert!(matches!(e, DeviceError::Device(ErrorCode::UnknownClass)), "{e}");
        assert!(e.to_string().contains("unknown class"), "{e}");
        assert!(matches!(
            c.enroll("this label is far too long", &[&s]),
            Err(DeviceError::Invalid(_))
        ));
        // A sample refused mid-way: the error comes back and the client leaves no
        // enrollment armed on the device.
        let e = c.enroll("half", &[&s, &[1.0], &s]).unwrap_err();
        assert!(matches!(e, DeviceError::Device(ErrorCode::DimensionMismatch)), "{e}");
        assert_eq!(c.info().unwrap().enrolling, None);
        // An enrollment another host started: info shows it, a sample with the wrong token
        // is refused, abort drops it, a second abort has nothing to drop.
        let l = ldl_core::label("9").unwrap();
        c.request(
            &Request::EnrollStart {
                label: l.clone(),
                samples: 3,
            },
            Duration::from_secs(1),
        )
        .unwrap();
        let e = c.info().unwrap().enrolling.unwrap();
        assert_eq!((e.label.as_str(), e.got, e.of), ("9", 0, 3));
        let bytes = sample_bytes(&s).unwrap();
        let e = c
            .request(&Request::EnrollSample { token: 8, data: &bytes }, Duration::from_secs(1))
            .unwrap_err();
        assert!(e.to_string().contains("another enrollment"), "{e}");
        assert_eq!(c.abort().unwrap(), "9");
        assert!(matches!(c.abort(), Err(DeviceError::Device(ErrorCode::NotEnrolling))));
        // ids increase, and a raw garbage frame gets an error reply with id 0.
        c.send_raw(b"\x09garbage!\x00").unwrap();
        let (id, r) = c.recv(Duration::from_secs(1)).unwrap();
        assert_eq!((id, r), (0, Response::Error { code: ErrorCode::FrameCrc }));
        assert_eq!(c.info().unwrap().classes, 2);
        drop(c);
        h.join().unwrap();
    }

    #[test]
    fn resync_clears_a_half_frame_left_by_an_earlier_writer() {
        let (mut c, h) = fake(Mode::Good);
        // An earlier writer left bytes without a delimiter: without a resync, our next
        // frame would be glued to them and refused.
        c.send_raw(&[0x11; 40]).unwrap();
        c.resync().unwrap();
        assert_eq!(c.info().unwrap().classes, 2);
        // The same, without the resync: the glued frame is refused (id 0).
        c.send_raw(&[0x11; 40]).unwrap();
        assert!(matches!(c.info(), Err(DeviceError::Device(_))));
        drop(c);
        h.join().unwrap();
    }

    #[test]
    fn skips_stray_replies() {
        let (mut c, h) = fake(Mode::Stray);
        assert_eq!(c.list().unwrap(), vec!["a", "b"]);
        assert_eq!(c.classify(&[0.0, 1.0, 0.0, 0.0]).unwrap().index, 1);
        drop(c);
        h.join().unwrap();
    }

    #[test]
    fn garbage_reply_is_a_typed_error() {
        let (mut c, h) = fake(Mode::Garbage);
        let e = c.info().unwrap_err();
        assert!(matches!(e, DeviceError::Garbage(_)), "{e:?}");
        drop(c);
        h.join().unwrap();
    }

    #[test]
    fn silent_device_times_out() {
        let (mut c, h) = fake(Mode::Silent);
        c.set_timeouts(Duration::from_millis(150), Duration::from_millis(300));
        let t0 = Instant::now();
        let e = c.classify(&[0.0; 4]).unwrap_err();
        assert!(matches!(e, DeviceError::NoAnswer(_)), "{e:?}");
        let t = t0.elapsed();
        assert!(t >= Duration::from_millis(150) && t < Duration::from_secs(2), "{t:?}");
        drop(c);
        h.join().unwrap();
    }

    #[test]
    fn other_protocol_version_is_refused() {
        let (mut c, h) = fake(Mode::OtherVersion);
        let e = c.info().unwrap_err();
        assert!(matches!(e, DeviceError::VersionMismatch { device: 9, host: VERSION }), "{e:?}");
        drop(c);
        h.join().unwrap();
    }

    #[test]
    fn tcp_connect_times_out_without_a_listener() {
        // A port nobody listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let t0 = Instant::now();
        let r = DeviceClient::connect_tcp(("127.0.0.1", port), Duration::from_millis(300));
        assert!(r.is_err());
        assert!(t0.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn tcp_transport_works() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut rx: FrameReader<MAX_FRAME_LEN> = FrameReader::new();
            let mut tx = vec![0u8; 4096];
            let mut b = [0u8; 1];
            while s.read(&mut b).unwrap_or(0) == 1 {
                if let Push::Frame(n) = rx.push(b[0]) {
                    let (id, _req) = protocol::decode::<Request<'_>>(rx.frame(n)).unwrap();
                    let r = Response::Listed { labels: labels(&["x"]) };
                    let k = protocol::encode(id, &r, &mut tx).unwrap();
                    s.write_all(&tx[..k]).unwrap();
                }
            }
        });
        // connect_tcp sends Info first: the fake answers Listed, so the version check fails
        // as an unexpected reply; the connection itself works.
        let e = DeviceClient::connect_tcp(addr, Duration::from_secs(2)).err().unwrap();
        assert!(matches!(e, DeviceError::Unexpected(_)), "{e:?}");
        h.join().unwrap();
    }
}
