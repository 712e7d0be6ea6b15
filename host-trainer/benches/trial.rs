//! One 10-way 10-shot MNIST trial of each method (training + evaluation on the full 10,000
//! test images), the unit the speed targets are stated in.

use criterion::{criterion_group, criterion_main, Criterion};
use ldl_host::data::{load_mnist, Split};
use ldl_host::experiment::{episode, run_trial, Protocol};
use ldl_host::methods::{device_mode, MethodSpec};

fn trials(c: &mut Criterion) {
    let dir = ldl_host::repo_root().join("data/mnist");
    let train = load_mnist(&dir, Split::Train).expect("MNIST train");
    let test = load_mnist(&dir, Split::Test).expect("MNIST test");
    let p = Protocol {
        ways: 10,
        shots: 10,
        trials: 1,
        queries_per_class: None,
        seed: 2019,
    };
    let ep = episode(&train, Some(&test), &p, 0).expect("episode");
    let methods = [
        MethodSpec::parse("o2md").unwrap(),
        MethodSpec::parse("bd").unwrap(),
        MethodSpec::parse("closed").unwrap(),
        device_mode(None),
        // The device mode with shifts by 1 pixel: 9 copies of each image instead of 25.
        MethodSpec::parse("device::1").unwrap(),
        MethodSpec::parse("naive").unwrap(),
    ];
    let mut g = c.benchmark_group("mnist_10way_10shot_trial");
    g.sample_size(10);
    for m in &methods {
        g.bench_function(m.name(), |b| {
            b.iter(|| run_trial(m, &ep, train.dim, train.image, 2019, 0, false).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, trials);
criterion_main!(benches);
