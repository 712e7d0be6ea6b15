//! Property tests of the model file (`ldl_core::format`): no input makes the reader panic,
//! no single-byte change or truncation of a valid file is accepted, and a file whose header
//! was mutated (with the CRC fixed up, so that the header decoder really sees it) is either
//! refused or read consistently.
#![cfg(feature = "alloc")]

use ldl_core::classify::scratch_len;
use ldl_core::classify::Classes;
use ldl_core::format::{self, ModelView, HEADER_OFFSET};
use ldl_core::methods::{self, ClosedFormConfig, GradientConfig, GradientTrainer};
use ldl_core::subspace::FitOptions;
use ldl_core::{classify, Model, Preprocess, Rng};
use proptest::prelude::*;
use proptest::sample::Index;
use std::sync::OnceLock;

const D: usize = 6;
const LABELS: [&str; 3] = ["a", "bb", "ccc"];

fn support(seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    (0..3)
        .map(|c| {
            (0..4 * D)
                .map(|j| if j % D == c { 1.5 } else { 0.0 } + 0.3 * rng.normal())
                .collect()
        })
        .collect()
}

/// Small valid models of every form: closed form with a linear and an identity target,
/// dense (O2MD), and an ensemble.
fn models() -> Vec<(&'static str, Model)> {
    let data = support(1);
    let views: Vec<&[f32]> = data.iter().map(|v| v.as_slice()).collect();
    let mut linear = methods::fit_closed_form(
        &views,
        D,
        &LABELS,
        &ClosedFormConfig {
            k: 4,
            ..Default::default()
        },
        1,
    )
    .unwrap();
    linear.threshold = Some(0.5);
    linear.capacity = 8;
    linear.preprocess = Preprocess {
        scale: 0.5,
        offset: 0.25,
        image: None,
        shift: 0,
        fill: 0,
        align: 0,
    };
    let identity_cfg = ClosedFormConfig {
        k: 0,
        fit: FitOptions {
            affine: false,
            ridge: 0.1,
            ..Default::default()
        },
        ..Default::default()
    };
    let identity = methods::fit_closed_form(&views, D, &LABELS, &identity_cfg, 2).unwrap();
    let mut trainer = GradientTrainer::new(&views, D, &LABELS, &GradientConfig::o2md_paper(3), 3).unwrap();
    trainer.epoch().unwrap();
    let dense = trainer.into_model();
    let cfg = ClosedFormConfig {
        k: 3,
        ..Default::default()
    };
    let ensemble = methods::ensemble(&views, D, 2, 4, |c, s| methods::fit_closed_form(c, D, &LABELS, &cfg, s)).unwrap();
    // The compact form (format version 2): 8-bit directions, a 3 x 2 image with shift 1;
    // and with a linear target and a mean.
    let compact = methods::fit_compact(&views, D, &LABELS, &identity_cfg, Some((3, 2)), 1, 5).unwrap();
    let affine_cfg = ClosedFormConfig {
        k: 4,
        fit: FitOptions {
            affine: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut compact_linear = methods::fit_compact(&views, D, &LABELS, &affine_cfg, None, 0, 6).unwrap();
    compact_linear.threshold = Some(2.0);
    // Warped copies and the query alignment (format version 5).
    let aligned_cfg = ClosedFormConfig {
        fill: 5,
        align: 1,
        ..identity_cfg
    };
    let compact_aligned = methods::fit_compact(&views, D, &LABELS, &aligned_cfg, Some((3, 2)), 1, 7).unwrap();
    vec![
        ("closed_linear", linear),
        ("closed_identity", identity),
        ("o2md_dense", dense),
        ("ensemble", ensemble),
        ("compact_identity", compact),
        ("compact_linear", compact_linear),
        ("compact_aligned", compact_aligned),
    ]
}

fn files() -> &'static [Vec<u8>] {
    static FILES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FILES.get_or_init(|| models().iter().map(|(_, m)| format::encode(m).unwrap()).collect())
}

/// Uses everything a parsed view offers; nothing may panic.
fn exercise(view: &ModelView<'_>) {
    let _ = (
        view.header(),
        view.labels(),
        view.method(),
        view.threshold(),
        view.preprocess(),
        view.fit(),
    );
    let _ = (view.file_len(), view.crc(), view.capacity(), view.weights());
    for m in 0..=view.members() {
        let _ = view.target(m);
        for c in 0..=view.len() {
            let _ = view.predictor(m, c);
        }
    }
    // Classification needs buffers sized by the model: only for sane sizes.
    if view.inputs() <= 4096 && !view.is_empty() {
        if let Ok(n) = scratch_len(view) {
            if n <= 1 << 16 {
                let x = vec![0.5f32; view.inputs()];
                let mut scratch = vec![0.0; n];
                let mut dist = vec![0.0; view.len()];
                let _ = classify(view, &x, view.rule(), &mut scratch, &mut dist);
            }
        }
    }
}

/// Reads `bytes` every way (in place at whatever alignment they have, from an aligned copy,
/// and owned); the ways agree, and an accepted file survives a re-encode. Returns whether
/// it was accepted.
fn check(bytes: &[u8]) -> bool {
    let _ = ModelView::parse(bytes);
    let buf = format::Aligned::new(bytes);
    let parsed = ModelView::parse(&buf);
    let decoded = format::decode(bytes);
    match (&parsed, &decoded) {
        (Ok(view), Ok(model)) => {
            assert_eq!(&view.to_model().unwrap(), model);
            exercise(view);
            let again = format::encode(model).expect("a decoded model re-encodes");
            assert_eq!(&format::decode(&again).unwrap(), model);
            true
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            false
        }
        _ => panic!("parse {:?} and decode {:?} disagree", parsed.map(|_| ()), decoded.map(|_| ())),
    }
}

fn reseal(bytes: &mut [u8]) {
    let n = bytes.len() - 4;
    let crc = format::checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
}

fn header_len(bytes: &[u8]) -> usize {
    u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize
}

/// A file with a correct prefix and CRC around an arbitrary header and weights.
fn framed(header: &[u8], weights: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&format::MAGIC);
    f.extend_from_slice(&format::VERSION.to_le_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&(header.len() as u32).to_le_bytes());
    f.extend_from_slice(&(weights.len() as u32).to_le_bytes());
    f.extend_from_slice(header);
    while f.len() % 16 != 0 {
        f.push(0);
    }
    f.extend_from_slice(weights);
    f.extend_from_slice(&[0; 4]);
    reseal(&mut f);
    f
}

#[test]
fn fixtures_are_valid_and_small() {
    for (f, (name, m)) in files().iter().zip(models()) {
        assert!(check(f), "{name}");
        assert!(f.len() < 20_000, "{name}: {} bytes", f.len());
        assert_eq!(format::decode(f).unwrap(), m);
    }
}

#[test]
fn every_single_bit_flip_of_a_file_is_rejected() {
    let f = &files()[0];
    for pos in 0..f.len() {
        for bit in 0..8 {
            let mut b = f.clone();
            b[pos] ^= 1 << bit;
            assert!(!check(&b), "flip of bit {bit} at byte {pos} accepted");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert!(!check(&bytes) || bytes.starts_with(b"LDLM"));
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_prefix_never_panic(
        header in prop::collection::vec(any::<u8>(), 0..200),
        weights in prop::collection::vec(any::<u8>(), 0..64),
        cut in any::<Index>(),
        tail in any::<bool>(),
    ) {
        let weights = &weights[..weights.len() / 4 * 4];
        let mut f = framed(&header, weights);
        check(&f);
        if tail {
            f.truncate(cut.index(f.len()));
            prop_assert!(!check(&f));
        }
    }

    #[test]
    fn a_changed_byte_is_rejected(which in any::<Index>(), pos in any::<Index>(), x in 1u8..=255) {
        let f = which.get(files());
        let mut b = f.clone();
        let at = pos.index(b.len());
        b[at] ^= x;
        prop_assert!(!check(&b));
    }

    #[test]
    fn a_truncated_file_is_rejected(which in any::<Index>(), len in any::<Index>()) {
        let f = which.get(files());
        prop_assert!(!check(&f[..len.index(f.len())]));
    }

    #[test]
    fn header_mutations_with_a_fixed_crc_never_panic(
        which in any::<Index>(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
    ) {
        let mut b = which.get(files()).clone();
        let end = HEADER_OFFSET + header_len(&b);
        for (pos, v) in &edits {
            let at = HEADER_OFFSET + pos.index(end - HEADER_OFFSET);
            b[at] = *v;
        }
        reseal(&mut b);
        check(&b);
    }

    #[test]
    fn prefix_mutations_with_a_fixed_crc_never_panic(
        which in any::<Index>(),
        at in 4usize..16,
        v in any::<u8>(),
    ) {
        let mut b = which.get(files()).clone();
        b[at] = v;
        reseal(&mut b);
        check(&b);
    }

    #[test]
    fn weight_mutations_with_a_fixed_crc_are_read_or_refused_as_non_finite(
        which in any::<Index>(),
        pos in any::<Index>(),
        bits in any::<u32>(),
    ) {
        // Files whose weights are all f32 (a compact class also holds runs and 8-bit values).
        let plain: Vec<&Vec<u8>> = models().iter().zip(files()).filter(|((n, _), _)| !n.starts_with("compact")).map(|(_, f)| f).collect();
        let mut b = which.get(&plain).to_vec();
        let start = (HEADER_OFFSET + header_len(&b)).div_ceil(16) * 16;
        let n = (b.len() - 4 - start) / 4;
        let at = start + 4 * pos.index(n);
        b[at..at + 4].copy_from_slice(&bits.to_le_bytes());
        reseal(&mut b);
        let ok = check(&b);
        prop_assert_eq!(ok, f32::from_bits(bits).is_finite());
    }
}

/// Writes the fuzz targets' seed corpora (`core/fuzz/corpus/*`, `firmware/fuzz/corpus/*`)
/// from valid files, records and frames:
/// `cargo test -p ldl-core --test format_props -- --ignored write_fuzz_corpus`.
/// Rerun it whenever the model file, the store record or the protocol changes.
#[test]
#[ignore]
fn write_fuzz_corpus() {
    use ldl_core::protocol::{self, Classified, Enrolling, Info, ModelStatus, Request, Response, MAX_FRAME_LEN};
    use ldl_core::store::{ModelKey, Store};
    use ldl_core::testing::{blob_samples, small_model, RamFlash, SMALL_D};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = |p: &str| {
        let d = root.join(p);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    // Model files, alone and followed by sample bytes.
    let (models_dir, enroll_dir) = (dir("fuzz/corpus/decode_model"), dir("fuzz/corpus/classify_enroll"));
    let tail: Vec<u8> = (0..64u32).map(|i| (i * 37 % 256) as u8).collect();
    for ((name, _), f) in models().iter().zip(files()) {
        std::fs::write(models_dir.join(format!("{name}.ldlm")), f).unwrap();
        let mut input = (f.len() as u16).to_le_bytes().to_vec();
        input.extend_from_slice(f);
        input.extend_from_slice(&tail);
        std::fs::write(enroll_dir.join(format!("{name}.bin")), input).unwrap();
    }
    // Frames: every request and response; a session as a host sends it (for the
    // firmware's serial loop: 36-value samples of `testing::small_model`, a reboot mark).
    let frame = |id: u32, r: &dyn erased::Frame| r.frame(id);
    let sample: Vec<u8> = blob_samples(5, 1).iter().map(|v| (v * 40.0) as u8).collect();
    let l = |s: &str| ldl_core::label(s).unwrap();
    let requests: Vec<Request<'_>> = vec![
        Request::Info,
        Request::Classify { sample: &sample },
        Request::EnrollStart { label: l("c"), samples: 2 },
        Request::EnrollSample { token: 1, data: &sample },
        Request::EnrollSample { token: 1, data: &sample },
        Request::List,
        Request::Forget { label: l("c") },
        Request::EnrollAbort,
    ];
    let responses = [
        Response::Info(Info {
            protocol: protocol::VERSION,
            model: ModelStatus::Valid { crc: 7 },
            inputs: 36,
            outputs: 36,
            classes: 2,
            capacity: 4,
            enrolled: 0,
            max_rank: 5,
            max_samples: 4,
            labels: [l("a"), l("b")].into_iter().collect(),
            enrolling: Some(Enrolling {
                label: l("c"),
                got: 1,
                of: 2,
            }),
        }),
        Response::Classified(Classified {
            class: 1,
            label: l("b"),
            distances: [0.5, 0.25].into_iter().collect(),
            novelty: 0.25,
            unknown: false,
            score: ldl_core::novelty::Score::Ratio,
        }),
        Response::EnrollProgress { token: 1, got: 1, of: 2 },
        Response::Enrolled { label: l("c"), rank: 3 },
        Response::Listed {
            labels: [l("a")].into_iter().collect(),
        },
        Response::Forgotten,
        Response::Error {
            code: protocol::ErrorCode::NotEnrolling,
        },
        Response::EnrollAborted { label: l("c") },
    ];
    let (proto_dir, serve_dir) = (dir("fuzz/corpus/protocol_stream"), dir("../firmware/fuzz/corpus/device_serve"));
    let mut session = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let f = frame(i as u32 + 1, r);
        std::fs::write(proto_dir.join(format!("request_{i}.bin")), &f).unwrap();
        session.extend_from_slice(&f);
    }
    for (i, r) in responses.iter().enumerate() {
        std::fs::write(proto_dir.join(format!("response_{i}.bin")), frame(i as u32, r)).unwrap();
    }
    std::fs::write(proto_dir.join("session.bin"), &session).unwrap();
    std::fs::write(serve_dir.join("session.bin"), &session).unwrap();
    // Enroll, reboot, classify, forget, reboot.
    let mut rebooted = session[..session.len() - frame(7, &requests[6]).len() - frame(8, &requests[7]).len()].to_vec();
    rebooted.extend_from_slice(REBOOT);
    rebooted.extend_from_slice(&frame(20, &requests[1]));
    rebooted.extend_from_slice(&frame(21, &requests[6]));
    rebooted.extend_from_slice(REBOOT);
    rebooted.extend_from_slice(&frame(22, &requests[0]));
    std::fs::write(serve_dir.join("enroll_reboot.bin"), &rebooted).unwrap();
    // An abandoned enrollment, another host's samples, an abort.
    let mut abandoned = frame(1, &requests[2]);
    abandoned.extend_from_slice(&frame(2, &requests[3]));
    abandoned.extend_from_slice(&frame(3, &Request::EnrollSample { token: 9, data: &sample }));
    abandoned.extend_from_slice(b"\x13\x37garbage\x00");
    abandoned.extend_from_slice(&frame(4, &requests[7]));
    std::fs::write(serve_dir.join("abandoned.bin"), &abandoned).unwrap();
    assert!(session.len() < MAX_FRAME_LEN * 4);

    // Store records: the classes of the store's tests, in each slot size the target uses.
    let store_dir = dir("fuzz/corpus/store_load");
    for (mi, k) in [0usize, 4].into_iter().enumerate() {
        let m = small_model(k);
        let key = ModelKey::of(&m, 0xC0FFEE).unwrap();
        let target = m.members[0].target.clone();
        for code in 2..4u8 {
            let slot = 256u32 << code;
            let mut f: RamFlash<256> = RamFlash::new(2 * slot as usize);
            let mut st: Store<6> = Store::new(&f, slot).unwrap();
            for (i, name) in ["p", "q"].iter().enumerate() {
                let data = blob_samples(40 + i as u64, 2);
                let samples = ldl_core::fit::Samples {
                    data: &data,
                    n: 2,
                    d: SMALL_D,
                    image: Some((6, 6)),
                    shift: 1,
                };
                let mut fs = vec![0.0; ldl_core::fit::fit_scratch_len(18, SMALL_D, 6, 1, ldl_core::fit::linear_outputs(&target), 5)];
                let _ = st.enroll(&mut f, &key, name, &target, &samples, &m.fit, 5, &mut fs);
            }
            let mut input = vec![code | (mi as u8) << 2];
            input.extend_from_slice(&f.mem);
            std::fs::write(store_dir.join(format!("k{k}_slot{slot}_{}.bin", st.len())), input).unwrap();
        }
    }
}

/// The firmware fuzz target's reboot mark in a serial stream (`firmware/fuzz`).
const REBOOT: &[u8] = b"\0RB\0";

/// Frames of requests and responses alike.
mod erased {
    use ldl_core::protocol::{encode, MAX_FRAME_LEN};
    pub trait Frame {
        fn frame(&self, id: u32) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Frame for T {
        fn frame(&self, id: u32) -> Vec<u8> {
            let mut buf = vec![0u8; MAX_FRAME_LEN];
            let n = encode(id, self, &mut buf).unwrap();
            buf.truncate(n);
            buf
        }
    }
}
