//! Fuzzes the firmware's serial loop, `Device::serve`, built for the host: the input is what
//! hosts send on the serial link, cut into boots by the mark `\0RB\0` (the device reboots on
//! the same flash there). The model is `ldl_core::testing::small_model(0)` (6 x 6 images).
//! Nothing may panic. Oracles: every reply the device writes decodes; after each stream the
//! device still answers `Info`; and a reboot loads exactly the classes the device held
//! before it (nothing enrolled is lost, nothing half-written appears).
#![no_main]

use ldl_core::budget::Sizes;
use ldl_core::protocol::{decode, encode, FrameReader, Request, Response, MAX_FRAME_LEN};
use ldl_core::store::Store;
use ldl_core::testing::{small_model, RamFlash, SMALL_D, SMALL_W};
use ldl_firmware::device::Device;
use ldl_firmware::testing::{Duplex, Pin};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const C: usize = 4;
const SIZES: Sizes = Sizes {
    inputs: SMALL_D,
    width: SMALL_W,
    shift: 1,
    outputs: 4,
    rank: 5,
    classes: C,
    images: 4,
};
type Flash = RamFlash<256>;
const SLOT: u32 = SIZES.slot_bytes(256) as u32;
const REBOOT: &[u8] = b"\0RB\0";

/// The model file in a MODEL region: aligned, followed by erased bytes.
fn region() -> &'static [u8] {
    static WORDS: OnceLock<Vec<u32>> = OnceLock::new();
    let words = WORDS.get_or_init(|| {
        let mut m = small_model(0);
        m.threshold = Some(2.0);
        let bytes = ldl_core::format::encode(&m).unwrap();
        let mut w = vec![0xFFFF_FFFFu32; bytes.len() / 4 + 64];
        bytemuck::cast_slice_mut::<u32, u8>(&mut w)[..bytes.len()].copy_from_slice(&bytes);
        w
    });
    bytemuck::cast_slice(words)
}

/// The parts of `data` between reboot marks.
fn boots(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(REBOOT.len()).position(|w| w == REBOOT) {
        parts.push(&rest[..at]);
        rest = &rest[at + REBOOT.len()..];
    }
    parts.push(rest);
    parts
}

fn labels(dev: &Device<'_, Flash, C>) -> Vec<String> {
    dev.store()
        .map_or(Vec::new(), |s| s.entries().iter().map(|e| e.label.as_str().to_string()).collect())
}

fuzz_target!(|data: &[u8]| {
    let mut flash = Flash::new(2 * SLOT as usize);
    let mut kept: Option<Vec<String>> = None;
    for (i, part) in boots(data).into_iter().enumerate().take(8) {
        let mut work = vec![0.0f32; SIZES.workspace()];
        let mut store = Store::<C>::empty();
        let (mut dev, boot) = Device::<_, C>::new(region(), &mut work, &mut store, SIZES, flash, SLOT);
        assert!(matches!(boot.store, Some(Ok(_))), "boot {i}: {boot:?}");
        if let Some(k) = &kept {
            assert_eq!(&labels(&dev), k, "boot {i} lost or gained classes");
        }
        let mut link = Duplex::new(part.to_vec());
        link.chunk = 1 + part.len() % 64;
        let mut rx: FrameReader<MAX_FRAME_LEN> = FrameReader::new();
        let mut tx = vec![0u8; ldl_core::budget::TX_BYTES];
        let _ = dev.serve(&mut link, &mut Pin(false), &mut rx, &mut tx);
        for f in link.output.split(|&b| b == 0).filter(|f| !f.is_empty()) {
            decode::<Response>(&mut f.to_vec()).expect("every reply decodes");
        }
        // A health check after whatever came before.
        let mut info = vec![0u8; MAX_FRAME_LEN];
        let n = encode(u32::MAX, &Request::Info, &mut info).unwrap();
        let mut link = Duplex::new(info[..n].to_vec());
        let mut rx: FrameReader<MAX_FRAME_LEN> = FrameReader::new();
        let _ = dev.serve(&mut link, &mut Pin(false), &mut rx, &mut tx);
        let mut out = link.output.clone();
        let (id, r) = decode::<Response>(&mut out).expect("Info answers");
        assert!(id == u32::MAX && matches!(r, Response::Info(_)), "{r:?}");
        kept = Some(labels(&dev));
        flash = core::mem::replace(dev.flash(), Flash::new(0));
    }
});
