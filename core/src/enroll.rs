//! Enrollment on a device: classes fitted in closed form into fixed storage sized at compile
//! time, and joined with the classes of a model read in place from flash.
//!
//! `Enrolled<D, K, R, C>` holds up to `C` classes for inputs of `D` values and a target of at
//! most `K` outputs, each class keeping its `R` strongest directions. Its size is
//! `C * 4 * (D + R*D + R + K*R + K)` bytes plus labels, known before flashing.

use crate::classify::Classes;
use crate::error::{check_len, Error, Result};
use crate::linear::Target;
use crate::model::{label, Label};
use crate::predictor::Predictor;
use crate::subspace::{fit_into, FitOptions, Subspace, SubspaceBuf};

/// One enrolled class's storage.
#[derive(Debug, Clone)]
struct Slot<const D: usize, const K: usize, const R: usize> {
    rank: usize,
    affine: bool,
    linear: bool,
    outputs: usize,
    mean: [f32; D],
    basis: [[f32; D]; R],
    shrink: [f32; R],
    proj: [[f32; R]; K],
    target_mean: [f32; K],
}

impl<const D: usize, const K: usize, const R: usize> Slot<D, K, R> {
    const EMPTY: Self = Slot {
        rank: 0,
        affine: false,
        linear: false,
        outputs: 0,
        mean: [0.0; D],
        basis: [[0.0; D]; R],
        shrink: [0.0; R],
        proj: [[0.0; R]; K],
        target_mean: [0.0; K],
    };

    /// Exchanges the contents of two slots in place, value by value: nothing the size of a
    /// slot goes through the stack (`<[T]>::swap` would move one through a temporary, and
    /// a slot is tens of KB on a device).
    fn swap_with(&mut self, other: &mut Self) {
        // Destructured so that a new field cannot be forgotten here.
        let Slot {
            rank,
            affine,
            linear,
            outputs,
            mean,
            basis,
            shrink,
            proj,
            target_mean,
        } = self;
        core::mem::swap(rank, &mut other.rank);
        core::mem::swap(affine, &mut other.affine);
        core::mem::swap(linear, &mut other.linear);
        core::mem::swap(outputs, &mut other.outputs);
        mean.swap_with_slice(&mut other.mean);
        basis.as_flattened_mut().swap_with_slice(other.basis.as_flattened_mut());
        shrink.swap_with_slice(&mut other.shrink);
        proj.as_flattened_mut().swap_with_slice(other.proj.as_flattened_mut());
        target_mean.swap_with_slice(&mut other.target_mean);
    }

    fn view(&self) -> Result<Subspace<&[f32]>> {
        let r = self.rank;
        let k = self.outputs;
        Subspace::from_parts(
            D,
            k,
            r,
            self.affine.then_some(&self.mean[..]),
            &self.basis.as_flattened()[..r * D],
            &self.shrink[..r],
            self.linear.then(|| &self.proj.as_flattened()[..k * r]),
            self.linear.then(|| &self.target_mean[..k]),
        )
    }
}

/// Classes enrolled on a device, in fixed storage (see the module doc). Put it in a
/// `static` (it is large): [`Enrolled::new`] is `const`.
#[derive(Debug, Clone)]
pub struct Enrolled<const D: usize, const K: usize, const R: usize, const C: usize> {
    labels: heapless::Vec<Label, C>,
    slots: [Slot<D, K, R>; C],
}

impl<const D: usize, const K: usize, const R: usize, const C: usize> Default for Enrolled<D, K, R, C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const D: usize, const K: usize, const R: usize, const C: usize> Enrolled<D, K, R, C> {
    /// No classes.
    pub const fn new() -> Self {
        Enrolled {
            labels: heapless::Vec::new(),
            slots: [Slot::EMPTY; C],
        }
    }

    /// Bytes of storage, as the linker will see them.
    pub const STORAGE_BYTES: usize = core::mem::size_of::<Self>();

    /// Number of enrolled classes.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when no class is enrolled.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Labels in enrollment order.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }
    /// Index of a label.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.labels.iter().position(|l| l.as_str() == name)
    }
    /// Rank of enrolled class `i`.
    pub fn rank(&self, i: usize) -> Option<usize> {
        (i < self.len()).then(|| self.slots[i].rank)
    }

    /// Fits a new class from `m` samples (`samples`, row-major `m x D`, used as workspace)
    /// against `target`, keeping its `R` strongest directions. Nothing changes on error:
    /// `CapacityFull`, `DuplicateLabel`, `LabelTooLong`, `DimensionMismatch` (wrong sample
    /// length, or a target wider than `K`), `NonFinite`, `EmptyClass`. `scratch` needs
    /// [`crate::subspace::fit_scratch_len`]`(m, D, k)` f32s.
    pub fn enroll<T: AsRef<[f32]>>(
        &mut self,
        name: &str,
        target: &Target<T>,
        samples: &mut [f32],
        m: usize,
        opts: &FitOptions,
        scratch: &mut [f32],
    ) -> Result<usize> {
        let l = label(name)?;
        if self.index_of(name).is_some() {
            return Err(Error::DuplicateLabel);
        }
        if self.labels.is_full() {
            return Err(Error::CapacityFull);
        }
        check_len(D, target.inputs())?;
        let linear = matches!(target, Target::Linear(_));
        let k = target.outputs();
        if linear && k > K {
            return Err(Error::DimensionMismatch {
                expected: K as u32,
                found: k as u32,
            });
        }
        let i = self.len();
        let slot = &mut self.slots[i];
        let buf = SubspaceBuf {
            mean: &mut slot.mean,
            basis: slot.basis.as_flattened_mut(),
            shrink: &mut slot.shrink,
            proj: slot.proj.as_flattened_mut(),
            target_mean: &mut slot.target_mean,
        };
        let rank = fit_into(target, samples, m, opts, R, buf, scratch)?;
        slot.rank = rank;
        slot.affine = opts.affine;
        slot.linear = linear;
        slot.outputs = k;
        self.labels.push(l).map_err(|_| Error::CapacityFull)?;
        Ok(rank)
    }

    /// Adds a class from stored parts (e.g. read back from flash by [`crate::store`]): `fill`
    /// gets the class's buffers sized exactly (`mean` D, `basis` rank x D, `shrink` rank,
    /// `proj` outputs x rank and `target_mean` outputs when `linear`, else both empty) and
    /// writes them. Nothing is added when `fill` or a check fails (`LabelTooLong`,
    /// `DuplicateLabel`, `CapacityFull`, `BufferTooSmall` for a rank above `R` or outputs
    /// above `K` with a linear target).
    pub fn insert_with(
        &mut self,
        name: &str,
        rank: usize,
        affine: bool,
        linear: bool,
        outputs: usize,
        fill: impl FnOnce(SubspaceBuf<'_>) -> Result<()>,
    ) -> Result<()> {
        let l = label(name)?;
        if self.index_of(name).is_some() {
            return Err(Error::DuplicateLabel);
        }
        if self.labels.is_full() {
            return Err(Error::CapacityFull);
        }
        if rank > R || outputs == 0 || (linear && outputs > K) || (!linear && outputs != D) {
            return Err(Error::BufferTooSmall);
        }
        let i = self.len();
        let slot = &mut self.slots[i];
        let kb = if linear { outputs } else { 0 };
        fill(SubspaceBuf {
            mean: &mut slot.mean,
            basis: &mut slot.basis.as_flattened_mut()[..rank * D],
            shrink: &mut slot.shrink[..rank],
            proj: &mut slot.proj.as_flattened_mut()[..kb * rank],
            target_mean: &mut slot.target_mean[..kb],
        })?;
        if !affine {
            slot.mean.iter_mut().for_each(|v| *v = 0.0);
        }
        slot.rank = rank;
        slot.affine = affine;
        slot.linear = linear;
        slot.outputs = outputs;
        self.labels.push(l).map_err(|_| Error::CapacityFull)?;
        Ok(())
    }

    /// Removes a class; the later ones move up one place, in place: no slot is copied
    /// through the stack.
    pub fn forget(&mut self, name: &str) -> Result<()> {
        let i = self.index_of(name).ok_or(Error::UnknownClass)?;
        let used = self.len();
        self.labels.remove(i);
        // Slots from `used` on hold no class: only the used ones move.
        for j in i..used - 1 {
            let (head, tail) = self.slots.split_at_mut(j + 1);
            if let (Some(a), Some(b)) = (head.last_mut(), tail.first_mut()) {
                a.swap_with(b);
            }
        }
        Ok(())
    }

    /// Removes every class.
    pub fn clear(&mut self) {
        self.labels.clear();
    }

    /// The predictor of enrolled class `i`.
    pub fn predictor(&self, i: usize) -> Result<Predictor<&[f32]>> {
        if i >= self.len() {
            return Err(Error::UnknownClass);
        }
        Ok(Predictor::Subspace(self.slots[i].view()?))
    }
}

/// A model's classes followed by enrolled ones, classified together (single-member models:
/// an ensemble would need one fit per member).
pub struct Joined<'a, M, const D: usize, const K: usize, const R: usize, const C: usize> {
    /// The model (e.g. a [`crate::format::ModelView`] read in place from flash).
    pub base: &'a M,
    /// Classes enrolled on the device.
    pub extra: &'a Enrolled<D, K, R, C>,
}

impl<M: Classes, const D: usize, const K: usize, const R: usize, const C: usize> Classes for Joined<'_, M, D, K, R, C> {
    fn members(&self) -> usize {
        if self.extra.is_empty() {
            self.base.members()
        } else {
            1
        }
    }
    fn len(&self) -> usize {
        self.base.len() + self.extra.len()
    }
    fn target(&self, member: usize) -> Result<Target<&[f32]>> {
        if !self.extra.is_empty() && self.base.members() != 1 {
            return Err(Error::InvalidParameter);
        }
        self.base.target(member)
    }
    fn predictor(&self, member: usize, class: usize) -> Result<Predictor<&[f32]>> {
        let n = self.base.len();
        if class < n {
            self.base.predictor(member, class)
        } else {
            self.extra.predictor(class - n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{classify, scratch_len};
    use crate::methods::{fit_closed_form, make_target, ClosedFormConfig};
    use crate::rng::Rng;
    use crate::subspace::fit_scratch_len;
    extern crate std;
    use std::boxed::Box;
    use std::vec;
    use std::vec::Vec;

    const D: usize = 16;

    fn class(seed: u64, m: usize) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let centre: Vec<f32> = (0..D).map(|_| 4.0 * rng.normal()).collect();
        (0..m * D).map(|i| centre[i % D] + 0.3 * rng.normal()).collect()
    }

    #[test]
    fn enrolled_classes_equal_the_host_fit_and_join_a_model() {
        let opts = FitOptions {
            ridge: 0.5,
            ..Default::default()
        };
        let cfg = ClosedFormConfig {
            k: 8,
            fit: opts,
            ..Default::default()
        };
        let (a, b, c) = (class(1, 5), class(2, 5), class(3, 5));
        let model = fit_closed_form(&[&a, &b], D, &["a", "b"], &cfg, 9).unwrap();
        let target = make_target(D, 8, true, cfg.target_init, 9).unwrap();
        assert_eq!(target, model.members[0].target);

        static_assertions_like();
        let mut dev: Enrolled<D, 8, 4, 2> = Enrolled::new();
        let mut scratch = vec![0.0; fit_scratch_len(5, D, 8)];
        let mut work = c.clone();
        assert_eq!(dev.enroll("c", &target, &mut work, 5, &opts, &mut scratch), Ok(4));
        // Same numbers as the host's closed form for the same class.
        let mut host = model.clone();
        host.capacity = 3;
        host.enroll("c", &c, 5).unwrap();
        assert_eq!(host.members[0].predictors[2].view(), dev.predictor(0).unwrap());

        let joined = Joined { base: &model, extra: &dev };
        let mut s = vec![0.0; scratch_len(&joined).unwrap()];
        let mut dist = [0.0; 3];
        for (i, x) in [&a, &b, &c].iter().enumerate() {
            let r = classify(&joined, &x[..D], None, &mut s, &mut dist).unwrap();
            assert_eq!(r.best, i);
        }

        // Errors leave the store as it was.
        let mut w = c.clone();
        assert_eq!(dev.enroll("c", &target, &mut w, 5, &opts, &mut scratch), Err(Error::DuplicateLabel));
        assert_eq!(
            dev.enroll("much-too-long-label", &target, &mut w, 5, &opts, &mut scratch),
            Err(Error::LabelTooLong)
        );
        let mut short = vec![0.0; D - 1];
        assert!(matches!(
            dev.enroll("d", &target, &mut short, 1, &opts, &mut scratch),
            Err(Error::DimensionMismatch { .. })
        ));
        let mut nan = c.clone();
        nan[0] = f32::NAN;
        assert_eq!(dev.enroll("d", &target, &mut nan, 5, &opts, &mut scratch), Err(Error::NonFinite));
        assert_eq!(dev.len(), 1);
        let mut w = a.clone();
        dev.enroll("d", &target, &mut w, 5, &opts, &mut scratch).unwrap();
        let mut w = b.clone();
        assert_eq!(dev.enroll("e", &target, &mut w, 5, &opts, &mut scratch), Err(Error::CapacityFull));
        let d_before = owned(&dev.predictor(1).unwrap());
        dev.forget("c").unwrap();
        assert_eq!(dev.labels(), &[label("d").unwrap()]);
        assert_eq!(owned(&dev.predictor(0).unwrap()), d_before, "\"d\" moved up unchanged");
        assert_eq!(dev.rank(0), Some(d_before.0));
        assert_eq!(dev.predictor(1).unwrap_err(), Error::UnknownClass);
        assert_eq!(dev.forget("c"), Err(Error::UnknownClass));
        let wide = make_target(D, 9, true, cfg.target_init, 1).unwrap();
        let mut w = b.clone();
        assert!(matches!(
            dev.enroll("f", &wide, &mut w, 5, &opts, &mut scratch),
            Err(Error::DimensionMismatch { .. })
        ));
    }

    /// A predictor's rank and parameters, copied.
    fn owned(p: &Predictor<&[f32]>) -> (usize, Vec<Vec<f32>>) {
        let Predictor::Subspace(s) = p else {
            panic!("enrolled classes are subspaces")
        };
        let opt = |o: Option<&[f32]>| o.map_or(Vec::new(), <[f32]>::to_vec);
        let parts = vec![
            opt(s.mean()),
            s.basis().to_vec(),
            s.shrink().to_vec(),
            opt(s.proj()),
            opt(s.target_mean()),
        ];
        (s.rank(), parts)
    }

    #[test]
    fn forget_moves_the_later_classes_up_in_place() {
        let opts = FitOptions::default();
        let target = Target::<Vec<f32>>::Identity { dim: D };
        let mut dev: Box<Enrolled<D, D, 3, 4>> = Box::default();
        let mut scratch = vec![0.0; fit_scratch_len(3, D, D)];
        let names = ["w", "x", "y", "z"];
        for (i, name) in names.iter().enumerate() {
            let mut w = class(10 + i as u64, 1 + i % 3);
            dev.enroll(name, &target, &mut w, 1 + i % 3, &opts, &mut scratch).unwrap();
        }
        let before: Vec<_> = (0..4).map(|i| owned(&dev.predictor(i).unwrap())).collect();
        dev.forget("x").unwrap();
        let names_left: Vec<&str> = dev.labels().iter().map(|l| l.as_str()).collect();
        assert_eq!(names_left, ["w", "y", "z"]);
        for (i, j) in [(0, 0), (1, 2), (2, 3)] {
            assert_eq!(owned(&dev.predictor(i).unwrap()), before[j]);
        }
        dev.forget("z").unwrap();
        dev.forget("w").unwrap();
        assert_eq!(owned(&dev.predictor(0).unwrap()), before[2]);
        // The freed slots take new classes.
        let mut w = class(20, 2);
        dev.enroll("v", &target, &mut w, 2, &opts, &mut scratch).unwrap();
        assert_eq!(dev.len(), 2);
        assert_eq!(owned(&dev.predictor(0).unwrap()), before[2]);
        dev.forget("y").unwrap();
        dev.forget("v").unwrap();
        assert!(dev.is_empty());
    }

    fn static_assertions_like() {
        // 2 classes x (16 + 4*16 + 4 + 8*4 + 8) floats + bookkeeping.
        const _: () = assert!(Enrolled::<D, 8, 4, 2>::STORAGE_BYTES >= 2 * 4 * (16 + 64 + 4 + 32 + 8));
    }
}
