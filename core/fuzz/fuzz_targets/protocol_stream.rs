//! Fuzzes the serial protocol as a device and a host read it: an arbitrary byte stream cut
//! into frames by `FrameReader`, each frame decoded as a `Request` and as a `Response`.
//! Nothing may panic; a decoded message re-encodes into a frame that decodes to the same
//! message; a request's sample reads as 8-bit or `f32` values exactly as `sample_bytes`
//! writes them back.
#![no_main]

use ldl_core::protocol::{decode, encode, read_sample, sample_bytes, FrameReader, Push, Request, Response, MAX_FRAME_LEN};
use libfuzzer_sys::fuzz_target;

/// Re-encodes a decoded message, decodes that and encodes it again: the same id and the
/// same bytes (bytes, not values: a NaN distance is not equal to itself).
fn round_trip<T: serde::Serialize + for<'a> serde::Deserialize<'a>>(id: u32, msg: &T) {
    let mut one = vec![0u8; 2 * MAX_FRAME_LEN];
    let n = encode(id, msg, &mut one).expect("a decoded message re-encodes");
    let (id2, back) = decode::<T>(&mut one.clone()[..n]).expect("a re-encoded message decodes");
    let mut two = vec![0u8; 2 * MAX_FRAME_LEN];
    let m = encode(id2, &back, &mut two).expect("it encodes again");
    assert_eq!((id2, &two[..m]), (id, &one[..n]));
}

/// A sample's bytes read as `d` values (8-bit when `d` is its length, `f32` when its
/// length is `4 d`), and written back by `sample_bytes` to values that read the same.
fn sample(bytes: &[u8]) {
    for d in [bytes.len(), bytes.len() / 4, 784] {
        let mut x = vec![0.0f32; d];
        if read_sample(bytes, &mut x).is_ok() {
            let mut out = vec![0u8; 4 * d];
            if let Ok(wire) = sample_bytes(&x, &mut out) {
                let mut y = vec![0.0f32; d];
                read_sample(wire, &mut y).expect("sample_bytes writes a readable sample");
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&x), bits(&y));
            }
        }
    }
}

fn frame(f: &[u8]) {
    let mut a = f.to_vec();
    if let Ok((id, req)) = decode::<Request<'_>>(&mut a) {
        match &req {
            Request::Classify { sample: s } | Request::EnrollSample { data: s, .. } => sample(s),
            _ => {}
        }
        // Requests borrow from their frame: the same check, spelled out.
        let mut one = vec![0u8; 2 * MAX_FRAME_LEN];
        let n = encode(id, &req, &mut one).expect("a decoded request re-encodes");
        let mut copy = one[..n].to_vec();
        let (id2, back) = decode::<Request<'_>>(&mut copy).expect("a re-encoded request decodes");
        let mut two = vec![0u8; 2 * MAX_FRAME_LEN];
        let m = encode(id2, &back, &mut two).expect("it encodes again");
        assert_eq!((id2, &two[..m]), (id, &one[..n]));
    }
    let mut b = f.to_vec();
    if let Ok((id, resp)) = decode::<Response>(&mut b) {
        round_trip(id, &resp);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rx: FrameReader<MAX_FRAME_LEN> = FrameReader::new();
    for &b in data {
        if let Push::Frame(len) = rx.push(b) {
            let f = rx.frame(len).to_vec();
            frame(&f);
        }
    }
    // The whole input as one frame too (the decoder's own checks, without the reader's).
    frame(data);
});
