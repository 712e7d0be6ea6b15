//! The published numbers: Table 1 of the paper (MNIST, 10-way), beside which `reproduce`
//! and its plots put ours.

/// The shot counts of the paper's MNIST table (10-way, accuracy).
pub const PAPER_SHOTS: [usize; 6] = [1, 5, 10, 50, 100, 200];
/// Published accuracies per method name, for [`PAPER_SHOTS`]; `None` where the paper has
/// no number.
pub fn paper(method: &str) -> Option<[Option<f64>; 6]> {
    let n = None;
    Some(match method {
        "naive" => [Some(0.127), n, Some(0.777), Some(0.903), Some(0.898), Some(0.942)],
        "logreg" => [Some(0.316), Some(0.569), Some(0.679), Some(0.839), Some(0.870), Some(0.892)],
        "mlp" => [Some(0.448), n, Some(0.749), Some(0.881), Some(0.926), Some(0.929)],
        m if m.starts_with("o2md") => [Some(0.426), Some(0.708), Some(0.801), Some(0.912), Some(0.934), Some(0.953)],
        m if m.starts_with("bd") => [Some(0.436), n, Some(0.800), Some(0.917), Some(0.871), Some(0.953)],
        _ => return None,
    })
}

pub fn paper_at(method: &str, shots: usize) -> Option<f64> {
    let i = PAPER_SHOTS.iter().position(|&s| s == shots)?;
    paper(method)?[i]
}
