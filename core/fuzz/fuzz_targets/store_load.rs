//! Fuzzes the store of enrolled classes as a device boots on whatever its flash holds: two
//! slots of an arbitrary flash image are loaded for one of a few models (an identity or a
//! linear target, the right or another model's CRC), then the store is used as the device
//! would: classification with the model's own classes, an enrollment and a forget.
//! Nothing may panic, and every save that succeeds leaves flash that a fresh boot loads to
//! exactly the classes the store reports (the store never holds a record it would refuse).
#![no_main]

use ldl_core::fit::{fit_scratch_len, linear_outputs, Samples};
use ldl_core::store::{classify_joined, ModelKey, Store};
use ldl_core::testing::{blob_samples as class, small_model, RamFlash, SMALL_D, SMALL_W};
use ldl_core::Model;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const W: usize = SMALL_W;
const D: usize = SMALL_D;
const C: usize = 6;
type Flash = RamFlash<256>;

/// The two models of the store's tests: identity and linear target (`testing::small_model`).
fn models() -> &'static [Model; 2] {
    static M: OnceLock<[Model; 2]> = OnceLock::new();
    M.get_or_init(|| [small_model(0), small_model(4)])
}

/// A fresh boot on `flash`: the classes it loads (`None` when the record is refused).
fn boot(flash: &mut Flash, slot: u32, key: &ModelKey) -> Option<Vec<String>> {
    let mut st: Store<C> = Store::new(flash, slot).ok()?;
    let mut scratch = vec![0.0; Store::<C>::load_scratch_len(key.inputs, key.outputs)];
    st.load(flash, key, &mut scratch).ok()?;
    Some(st.entries().iter().map(|e| e.label.as_str().to_string()).collect())
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, image)) = data.split_first() else { return };
    let slot = 256u32 << (cfg & 3);
    let m = &models()[usize::from(cfg >> 2 & 1)];
    let crc = if cfg & 8 == 0 { 0xC0FFEE } else { 0xBAD };
    let key = ModelKey::of(m, crc).unwrap();
    let mut f = Flash::new(2 * slot as usize);
    let n = image.len().min(f.mem.len());
    f.mem[..n].copy_from_slice(&image[..n]);

    let mut st: Store<C> = match Store::new(&f, slot) {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut ls = vec![0.0; Store::<C>::load_scratch_len(D, key.outputs)];
    let _ = st.load(&mut f, &key, &mut ls);
    let labels = |st: &Store<C>| st.entries().iter().map(|e| e.label.as_str().to_string()).collect::<Vec<_>>();

    // Classify with the loaded classes.
    let x = class(u64::from(cfg), 1);
    let n_all = m.labels.len() + st.len();
    let mut scratch = vec![0.0; 4096];
    let mut dist = vec![0.0; n_all];
    if let Ok(c) = classify_joined(m, &st, &mut f, &x, m.rule(), &mut scratch, &mut dist) {
        assert!(c.best < n_all && !(c.novelty < 0.0));
    }

    // Enroll a class: when it is saved, a fresh boot loads exactly these classes.
    let target = m.members[0].target.clone();
    let smp = class(7, 2);
    let samples = Samples {
        data: &smp,
        n: 2,
        d: D,
        image: Some((W, W)),
        shift: m.preprocess.shift,
    };
    let rows = 2 * ldl_core::augment::shift_count(m.preprocess.shift);
    let mut fs = vec![0.0; fit_scratch_len(rows, D, W, usize::from(m.preprocess.shift), linear_outputs(&target), 5)];
    let before = labels(&st);
    match st.enroll(&mut f, &key, "new", &target, &samples, &m.fit, 5, &mut fs) {
        Ok(_) => assert_eq!(boot(&mut f, slot, &key), Some(labels(&st))),
        Err(_) => assert_eq!(labels(&st), before, "a refused enrollment changes nothing"),
    }
    // Forget the first class: the same.
    if let Some(first) = st.entries().first().map(|e| e.label.clone()) {
        if st.forget(&mut f, &key, &first).is_ok() {
            assert_eq!(boot(&mut f, slot, &key), Some(labels(&st)));
        }
    }
});
