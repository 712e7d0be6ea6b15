//! Properties of the frame format: no input makes decoding panic, every message survives a
//! round trip, and damage is always detected as a typed error.
use ldl_core::label;
use ldl_core::protocol::{decode, encode, FrameError, Request, Response, MAX_FRAME_LEN};
use proptest::prelude::*;

fn request_of<'a>(kind: u8, bytes: &'a [u8], name: &str, n: u16) -> Request<'a> {
    match kind % 7 {
        0 => Request::Info,
        1 => Request::Classify { sample: bytes },
        2 => Request::EnrollStart {
            label: label(name).unwrap(),
            samples: n,
        },
        3 => Request::EnrollSample { token: n, data: bytes },
        4 => Request::List,
        5 => Request::EnrollAbort,
        _ => Request::Forget {
            label: label(name).unwrap(),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_any_bytes_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let mut copy = bytes.clone();
        let _ = decode::<Request<'_>>(&mut bytes);
        let _ = decode::<Response>(&mut copy);
    }

    #[test]
    fn requests_round_trip(kind in any::<u8>(), id in any::<u32>(), bytes in proptest::collection::vec(any::<u8>(), 0..3200),
                           name in "[a-z0-9]{0,16}", n in any::<u16>()) {
        let req = request_of(kind, &bytes, &name, n);
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let len = encode(id, &req, &mut buf).unwrap();
        prop_assert!(len <= MAX_FRAME_LEN);
        prop_assert_eq!(buf[len - 1], 0);
        prop_assert!(!buf[..len - 1].contains(&0));
        let mut f = buf[..len].to_vec();
        let (back_id, back) = decode::<Request<'_>>(&mut f).unwrap();
        prop_assert_eq!(back_id, id);
        prop_assert_eq!(back, req);
    }

    #[test]
    fn damage_is_detected(kind in any::<u8>(), id in any::<u32>(), bytes in proptest::collection::vec(any::<u8>(), 0..600),
                          at in any::<usize>(), flip in 1u8..=255, cut in any::<usize>()) {
        let req = request_of(kind, &bytes, "x", 3);
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let len = encode(id, &req, &mut buf).unwrap();
        let frame = buf[..len - 1].to_vec();
        // One damaged byte (never a delimiter: a receiver would split the frame there).
        let mut bad = frame.clone();
        let i = at % bad.len();
        bad[i] ^= flip;
        if bad[i] != 0 {
            let r = decode::<Request<'_>>(&mut bad);
            prop_assert!(r.is_err(), "undetected damage at {}", i);
        }
        // Truncated.
        let n = cut % frame.len();
        let mut short = frame[..n].to_vec();
        let e = decode::<Request<'_>>(&mut short).unwrap_err();
        prop_assert!(matches!(e.kind, FrameError::Truncated | FrameError::Cobs | FrameError::Crc | FrameError::Malformed));
    }
}
