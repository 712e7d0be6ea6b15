//! The paper's non-LDL baselines for few-shot evaluation: logistic regression, an MLP, 1-nearest
//! neighbour and nearest class mean.
//!
//! All four take the support set as one row-major `m_c x d` slice per class (`support[c]`),
//! and `n` query rows (`queries`, row-major `n x d`), and return the predicted class index of
//! every query row. The trained ones are deterministic functions of their `seed`.
//!
//! The trained baselines follow the authors' PyTorch code: `nn.Linear` layers with PyTorch's
//! default initialisation (weights and biases uniform in `±1/sqrt(fan_in)`), ReLU between
//! layers, softmax cross-entropy (mean over the mini-batch), Adam (`torch.optim.Adam` defaults:
//! betas 0.9 / 0.999, eps 1e-8, bias correction), samples reshuffled every epoch and a last
//! partial batch kept (a `DataLoader` with `shuffle=True`, `drop_last=False`). A mini-batch's
//! forward and backward passes are matrix products (`ldl_core::linalg`), and queries are
//! predicted in blocks of [`QUERY_BLOCK`] rows to bound memory.

use ldl_core::columns::{column_runs, gather_columns, live_columns, run_width, scatter_columns};
use ldl_core::linalg::{matmul_nn, matmul_nt, matmul_tn};
use ldl_core::train::AdamStep;
use ldl_core::Rng;

/// Queries are classified in blocks of this many rows (bounds the activation memory).
pub const QUERY_BLOCK: usize = 1024;

/// Adam's first-moment decay (PyTorch default).
const BETA1: f32 = 0.9;
/// Adam's second-moment decay (PyTorch default).
const BETA2: f32 = 0.999;
/// Adam's denominator guard (PyTorch default).
const EPS: f32 = 1e-8;

/// Stream index of [`Rng::derive`] for the weight initialisation.
const STREAM_INIT: u64 = 0;
/// Stream index of [`Rng::derive`] for the per-epoch shuffles.
const STREAM_SHUFFLE: u64 = 1;

/// Training settings shared by the trained baselines: Adam with the given learning rate over
/// `epochs` passes of shuffled mini-batches.
#[derive(Clone, Debug, PartialEq)]
pub struct SgdConfig {
    /// Adam learning rate (authors: 1e-3).
    pub lr: f32,
    /// Passes over the support set (authors: 10).
    pub epochs: usize,
    /// Mini-batch size (authors: 32); the last batch of an epoch may be smaller.
    pub batch_size: usize,
}

impl Default for SgdConfig {
    /// The authors' settings: lr 1e-3, 10 epochs, batch 32.
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            epochs: 10,
            batch_size: 32,
        }
    }
}

/// MLP baseline settings: hidden ReLU layer widths plus the training settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    /// Width of each hidden layer, input side first (authors: `[1024]`, `[1024, 1024]`-style
    /// two layers at 50 shots). Empty gives logistic regression.
    pub hidden: Vec<usize>,
    /// Optimiser settings.
    pub sgd: SgdConfig,
}

impl Default for MlpConfig {
    /// The authors' settings: one hidden layer of 1024 units, [`SgdConfig::default`].
    fn default() -> Self {
        MlpConfig {
            hidden: vec![1024],
            sgd: SgdConfig::default(),
        }
    }
}

/// Logistic regression (`Linear(d, C)` + bias, softmax cross-entropy) trained with Adam on the
/// support set; returns the predicted class of each of the `n` query rows.
///
/// # Panics
/// If `support` is empty, a class's slice is not a multiple of `d`, or
/// `queries.len() != n * d`.
pub fn logistic_regression(support: &[&[f32]], d: usize, queries: &[f32], n: usize, cfg: &SgdConfig, seed: u64) -> Vec<usize> {
    let (net, _) = train_network(support, d, &[], cfg, seed);
    net.predict(queries, n)
}

/// Multi-layer perceptron (`Linear(d, h1) + ReLU + ... + Linear(h_last, C)`, softmax
/// cross-entropy) trained with Adam on the support set; returns the predicted class of each of
/// the `n` query rows.
///
/// # Panics
/// As [`logistic_regression`], or if a hidden width is zero.
pub fn mlp(support: &[&[f32]], d: usize, queries: &[f32], n: usize, cfg: &MlpConfig, seed: u64) -> Vec<usize> {
    let (net, _) = train_network(support, d, &cfg.hidden, &cfg.sgd, seed);
    net.predict(queries, n)
}

/// 1-nearest neighbour under the Euclidean distance: each query gets the class of its closest
/// support sample (ties go to the earliest sample, classes in order). Distances are computed
/// as `||s||^2 - 2 q.s` (the `||q||^2` term does not change the argmin) with one matrix product
/// per block of queries.
///
/// # Panics
/// If there are no support samples at all, a class's slice is not a multiple of `d`, or
/// `queries.len() != n * d`.
pub fn nearest_neighbour(support: &[&[f32]], d: usize, queries: &[f32], n: usize) -> Vec<usize> {
    let (x, labels) = stack_support(support, d);
    assert!(!labels.is_empty(), "nearest_neighbour needs at least one support sample");
    nearest_row(&x, &labels, d, queries, n)
}

/// Nearest class mean (Euclidean): each query gets the class whose support mean is closest
/// (ties go to the lower class index). Classes without support samples are never predicted.
///
/// # Panics
/// If no class has a support sample, a class's slice is not a multiple of `d`, or
/// `queries.len() != n * d`.
pub fn nearest_class_mean(support: &[&[f32]], d: usize, queries: &[f32], n: usize) -> Vec<usize> {
    check_support(support, d);
    let mut means = Vec::with_capacity(support.len() * d);
    let mut labels = Vec::with_capacity(support.len());
    for (c, s) in support.iter().enumerate() {
        let m = s.len() / d;
        if m == 0 {
            continue;
        }
        // Accumulate in f64 so a 200-shot mean is as exact as the data.
        let mut acc = vec![0.0f64; d];
        for row in s.chunks_exact(d) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as f64;
            }
        }
        means.extend(acc.iter().map(|&a| (a / m as f64) as f32));
        labels.push(c);
    }
    assert!(!labels.is_empty(), "nearest_class_mean needs a class with support samples");
    nearest_row(&means, &labels, d, queries, n)
}

/// Index of the closest row of `refs` (`labels.len() x d`) for each query, mapped through
/// `labels`; blocks of [`QUERY_BLOCK`] queries, one `matmul_nt` each.
fn nearest_row(refs: &[f32], labels: &[usize], d: usize, queries: &[f32], n: usize) -> Vec<usize> {
    assert_eq!(queries.len(), n * d, "queries must be n x d");
    let r = labels.len();
    let norms: Vec<f32> = refs.chunks_exact(d.max(1)).take(r).map(|s| s.iter().map(|v| v * v).sum()).collect();
    let mut out = Vec::with_capacity(n);
    let mut dots = vec![0.0f32; QUERY_BLOCK.min(n) * r];
    let mut start = 0;
    while start < n {
        let b = QUERY_BLOCK.min(n - start);
        let dots = &mut dots[..b * r];
        matmul_nt(&queries[start * d..(start + b) * d], b, d, refs, r, dots).expect("shapes checked");
        for row in dots.chunks_exact(r) {
            let mut best = 0;
            let mut best_v = f32::INFINITY;
            for (j, (&dot, &nrm)) in row.iter().zip(&norms).enumerate() {
                let v = nrm - 2.0 * dot;
                if v < best_v {
                    best_v = v;
                    best = j;
                }
            }
            out.push(labels[best]);
        }
        start += b;
    }
    out
}

/// Checks the support layout; returns the number of classes.
fn check_support(support: &[&[f32]], d: usize) -> usize {
    assert!(!support.is_empty(), "support must hold at least one class");
    assert!(d > 0, "d must be positive");
    for (c, s) in support.iter().enumerate() {
        assert_eq!(s.len() % d, 0, "support of class {c} is not a whole number of rows of {d}");
    }
    support.len()
}

/// All support rows stacked (`N x d`) with their class indices.
fn stack_support(support: &[&[f32]], d: usize) -> (Vec<f32>, Vec<usize>) {
    check_support(support, d);
    let total: usize = support.iter().map(|s| s.len()).sum();
    let mut x = Vec::with_capacity(total);
    let mut labels = Vec::with_capacity(total / d);
    for (c, s) in support.iter().enumerate() {
        x.extend_from_slice(s);
        labels.extend(std::iter::repeat_n(c, s.len() / d));
    }
    (x, labels)
}

/// One `nn.Linear(inp, out)`: `y = x W^T + b`. The weights are kept transposed, `wt = W^T`
/// row-major `inp x out`, because `x wt` (`matmul_nn`) is about 3x faster than `x W^T`
/// (`matmul_nt`) for a mini-batch of 32 rows: the gemm packs `wt` with unit stride.
#[derive(Clone, Debug, PartialEq)]
struct Layer {
    wt: Vec<f32>,
    b: Vec<f32>,
    inp: usize,
    out: usize,
}

impl Layer {
    /// PyTorch's default init: `kaiming_uniform_(a = sqrt(5))` on the weights, i.e. uniform in
    /// `±1/sqrt(fan_in)`, and the bias uniform in the same range.
    fn new(inp: usize, out: usize, rng: &mut Rng) -> Self {
        let bound = 1.0 / (inp as f32).sqrt();
        // Drawn in PyTorch's order (W row by row), stored transposed.
        let mut wt = vec![0.0; inp * out];
        for o in 0..out {
            for i in 0..inp {
                wt[i * out + o] = rng.uniform(-bound, bound);
            }
        }
        let b = (0..out).map(|_| rng.uniform(-bound, bound)).collect();
        Layer { wt, b, inp, out }
    }

    /// `y (rows x out) = x (rows x inp) W^T + b`.
    fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        matmul_nn(x, rows, self.inp, &self.wt, self.out, y).expect("layer shapes");
        for row in y.chunks_exact_mut(self.out) {
            for (v, &b) in row.iter_mut().zip(&self.b) {
                *v += b;
            }
        }
    }
}

/// A trained feed-forward classifier: linear layers with ReLU between them, one logit per
/// class out. Logistic regression is the case without hidden layers.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    layers: Vec<Layer>,
}

impl Network {
    /// A freshly initialised network `d -> hidden[0] -> ... -> classes` (PyTorch default init,
    /// layers drawn input side first from `rng`).
    fn new(d: usize, hidden: &[usize], classes: usize, rng: &mut Rng) -> Self {
        let mut layers = Vec::with_capacity(hidden.len() + 1);
        let mut inp = d;
        for &h in hidden {
            assert!(h > 0, "hidden layer widths must be positive");
            layers.push(Layer::new(inp, h, rng));
            inp = h;
        }
        layers.push(Layer::new(inp, classes, rng));
        Network { layers }
    }

    /// Input dimension.
    pub fn input_dim(&self) -> usize {
        self.layers[0].inp
    }

    /// Number of classes (outputs).
    pub fn num_classes(&self) -> usize {
        self.layers[self.layers.len() - 1].out
    }

    /// Forward pass of `rows` inputs; `acts[l]` receives layer `l`'s output (after ReLU for
    /// hidden layers, logits for the last). Each `acts[l]` must hold `rows * out_l` values.
    fn forward(&self, x: &[f32], rows: usize, acts: &mut [Vec<f32>]) {
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, rest) = acts.split_at_mut(l);
            let input = if l == 0 { x } else { &before[l - 1][..rows * layer.inp] };
            let y = &mut rest[0][..rows * layer.out];
            layer.forward(input, rows, y);
            if l != last {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
    }

    /// Activation buffers for up to `rows` inputs.
    fn buffers(&self, rows: usize) -> Vec<Vec<f32>> {
        self.layers.iter().map(|l| vec![0.0; rows * l.out]).collect()
    }

    /// Predicted class (arg-max logit, lowest index on ties) of each of the `n` rows of
    /// `queries` (row-major `n x d`), in blocks of [`QUERY_BLOCK`] rows.
    ///
    /// # Panics
    /// If `queries.len() != n * input_dim()`.
    pub fn predict(&self, queries: &[f32], n: usize) -> Vec<usize> {
        let d = self.input_dim();
        assert_eq!(queries.len(), n * d, "queries must be n x d");
        let c = self.num_classes();
        let mut acts = self.buffers(QUERY_BLOCK.min(n));
        let mut out = Vec::with_capacity(n);
        let mut start = 0;
        while start < n {
            let b = QUERY_BLOCK.min(n - start);
            self.forward(&queries[start * d..(start + b) * d], b, &mut acts);
            let logits = &acts[acts.len() - 1][..b * c];
            out.extend(logits.chunks_exact(c).map(argmax));
            start += b;
        }
        out
    }

    /// Mean softmax cross-entropy of the batch `x` (`rows x d`, classes `y`) and, into `grads`
    /// (one `(d wt, d b)` pair per layer, laid out as the parameters), its gradient. `acts` and `deltas` are scratch buffers
    /// sized by [`Network::buffers`] for at least `rows`.
    fn loss_and_grad(
        &self,
        x: &[f32],
        y: &[usize],
        acts: &mut [Vec<f32>],
        deltas: &mut [Vec<f32>],
        grads: &mut [(Vec<f32>, Vec<f32>)],
    ) -> f32 {
        let rows = y.len();
        self.forward(x, rows, acts);
        let last = self.layers.len() - 1;
        let c = self.num_classes();
        // Softmax cross-entropy; delta_last = (softmax - onehot) / rows.
        let inv = 1.0 / rows as f32;
        let mut loss = 0.0f32;
        {
            let logits = &acts[last][..rows * c];
            let delta = &mut deltas[last][..rows * c];
            for ((z, g), &label) in logits.chunks_exact(c).zip(delta.chunks_exact_mut(c)).zip(y) {
                let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0f32;
                for (gi, &zi) in g.iter_mut().zip(z) {
                    let e = (zi - max).exp();
                    *gi = e;
                    sum += e;
                }
                loss += sum.ln() - (z[label] - max);
                let s = inv / sum;
                g.iter_mut().for_each(|gi| *gi *= s);
                g[label] -= inv;
            }
        }
        // Back through the layers.
        for l in (0..=last).rev() {
            let layer = &self.layers[l];
            let (before, rest) = deltas.split_at_mut(l);
            let delta = &rest[0][..rows * layer.out];
            let input = if l == 0 { x } else { &acts[l - 1][..rows * layer.inp] };
            let (gw, gb) = &mut grads[l];
            // d loss / d wt (inp x out) = input^T delta.
            matmul_tn(input, rows, layer.inp, delta, layer.out, gw).expect("grad shapes");
            gb.iter_mut().for_each(|v| *v = 0.0);
            for row in delta.chunks_exact(layer.out) {
                for (g, &v) in gb.iter_mut().zip(row) {
                    *g += v;
                }
            }
            if l > 0 {
                let prev = &mut before[l - 1][..rows * layer.inp];
                // d loss / d input (rows x inp) = delta wt^T.
                matmul_nt(delta, rows, layer.out, &layer.wt, layer.inp, prev).expect("delta shapes");
                // ReLU: no gradient where the unit was off.
                for (p, &a) in prev.iter_mut().zip(&acts[l - 1][..rows * layer.inp]) {
                    if a <= 0.0 {
                        *p = 0.0;
                    }
                }
            }
        }
        loss * inv
    }

    /// Zeroed gradient buffers, one `(d wt, d b)` per layer.
    fn zero_grads(&self) -> Vec<(Vec<f32>, Vec<f32>)> {
        self.layers.iter().map(|l| (vec![0.0; l.wt.len()], vec![0.0; l.b.len()])).collect()
    }
}

/// Index of the largest value (the first one on ties).
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate().skip(1) {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// `torch.optim.Adam` (no weight decay) on one parameter vector: the core's [`AdamStep`].
fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], step: &AdamStep) {
    use rayon::prelude::*;
    // Element-wise, so pieces on different cores give the same bits; a hidden layer's
    // 800 k weights per step are bound by the divider, one core's worth is too slow.
    const PIECE: usize = 1 << 15;
    if p.len() <= PIECE {
        step.apply(p, g, m, v);
    } else {
        p.par_chunks_mut(PIECE)
            .zip(g.par_chunks(PIECE))
            .zip(m.par_chunks_mut(PIECE))
            .zip(v.par_chunks_mut(PIECE))
            .for_each(|(((p, g), m), v)| step.apply(p, g, m, v));
    }
}

/// Trains the network `d -> hidden... -> support.len()` on the support set (the engine of
/// [`logistic_regression`] and [`mlp`]) and returns it with the mean training loss of every
/// epoch (the cross-entropy averaged over the epoch's samples, measured during the epoch as
/// the weights move).
///
/// Deterministic in `seed`: the initialisation and the per-epoch shuffles use independent
/// streams derived from it.
///
/// # Panics
/// If `support` is empty, a class's slice is not a multiple of `d`, a hidden width is zero or
/// `cfg.batch_size == 0`.
pub fn train_network(support: &[&[f32]], d: usize, hidden: &[usize], cfg: &SgdConfig, seed: u64) -> (Network, Vec<f32>) {
    train_network_on(support, d, hidden, cfg, seed, true)
}

/// [`train_network`], optionally on every input (`compact = false`, for testing).
///
/// An input that is blank in every support sample gives the first layer's weights on it a
/// zero gradient at every step, and Adam (no weight decay) leaves them as drawn. So the
/// network trains on the other inputs (the first layer's rows for them, the samples' columns)
/// and the blank ones' rows go back unchanged: MNIST's 10-way supports leave 18% of the
/// pixels blank at 200 shots, 37% at 10. The same network up to rounding.
fn train_network_on(support: &[&[f32]], d: usize, hidden: &[usize], cfg: &SgdConfig, seed: u64, compact: bool) -> (Network, Vec<f32>) {
    let classes = check_support(support, d);
    assert!(cfg.batch_size > 0, "batch_size must be positive");
    let mut net = Network::new(d, hidden, classes, &mut Rng::derive(seed, STREAM_INIT));
    let (x, labels) = stack_support(support, d);
    let total = labels.len();
    if total == 0 {
        return (net, vec![0.0; cfg.epochs]);
    }
    let d_full = d;
    // With `compact`, the first layer keeps only its rows for the live inputs while it trains,
    // and the matrix as drawn waits in `drawn`. Runs of inputs are runs of rows of `wt`, so
    // runs of its values: the column helpers gather and scatter them with `wt` as one row.
    let mut drawn = None;
    let (x, d) = match compact.then(|| column_runs(&live_columns(&x, total, d))) {
        Some(runs) if run_width(&runs) < d => {
            let width = run_width(&runs);
            let first = &mut net.layers[0];
            let wt_runs: Vec<(usize, usize)> = runs.iter().map(|&(a, b)| (a * first.out, b * first.out)).collect();
            let full = std::mem::take(&mut first.wt);
            gather_columns(&full, full.len(), &wt_runs, &mut first.wt);
            first.inp = width;
            drawn = Some((full, wt_runs));
            let mut xl = Vec::with_capacity(total * width);
            gather_columns(&x, d, &runs, &mut xl);
            (xl, width)
        }
        _ => (x, d),
    };
    let bs = cfg.batch_size.min(total);
    let mut shuffle_rng = Rng::derive(seed, STREAM_SHUFFLE);
    let mut order: Vec<usize> = (0..total).collect();
    let mut xb = vec![0.0f32; bs * d];
    let mut yb = Vec::with_capacity(bs);
    let mut acts = net.buffers(bs);
    let mut deltas = net.buffers(bs);
    let mut grads = net.zero_grads();
    let mut moments: Vec<_> = net.zero_grads().into_iter().zip(net.zero_grads()).collect();
    let mut t = 0i32;
    let mut losses = Vec::with_capacity(cfg.epochs);
    for _ in 0..cfg.epochs {
        shuffle_rng.shuffle(&mut order);
        let mut epoch_loss = 0.0f64;
        for batch in order.chunks(bs) {
            yb.clear();
            for (k, &i) in batch.iter().enumerate() {
                xb[k * d..(k + 1) * d].copy_from_slice(&x[i * d..(i + 1) * d]);
                yb.push(labels[i]);
            }
            let rows = batch.len();
            let loss = net.loss_and_grad(&xb[..rows * d], &yb, &mut acts, &mut deltas, &mut grads);
            epoch_loss += loss as f64 * rows as f64;
            t += 1;
            let bc1 = 1.0 - (BETA1 as f64).powi(t);
            let bc2 = 1.0 - (BETA2 as f64).powi(t);
            let step = AdamStep::with_corrections(cfg.lr, BETA1, BETA2, EPS, bc1, bc2);
            for ((layer, (gw, gb)), ((mw, mb), (vw, vb))) in net.layers.iter_mut().zip(&grads).zip(moments.iter_mut()) {
                adam_update(&mut layer.wt, gw, mw, vw, &step);
                adam_update(&mut layer.b, gb, mb, vb, &step);
            }
        }
        losses.push((epoch_loss / total as f64) as f32);
    }
    if let Some((mut full, wt_runs)) = drawn {
        let first = &mut net.layers[0];
        let len = full.len();
        scatter_columns(&first.wt, &mut full, len, &wt_runs);
        first.wt = full;
        first.inp = d_full;
    }
    (net, losses)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `classes` Gaussian clusters in `d` dimensions: centers N(0, 3^2) per coordinate, unit-ish
    /// noise (std 0.3). Returns the per-class support rows and labelled queries.
    #[allow(clippy::type_complexity)]
    fn clusters(d: usize, classes: usize, shots: usize, per_query: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<f32>, Vec<usize>) {
        let mut rng = Rng::new(seed);
        let centers: Vec<Vec<f32>> = (0..classes).map(|_| (0..d).map(|_| 3.0 * rng.normal()).collect()).collect();
        let sample = |c: usize, rng: &mut Rng| -> Vec<f32> { centers[c].iter().map(|&m| m + 0.3 * rng.normal()).collect() };
        let support = (0..classes)
            .map(|c| (0..shots).flat_map(|_| sample(c, &mut rng)).collect())
            .collect();
        let mut q = Vec::new();
        let mut y = Vec::new();
        for i in 0..classes * per_query {
            let c = i % classes;
            q.extend(sample(c, &mut rng));
            y.push(c);
        }
        (support, q, y)
    }

    fn refs(s: &[Vec<f32>]) -> Vec<&[f32]> {
        s.iter().map(Vec::as_slice).collect()
    }

    fn accuracy(pred: &[usize], y: &[usize]) -> f64 {
        assert_eq!(pred.len(), y.len());
        pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64
    }

    #[test]
    fn all_four_separate_gaussian_clusters() {
        let (d, c) = (20, 4);
        let (s, q, y) = clusters(d, c, 50, 50, 11);
        let s = refs(&s);
        let n = y.len();
        // 70 Adam steps at the paper's lr 1e-3 move a weight by at most 0.07, which is not
        // enough for every draw of clusters; lr 1e-2 tests the ability to separate them.
        let fast = SgdConfig {
            lr: 1e-2,
            ..SgdConfig::default()
        };
        let lr = logistic_regression(&s, d, &q, n, &fast, 1);
        let small = MlpConfig {
            hidden: vec![64],
            sgd: fast,
        };
        let ml = mlp(&s, d, &q, n, &small, 2);
        let nn = nearest_neighbour(&s, d, &q, n);
        let ncm = nearest_class_mean(&s, d, &q, n);
        for (name, p) in [("logreg", &lr), ("mlp", &ml), ("1-nn", &nn), ("ncm", &ncm)] {
            assert_eq!(accuracy(p, &y), 1.0, "{name}");
        }
        // The default (1024-unit) MLP too.
        let big = mlp(&s, d, &q, n, &MlpConfig::default(), 3);
        assert_eq!(accuracy(&big, &y), 1.0, "mlp 1024");
    }

    #[test]
    fn logistic_regression_loss_decreases() {
        let (d, c) = (20, 4);
        let (s, _, _) = clusters(d, c, 50, 0, 5);
        let (_, losses) = train_network(&refs(&s), d, &[], &SgdConfig::default(), 9);
        assert_eq!(losses.len(), 10);
        assert!(losses.iter().all(|l| l.is_finite() && *l >= 0.0), "{losses:?}");
        for w in losses.windows(2) {
            assert!(w[1] < w[0], "loss must fall every epoch: {losses:?}");
        }
        assert!(losses[9] < 0.5 * losses[0], "{losses:?}");
    }

    /// Loss of the network on `(x, y)` in f64 (parameters are f32; the forward pass is redone
    /// here in f64 so finite differences are not drowned by f32 rounding).
    fn loss_f64(net: &Network, x: &[f32], y: &[usize]) -> f64 {
        let d = net.input_dim();
        let mut total = 0.0;
        for (row, &label) in x.chunks_exact(d).zip(y) {
            let mut a: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            for (l, layer) in net.layers.iter().enumerate() {
                let mut z: Vec<f64> = (0..layer.out)
                    .map(|o| layer.b[o] as f64 + (0..layer.inp).map(|i| layer.wt[i * layer.out + o] as f64 * a[i]).sum::<f64>())
                    .collect();
                if l + 1 < net.layers.len() {
                    z.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                a = z;
            }
            let max = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = a.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
            total += lse - a[label];
        }
        total / y.len() as f64
    }

    /// Weight (`which == 0`) or bias `i` of layer `l`.
    fn param_mut(net: &mut Network, l: usize, which: usize, i: usize) -> &mut f32 {
        if which == 0 {
            &mut net.layers[l].wt[i]
        } else {
            &mut net.layers[l].b[i]
        }
    }

    /// Training on the inputs that some support sample has (blank ones left out) gives the
    /// network that training on every input gives, up to rounding; the first layer's weights
    /// on blank inputs stay as drawn in both.
    #[test]
    fn training_without_the_blank_inputs_gives_the_same_network() {
        let (d, c) = (20, 4);
        let (mut s, q, _) = clusters(d, c, 12, 5, 3);
        let blank = |j: usize| j < 3 || j.is_multiple_of(7);
        for class in &mut s {
            class
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| blank(i % d))
                .for_each(|(_, v)| *v = 0.0);
        }
        let s = refs(&s);
        let cfg = SgdConfig {
            lr: 1e-2,
            epochs: 4,
            batch_size: 8,
        };
        for hidden in [&[][..], &[16][..]] {
            let fresh = Network::new(d, hidden, c, &mut Rng::derive(5, STREAM_INIT));
            let (plain, lp) = train_network_on(&s, d, hidden, &cfg, 5, false);
            let (compact, lc) = train_network_on(&s, d, hidden, &cfg, 5, true);
            for (a, b) in lp.iter().zip(&lc) {
                assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "losses {lp:?} vs {lc:?}");
            }
            for (l, (p, k)) in plain.layers.iter().zip(&compact.layers).enumerate() {
                assert_eq!((k.inp, k.out), (p.inp, p.out));
                for (i, ((&w0, &wp), &wk)) in fresh.layers[l].wt.iter().zip(&p.wt).zip(&k.wt).enumerate() {
                    if l == 0 && blank(i / p.out) {
                        assert_eq!((wp, wk), (w0, w0), "weight {i} on a blank input moved");
                    } else {
                        assert!((wp - wk).abs() <= 1e-4, "layer {l} weight {i}: {wp} vs {wk}");
                    }
                }
            }
            assert_ne!(fresh.layers[0].wt, compact.layers[0].wt);
            assert_eq!(plain.predict(&q, q.len() / d), compact.predict(&q, q.len() / d));
        }
    }

    #[test]
    fn mlp_gradient_matches_finite_differences() {
        let (d, h, c) = (3, 4, 2);
        let mut rng = Rng::new(42);
        let mut net = Network::new(d, &[h], c, &mut rng);
        // Larger weights than the default init so the gradients are not tiny.
        for layer in &mut net.layers {
            layer.wt.iter_mut().for_each(|w| *w *= 3.0);
        }
        let rows = 5;
        let x: Vec<f32> = (0..rows * d).map(|_| rng.normal()).collect();
        let y = vec![0, 1, 1, 0, 1];
        // Stay away from ReLU kinks, or the difference quotient is meaningless.
        let mut acts = net.buffers(rows);
        net.forward(&x, rows, &mut acts);
        let l0 = &net.layers[0];
        let mut pre = vec![0.0; rows * h];
        l0.forward(&x, rows, &mut pre);
        assert!(pre.iter().all(|v| v.abs() > 1e-2), "pre-activation too close to a kink: {pre:?}");
        assert!(acts[0].contains(&0.0) && acts[0].iter().any(|&v| v > 0.0), "need both ReLU states");

        let mut deltas = net.buffers(rows);
        let mut grads = net.zero_grads();
        let loss = net.loss_and_grad(&x, &y, &mut acts, &mut deltas, &mut grads);
        assert!((loss as f64 - loss_f64(&net, &x, &y)).abs() < 1e-5);

        let eps = 1e-3f32;
        let mut checked = 0;
        for (l, (gw, gb)) in grads.iter().enumerate() {
            for (which, g) in [gw, gb].into_iter().enumerate() {
                for (i, &analytic) in g.iter().enumerate() {
                    let analytic = analytic as f64;
                    let orig = *param_mut(&mut net, l, which, i);
                    *param_mut(&mut net, l, which, i) = orig + eps;
                    let up = loss_f64(&net, &x, &y);
                    *param_mut(&mut net, l, which, i) = orig - eps;
                    let down = loss_f64(&net, &x, &y);
                    *param_mut(&mut net, l, which, i) = orig;
                    let plus = orig + eps;
                    let minus = orig - eps;
                    let numeric = (up - down) / (plus as f64 - minus as f64);
                    assert!(
                        (numeric - analytic).abs() <= 1e-4 + 1e-3 * numeric.abs(),
                        "layer {l} {} [{i}]: analytic {analytic} numeric {numeric}",
                        if which == 0 { "W" } else { "b" }
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, (d * h + h) + (h * c + c));
        // And the gradient is not trivially zero.
        assert!(grads.iter().flat_map(|(w, _)| w).any(|g| g.abs() > 1e-2));
    }

    #[test]
    fn same_seed_same_predictions() {
        let (d, c) = (20, 4);
        // Overlapping clusters so the predictions depend on the training noise.
        let mut rng = Rng::new(3);
        let s: Vec<Vec<f32>> = (0..c).map(|_| (0..10 * d).map(|_| rng.normal()).collect()).collect();
        let q: Vec<f32> = (0..200 * d).map(|_| rng.normal()).collect();
        let s = refs(&s);
        let cfg = MlpConfig {
            hidden: vec![32, 16],
            ..MlpConfig::default()
        };
        let a = mlp(&s, d, &q, 200, &cfg, 77);
        assert_eq!(a, mlp(&s, d, &q, 200, &cfg, 77));
        let lr = logistic_regression(&s, d, &q, 200, &SgdConfig::default(), 77);
        assert_eq!(lr, logistic_regression(&s, d, &q, 200, &SgdConfig::default(), 77));
        // A different seed gives a different network (and here different predictions).
        assert_ne!(a, mlp(&s, d, &q, 200, &cfg, 78));
        let (n1, l1) = train_network(&s, d, &[8], &SgdConfig::default(), 5);
        let (n2, l2) = train_network(&s, d, &[8], &SgdConfig::default(), 5);
        assert_eq!(n1, n2);
        assert_eq!(l1, l2);
    }

    #[test]
    fn nearest_neighbour_and_class_mean_on_a_hand_made_example() {
        // Class 0: (0,0) and (10,0) -> mean (5,0). Class 1: (4,3) and (6,3) -> mean (5,3).
        let c0 = [0.0, 0.0, 10.0, 0.0];
        let c1 = [4.0, 3.0, 6.0, 3.0];
        let s: [&[f32]; 2] = [&c0, &c1];
        // q0 (1,0): NN (0,0) -> 0; means: d0^2 = 16, d1^2 = 25 -> 0.
        // q1 (5,1): NN (4,3)/(6,3) at d^2 = 5 vs (0,0)/(10,0) at 26 -> 1; means: 1 vs 4 -> 0.
        // q2 (9,2): NN (10,0) d^2 = 5, (6,3) d^2 = 10 -> 0; means: 16+4 = 20 vs 16+1 = 17 -> 1.
        // q3 (5,2.5): NN (4,3) d^2 = 1.25 -> 1; means 6.25 vs 0.25 -> 1.
        let q = [1.0, 0.0, 5.0, 1.0, 9.0, 2.0, 5.0, 2.5];
        assert_eq!(nearest_neighbour(&s, 2, &q, 4), vec![0, 1, 0, 1]);
        assert_eq!(nearest_class_mean(&s, 2, &q, 4), vec![0, 0, 1, 1]);
        // An empty class is never predicted, and indices keep their meaning.
        let s3: [&[f32]; 3] = [&[], &c0, &c1];
        assert_eq!(nearest_neighbour(&s3, 2, &q, 4), vec![1, 2, 1, 2]);
        assert_eq!(nearest_class_mean(&s3, 2, &q, 4), vec![1, 1, 2, 2]);
        // More queries than one block.
        let many: Vec<f32> = q.iter().copied().cycle().take(8 * 700).collect();
        let want: Vec<usize> = [0, 1, 0, 1].iter().copied().cycle().take(2800).collect();
        assert_eq!(nearest_neighbour(&s, 2, &many, 2800), want);
    }

    /// MNIST 10-way, 1- and 10-shot, full test set, a few trials; run by hand:
    /// `cargo test -p ldl-host baselines::tests::mnist -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs data/mnist and minutes of CPU; run by hand"]
    fn mnist_few_shot_report() {
        use crate::data::{load_mnist, Split};
        use std::path::Path;
        use std::time::Instant;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
        let train = load_mnist(&dir, Split::Train).expect("train split");
        let test = load_mnist(&dir, Split::Test).expect("test split");
        let d = train.dim;
        let y: Vec<usize> = test.labels.iter().map(|&l| l as usize).collect();
        let n = y.len();
        let by_class = train.class_indices();
        let trials: usize = std::env::var("BASELINE_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
        let shots_list: Vec<usize> = std::env::var("BASELINE_SHOTS")
            .ok()
            .map(|v| v.split(',').map(|s| s.trim().parse().unwrap()).collect())
            .unwrap_or_else(|| vec![1, 10]);
        for shots in shots_list {
            let mut acc = [0.0f64; 4];
            let mut secs = [0.0f64; 4];
            for trial in 0..trials {
                let mut rng = Rng::derive(2019, (shots * 1000 + trial) as u64);
                let support: Vec<Vec<f32>> = by_class
                    .iter()
                    .map(|rows| {
                        let mut idx = rows.clone();
                        rng.shuffle(&mut idx);
                        idx[..shots].iter().flat_map(|&i| train.row(i).iter().copied()).collect()
                    })
                    .collect();
                let s = refs(&support);
                let seed = trial as u64;
                let runs: [&dyn Fn() -> Vec<usize>; 4] = [
                    &|| logistic_regression(&s, d, &test.features, n, &SgdConfig::default(), seed),
                    &|| mlp(&s, d, &test.features, n, &MlpConfig::default(), seed),
                    &|| nearest_neighbour(&s, d, &test.features, n),
                    &|| nearest_class_mean(&s, d, &test.features, n),
                ];
                for (k, run) in runs.iter().enumerate() {
                    let t0 = Instant::now();
                    let p = run();
                    secs[k] += t0.elapsed().as_secs_f64();
                    acc[k] += accuracy(&p, &y);
                }
            }
            for (k, name) in ["logreg", "mlp-1024", "1-nn", "ncm"].iter().enumerate() {
                println!(
                    "MNIST 10-way {shots:>3}-shot {name:>8}: accuracy {:.3} over {trials} trials, {:.3} s/trial",
                    acc[k] / trials as f64,
                    secs[k] / trials as f64
                );
            }
        }
    }
}
