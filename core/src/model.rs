//! What a model is, independent of where it lives: method, labels, preprocessing, threshold,
//! and (on the host) the owned weights of every ensemble member.

use crate::error::{Error, Result};
use crate::LABEL_LEN;
use serde::{Deserialize, Serialize};

/// A class label: a short UTF-8 string, stored inline.
pub type Label = heapless::String<LABEL_LEN>;

/// Makes a [`Label`], failing with `LabelTooLong` rather than truncating.
pub fn label(s: &str) -> Result<Label> {
    Label::try_from(s).map_err(|_| Error::LabelTooLong)
}

/// How a model's predictors were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Method {
    /// One-to-Many Distillation: frozen random target, predictors by gradient descent.
    O2md,
    /// Bidirectional Distillation: target and predictors trained in turn.
    Bd,
    /// Naive: identity target, each predictor an autoencoder.
    Naive,
    /// Exact closed-form (ridge) fit of each predictor, no epochs.
    ClosedForm,
}

/// Input preprocessing the device must apply exactly as the host did, recorded in the model.
/// Raw input `v` becomes `v * scale + offset` (after an optional resize of an image).
///
/// Serialized as its fields in order, `fill` only when it is not 0: a model without warped
/// copies is the version 2 file it always was (`core/FORMAT.md`, section 8). Deserialized
/// in the version 2 shape (`fill` 0); the model file reads version 3's `fill` itself.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(from = "PreprocessV2")]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Preprocess {
    /// Multiplier on raw values (e.g. 1/255 for 8-bit pixels).
    pub scale: f32,
    /// Added after scaling (e.g. 1 with scale -1/255 to make ink = 1 on white paper).
    pub offset: f32,
    /// For images: the source size the host resized from and the size the model expects
    /// (width, height); `(0, 0)` source when no resize happened.
    pub image: Option<ImageSpec>,
    /// Enrollment augmentation: every enrolled image also adds its shifts by up to this
    /// many pixels in each direction (0 = none). See [`crate::augment`].
    pub shift: u8,
    /// Enrollment augmentation beyond shifts (images only): an enrollment of `n` images also
    /// adds warped copies of each ([`crate::augment::fill`]) while it stays within this many
    /// images (0 = none). Format version 4 on.
    pub fill: u8,
    /// Query alignment (images only): classification also sees the query through the warps
    /// of [`crate::augment::ALIGNS`]`[align]` and keeps each class's least distance (0 =
    /// the query alone). Format version 5 on.
    pub align: u8,
}

impl Serialize for Preprocess {
    fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // The fields of later versions only when they are set (`format::VERSION`): `fill`
        // (version 4) when there are copies or an alignment, `align` (version 5) when set.
        let fill = self.fill > 0 || self.align > 0;
        let len = if self.align > 0 {
            6
        } else if fill {
            5
        } else {
            4
        };
        let mut st = s.serialize_struct("Preprocess", len)?;
        st.serialize_field("scale", &self.scale)?;
        st.serialize_field("offset", &self.offset)?;
        st.serialize_field("image", &self.image)?;
        st.serialize_field("shift", &self.shift)?;
        if fill {
            st.serialize_field("fill", &self.fill)?;
        } else {
            st.skip_field("fill")?;
        }
        if self.align > 0 {
            st.serialize_field("align", &self.align)?;
        } else {
            st.skip_field("align")?;
        }
        st.end()
    }
}

/// [`Preprocess`] as format versions 1 and 2 hold it: without `fill`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub(crate) struct PreprocessV2 {
    scale: f32,
    offset: f32,
    image: Option<ImageSpec>,
    shift: u8,
}

impl From<PreprocessV2> for Preprocess {
    fn from(p: PreprocessV2) -> Self {
        Preprocess {
            scale: p.scale,
            offset: p.offset,
            image: p.image,
            shift: p.shift,
            fill: 0,
            align: 0,
        }
    }
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            scale: 1.0,
            offset: 0.0,
            image: None,
            shift: 0,
            fill: 0,
            align: 0,
        }
    }
}

/// Image geometry for [`Preprocess`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ImageSpec {
    /// Width the model expects.
    pub width: u16,
    /// Height the model expects.
    pub height: u16,
    /// Width of the original images (0 = same as `width`).
    pub source_width: u16,
    /// Height of the original images (0 = same as `height`).
    pub source_height: u16,
}

impl Preprocess {
    /// Applies scale and offset in place; fails on non-finite results.
    pub fn apply(&self, x: &mut [f32]) -> Result<()> {
        for v in x.iter_mut() {
            *v = *v * self.scale + self.offset;
        }
        crate::error::check_finite(x)
    }

    /// The query alignment classification applies ([`Preprocess::align`]), `None` for the
    /// query alone. `InvalidParameter` for an unknown alignment or one without an image.
    pub fn alignment(&self) -> Result<Option<crate::augment::Alignment>> {
        match (self.align, self.image) {
            (0, _) => Ok(None),
            (a, Some(img)) => crate::augment::Alignment::of(a, usize::from(img.width), usize::from(img.height)),
            (_, None) => Err(Error::InvalidParameter),
        }
    }
}

#[cfg(feature = "alloc")]
pub use owned::*;

#[cfg(feature = "alloc")]
mod owned {
    use super::*;
    use crate::classify::Classes;
    use crate::error::check_len;
    use crate::linear::Target;
    use crate::novelty::{Rule, Score};
    use crate::predictor::Predictor;
    use crate::subspace::FitOptions;
    use alloc::vec::Vec;

    /// One ensemble member: a target and one predictor per class.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Member {
        /// The target `Q`.
        pub target: Target<Vec<f32>>,
        /// `P_c`, in the order of the model's labels.
        pub predictors: Vec<Predictor<Vec<f32>>>,
    }

    /// A model on the heap: what the host trains, saves, loads and enrolls into.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Model {
        /// How it was trained.
        pub method: Method,
        /// One label per class.
        pub labels: Vec<Label>,
        /// Ensemble members (one for a plain model).
        pub members: Vec<Member>,
        /// Novelty threshold: a sample whose `score` is above it is "unknown".
        pub threshold: Option<f32>,
        /// The novelty score the threshold applies to ([`crate::novelty`]); [`Score::Best`]
        /// (the closest class's distance) for a model file before version 3.
        pub score: Score,
        /// Input preprocessing.
        pub preprocess: Preprocess,
        /// Most classes this model may hold (room a device reserves for enrollment).
        pub capacity: u16,
        /// How enrolled classes are fitted.
        pub fit: FitOptions,
    }

    impl Model {
        /// Input dimension.
        pub fn inputs(&self) -> usize {
            self.members.first().map_or(0, |m| m.target.inputs())
        }
        /// Target outputs `k`.
        pub fn outputs(&self) -> usize {
            self.members.first().map_or(0, |m| m.target.outputs())
        }
        /// How the model says "unknown": its score and threshold, for [`crate::classify()`].
        pub fn rule(&self) -> Rule {
            Rule {
                score: self.score,
                threshold: self.threshold,
            }
        }
        /// Index of a label.
        pub fn class_index(&self, label: &str) -> Option<usize> {
            self.labels.iter().position(|l| l.as_str() == label)
        }

        /// Adds a class from `n` preprocessed samples (row-major, not augmented) as a device
        /// enrolls one: the compact closed-form fit ([`crate::fit`]) with the model's fit
        /// options and shift augmentation (`preprocess.image` and `shift`), at most
        /// `fit.max_rank` directions (no limit at 0); every other class stays as it is.
        /// Fails when the model is full, the label exists or is too long, or the samples are
        /// empty, mis-sized or non-finite.
        pub fn enroll(&mut self, name: &str, samples: &[f32], n: usize) -> Result<()> {
            let cap = match self.fit.max_rank {
                0 => usize::MAX,
                r => r as usize,
            };
            self.enroll_capped(name, samples, n, cap)
        }

        /// [`Model::enroll`] with at most `cap` directions (a device's own bound, when it is
        /// below the model's `fit.max_rank`).
        pub fn enroll_capped(&mut self, name: &str, samples: &[f32], n: usize, cap: usize) -> Result<()> {
            let l = label(name)?;
            if self.class_index(name).is_some() {
                return Err(Error::DuplicateLabel);
            }
            if self.labels.len() >= self.capacity as usize {
                return Err(Error::CapacityFull);
            }
            let d = self.inputs();
            check_len(n.saturating_mul(d), samples.len())?;
            let image = self.preprocess.image.map(|im| (im.width as usize, im.height as usize));
            // The warped copies, as a device makes them in its free image slots.
            let mut filled = Vec::new();
            let (samples, n) = match (image, self.preprocess.fill) {
                (Some((w, h)), fill) if fill > 0 => {
                    if w.checked_mul(h) != Some(d) {
                        return Err(Error::InvalidParameter);
                    }
                    let v = crate::augment::warps_per_image(n, fill);
                    filled.resize(n.saturating_mul(v.saturating_add(1)).saturating_mul(d), 0.0);
                    filled
                        .get_mut(..samples.len())
                        .ok_or(Error::BufferTooSmall)?
                        .copy_from_slice(samples);
                    let n = crate::augment::fill(&mut filled, n, w, h, fill)?;
                    (filled.as_slice(), n)
                }
                _ => (samples, n),
            };
            let smp = crate::fit::Samples {
                data: samples,
                n,
                d,
                image,
                shift: self.preprocess.shift,
            };
            let cap = cap.min(smp.rows()).min(d);
            let fitted: Result<Vec<_>> = self
                .members
                .iter()
                .map(|mem| crate::fit::fit_owned(&mem.target, &smp, &self.fit, cap))
                .collect();
            for (mem, c) in self.members.iter_mut().zip(fitted?) {
                mem.predictors.push(Predictor::Compact(c));
            }
            self.labels.push(l);
            Ok(())
        }

        /// Removes a class.
        pub fn forget(&mut self, name: &str) -> Result<()> {
            let i = self.class_index(name).ok_or(Error::UnknownClass)?;
            self.labels.remove(i);
            for mem in &mut self.members {
                mem.predictors.remove(i);
            }
            Ok(())
        }

        /// Checks internal consistency (sizes, members, labels); run after building one.
        pub fn validate(&self) -> Result<()> {
            if self.members.is_empty() || self.members.len() > crate::classify::MAX_MEMBERS {
                return Err(Error::InvalidParameter);
            }
            if self.labels.len() > self.capacity as usize {
                return Err(Error::CapacityFull);
            }
            let (d, k) = (self.inputs(), self.outputs());
            for mem in &self.members {
                check_len(d, mem.target.inputs())?;
                check_len(k, mem.target.outputs())?;
                check_len(self.labels.len(), mem.predictors.len())?;
                for p in &mem.predictors {
                    check_len(d, p.inputs())?;
                    check_len(k, p.outputs())?;
                }
            }
            Ok(())
        }
    }

    impl Classes for Model {
        fn members(&self) -> usize {
            self.members.len()
        }
        fn len(&self) -> usize {
            self.labels.len()
        }
        fn target(&self, member: usize) -> Result<Target<&[f32]>> {
            self.members.get(member).map(|m| m.target.view()).ok_or(Error::InvalidParameter)
        }
        fn predictor(&self, member: usize, class: usize) -> Result<Predictor<&[f32]>> {
            self.members
                .get(member)
                .and_then(|m| m.predictors.get(class))
                .map(|p| p.view())
                .ok_or(Error::UnknownClass)
        }
        fn alignment(&self) -> Result<Option<crate::augment::Alignment>> {
            self.preprocess.alignment()
        }
    }
}
