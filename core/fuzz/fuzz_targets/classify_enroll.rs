//! Fuzzes what a device does with a model file and a host's samples: parse the file in place,
//! classify a sample, enroll a class from samples into a store, classify again, boot again.
//! The input is a model file (its length in the first two bytes; its CRC is fixed up so that
//! mutations reach the decoder) followed by sample bytes. Nothing may panic. Finiteness
//! oracle: an answer is a class in range with a novelty score >= 0 (see `classify`), or a typed error; an
//! enrollment that succeeds leaves a store that a fresh boot loads with the new class, and
//! never a class that stops the device from classifying what it classified before.
#![no_main]

use ldl_core::classify::scratch_len;
use ldl_core::classify::Classes;
use ldl_core::fit::{fit_scratch_len, linear_outputs, Samples};
use ldl_core::format::{self, ModelView, CRC_LEN, MIN_FILE_LEN};
use ldl_core::store::{classify_joined, ModelKey, Store};
use ldl_core::testing::RamFlash;
use ldl_core::Error;
use libfuzzer_sys::fuzz_target;

const C: usize = 4;
const SLOT: u32 = 64 * 1024;
type Flash = RamFlash<4096>;

/// Classifies `x` with the model and the store: `Ok` answers are in range and finite.
fn classify(view: &ModelView<'_>, st: &Store<C>, f: &mut Flash, x: &[f32]) -> Result<usize, Error> {
    let n = view.len() + st.len();
    let need = scratch_len(view)?.max(view.outputs() + 2 * view.inputs() + 64 * 1024);
    let mut scratch = vec![0.0; need];
    let mut dist = vec![0.0; n];
    let c = classify_joined(view, st, f, x, view.rule(), &mut scratch, &mut dist)?;
    assert!(c.best < n, "best {} of {n}", c.best);
    // The rule's score: >= 0, NaN only when it cannot tell (a contrast or ratio with one
    // finite distance), infinite only for the relative score of a blank input.
    let finite = dist.iter().filter(|d| d.is_finite()).count();
    assert!(!(c.novelty < 0.0), "novelty {}", c.novelty);
    assert!(!c.novelty.is_nan() || finite < 2, "novelty NaN with {finite} finite distances");
    assert!(
        c.novelty.is_finite() || c.novelty.is_nan() || c.score == ldl_core::novelty::Score::Relative,
        "novelty {}",
        c.novelty
    );
    Ok(c.best)
}

fn run(file: &[u8], tail: &[u8]) {
    let bytes = ldl_core::format::Aligned::new(file);
    let Ok(view) = ModelView::parse(&bytes) else { return };
    let d = view.inputs();
    if view.is_empty() || view.members() != 1 || d == 0 || d > 4096 || view.outputs() > 4096 {
        return;
    }
    // Samples: the tail's bytes as raw values (8-bit, as a host sends images), preprocessed.
    let p = view.preprocess();
    let sample = |i: usize| -> Option<Vec<f32>> {
        let mut x: Vec<f32> = (0..d)
            .map(|j| f32::from(*tail.get((i * 7 + j) % tail.len().max(1)).unwrap_or(&0)))
            .collect();
        p.apply(&mut x).ok()?;
        Some(x)
    };
    let mut f = Flash::new(2 * SLOT as usize);
    let mut st: Store<C> = Store::new(&f, SLOT).unwrap();
    let Ok(key) = ModelKey::of(&view, view.crc()) else { return };
    let q = sample(0);
    let before = q.as_ref().map(|x| classify(&view, &st, &mut f, x));

    // Enroll from two samples, as the device does.
    let (Some(a), Some(b)) = (sample(1), sample(2)) else { return };
    let data = [a, b].concat();
    let image = p
        .image
        .map(|im| (usize::from(im.width), usize::from(im.height)))
        .filter(|&(w, h)| w * h == d && p.shift > 0);
    let shift = if image.is_some() { p.shift } else { 0 };
    let rows = 2 * ldl_core::augment::shift_count(shift);
    let Ok(target) = view.target(0) else { return };
    let need = fit_scratch_len(rows, d, image.map_or(d, |(w, _)| w), usize::from(shift), linear_outputs(&target), 8);
    if need > 1 << 22 {
        return;
    }
    let mut fs = vec![0.0; need];
    let samples = Samples {
        data: &data,
        n: 2,
        d,
        image,
        shift,
    };
    let fit = view.fit();
    if st.enroll(&mut f, &key, "new", &target, &samples, &fit, 8, &mut fs).is_ok() {
        // A fresh boot loads it.
        let mut again: Store<C> = Store::new(&f, SLOT).unwrap();
        let mut ls = vec![0.0; Store::<C>::load_scratch_len(d, view.outputs())];
        again.load(&mut f, &key, &mut ls).expect("a saved record loads");
        assert_eq!(again.len(), 1, "the enrolled class is kept");
        // What was classified before still is (the new class may win, but not fail it).
        if let (Some(x), Some(Ok(_))) = (&q, &before) {
            classify(&view, &again, &mut f, x).expect("the new class keeps the device classifying");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else { return };
    let n = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (file, tail) = rest.split_at(n);
    run(file, tail);
    if file.len() >= MIN_FILE_LEN {
        let mut fixed = file.to_vec();
        let m = fixed.len() - CRC_LEN;
        let crc = format::checksum(&fixed[..m]);
        fixed[m..].copy_from_slice(&crc.to_le_bytes());
        run(&fixed, tail);
    }
});
