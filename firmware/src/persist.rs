//! Enrolled classes in flash, power-fail safe: two slots (A/B) of whole erase sectors, each
//! holding one store record (`ldl_core::store`: header with magic, sequence number, length
//! and CRC-32, then the body).
//!
//! A save writes the new record into the slot that does NOT hold the current one: erase it,
//! write the body, then the header last. Until the header is complete and its CRC matches the
//! body, that slot is invalid and boot keeps using the other one, so a power cut at any step
//! leaves the previous classes loadable. Boot picks the valid slot with the highest sequence
//! number.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use ldl_core::enroll::Enrolled;
use ldl_core::store::{self, Header, LoadError, HEADER_LEN};

/// Bytes buffered per flash write.
const CHUNK: usize = 256;

/// Why the store could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum StoreError {
    /// A flash operation failed.
    Flash,
    /// The record does not fit a slot.
    TooLarge,
    /// The slots are smaller than a header, or the flash geometry is unusable.
    Geometry,
    /// Encoding the record failed.
    Encode,
}

/// What [`Slots::load`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum Loaded {
    /// No valid record: the store starts empty.
    Empty,
    /// Classes loaded from slot `slot`, sequence `seq`.
    Classes {
        /// The slot (0 or 1).
        slot: u8,
        /// Its sequence number.
        seq: u32,
        /// Classes loaded.
        count: usize,
    },
    /// The newest record was not loaded (fitted for another model, or for other sizes);
    /// the store starts empty and the next save replaces it.
    Refused(LoadError),
}

/// The two slots over a NorFlash, and which one is current.
#[derive(Debug, Clone, Copy)]
pub struct Slots {
    slot_size: u32,
    current: Option<(u8, u32)>,
}

impl Slots {
    /// Two slots of `slot_size` bytes (a multiple of the erase size) at offsets 0 and
    /// `slot_size` of the flash.
    pub fn new<F: NorFlash>(flash: &F, slot_size: u32) -> Result<Self, StoreError> {
        let ok = slot_size as usize > HEADER_LEN
            && (slot_size as usize).is_multiple_of(F::ERASE_SIZE)
            && (2 * slot_size as usize) <= flash.capacity()
            && CHUNK.is_multiple_of(F::WRITE_SIZE)
            && HEADER_LEN.is_multiple_of(F::WRITE_SIZE);
        if !ok {
            return Err(StoreError::Geometry);
        }
        Ok(Slots { slot_size, current: None })
    }

    /// The slot size that a record of `body` bytes needs, rounded up to erase sectors.
    pub const fn slot_size_for(body: usize, erase: usize) -> usize {
        (HEADER_LEN + body).div_ceil(erase) * erase
    }

    /// Largest body a slot holds.
    pub fn capacity(&self) -> usize {
        self.slot_size as usize - HEADER_LEN
    }

    fn base(&self, slot: u8) -> u32 {
        self.slot_size * slot as u32
    }

    /// The valid header of a slot, if any (magic, version, length, CRC over the body).
    fn valid<F: ReadNorFlash>(&self, flash: &mut F, slot: u8) -> Result<Option<Header>, StoreError> {
        let base = self.base(slot);
        let mut hb = [0u8; HEADER_LEN];
        flash.read(base, &mut hb).map_err(|_| StoreError::Flash)?;
        let Some(h) = Header::parse(&hb) else {
            return Ok(None);
        };
        if h.len as usize > self.capacity() {
            return Ok(None);
        }
        let mut crc = h.crc_start();
        let mut buf = [0u8; CHUNK];
        let mut at = 0usize;
        while at < h.len as usize {
            let n = CHUNK.min(h.len as usize - at);
            let b = buf.get_mut(..n).ok_or(StoreError::Flash)?;
            flash.read(base + (HEADER_LEN + at) as u32, b).map_err(|_| StoreError::Flash)?;
            crc.update(b);
            at += n;
        }
        Ok((crc.finish() == h.crc).then_some(h))
    }

    /// Finds the newest valid record and loads it into `e` (cleared first), for the model
    /// with CRC `model_crc`. A newest record that cannot be loaded is skipped for the other
    /// slot's if that one loads.
    pub fn load<F: ReadNorFlash, const D: usize, const K: usize, const R: usize, const C: usize>(
        &mut self,
        flash: &mut F,
        e: &mut Enrolled<D, K, R, C>,
        model_crc: u32,
    ) -> Result<Loaded, StoreError> {
        e.clear();
        let a = self.valid(flash, 0)?;
        let b = self.valid(flash, 1)?;
        let mut order: [Option<(u8, Header)>; 2] = match (a, b) {
            (Some(a), Some(b)) if b.newer_than(&a) => [Some((1, b)), Some((0, a))],
            (Some(a), Some(b)) => [Some((0, a)), Some((1, b))],
            (Some(a), None) => [Some((0, a)), None],
            (None, Some(b)) => [Some((1, b)), None],
            (None, None) => [None, None],
        };
        // The newest valid slot is current whatever happens: the next save goes to the other.
        self.current = order[0].map(|(s, h)| (s, h.seq));
        let mut refused = None;
        for (slot, h) in order.iter_mut().flatten() {
            let base = self.base(*slot) + HEADER_LEN as u32;
            let r = store::read_body(e, model_crc, h.len as usize, &mut |at, buf: &mut [u8]| {
                flash.read(base + at as u32, buf).map_err(|_| ldl_core::Error::Truncated)
            });
            match r {
                Ok(()) => {
                    return Ok(Loaded::Classes {
                        slot: *slot,
                        seq: h.seq,
                        count: e.len(),
                    })
                }
                Err(err) => {
                    refused.get_or_insert(err);
                }
            }
        }
        Ok(refused.map_or(Loaded::Empty, Loaded::Refused))
    }

    /// Saves `e` (fitted for the model with CRC `model_crc`) into the slot that is not
    /// current; it becomes current once completely written. Returns the slot used.
    pub fn save<F: NorFlash, const D: usize, const K: usize, const R: usize, const C: usize>(
        &mut self,
        flash: &mut F,
        e: &Enrolled<D, K, R, C>,
        model_crc: u32,
    ) -> Result<u8, StoreError> {
        let len = store::body_len(e).map_err(|_| StoreError::Encode)?;
        if len > self.capacity() {
            return Err(StoreError::TooLarge);
        }
        let (slot, seq) = match self.current {
            Some((s, seq)) => (1 - s, seq.wrapping_add(1)),
            None => (0, 1),
        };
        let base = self.base(slot);
        let used = Self::slot_size_for(len, F::ERASE_SIZE) as u32;
        flash.erase(base, base + used.min(self.slot_size)).map_err(|_| StoreError::Flash)?;
        let header = Header {
            seq,
            len: len as u32,
            crc: 0,
        };
        let mut crc = header.crc_start();
        let mut w = Writer {
            flash,
            at: base + HEADER_LEN as u32,
            buf: [0; CHUNK],
            n: 0,
            failed: false,
        };
        let r = store::write_body(e, model_crc, &mut |bytes: &[u8]| {
            crc.update(bytes);
            w.put(bytes)
        });
        r.map_err(|_| if w.failed { StoreError::Flash } else { StoreError::Encode })?;
        w.flush().map_err(|_| StoreError::Flash)?;
        let header = Header {
            crc: crc.finish(),
            ..header
        };
        flash.write(base, &header.to_bytes()).map_err(|_| StoreError::Flash)?;
        self.current = Some((slot, seq));
        Ok(slot)
    }
}

/// Buffers bytes into aligned chunk writes.
struct Writer<'f, F> {
    flash: &'f mut F,
    at: u32,
    buf: [u8; CHUNK],
    n: usize,
    failed: bool,
}

impl<F: NorFlash> Writer<'_, F> {
    fn put(&mut self, mut bytes: &[u8]) -> ldl_core::Result<()> {
        while !bytes.is_empty() {
            let room = CHUNK - self.n;
            let k = room.min(bytes.len());
            let (head, tail) = bytes.split_at(k);
            self.buf
                .get_mut(self.n..self.n + k)
                .ok_or(ldl_core::Error::BufferTooSmall)?
                .copy_from_slice(head);
            self.n += k;
            bytes = tail;
            if self.n == CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> ldl_core::Result<()> {
        if self.n == 0 {
            return Ok(());
        }
        // Bodies are whole 4-byte words; pad to the write size anyway.
        let n = self.n.div_ceil(F::WRITE_SIZE) * F::WRITE_SIZE;
        if let Some(pad) = self.buf.get_mut(self.n..n) {
            pad.fill(0xFF);
        }
        let data = self.buf.get(..n).ok_or(ldl_core::Error::BufferTooSmall)?;
        if self.flash.write(self.at, data).is_err() {
            self.failed = true;
            return Err(ldl_core::Error::BufferTooSmall);
        }
        self.at += n as u32;
        self.n = 0;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use embedded_storage::nor_flash::{ErrorType, NorFlashErrorKind};
    use ldl_core::linear::Target;
    use ldl_core::subspace::{fit_scratch_len, FitOptions};

    /// NOR flash in RAM that can be cut: after `budget` more operations, the next write
    /// programs only its first `tear_words` words and the next erase erases only its first
    /// half sector (then garbage-free stop), and every later operation fails.
    pub struct CutFlash {
        pub mem: Vec<u8>,
        pub budget: Option<usize>,
        pub tear_words: usize,
        pub dead: bool,
        pub ops: usize,
    }

    impl CutFlash {
        pub fn new(size: usize) -> Self {
            CutFlash {
                mem: vec![0xFF; size],
                budget: None,
                tear_words: 0,
                dead: false,
                ops: 0,
            }
        }
        /// Counts one operation; returns false when it must be cut.
        fn step(&mut self) -> Result<bool, NorFlashErrorKind> {
            if self.dead {
                return Err(NorFlashErrorKind::Other);
            }
            self.ops += 1;
            match &mut self.budget {
                Some(0) => {
                    self.dead = true;
                    Ok(false)
                }
                Some(b) => {
                    *b -= 1;
                    Ok(true)
                }
                None => Ok(true),
            }
        }
    }

    impl ErrorType for CutFlash {
        type Error = NorFlashErrorKind;
    }
    impl ReadNorFlash for CutFlash {
        const READ_SIZE: usize = 1;
        fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
            let o = offset as usize;
            bytes.copy_from_slice(self.mem.get(o..o + bytes.len()).ok_or(NorFlashErrorKind::OutOfBounds)?);
            Ok(())
        }
        fn capacity(&self) -> usize {
            self.mem.len()
        }
    }
    impl NorFlash for CutFlash {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = 256;
        fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
            embedded_storage::nor_flash::check_erase(self, from, to)?;
            let mut s = from as usize;
            while s < to as usize {
                if !self.step()? {
                    // Cut mid-erase: half the sector erased, the rest as it was.
                    self.mem[s..s + Self::ERASE_SIZE / 2].fill(0xFF);
                    return Err(NorFlashErrorKind::Other);
                }
                self.mem[s..s + Self::ERASE_SIZE].fill(0xFF);
                s += Self::ERASE_SIZE;
            }
            Ok(())
        }
        fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
            embedded_storage::nor_flash::check_write(self, offset, bytes.len())?;
            let o = offset as usize;
            let full = self.step()?;
            let n = if full {
                bytes.len()
            } else {
                (self.tear_words * 4).min(bytes.len())
            };
            for (d, s) in self.mem[o..o + n].iter_mut().zip(bytes) {
                *d &= *s;
            }
            if full {
                Ok(())
            } else {
                Err(NorFlashErrorKind::Other)
            }
        }
    }

    const D: usize = 16;
    type E = Enrolled<D, 4, 4, 3>;

    fn enroll(e: &mut E, name: &str, seed: u64) {
        let mut rng = ldl_core::Rng::new(seed);
        let mut s: Vec<f32> = (0..3 * D).map(|_| rng.normal()).collect();
        let mut scratch = vec![0.0; fit_scratch_len(3, D, D)];
        e.enroll(
            name,
            &Target::<&[f32]>::Identity { dim: D },
            &mut s,
            3,
            &FitOptions::default(),
            &mut scratch,
        )
        .unwrap();
    }

    fn same(a: &E, b: &E) -> bool {
        a.labels() == b.labels() && (0..a.len()).all(|i| a.predictor(i).unwrap() == b.predictor(i).unwrap())
    }

    fn slot_size() -> u32 {
        Slots::slot_size_for(store::max_body_len(D, 4, 4, 3), 256) as u32
    }

    #[test]
    fn save_and_load_alternate_slots() {
        let mut f = CutFlash::new(2 * slot_size() as usize + 256);
        let mut s = Slots::new(&f, slot_size()).unwrap();
        let mut e = E::new();
        assert_eq!(s.load(&mut f, &mut e, 1).unwrap(), Loaded::Empty);
        enroll(&mut e, "a", 1);
        assert_eq!(s.save(&mut f, &e, 1).unwrap(), 0);
        enroll(&mut e, "b", 2);
        assert_eq!(s.save(&mut f, &e, 1).unwrap(), 1);
        e.forget("a").unwrap();
        assert_eq!(s.save(&mut f, &e, 1).unwrap(), 0);
        let mut back = E::new();
        let mut s2 = Slots::new(&f, slot_size()).unwrap();
        assert_eq!(
            s2.load(&mut f, &mut back, 1).unwrap(),
            Loaded::Classes { slot: 0, seq: 3, count: 1 }
        );
        assert!(same(&back, &e));
        // Another model: refused, and the next save goes to the other slot.
        let mut other = E::new();
        let mut s3 = Slots::new(&f, slot_size()).unwrap();
        assert!(matches!(
            s3.load(&mut f, &mut other, 2).unwrap(),
            Loaded::Refused(LoadError::OtherModel)
        ));
        assert!(other.is_empty());
        assert_eq!(s3.save(&mut f, &other, 2).unwrap(), 1);
        assert_eq!(Slots::new(&f, 100).unwrap_err(), StoreError::Geometry);
    }

    /// Cuts the power at every flash operation of a save (and tears the cut write at every
    /// word count): reloading gives the old classes or the new ones, never anything else.
    #[test]
    fn a_cut_at_any_step_keeps_the_old_or_the_new_state() {
        let size = 2 * slot_size() as usize;
        // A history: the old state is saved (twice, so both slots hold records), then a
        // new state is saved with a cut.
        let mut old = E::new();
        enroll(&mut old, "a", 1);
        enroll(&mut old, "b", 2);
        let mut new = old.clone();
        new.forget("a").unwrap();
        enroll(&mut new, "c", 3);
        enroll(&mut new, "d", 4);

        let mut base = CutFlash::new(size);
        let mut s = Slots::new(&base, slot_size()).unwrap();
        let mut first = E::new();
        enroll(&mut first, "z", 9);
        s.save(&mut base, &first, 5).unwrap();
        s.save(&mut base, &old, 5).unwrap();
        // How many operations a full save takes.
        let mut probe = CutFlash {
            mem: base.mem.clone(),
            ..CutFlash::new(0)
        };
        let mut ps = s;
        ps.save(&mut probe, &new, 5).unwrap();
        let ops = probe.ops;
        assert!(ops > 3);

        let (mut saw_old, mut saw_new) = (0, 0);
        for cut in 0..=ops {
            for tear in [0usize, 1, 5, 63] {
                let mut f = CutFlash {
                    mem: base.mem.clone(),
                    budget: Some(cut),
                    tear_words: tear,
                    ..CutFlash::new(0)
                };
                let mut st = s;
                let r = st.save(&mut f, &new, 5);
                assert_eq!(r.is_ok(), cut >= ops, "cut {cut}");
                // Reboot.
                f.dead = false;
                f.budget = None;
                let mut back = E::new();
                let mut sl = Slots::new(&f, slot_size()).unwrap();
                let loaded = sl.load(&mut f, &mut back, 5).unwrap();
                assert!(matches!(loaded, Loaded::Classes { .. }), "cut {cut} tear {tear}: {loaded:?}");
                if same(&back, &new) {
                    saw_new += 1;
                } else {
                    assert!(same(&back, &old), "cut {cut} tear {tear}: neither old nor new");
                    saw_old += 1;
                }
                // And the device goes on: a further save after the reboot works and loads.
                sl.save(&mut f, &new, 5).unwrap();
                let mut again = E::new();
                Slots::new(&f, slot_size()).unwrap().load(&mut f, &mut again, 5).unwrap();
                assert!(same(&again, &new));
            }
        }
        assert!(saw_old > 0 && saw_new > 0);
    }
}
