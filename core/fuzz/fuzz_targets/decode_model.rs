//! Fuzzes the model file reader: `ModelView::parse` (in place, at the input's alignment and
//! from an aligned copy) and `format::decode` must never panic and must agree; an accepted
//! file must classify without panicking and survive a re-encode unchanged (but for an old
//! file's negative threshold, which the current version refuses). Each input is
//! also tried with its CRC fixed up, so that mutations reach the header decoder and the
//! entry checks instead of stopping at the CRC.
#![no_main]

use ldl_core::classify::scratch_len;
use ldl_core::classify::{classify, Classes};
use ldl_core::format::{self, ModelView, CRC_LEN, MIN_FILE_LEN};
use libfuzzer_sys::fuzz_target;

fn exercise(view: &ModelView<'_>) {
    for m in 0..=view.members() {
        let _ = view.target(m);
        for c in 0..=view.len() {
            let _ = view.predictor(m, c);
        }
    }
    if view.inputs() <= 4096 && !view.is_empty() {
        if let Ok(n) = scratch_len(view) {
            if n <= 1 << 16 {
                let x = vec![0.5f32; view.inputs()];
                let (mut scratch, mut dist) = (vec![0.0; n], vec![0.0; view.len()]);
                let _ = classify(view, &x, view.rule(), &mut scratch, &mut dist);
            }
        }
    }
}

fn check(data: &[u8]) {
    let _ = ModelView::parse(data);
    let buf = format::Aligned::new(data);
    let parsed = ModelView::parse(&buf);
    let decoded = format::decode(data);
    match (&parsed, &decoded) {
        (Ok(view), Ok(model)) => {
            assert_eq!(&view.to_model().unwrap(), model);
            exercise(view);
            // A version 1 or 2 file may hold a negative threshold (every sample unknown),
            // which version 3 on refuses (FORMAT.md, rule 13): such a model cannot be
            // written again, and says so.
            let old_negative = view.version() < 3 && model.threshold.is_some_and(|t| t < 0.0);
            let again = match format::encode(model) {
                Err(ldl_core::Error::InvalidParameter) if old_negative => return,
                r => r.expect("a decoded model re-encodes"),
            };
            assert_eq!(again.len(), format::encoded_len(model).unwrap());
            assert_eq!(&format::decode(&again).unwrap(), model);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("parse {:?} and decode {:?} disagree", parsed.map(|_| ()), decoded.map(|_| ())),
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= MIN_FILE_LEN {
        let mut fixed = data.to_vec();
        let n = fixed.len() - CRC_LEN;
        let crc = format::checksum(&fixed[..n]);
        fixed[n..].copy_from_slice(&crc.to_le_bytes());
        check(&fixed);
    }
});
