//! Classification: `argmin_c ||P_c(x) - Q(x)||^2`, every class's distance, a novelty score and
//! "unknown"; over one (target, predictors) pair or an ensemble of them.

use crate::error::{check_len, Error, Result};
use crate::linear::Target;
use crate::predictor::Predictor;

/// Anything that holds classes to decide between: a model on the heap, a model file read in
/// place from flash, a device's enrolled classes, or several of these together.
///
/// An ensemble has several members, each its own target and one predictor per class; a
/// plain model has one member.
pub trait Classes {
    /// Number of ensemble members (>= 1).
    fn members(&self) -> usize;
    /// Number of classes.
    fn len(&self) -> usize;
    /// True when there is no class.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The target of one member.
    fn target(&self, member: usize) -> Result<Target<&[f32]>>;
    /// The predictor of `class` in `member`.
    fn predictor(&self, member: usize, class: usize) -> Result<Predictor<&[f32]>>;
}

/// The answer for one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Classification {
    /// Index of the closest class (even when the sample is "unknown").
    pub best: usize,
    /// `None` when the novelty score passes the threshold: the sample is far from every class.
    pub class: Option<usize>,
    /// Novelty score: the closest class's distance (mean over ensemble members).
    pub novelty: f32,
    /// Fraction of ensemble members whose own decision is `best` (1 for a single model):
    /// low agreement means an uncertain answer.
    pub agreement: f32,
}

/// Scratch (f32s) that [`classify`] needs for these classes.
pub fn scratch_len(classes: &impl Classes) -> Result<usize> {
    let mut need = 0;
    for m in 0..classes.members() {
        let k = classes.target(m)?.outputs();
        for c in 0..classes.len() {
            need = need.max(k + classes.predictor(m, c)?.scratch_len());
        }
    }
    Ok(need)
}

/// Classifies `x`: fills `distances[c]` with class `c`'s distance (averaged over ensemble
/// members) and returns the decision. With a `threshold`, a sample whose novelty score is
/// above it is "unknown" (`class: None`). Fails on non-finite input, wrong sizes, no classes.
pub fn classify(
    classes: &impl Classes,
    x: &[f32],
    threshold: Option<f32>,
    scratch: &mut [f32],
    distances: &mut [f32],
) -> Result<Classification> {
    let n = classes.len();
    let members = classes.members();
    if n == 0 || members == 0 {
        return Err(Error::EmptyClass);
    }
    if distances.len() < n {
        return Err(Error::BufferTooSmall);
    }
    crate::error::check_finite(x)?;
    let distances = &mut distances[..n];
    distances.iter_mut().for_each(|d| *d = 0.0);
    let mut member_best = [0u16; MAX_MEMBERS];
    if members > MAX_MEMBERS {
        return Err(Error::CapacityFull);
    }
    for (m, slot) in member_best.iter_mut().enumerate().take(members) {
        let target = classes.target(m)?;
        check_len(target.inputs(), x.len())?;
        let k = target.outputs();
        if scratch.len() < k {
            return Err(Error::BufferTooSmall);
        }
        let (qx, rest) = scratch.split_at_mut(k);
        target.forward(x, qx)?;
        let (mut best, mut best_d) = (0usize, f32::INFINITY);
        for (c, dist) in distances.iter_mut().enumerate() {
            let p = classes.predictor(m, c)?;
            let dc = p.distance(x, qx, rest)?;
            if dc < best_d {
                best_d = dc;
                best = c;
            }
            *dist += dc / members as f32;
        }
        *slot = best as u16;
    }
    decide(distances, &member_best[..members], threshold)
}

/// The decision from every class's (member-averaged) distance and each member's own best
/// class: the closest class, "unknown" past the threshold, and the members' agreement.
pub(crate) fn decide(distances: &[f32], member_best: &[u16], threshold: Option<f32>) -> Result<Classification> {
    if distances.iter().any(|d| !d.is_finite()) {
        return Err(Error::NonFinite);
    }
    let n = distances.len();
    if n == 0 || member_best.is_empty() {
        return Err(Error::EmptyClass);
    }
    let mut best = 0;
    for c in 1..n {
        if distances[c] < distances[best] {
            best = c;
        }
    }
    let votes = member_best.iter().filter(|&&b| b as usize == best).count();
    let novelty = distances[best];
    let known = threshold.is_none_or(|t| novelty <= t);
    Ok(Classification {
        best,
        class: known.then_some(best),
        novelty,
        agreement: votes as f32 / member_best.len() as f32,
    })
}

/// Most ensemble members a model may have.
pub const MAX_MEMBERS: usize = 16;
