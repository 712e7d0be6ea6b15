//! How well a novelty score separates unknown samples from known ones: AUROC, the
//! true-positive rate on unknowns at a given false rejection of knowns, and the ROC curve on
//! a fixed grid. Unknowns are the positives; a higher score is more novel.

use anyhow::{bail, Result};

fn check(known: &[f64], unknown: &[f64]) -> Result<()> {
    if known.is_empty() || unknown.is_empty() {
        bail!(
            "a ROC needs samples of known and of unknown classes ({} known, {} unknown)",
            known.len(),
            unknown.len()
        );
    }
    if known.iter().chain(unknown).any(|s| s.is_nan()) {
        bail!("a novelty score is NaN");
    }
    Ok(())
}

/// Area under the ROC curve: the probability that an unknown sample scores above a known
/// one, a tie counting one half (the Mann-Whitney U over the product of the counts). 1 when
/// every unknown scores above every known, 0 when below, 0.5 when all are equal. Fails on
/// an empty side or a NaN score (infinite scores are fine).
pub fn auroc(known: &[f64], unknown: &[f64]) -> Result<f64> {
    check(known, unknown)?;
    // (score, is unknown), sorted; each run of equal scores takes its mean rank.
    let mut all: Vec<(f64, bool)> = known
        .iter()
        .map(|&s| (s, false))
        .chain(unknown.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1..=j, mean (i + 1 + j) / 2.
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * all[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    let (nu, nk) = (unknown.len() as f64, known.len() as f64);
    Ok((rank_sum - nu * (nu + 1.0) / 2.0) / (nu * nk))
}

/// One operating point: the threshold that rejects at most `fpr` of the known samples and
/// what it does.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Operating {
    /// Scores above it are called unknown: the `1 - fpr` quantile (nearest rank) of the known
    /// samples' scores; `None` when every sample is rejected (`fpr` 1).
    pub threshold: Option<f64>,
    /// Fraction of unknown samples above the threshold (caught).
    pub tpr: f64,
    /// Fraction of known samples above it (wrongly rejected): at most `fpr`, less when the
    /// known scores tie at the threshold.
    pub fpr: f64,
}

/// Which samples a threshold at false-positive rate `fpr` (in [0, 1]) rejects. The threshold
/// is the `1 - fpr` quantile (nearest rank) of the known scores, so that at most
/// `floor(fpr x known)` known samples score above it; a sample is rejected when its score is
/// strictly above it, as `ldl_core::classify` calls a sample unknown when its novelty is
/// above the threshold.
pub fn at_fpr(known: &[f64], unknown: &[f64], fpr: f64) -> Result<Operating> {
    check(known, unknown)?;
    let mut sorted = known.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(at_fpr_sorted(&sorted, unknown, fpr))
}

fn at_fpr_sorted(sorted_known: &[f64], unknown: &[f64], fpr: f64) -> Operating {
    let n = sorted_known.len();
    // Known samples allowed above the threshold (the small slack keeps 0.05 x 8000 = 400
    // from rounding down to 399).
    let allowed = ((fpr.clamp(0.0, 1.0) * n as f64) + 1e-9).floor() as usize;
    let threshold = (allowed < n).then(|| sorted_known[n - 1 - allowed]);
    let above = |xs: &[f64]| match threshold {
        Some(t) => xs.iter().filter(|&&s| s > t).count(),
        None => xs.len(),
    };
    Operating {
        threshold,
        tpr: above(unknown) as f64 / unknown.len() as f64,
        fpr: above(sorted_known) as f64 / n as f64,
    }
}

/// The ROC curve's true-positive rate at each false-positive rate of `grid` (each in
/// [0, 1]), by [`at_fpr`]'s rule: curves of several trials on the same grid can be averaged.
pub fn roc_on_grid(known: &[f64], unknown: &[f64], grid: &[f64]) -> Result<Vec<f64>> {
    check(known, unknown)?;
    let mut sorted = known.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(grid.iter().map(|&f| at_fpr_sorted(&sorted, unknown, f).tpr).collect())
}

/// The false-positive rates the ROC curves are reported at: 0 to 1 in steps of 0.005.
pub fn fpr_grid() -> Vec<f64> {
    (0..=200).map(|i| i as f64 / 200.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_of_perfect_reversed_and_tied_scores() {
        let known = [0.1, 0.2, 0.3];
        let unknown = [0.5, 0.9];
        assert_eq!(auroc(&known, &unknown).unwrap(), 1.0);
        assert_eq!(auroc(&unknown, &known).unwrap(), 0.0);
        assert_eq!(auroc(&[2.0; 4], &[2.0; 3]).unwrap(), 0.5);
        // Infinite scores order like any other.
        assert_eq!(auroc(&[1.0, 2.0], &[f64::INFINITY]).unwrap(), 1.0);
    }

    #[test]
    fn auroc_counts_pairs_and_half_ties() {
        // Pairs (unknown, known): 0.4 beats 0.1 and 0.3, ties 0.4 (half), loses to 0.6;
        // 0.7 beats all four. (2 + 0.5 + 4) / 8.
        let known = [0.1, 0.3, 0.4, 0.6];
        let unknown = [0.4, 0.7];
        assert!((auroc(&known, &unknown).unwrap() - 6.5 / 8.0).abs() < 1e-12);
        // The same by brute force over shuffled, tie-heavy lists.
        let k: Vec<f64> = (0..40).map(|i| ((i * 7) % 9) as f64).collect();
        let u: Vec<f64> = (0..25).map(|i| ((i * 5) % 11) as f64).collect();
        let mut wins = 0.0;
        for a in &u {
            for b in &k {
                wins += if a > b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
            }
        }
        assert!((auroc(&k, &u).unwrap() - wins / (40.0 * 25.0)).abs() < 1e-12);
    }

    #[test]
    fn empty_sides_and_nan_are_refused() {
        assert!(auroc(&[], &[1.0]).unwrap_err().to_string().contains("0 known"));
        assert!(auroc(&[1.0], &[]).unwrap_err().to_string().contains("0 unknown"));
        assert!(auroc(&[1.0, f64::NAN], &[1.0]).unwrap_err().to_string().contains("NaN"));
        assert!(at_fpr(&[1.0], &[f64::NAN], 0.05).is_err());
        assert!(roc_on_grid(&[], &[1.0], &[0.5]).is_err());
    }

    #[test]
    fn tpr_at_five_percent_uses_the_95th_percentile_of_knowns() {
        // Knowns 1..=100: the 95th percentile (nearest rank) is 95; 5 knowns lie above it.
        let known: Vec<f64> = (1..=100).map(f64::from).collect();
        // Unknowns: 3 above 95, one at 95 (not above), one below.
        let unknown = [96.0, 99.5, 200.0, 95.0, 10.0];
        let op = at_fpr(&known, &unknown, 0.05).unwrap();
        assert_eq!(op.threshold, Some(95.0));
        assert_eq!(op.fpr, 0.05);
        assert_eq!(op.tpr, 3.0 / 5.0);
        // Perfect and reversed separations.
        assert_eq!(at_fpr(&known, &[101.0, 500.0], 0.05).unwrap().tpr, 1.0);
        assert_eq!(at_fpr(&known, &[-1.0, 0.5], 0.05).unwrap().tpr, 0.0);
        // All tied: nothing is above the threshold, neither known nor unknown.
        let op = at_fpr(&[3.0; 20], &[3.0; 5], 0.05).unwrap();
        assert_eq!((op.tpr, op.fpr), (0.0, 0.0));
        // 8000 knowns at 5%: exactly 400 above.
        let many: Vec<f64> = (0..8000).map(f64::from).collect();
        assert_eq!(at_fpr(&many, &[1e9], 0.05).unwrap().fpr, 0.05);
        // FPR 1 rejects everything, FPR 0 rejects what is above every known.
        assert_eq!(
            at_fpr(&known, &[-5.0], 1.0).unwrap(),
            Operating {
                threshold: None,
                tpr: 1.0,
                fpr: 1.0
            }
        );
        assert_eq!(at_fpr(&known, &[100.0, 101.0], 0.0).unwrap().tpr, 0.5);
    }

    #[test]
    fn roc_on_the_grid_rises_from_the_first_to_the_last_point() {
        let known: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let unknown: Vec<f64> = (0..30).map(|i| 25.0 + i as f64 * 2.0).collect();
        let grid = fpr_grid();
        assert_eq!((grid.len(), grid[0], grid[200]), (201, 0.0, 1.0));
        let tpr = roc_on_grid(&known, &unknown, &grid).unwrap();
        assert!(tpr.windows(2).all(|w| w[0] <= w[1]), "{tpr:?}");
        assert_eq!(tpr[200], 1.0);
        // At the grid point 0.05 the curve is the operating point's TPR.
        assert_eq!(tpr[10], at_fpr(&known, &unknown, 0.05).unwrap().tpr);
        // The area under the step curve on a fine grid comes close to the AUROC.
        let area: f64 = tpr.windows(2).map(|w| (w[0] + w[1]) / 2.0 / 200.0).sum();
        assert!((area - auroc(&known, &unknown).unwrap()).abs() < 0.02, "{area}");
        // Perfect separation: TPR 1 from FPR 0 on.
        assert!(roc_on_grid(&[0.0, 1.0], &[2.0], &grid).unwrap().iter().all(|&t| t == 1.0));
    }
}
