//! Novelty scores: how new a sample is to every class at once, from the per-class distances
//! [`crate::classify()`] fills in. Higher is more novel ("unknown").
//!
//! Each score is a few operations on the `C` distances (and, for some, one number per class
//! or the input's squared norm), so a device computes the same value as the host, with no
//! allocation. A distance that is not finite (the class overflowed for this input) is left
//! out, as [`crate::classify()`] leaves it out of the decision.
//!
//! - [`Score::Best`]: the closest class's distance, the classifier's own novelty.
//! - [`Score::Ratio`]: closest / second-closest distance, in `[0, 1]`: near 1 when two classes
//!   explain the sample equally well.
//! - [`Score::Contrast`]: closest / mean distance over every class: near 1 when no class
//!   explains the sample much better than the others do, robust to one look-alike class
//!   (which makes [`Score::Ratio`] call a known sample ambiguous).
//! - [`Score::Normalized`]: the closest class's distance over that class's own spread (e.g.
//!   [`loo_spread`] of its samples): a class whose samples are far from each other's spans is
//!   allowed larger distances.
//! - [`Score::NormalizedMin`]: the smallest distance over spread, over every class.
//! - [`Score::Relative`]: the closest class's distance over the input's squared norm: for a
//!   subspace through the origin, the fraction of the sample's energy outside the class's
//!   span, in `[0, 1]`, blind to how much ink the sample has.

use crate::error::{check_len, Error, Result};
use serde::{Deserialize, Serialize};

/// A novelty score ([module doc](self)). A model file records one (its [`Rule`]) as the
/// variant's index in this order (`core/FORMAT.md`): do not reorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Score {
    /// Closest class's distance.
    Best,
    /// Closest / second-closest distance.
    Ratio,
    /// Closest / mean distance.
    Contrast,
    /// Closest class's distance over that class's spread.
    Normalized,
    /// Smallest distance over spread, over the classes.
    NormalizedMin,
    /// Closest class's distance over the input's squared norm.
    Relative,
}

impl Score {
    /// Every score, in the order of the module doc.
    pub const ALL: [Score; 6] = [
        Score::Best,
        Score::Ratio,
        Score::Contrast,
        Score::Normalized,
        Score::NormalizedMin,
        Score::Relative,
    ];

    /// Its name on a command line and in reports (`best`, `ratio`, `contrast`,
    /// `normalized`, `normalized-min`, `relative`).
    pub const fn name(self) -> &'static str {
        match self {
            Score::Best => "best",
            Score::Ratio => "ratio",
            Score::Contrast => "contrast",
            Score::Normalized => "normalized",
            Score::NormalizedMin => "normalized-min",
            Score::Relative => "relative",
        }
    }

    /// The score named `name` ([`Score::name`]).
    pub fn from_name(name: &str) -> Option<Score> {
        Score::ALL.into_iter().find(|s| s.name() == name)
    }

    /// True when it takes one spread per class.
    pub const fn needs_spreads(self) -> bool {
        matches!(self, Score::Normalized | Score::NormalizedMin)
    }

    /// Fewest classes it means something with (the ratio and the contrast compare classes).
    pub const fn min_classes(self) -> usize {
        match self {
            Score::Ratio | Score::Contrast => 2,
            _ => 1,
        }
    }

    /// The score of one sample from its per-class `distances`; `spreads` (one per class,
    /// finite and > 0) for the normalized scores, `norm2` (the preprocessed input's squared
    /// norm) for [`Score::Relative`]; the others ignore them.
    pub fn of(self, distances: &[f32], spreads: &[f32], norm2: f32) -> Result<f32> {
        match self {
            Score::Best => best(distances),
            Score::Ratio => ratio(distances),
            Score::Contrast => contrast(distances),
            Score::Normalized => normalized(distances, spreads),
            Score::NormalizedMin => normalized_min(distances, spreads),
            Score::Relative => relative(distances, norm2),
        }
    }
}

/// How a model says "unknown": which novelty score it computes, and the threshold above
/// which a sample is "unknown". Chosen on the host and recorded in the model file, so a
/// device decides exactly as the host does, for the classes it enrolls too: the scores a
/// model file holds ([`Rule::check`]) need nothing per class, only the distances (and the
/// input's norm).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rule {
    /// The score [`crate::classify()`] computes and compares.
    pub score: Score,
    /// Above it, "unknown"; none: every sample gets its closest class.
    pub threshold: Option<f32>,
}

impl Default for Rule {
    /// The closest distance, no threshold: what a model file before version 3 means.
    fn default() -> Self {
        Rule::best(None)
    }
}

impl Rule {
    /// The closest class's distance against `threshold` (the only rule before model format
    /// version 3).
    pub const fn best(threshold: Option<f32>) -> Rule {
        Rule {
            score: Score::Best,
            threshold,
        }
    }

    /// Checks that a model can hold the rule: a score that needs nothing per class
    /// (`InvalidParameter` for the normalized ones), and a threshold that is finite
    /// (`NonFinite`) and not negative (`InvalidParameter`: every score is `>= 0`).
    pub fn check(&self) -> Result<()> {
        if self.score.needs_spreads() {
            return Err(Error::InvalidParameter);
        }
        match self.threshold {
            Some(t) if !t.is_finite() => Err(Error::NonFinite),
            Some(t) if t < 0.0 => Err(Error::InvalidParameter),
            _ => Ok(()),
        }
    }

    /// The rule's score of one sample from its per-class `distances` and `norm2`, the
    /// preprocessed input's squared norm (for [`Score::Relative`]). NaN when there are fewer
    /// finite distances than the score compares (the ratio and the contrast of a single
    /// class): the rule cannot tell, and [`crate::classify()`] then does not reject.
    /// `InvalidParameter` for a score that needs spreads.
    pub fn score_of(&self, distances: &[f32], norm2: f32) -> Result<f32> {
        if self.score.needs_spreads() {
            return Err(Error::InvalidParameter);
        }
        let finite = distances.iter().filter(|d| d.is_finite()).count();
        if finite == 0 {
            return Err(if distances.is_empty() {
                Error::EmptyClass
            } else {
                Error::NonFinite
            });
        }
        if finite < self.score.min_classes() {
            return Ok(f32::NAN);
        }
        // Dispatched here rather than by `Score::of`, so that a device links none of the
        // normalized scores.
        match self.score {
            Score::Best => best(distances),
            Score::Ratio => ratio(distances),
            Score::Contrast => contrast(distances),
            Score::Relative => relative(distances, norm2),
            Score::Normalized | Score::NormalizedMin => Err(Error::InvalidParameter),
        }
    }

    /// True when `score` (from [`Rule::score_of`]) makes the sample "unknown": above the
    /// threshold. A NaN score (the rule cannot tell) or no threshold never does.
    pub fn rejects(&self, score: f32) -> bool {
        self.threshold.is_some_and(|t| score > t)
    }
}

/// The two smallest finite distances `(index of the smallest, smallest, second smallest)`,
/// the first of equals first; the second is infinite with a single finite distance.
fn two_closest(distances: &[f32]) -> Result<(usize, f32, f32)> {
    if distances.is_empty() {
        return Err(Error::EmptyClass);
    }
    let (mut best, mut d1, mut d2) = (None, f32::INFINITY, f32::INFINITY);
    for (c, &d) in distances.iter().enumerate() {
        if !d.is_finite() {
            continue;
        }
        if best.is_none() || d < d1 {
            if best.is_some() {
                d2 = d1;
            }
            best = Some(c);
            d1 = d;
        } else if d < d2 {
            d2 = d;
        }
    }
    best.map(|b| (b, d1, d2)).ok_or(Error::NonFinite)
}

/// [`Score::Best`]: the smallest finite distance.
pub fn best(distances: &[f32]) -> Result<f32> {
    two_closest(distances).map(|(_, d1, _)| d1)
}

/// [`Score::Ratio`]: smallest / second-smallest finite distance, in `[0, 1]`; 1 when both
/// are 0 (nothing tells the two classes apart). Needs two finite distances.
pub fn ratio(distances: &[f32]) -> Result<f32> {
    let (_, d1, d2) = two_closest(distances)?;
    if !d2.is_finite() {
        return Err(if distances.len() < 2 { Error::EmptyClass } else { Error::NonFinite });
    }
    Ok(if d2 > 0.0 { d1 / d2 } else { 1.0 })
}

/// [`Score::Contrast`]: the smallest finite distance over the mean of the finite ones, in
/// `[0, 1]`; 1 when they are all 0. Needs two finite distances.
pub fn contrast(distances: &[f32]) -> Result<f32> {
    let (_, d1, d2) = two_closest(distances)?;
    if !d2.is_finite() {
        return Err(if distances.len() < 2 { Error::EmptyClass } else { Error::NonFinite });
    }
    let (mut sum, mut n) = (0.0f64, 0usize);
    for &d in distances.iter().filter(|d| d.is_finite()) {
        sum += d as f64;
        n = n.saturating_add(1); // at most the slice's length
    }
    let mean = (sum / n as f64) as f32;
    Ok(if mean > 0.0 { (d1 / mean).min(1.0) } else { 1.0 })
}

fn check_spreads(distances: &[f32], spreads: &[f32]) -> Result<()> {
    check_len(distances.len(), spreads.len())?;
    if spreads.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::InvalidParameter);
    }
    Ok(())
}

/// [`Score::Normalized`]: the closest class's distance over its spread (`spreads[c]`, finite
/// and > 0, one per class).
pub fn normalized(distances: &[f32], spreads: &[f32]) -> Result<f32> {
    check_spreads(distances, spreads)?;
    let (b, d1, _) = two_closest(distances)?;
    Ok(d1 / spreads.get(b).copied().ok_or(Error::InvalidParameter)?)
}

/// [`Score::NormalizedMin`]: the smallest `distances[c] / spreads[c]` over the classes of
/// finite distance.
pub fn normalized_min(distances: &[f32], spreads: &[f32]) -> Result<f32> {
    check_spreads(distances, spreads)?;
    distances
        .iter()
        .zip(spreads)
        .filter(|(d, _)| d.is_finite())
        .map(|(d, s)| d / s)
        .fold(None, |m: Option<f32>, v| Some(m.map_or(v, |m| m.min(v))))
        .ok_or(if distances.is_empty() {
            Error::EmptyClass
        } else {
            Error::NonFinite
        })
}

/// [`Score::Relative`]: the smallest finite distance over `norm2`, the input's squared norm
/// (finite, >= 0). A blank input (`norm2` 0) is 1 when it is at distance 0 (a subspace
/// through the origin holds it: as novel as a sample entirely outside every span), infinite
/// otherwise.
pub fn relative(distances: &[f32], norm2: f32) -> Result<f32> {
    if !(norm2.is_finite() && norm2 >= 0.0) {
        return Err(Error::NonFinite);
    }
    let d1 = best(distances)?;
    Ok(match (norm2 > 0.0, d1 > 0.0) {
        (true, _) => d1 / norm2,
        (false, false) => 1.0,
        (false, true) => f32::INFINITY,
    })
}

/// Ensemble disagreement: the fraction of members whose own closest class (`member_best`)
/// is not `best`, the closest class by the members' mean distance; 0 when they all agree
/// (1 - [`crate::classify::Classification::agreement`]).
pub fn disagreement(member_best: &[u16], best: usize) -> Result<f32> {
    if member_best.is_empty() {
        return Err(Error::EmptyClass);
    }
    let other = member_best.iter().filter(|&&b| b as usize != best).count();
    Ok(other as f32 / member_best.len() as f32)
}

/// A class's spread from its leave-one-out distances (sample `i`'s distance to the class
/// fitted on its other samples): their mean, over the finite ones. `None` when none is
/// finite and positive on average (no sample to leave out, or duplicates only): the caller
/// then pools ([`pool_spreads`]).
pub fn loo_spread(loo_distances: &[f32]) -> Option<f32> {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for &d in loo_distances.iter().filter(|d| d.is_finite() && **d >= 0.0) {
        sum += d as f64;
        n = n.saturating_add(1); // at most the slice's length
    }
    let mean = (sum / n.max(1) as f64) as f32;
    (n > 0 && mean > 0.0 && mean.is_finite()).then_some(mean)
}

/// Fills each missing spread (not finite, or <= 0: a class of one sample has no
/// leave-one-out estimate) with the mean of the others; when no class has one, every spread
/// becomes 1 (the normalized scores are then [`Score::Best`]).
pub fn pool_spreads(spreads: &mut [f32]) {
    let ok = |s: f32| s.is_finite() && s > 0.0;
    let (mut sum, mut n) = (0.0f64, 0usize);
    for &s in spreads.iter().filter(|s| ok(**s)) {
        sum += s as f64;
        n = n.saturating_add(1); // at most the slice's length
    }
    let pooled = if n > 0 { (sum / n as f64) as f32 } else { 1.0 };
    let pooled = if ok(pooled) { pooled } else { 1.0 };
    for s in spreads.iter_mut().filter(|s| !ok(**s)) {
        *s = pooled;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_and_ratio_skip_classes_that_overflowed() {
        assert_eq!(best(&[3.0, 1.0, 2.0]), Ok(1.0));
        assert_eq!(ratio(&[3.0, 1.0, 2.0]), Ok(0.5));
        // The second-closest may come before or after the closest.
        assert_eq!(ratio(&[1.0, 4.0, 2.0]), Ok(0.5));
        assert_eq!(ratio(&[4.0, 2.0, 1.0]), Ok(0.5));
        // Equal closest: as ambiguous as can be.
        assert_eq!(ratio(&[2.0, 2.0, 7.0]), Ok(1.0));
        assert_eq!(ratio(&[0.0, 0.0]), Ok(1.0));
        assert_eq!(ratio(&[0.0, 3.0]), Ok(0.0));
        for bad in [f32::NAN, f32::INFINITY] {
            assert_eq!(best(&[bad, 2.0, 4.0]), Ok(2.0));
            assert_eq!(ratio(&[bad, 2.0, 4.0]), Ok(0.5));
            assert_eq!(ratio(&[bad, 2.0]), Err(Error::NonFinite));
            assert_eq!(best(&[bad, bad]), Err(Error::NonFinite));
        }
        assert_eq!(best(&[]), Err(Error::EmptyClass));
        // One class: no second distance to compare with.
        assert_eq!(ratio(&[2.0]), Err(Error::EmptyClass));
        assert_eq!(contrast(&[2.0]), Err(Error::EmptyClass));
    }

    #[test]
    fn contrast_is_the_closest_over_the_mean() {
        // Mean 2: the closest, 1, is half of it.
        assert_eq!(contrast(&[3.0, 1.0, 2.0]), Ok(0.5));
        // One look-alike class barely moves it (the ratio would be 0.9).
        assert_eq!(contrast(&[0.9, 1.0, 8.0, 8.0, 8.0]), Ok(0.9 / 5.18));
        assert_eq!(contrast(&[2.0, 2.0]), Ok(1.0));
        assert_eq!(contrast(&[0.0, 0.0]), Ok(1.0));
        assert_eq!(contrast(&[f32::NAN, 1.0, 3.0]), Ok(0.5));
        assert_eq!(contrast(&[f32::INFINITY, 2.0]), Err(Error::NonFinite));
    }

    #[test]
    fn normalized_divides_by_the_closest_class_spread() {
        // Class 1 is closest (2.0); its spread is 4.
        assert_eq!(normalized(&[3.0, 2.0, 8.0], &[1.0, 4.0, 2.0]), Ok(0.5));
        // The smallest ratio is class 2's (8 / 16), not the closest class's.
        assert_eq!(normalized_min(&[3.0, 2.0, 8.0], &[1.0, 2.0, 16.0]), Ok(0.5));
        assert_eq!(normalized(&[3.0, 2.0, 8.0], &[1.0, 2.0, 16.0]), Ok(1.0));
        assert_eq!(normalized(&[f32::NAN, 2.0], &[1.0, 4.0]), Ok(0.5));
        assert_eq!(normalized_min(&[f32::NAN, 2.0], &[0.5, 4.0]), Ok(0.5));
        for spreads in [[1.0, 0.0], [1.0, -1.0], [1.0, f32::NAN], [f32::INFINITY, 1.0]] {
            assert_eq!(normalized(&[1.0, 2.0], &spreads), Err(Error::InvalidParameter));
            assert_eq!(normalized_min(&[1.0, 2.0], &spreads), Err(Error::InvalidParameter));
        }
        assert!(matches!(normalized(&[1.0, 2.0], &[1.0]), Err(Error::DimensionMismatch { .. })));
        assert_eq!(normalized_min(&[f32::NAN], &[1.0]), Err(Error::NonFinite));
        assert_eq!(normalized_min(&[], &[]), Err(Error::EmptyClass));
    }

    #[test]
    fn relative_is_the_fraction_outside_the_span() {
        assert_eq!(relative(&[3.0, 1.0], 4.0), Ok(0.25));
        assert_eq!(relative(&[0.0, 0.0], 0.0), Ok(1.0));
        assert_eq!(relative(&[2.0], 0.0), Ok(f32::INFINITY));
        assert_eq!(relative(&[1.0], f32::NAN), Err(Error::NonFinite));
        assert_eq!(relative(&[1.0], -1.0), Err(Error::NonFinite));
    }

    #[test]
    fn score_dispatches_by_name() {
        let (d, s) = ([3.0, 1.0, 2.0], [1.0, 2.0, 1.0]);
        let want = [1.0, 0.5, 0.5, 0.5, 0.5, 0.25];
        for (sc, w) in Score::ALL.into_iter().zip(want) {
            assert_eq!(sc.of(&d, &s, 4.0), Ok(w), "{}", sc.name());
            assert_eq!(Score::from_name(sc.name()), Some(sc));
        }
        assert_eq!(Score::from_name("nope"), None);
        assert!(Score::Normalized.needs_spreads() && !Score::Ratio.needs_spreads());
        assert_eq!(
            (Score::Ratio.min_classes(), Score::Contrast.min_classes(), Score::Best.min_classes()),
            (2, 2, 1)
        );
    }

    #[test]
    fn a_rule_scores_as_its_score_does() {
        for d in [&[3.0, 1.0, 2.0][..], &[0.5, f32::NAN, 4.0], &[0.0, 0.0]] {
            for score in Score::ALL.into_iter().filter(|s| !s.needs_spreads()) {
                let r = Rule { score, threshold: None };
                assert_eq!(r.score_of(d, 4.0), score.of(d, &[], 4.0), "{score:?} {d:?}");
            }
        }
        assert!(Rule {
            score: Score::Contrast,
            threshold: Some(0.0)
        }
        .score_of(&[2.0], 1.0)
        .unwrap()
        .is_nan());
        assert_eq!(Rule::best(None).score_of(&[f32::NAN], 1.0), Err(Error::NonFinite));
        assert_eq!(Rule::best(None).score_of(&[], 1.0), Err(Error::EmptyClass));
        let r = Rule {
            score: Score::Contrast,
            threshold: Some(0.5),
        };
        assert!(r.rejects(0.6) && !r.rejects(0.5) && !r.rejects(f32::NAN) && !Rule::default().rejects(1e30));
    }

    #[test]
    fn disagreement_counts_members_with_another_answer() {
        assert_eq!(disagreement(&[2, 2, 2, 2], 2), Ok(0.0));
        assert_eq!(disagreement(&[2, 0, 2, 1], 2), Ok(0.5));
        assert_eq!(disagreement(&[1], 2), Ok(1.0));
        assert_eq!(disagreement(&[], 0), Err(Error::EmptyClass));
    }

    #[test]
    fn spreads_are_loo_means_pooled_when_missing() {
        assert_eq!(loo_spread(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(loo_spread(&[1.0, f32::NAN, 3.0]), Some(2.0));
        assert_eq!(loo_spread(&[]), None);
        assert_eq!(loo_spread(&[0.0, 0.0]), None);
        let mut s = [2.0, 0.0, 4.0, f32::NAN];
        pool_spreads(&mut s);
        assert_eq!(s, [2.0, 3.0, 4.0, 3.0]);
        let mut s = [0.0, f32::NAN];
        pool_spreads(&mut s);
        assert_eq!(s, [1.0, 1.0]);
    }
}
