//! Classification: `argmin_c ||P_c(x) - Q(x)||^2`, every class's distance, a novelty score and
//! "unknown"; over one (target, predictors) pair or an ensemble of them.

use crate::augment::Alignment;
use crate::error::{check_len, Error, Result};
use crate::linear::Target;
use crate::novelty::{Rule, Score};
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
    /// The query alignment a classification applies (a model's
    /// [`crate::Preprocess::align`]); `None`, the query alone, unless the classes say.
    fn alignment(&self) -> Result<Option<Alignment>> {
        Ok(None)
    }
}

/// The answer for one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Classification {
    /// Index of the closest class (even when the sample is "unknown").
    pub best: usize,
    /// `None` ("unknown") when the novelty score is above the rule's threshold (the sample
    /// is new to every class), or when every class is at the same distance (nothing tells
    /// them apart, as for a blank input).
    pub class: Option<usize>,
    /// Which novelty score `novelty` is: the [`Rule`]'s (from the model file).
    pub score: Score,
    /// The novelty score of the sample, the value compared with the rule's threshold: with
    /// [`Score::Best`] the closest class's distance (mean over ensemble members), with
    /// [`Score::Contrast`] that distance over the mean distance, and so on
    /// ([`crate::novelty`]). NaN when the score cannot tell (a ratio or contrast with a
    /// single finite distance): such a sample is not rejected. The closest class's distance
    /// itself is always `distances[best]`.
    pub novelty: f32,
    /// Fraction of ensemble members whose own decision is `best` (1 for a single model):
    /// low agreement means an uncertain answer.
    pub agreement: f32,
}

/// Scratch (f32s) that [`classify`] needs for these classes (with an alignment, a warped
/// input and one view's distances more).
pub fn scratch_len(classes: &impl Classes) -> Result<usize> {
    let mut need = 0;
    for m in 0..classes.members() {
        let k = classes.target(m)?.outputs();
        for c in 0..classes.len() {
            need = need.max(k.saturating_add(classes.predictor(m, c)?.scratch_len()));
        }
    }
    if classes.alignment()?.is_some() {
        let d = classes.target(0)?.inputs();
        need = need.saturating_add(Alignment::scratch_len(d, classes.len()));
    }
    Ok(need)
}

/// Classifies `x`: fills `distances[c]` with class `c`'s distance (averaged over ensemble
/// members) and returns the decision. The `rule` (a model's [`Rule`]) names the novelty
/// score to compute; with a threshold, a sample whose score is above it is "unknown"
/// (`class: None`). A class whose distance is not finite (it overflowed) is left out of the
/// decision. Fails on non-finite input, an input no class gives a finite distance for, wrong
/// sizes, no classes, a rule that needs per-class spreads (`InvalidParameter`).
///
/// With a query alignment ([`Classes::alignment`]) a class's distance is its least over `x`
/// and its warps ([`Alignment::least`]); such classes have one member (`InvalidParameter`
/// otherwise: an agreement over members and warps would mean nothing).
pub fn classify(classes: &impl Classes, x: &[f32], rule: Rule, scratch: &mut [f32], distances: &mut [f32]) -> Result<Classification> {
    let n = classes.len();
    let members = classes.members();
    if n == 0 || members == 0 {
        return Err(Error::EmptyClass);
    }
    let distances = distances.get_mut(..n).ok_or(Error::BufferTooSmall)?;
    crate::error::check_finite(x)?;
    if let Some(al) = classes.alignment()? {
        if members != 1 {
            return Err(Error::InvalidParameter);
        }
        al.least(x, scratch, distances, |view, scratch, out| one_member(classes, view, scratch, out))?;
        let best = closest(distances).unwrap_or(0) as u16;
        return decide(distances, &[best], rule, x);
    }
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
            let dc = or_nan(p.distance(x, qx, rest))?;
            if dc < best_d {
                best_d = dc;
                best = c;
            }
            *dist += dc / members as f32;
        }
        *slot = best as u16;
    }
    let member_best = member_best.get(..members).ok_or(Error::CapacityFull)?;
    decide(distances, member_best, rule, x)
}

/// Every class's distance of `x` under the first (only) member into `distances`.
fn one_member(classes: &impl Classes, x: &[f32], scratch: &mut [f32], distances: &mut [f32]) -> Result<()> {
    let target = classes.target(0)?;
    check_len(target.inputs(), x.len())?;
    let (qx, rest) = scratch.split_at_mut_checked(target.outputs()).ok_or(Error::BufferTooSmall)?;
    target.forward(x, qx)?;
    for (c, dist) in distances.iter_mut().enumerate() {
        *dist = or_nan(classes.predictor(0, c)?.distance(x, qx, rest))?;
    }
    Ok(())
}

/// The decision from every class's (member-averaged) distance and each member's own best
/// class: the closest class, the rule's score of the sample (`x`, the preprocessed input,
/// for [`Score::Relative`]'s norm), "unknown" past its threshold, and the members'
/// agreement.
pub(crate) fn decide(distances: &[f32], member_best: &[u16], rule: Rule, x: &[f32]) -> Result<Classification> {
    let n = distances.len();
    if n == 0 || member_best.is_empty() {
        return Err(Error::EmptyClass);
    }
    // A class whose distance overflowed for this input is no candidate, so that one bad
    // class cannot stop a device from classifying; an input that no class can measure
    // (a huge one) is an error.
    let best = closest(distances).ok_or(Error::NonFinite)?;
    let votes = member_best.iter().filter(|&&b| b as usize == best).count();
    let closest_d = distances.get(best).copied().ok_or(Error::NonFinite)?;
    // Only the relative score reads the input's norm: no pass over it for the others.
    let norm2 = if rule.score == Score::Relative {
        crate::linalg::norm2(x)
    } else {
        0.0
    };
    let novelty = rule.score_of(distances, norm2)?;
    // Every class at the same distance (a blank input is at 0 from every linear subspace
    // through the origin): no class agrees better than another, so no class is the answer.
    let tie = n > 1 && distances.iter().all(|&d| d == closest_d);
    let known = !tie && !rule.rejects(novelty);
    Ok(Classification {
        best,
        class: known.then_some(best),
        score: rule.score,
        novelty,
        agreement: votes as f32 / member_best.len() as f32,
    })
}

/// The index of the smallest finite distance (the first of equals), if any: the class
/// [`classify()`] decides for.
pub fn closest(distances: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (c, &d) in distances.iter().enumerate() {
        if d.is_finite() && best.is_none_or(|(_, b)| d < b) {
            best = Some((c, d));
        }
    }
    best.map(|(c, _)| c)
}

/// A class's distance, or NaN when it overflowed for this input (`NonFinite`): that class
/// is then left out of the decision instead of failing it.
pub(crate) fn or_nan(d: Result<f32>) -> Result<f32> {
    match d {
        Err(Error::NonFinite) => Ok(f32::NAN),
        d => d,
    }
}

/// Most ensemble members a model may have.
pub const MAX_MEMBERS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(d: &[f32], member_best: &[u16], threshold: Option<f32>) -> Result<Classification> {
        super::decide(d, member_best, Rule::best(threshold), &[1.0])
    }

    #[test]
    fn a_class_that_overflowed_is_left_out_and_ties_are_unknown() {
        // One class's distance overflowed (NaN, or inf): the others decide.
        for bad in [f32::NAN, f32::INFINITY] {
            let c = decide(&[bad, 2.0, 1.0], &[2], None).unwrap();
            assert_eq!((c.best, c.class, c.novelty), (2, Some(2), 1.0));
        }
        // No class could measure the input: an error, not class 0.
        assert_eq!(decide(&[f32::NAN, f32::NAN], &[0], None), Err(Error::NonFinite));
        // Every class at the same distance: unknown, with or without a threshold.
        for t in [None, Some(10.0)] {
            let c = decide(&[0.0, 0.0, 0.0], &[0], t).unwrap();
            assert_eq!(c.class, None);
        }
        // One class: nothing to compare, the threshold alone decides.
        assert_eq!(decide(&[0.0], &[0], None).unwrap().class, Some(0));
        assert_eq!(decide(&[3.0], &[0], Some(1.0)).unwrap().class, None);
        // Two classes tied below others are still a normal answer (the first of them).
        assert_eq!(decide(&[1.0, 1.0, 5.0], &[0], None).unwrap().class, Some(0));
        assert_eq!(decide(&[], &[0], None), Err(Error::EmptyClass));
    }

    #[test]
    fn the_rule_names_the_score_that_decides() {
        let contrast = |t| Rule {
            score: Score::Contrast,
            threshold: t,
        };
        // Closest 1, mean 2: contrast 0.5 whatever the distances' scale.
        let d = [1.0, 2.0, 3.0];
        let c = super::decide(&d, &[0], contrast(Some(0.6)), &[1.0]).unwrap();
        assert_eq!((c.class, c.score, c.novelty), (Some(0), Score::Contrast, 0.5));
        let c = super::decide(&[10.0, 20.0, 30.0], &[0], contrast(Some(0.4)), &[1.0]).unwrap();
        assert_eq!((c.best, c.class, c.novelty), (0, None, 0.5));
        // The same distances under the closest-distance rule: the distance decides.
        let c = super::decide(&d, &[0], Rule::best(Some(0.6)), &[1.0]).unwrap();
        assert_eq!((c.class, c.score, c.novelty), (None, Score::Best, 1.0));
        // A class that overflowed is left out of the mean too.
        let c = super::decide(&[1.0, f32::NAN, 3.0], &[0], contrast(None), &[1.0]).unwrap();
        assert_eq!(c.novelty, 0.5);
        // One class (one finite distance): the contrast cannot tell; NaN, not rejected.
        for d in [&[1.0][..], &[1.0, f32::INFINITY]] {
            let c = super::decide(d, &[0], contrast(Some(0.1)), &[1.0]).unwrap();
            assert!(c.novelty.is_nan());
            assert_eq!(c.class, Some(0));
        }
        // Ratio and relative: computed from the same distances (and the input's norm).
        let r = |score| Rule {
            score,
            threshold: Some(0.3),
        };
        let c = super::decide(&[1.0, 2.0, 3.0], &[0], r(Score::Ratio), &[2.0]).unwrap();
        assert_eq!((c.novelty, c.class), (0.5, None));
        let c = super::decide(&[1.0, 2.0, 3.0], &[0], r(Score::Relative), &[2.0]).unwrap();
        assert_eq!((c.novelty, c.class), (0.25, Some(0)));
        // Scores that need per-class spreads cannot decide: a model never holds them.
        for score in [Score::Normalized, Score::NormalizedMin] {
            assert_eq!(super::decide(&d, &[0], r(score), &[1.0]), Err(Error::InvalidParameter));
        }
    }

    #[test]
    fn rules_are_checked_before_a_model_holds_them() {
        assert_eq!(Rule::default(), Rule::best(None));
        for t in [None, Some(0.0), Some(0.5), Some(1e30)] {
            assert_eq!(
                Rule {
                    score: Score::Contrast,
                    threshold: t
                }
                .check(),
                Ok(())
            );
        }
        for (t, e) in [
            (f32::NAN, Error::NonFinite),
            (f32::INFINITY, Error::NonFinite),
            (f32::NEG_INFINITY, Error::NonFinite),
            (-0.5, Error::InvalidParameter),
        ] {
            assert_eq!(Rule::best(Some(t)).check(), Err(e), "{t}");
        }
        let n = Rule {
            score: Score::Normalized,
            threshold: None,
        };
        assert_eq!(n.check(), Err(Error::InvalidParameter));
    }
}
