//! Criterion benchmarks at MNIST size (d = 784, 10 classes, k = 256): classification of one
//! sample and of a batch, and the closed-form fit of one class (what a device runs to enroll).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ldl_core::methods::{fit_closed_form, ClosedFormConfig, GradientConfig, GradientTrainer};
use ldl_core::subspace::{fit_into, fit_scratch_len, SubspaceBuf};
use ldl_core::{classify, classify::scratch_len, Model, Rng};
use std::hint::black_box;

const D: usize = 784;
const K: usize = 256;
const C: usize = 10;

/// MNIST-like inputs: values in [0, 1], most of them zero.
fn inputs(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n * D)
        .map(|_| if rng.next_f32() < 0.8 { 0.0 } else { rng.next_f32() })
        .collect()
}

fn models(shots: usize) -> (Model, Model) {
    let support: Vec<Vec<f32>> = (0..C).map(|c| inputs(shots, c as u64)).collect();
    let views: Vec<&[f32]> = support.iter().map(|v| v.as_slice()).collect();
    let labels: Vec<String> = (0..C).map(|c| c.to_string()).collect();
    let labels: Vec<&str> = labels.iter().map(|s| s.as_str()).collect();
    let closed = fit_closed_form(
        &views,
        D,
        &labels,
        &ClosedFormConfig {
            k: K,
            ..Default::default()
        },
        1,
    )
    .unwrap();
    let mut cfg = GradientConfig::o2md_paper(K);
    cfg.epochs = 1;
    let dense = GradientTrainer::new(&views, D, &labels, &cfg, 1).unwrap().run().unwrap();
    (closed, dense)
}

fn classification(c: &mut Criterion) {
    let (closed, dense) = models(10);
    let x = inputs(1, 99);
    let mut g = c.benchmark_group("classify_one");
    for (name, model) in [("closed_form_10shot", &closed), ("o2md_dense", &dense)] {
        let mut scratch = vec![0.0; scratch_len(model).unwrap()];
        let mut dist = vec![0.0; C];
        g.bench_function(name, |b| {
            b.iter(|| classify(model, black_box(&x), ldl_core::novelty::Rule::default(), &mut scratch, &mut dist).unwrap())
        });
    }
    g.finish();

    let n = 1000;
    let xs = inputs(n, 100);
    let mut g = c.benchmark_group("classify_batch_1000");
    g.throughput(Throughput::Elements(n as u64));
    for (name, model) in [("closed_form_10shot", &closed), ("o2md_dense", &dense)] {
        let mut out = vec![0.0; n * C];
        g.bench_function(name, |b| {
            b.iter(|| ldl_core::batch::distances(model, black_box(&xs), n, &mut out).unwrap())
        });
    }
    g.finish();
}

fn closed_form_fit(c: &mut Criterion) {
    let target = ldl_core::methods::make_target(D, K, true, ldl_core::Init::XavierNormal, 1).unwrap();
    let mut g = c.benchmark_group("closed_form_fit_one_class");
    for m in [1usize, 5, 10, 50] {
        let samples = inputs(m, 7);
        let cap = m;
        let (mut mean, mut basis, mut shrink) = (vec![0.0; D], vec![0.0; cap * D], vec![0.0; cap]);
        let (mut proj, mut tmean) = (vec![0.0; K * cap], vec![0.0; K]);
        let mut scratch = vec![0.0; fit_scratch_len(m, D, K)];
        let opts = ldl_core::subspace::FitOptions {
            ridge: 1.0,
            ..Default::default()
        };
        g.bench_with_input(BenchmarkId::from_parameter(m), &m, |b, &m| {
            b.iter(|| {
                let mut work = samples.clone();
                let buf = SubspaceBuf {
                    mean: &mut mean,
                    basis: &mut basis,
                    shrink: &mut shrink,
                    proj: &mut proj,
                    target_mean: &mut tmean,
                };
                fit_into(&target, &mut work, m, &opts, cap, buf, &mut scratch).unwrap()
            })
        });
    }
    g.finish();
}

fn o2md_epoch(c: &mut Criterion) {
    // One epoch of one class at the paper's size: 10 samples, batch 1, Adam, k = 2000.
    let k = 2000;
    let xs = inputs(10, 3);
    let target = ldl_core::methods::make_target(D, k, true, ldl_core::Init::XavierNormal, 1).unwrap();
    let mut ts = vec![0.0; 10 * k];
    target.forward_batch(&xs, 10, &mut ts).unwrap();
    let mut p = ldl_core::Linear::new(D, k, true, ldl_core::Init::Uniform, &mut Rng::new(2)).unwrap();
    let mut st = ldl_core::train::OptState::for_layer(&p);
    let opts = ldl_core::train::StepOptions {
        optimizer: ldl_core::train::Optimizer::adam(1e-3),
        weight_decay: 0.0,
        batch_size: 1,
    };
    let order: Vec<u32> = (0..10).collect();
    let mut g = c.benchmark_group("o2md_epoch_one_class_k2000");
    g.throughput(Throughput::Elements((10 * k * D) as u64));
    g.bench_function("10_samples", |b| {
        b.iter(|| ldl_core::train::fit_epoch(&mut p, &mut st, &xs, &ts, &order, &opts).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = classification, closed_form_fit, o2md_epoch
}
criterion_main!(benches);
