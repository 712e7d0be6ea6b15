//! Every method on problems whose answer is known: well-separated synthetic classes.

use ldl_core::methods::{ensemble, fit_closed_form, ClosedFormConfig, GradientConfig, GradientTrainer};
use ldl_core::subspace::FitOptions;
use ldl_core::train::Optimizer;
use ldl_core::{classify, classify::scratch_len, Method, Model, Rng};

const D: usize = 24;

/// `classes` clusters far apart, each spread along a few random directions, plus queries.
fn clusters(classes: usize, per_class: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    (0..classes)
        .map(|_| {
            let centre: Vec<f32> = (0..D).map(|_| 3.0 * rng.normal()).collect();
            let dirs: Vec<Vec<f32>> = (0..3).map(|_| (0..D).map(|_| rng.normal()).collect()).collect();
            let mut rows = Vec::with_capacity(per_class * D);
            for _ in 0..per_class {
                let w: Vec<f32> = (0..3).map(|_| 0.5 * rng.normal()).collect();
                for j in 0..D {
                    rows.push(centre[j] + (0..3).map(|t| w[t] * dirs[t][j]).sum::<f32>() + 0.01 * rng.normal());
                }
            }
            rows
        })
        .collect()
}

/// Accuracy of a model on per-class query sets.
fn accuracy(model: &Model, queries: &[Vec<f32>]) -> f32 {
    let mut scratch = vec![0.0; scratch_len(model).unwrap()];
    let mut dist = vec![0.0; model.labels.len()];
    let (mut ok, mut n) = (0, 0);
    for (c, q) in queries.iter().enumerate() {
        for x in q.chunks_exact(D) {
            let r = classify(model, x, ldl_core::novelty::Rule::default(), &mut scratch, &mut dist).unwrap();
            ok += (r.best == c) as usize;
            n += 1;
        }
    }
    ok as f32 / n as f32
}

fn data(seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let all = clusters(4, 30, seed);
    let support = all.iter().map(|c| c[..10 * D].to_vec()).collect();
    let queries = all.iter().map(|c| c[10 * D..].to_vec()).collect();
    (support, queries)
}

const LABELS: [&str; 4] = ["a", "b", "c", "d"];

#[test]
fn o2md_bd_and_naive_reduce_their_loss_and_separate_the_classes() {
    let (support, queries) = data(1);
    let views: Vec<&[f32]> = support.iter().map(|v| v.as_slice()).collect();
    for base in [
        GradientConfig::o2md_paper(32),
        GradientConfig::bd_paper(32),
        GradientConfig::naive_paper(),
    ] {
        let mut cfg = base;
        cfg.predictor_step.optimizer = Optimizer::adam(1e-2);
        cfg.target_step.optimizer = Optimizer::adam(1e-3);
        let mut t = GradientTrainer::new(&views, D, &LABELS, &cfg, 7).unwrap();
        let losses: Vec<f32> = (0..40).map(|_| t.epoch().unwrap()).collect();
        assert!(
            losses[39] < 0.2 * losses[0],
            "{:?}: loss {} -> {}",
            cfg.method,
            losses[0],
            losses[39]
        );
        let acc = accuracy(t.model(), &queries);
        assert_eq!(acc, 1.0, "{:?} accuracy {acc}", cfg.method);
    }
}

#[test]
fn bd_moves_the_target_and_o2md_keeps_it_frozen() {
    let (support, _) = data(2);
    let views: Vec<&[f32]> = support.iter().map(|v| v.as_slice()).collect();
    for (cfg, moves) in [(GradientConfig::o2md_paper(16), false), (GradientConfig::bd_paper(16), true)] {
        let mut t = GradientTrainer::new(&views, D, &LABELS, &cfg, 3).unwrap();
        let before = t.model().members[0].target.clone();
        t.epoch().unwrap();
        assert_eq!(t.model().members[0].target != before, moves, "{:?}", cfg.method);
    }
}

#[test]
fn closed_form_is_perfect_and_deterministic() {
    let (support, queries) = data(3);
    let views: Vec<&[f32]> = support.iter().map(|v| v.as_slice()).collect();
    for k in [0, 16, 64] {
        for ridge in [0.0, 1.0] {
            let cfg = ClosedFormConfig {
                k,
                fit: FitOptions {
                    ridge,
                    ..Default::default()
                },
                ..Default::default()
            };
            let a = fit_closed_form(&views, D, &LABELS, &cfg, 5).unwrap();
            let b = fit_closed_form(&views, D, &LABELS, &cfg, 5).unwrap();
            assert_eq!(a, b);
            assert_eq!(a.method, Method::ClosedForm);
            assert_eq!(accuracy(&a, &queries), 1.0, "k={k} ridge={ridge}");
        }
    }
}

#[test]
fn same_seed_same_model_other_seed_other_model() {
    let (support, _) = data(4);
    let views: Vec<&[f32]> = support.iter().map(|v| v.as_slice()).collect();
    let cfg = GradientConfig::o2md_paper(16);
    let a = GradientTrainer::new(&views, D, &LABELS, &cfg, 9).unwrap().run().unwrap();
    let b = GradientTrainer::new(&views, D, &LABELS, &cfg, 9).unwrap().run().unwrap();
    let c = GradientTrainer::new(&views, D, &LABELS, &cfg, 10).unwrap().run().unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn ensemble_agrees_on_easy_samples_and_flags_outliers() {
    let (support, queries) = data(5);
    let views: Vec<&[f32]> = support.iter().map(|v| v.as_slice()).collect();
    let cfg = ClosedFormConfig {
        k: 32,
        ..Default::default()
    };
    let mut model = ensemble(&views, D, 5, 11, |cls, seed| fit_closed_form(cls, D, &LABELS, &cfg, seed)).unwrap();
    assert_eq!(model.members.len(), 5);
    assert_eq!(accuracy(&model, &queries), 1.0);
    let mut scratch = vec![0.0; scratch_len(&model).unwrap()];
    let mut dist = vec![0.0; 4];
    let r = classify(
        &model,
        &queries[2][..D],
        ldl_core::novelty::Rule::default(),
        &mut scratch,
        &mut dist,
    )
    .unwrap();
    assert_eq!((r.best, r.agreement), (2, 1.0));
    // Members differ (own targets, bootstrap resamples).
    assert_ne!(model.members[0], model.members[1]);
    // A point far from every class is "unknown" under a threshold set from the support.
    let far = vec![40.0f32; D];
    let near = classify(
        &model,
        &queries[0][..D],
        ldl_core::novelty::Rule::default(),
        &mut scratch,
        &mut dist,
    )
    .unwrap()
    .novelty;
    model.threshold = Some(near * 10.0);
    let r = classify(&model, &far, model.rule(), &mut scratch, &mut dist).unwrap();
    assert_eq!(r.class, None);
    assert!(r.novelty > near * 10.0);
}

#[test]
fn enrollment_adds_and_removes_classes_without_touching_others() {
    let (support, queries) = data(6);
    let views: Vec<&[f32]> = support[..3].iter().map(|v| v.as_slice()).collect();
    let cfg = ClosedFormConfig {
        k: 32,
        ..Default::default()
    };
    let mut model = fit_closed_form(&views, D, &LABELS[..3], &cfg, 1).unwrap();
    let before = model.clone();
    assert_eq!(model.enroll("d", &support[3], 10), Err(ldl_core::Error::CapacityFull));
    model.capacity = 4;
    model.enroll("d", &support[3], 10).unwrap();
    assert_eq!(model.members[0].predictors[..3], before.members[0].predictors[..]);
    assert_eq!(accuracy(&model, &queries), 1.0);
    assert_eq!(model.enroll("e", &support[3], 10), Err(ldl_core::Error::CapacityFull));
    model.capacity = 8;
    assert_eq!(model.enroll("d", &support[3], 10), Err(ldl_core::Error::DuplicateLabel));
    assert_eq!(
        model.enroll("a-label-that-is-far-too-long", &support[3], 10),
        Err(ldl_core::Error::LabelTooLong)
    );
    assert_eq!(
        model.enroll("e", &support[3][..D - 1], 1),
        Err(ldl_core::Error::DimensionMismatch {
            expected: D as u32,
            found: D as u32 - 1
        })
    );
    let mut nan = support[3][..D].to_vec();
    nan[3] = f32::NAN;
    assert_eq!(model.enroll("e", &nan, 1), Err(ldl_core::Error::NonFinite));
    model.forget("d").unwrap();
    assert_eq!(model, Model { capacity: 8, ..before });
    assert_eq!(model.forget("d"), Err(ldl_core::Error::UnknownClass));
}

#[test]
fn bad_support_sets_are_errors() {
    let cfg = ClosedFormConfig::default();
    assert_eq!(fit_closed_form(&[], D, &[], &cfg, 0), Err(ldl_core::Error::EmptyClass));
    let empty: &[f32] = &[];
    assert_eq!(fit_closed_form(&[empty], D, &["a"], &cfg, 0), Err(ldl_core::Error::EmptyClass));
    let row = vec![0.0f32; D];
    assert!(fit_closed_form(&[&row], D, &["a", "b"], &cfg, 0).is_err());
    let mut bad = GradientConfig::o2md_paper(8);
    bad.predictor_step.batch_size = 0;
    let one: [&[f32]; 1] = [&row];
    let t = GradientTrainer::new(&one, D, &["a"], &bad, 0).unwrap();
    assert_eq!(t.run(), Err(ldl_core::Error::InvalidParameter));
}

#[test]
fn batch_distances_equal_one_at_a_time() {
    let (support, queries) = data(8);
    let views: Vec<&[f32]> = support.iter().map(|v| v.as_slice()).collect();
    let xs: Vec<f32> = queries.concat();
    let n = xs.len() / D;
    let models = [
        GradientTrainer::new(&views, D, &LABELS, &GradientConfig::o2md_paper(256), 1)
            .unwrap()
            .run()
            .unwrap(), // k >> d: Gram path
        GradientTrainer::new(&views, D, &LABELS, &GradientConfig::o2md_paper(8), 1)
            .unwrap()
            .run()
            .unwrap(), // direct path
        GradientTrainer::new(&views, D, &LABELS, &GradientConfig::naive_paper(), 1)
            .unwrap()
            .run()
            .unwrap(),
        fit_closed_form(
            &views,
            D,
            &LABELS,
            &ClosedFormConfig {
                k: 16,
                ..Default::default()
            },
            2,
        )
        .unwrap(),
        fit_closed_form(
            &views,
            D,
            &LABELS,
            &ClosedFormConfig {
                k: 0,
                fit: FitOptions {
                    ridge: 0.5,
                    ..Default::default()
                },
                ..Default::default()
            },
            2,
        )
        .unwrap(),
        ensemble(&views, D, 3, 4, |c, s| {
            fit_closed_form(
                c,
                D,
                &LABELS,
                &ClosedFormConfig {
                    k: 16,
                    ..Default::default()
                },
                s,
            )
        })
        .unwrap(),
    ];
    // Also with inputs that are zero in every query, which batch evaluation leaves out of its
    // products (blank pixels): the distances must not change.
    let mut blanked = xs.clone();
    for x in blanked.chunks_exact_mut(D) {
        [0, 3, D - 1].iter().for_each(|&i| x[i] = 0.0);
    }
    for (model, xs) in models.iter().flat_map(|m| [(m, &xs), (m, &blanked)]) {
        let mut batch = vec![0.0; n * 4];
        ldl_core::batch::distances(model, xs, n, &mut batch).unwrap();
        let mut scratch = vec![0.0; scratch_len(model).unwrap()];
        let mut one = vec![0.0; 4];
        let pred = ldl_core::batch::predict(model, xs, n).unwrap();
        for i in 0..n {
            let r = classify(
                model,
                &xs[i * D..(i + 1) * D],
                ldl_core::novelty::Rule::default(),
                &mut scratch,
                &mut one,
            )
            .unwrap();
            assert_eq!(pred[i], r.best);
            for c in 0..4 {
                let (a, b) = (batch[i * 4 + c], one[c]);
                assert!(
                    (a - b).abs() <= 1e-3 * b.abs().max(1e-2),
                    "{:?} sample {i} class {c}: {a} vs {b}",
                    model.method
                );
            }
        }
    }
}

/// The naive form (identity target, k = d) takes the Gram path of batch evaluation when
/// there are many samples and d is larger than a panel: its distances must still equal
/// one-at-a-time classification (D = W - I there, not W).
#[test]
fn batch_gram_path_of_the_naive_form_equals_one_at_a_time() {
    // 2,500 samples: three blocks of batch evaluation, the last one partial.
    let (d, n) = (100usize, 2500usize);
    let mut rng = ldl_core::Rng::new(3);
    let centres: Vec<Vec<f32>> = (0..4).map(|_| (0..d).map(|_| rng.normal()).collect()).collect();
    let sample = |rng: &mut ldl_core::Rng, c: &[f32]| -> Vec<f32> { c.iter().map(|v| v + 0.3 * rng.normal()).collect() };
    let support: Vec<Vec<f32>> = centres
        .iter()
        .map(|c| (0..10).flat_map(|_| sample(&mut rng, c)).collect())
        .collect();
    let views: Vec<&[f32]> = support.iter().map(|v| v.as_slice()).collect();
    let mut cfg = GradientConfig::naive_paper();
    cfg.epochs = 1;
    let model = GradientTrainer::new(&views, d, &LABELS, &cfg, 1).unwrap().run().unwrap();
    let xs: Vec<f32> = (0..n).flat_map(|i| sample(&mut rng, &centres[i % 4])).collect();
    // And with a third of the inputs zero in every sample (left out of the products, which
    // moves the panel boundaries), and with every input zero.
    let mut blanked = xs.clone();
    for x in blanked.chunks_exact_mut(d) {
        x.iter_mut().step_by(3).for_each(|v| *v = 0.0);
    }
    let zeros = vec![0.0; n * d];
    for xs in [&xs, &blanked, &zeros] {
        let mut batch = vec![0.0; n * 4];
        ldl_core::batch::distances(&model, xs, n, &mut batch).unwrap();
        let mut scratch = vec![0.0; scratch_len(&model).unwrap()];
        let mut one = vec![0.0; 4];
        for i in 0..n {
            classify(
                &model,
                &xs[i * d..(i + 1) * d],
                ldl_core::novelty::Rule::default(),
                &mut scratch,
                &mut one,
            )
            .unwrap();
            for c in 0..4 {
                let (a, b) = (batch[i * 4 + c], one[c]);
                assert!((a - b).abs() <= 1e-3 * b.abs().max(1e-2), "sample {i} class {c}: {a} vs {b}");
            }
        }
    }
}

/// Huge, blank and degenerate inputs are never a confident class: an input whose squared
/// norm overflows is a typed error (it was "class 0 at distance 0": `inf - inf` is NaN and
/// `max(0)` made it 0), in the f32 and 8-bit forms, one at a time and in batches; a blank
/// input, at distance 0 from every linear class, is "unknown" even without a threshold.
#[test]
fn huge_and_blank_inputs_are_never_a_confident_class() {
    let (support, queries) = data(9);
    let views: Vec<&[f32]> = support.iter().map(|v| v.as_slice()).collect();
    let cfg = ClosedFormConfig {
        k: 0,
        fit: FitOptions {
            ridge: 1.0,
            affine: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let f32_model = fit_closed_form(&views, D, &LABELS, &cfg, 5).unwrap();
    let compact = ldl_core::methods::fit_compact(&views, D, &LABELS, &cfg, None, 0, 5).unwrap();
    for model in [&f32_model, &compact] {
        let mut scratch = vec![0.0; scratch_len(model).unwrap()];
        let mut dist = vec![0.0; model.labels.len()];
        for threshold in [None, Some(1.0)] {
            for v in [1e25f32, 1e30, f32::MAX, -f32::MAX] {
                let x = vec![v; D];
                assert_eq!(
                    classify(model, &x, ldl_core::novelty::Rule::best(threshold), &mut scratch, &mut dist),
                    Err(ldl_core::Error::NonFinite),
                    "{v}"
                );
                let mut batch = vec![0.0; 2 * model.labels.len()];
                let two = [queries[0][..D].to_vec(), x.clone()].concat();
                assert_eq!(
                    ldl_core::batch::distances(model, &two, 2, &mut batch),
                    Err(ldl_core::Error::NonFinite)
                );
            }
            // Large but finite: far from every class, so unknown past a threshold.
            let far = classify(model, &[1e15; D], ldl_core::novelty::Rule::best(Some(1.0)), &mut scratch, &mut dist).unwrap();
            assert_eq!(far.class, None);
            assert!(far.novelty > 1.0);
            let blank = classify(model, &[0.0; D], ldl_core::novelty::Rule::best(threshold), &mut scratch, &mut dist).unwrap();
            assert_eq!(blank.class, None, "a blank input is no class");
            assert!(dist.iter().all(|&d| d == 0.0));
            // A real query is still classified.
            let q = classify(
                model,
                &queries[2][..D],
                ldl_core::novelty::Rule::best(threshold),
                &mut scratch,
                &mut dist,
            )
            .unwrap();
            assert_eq!(q.class, Some(2));
        }
    }
}

/// Warped copies (`ClosedFormConfig::fill`, `Preprocess::fill`): a 1-shot class fitted with
/// them is the class enrolled with them (the same bits), differs from the class without
/// them, and images whose size is not the inputs' are refused rather than warped.
#[test]
fn warped_copies_fit_as_they_enroll() {
    let (support, _) = data(4);
    let one: Vec<&[f32]> = support.iter().map(|v| &v[..D]).collect();
    let cfg = ClosedFormConfig {
        k: 0,
        fill: 5,
        fit: FitOptions {
            ridge: 1.0,
            affine: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let image = Some((6, 4));
    let filled = ldl_core::methods::fit_compact(&one, D, &LABELS, &cfg, image, 1, 5).unwrap();
    assert_eq!(filled.preprocess.fill, 5);
    let plain = ldl_core::methods::fit_compact(&one, D, &LABELS, &ClosedFormConfig { fill: 0, ..cfg }, image, 1, 5).unwrap();
    assert_ne!(filled.members[0].predictors[0], plain.members[0].predictors[0]);
    let mut enrolled = filled.clone();
    enrolled.forget(LABELS[0]).unwrap();
    enrolled.enroll(LABELS[0], one[0], 1).unwrap();
    assert_eq!(enrolled.members[0].predictors.last(), filled.members[0].predictors.first());
    assert_eq!(
        ldl_core::methods::fit_compact(&one, D, &LABELS, &cfg, Some((5, 4)), 1, 5).err(),
        Some(ldl_core::Error::InvalidParameter)
    );
    let mut wrong = filled.clone();
    wrong.preprocess.image.as_mut().unwrap().width = 5;
    wrong.capacity = 10;
    assert_eq!(wrong.enroll("new", one[0], 1), Err(ldl_core::Error::InvalidParameter));
}

/// Query alignment (`ClosedFormConfig::align`, `Preprocess::align`): a class's distance is its
/// least over the query and its warps (`ldl_core::augment::ALIGNS`), computed here by hand
/// from the model without the alignment; the batch path gives the same least; an ensemble,
/// an unknown alignment and a model without an image are refused.
#[test]
fn aligned_distances_are_the_least_over_the_warps() {
    use ldl_core::augment::{warp, ALIGNS};
    let (support, queries) = data(6);
    let views: Vec<&[f32]> = support.iter().map(Vec::as_slice).collect();
    let cfg = ClosedFormConfig {
        k: 0,
        align: 1,
        fit: FitOptions {
            ridge: 1.0,
            affine: false,
            max_rank: 3,
            ..Default::default()
        },
        ..Default::default()
    };
    let (w, h) = (6, 4);
    let aligned = ldl_core::methods::fit_compact(&views, D, &LABELS, &cfg, Some((w, h)), 0, 5).unwrap();
    assert_eq!(aligned.preprocess.align, 1);
    let mut plain = aligned.clone();
    plain.preprocess.align = 0;
    let rule = ldl_core::novelty::Rule::default();
    let n = LABELS.len();
    let (mut s1, mut s2) = (vec![0.0; scratch_len(&aligned).unwrap()], vec![0.0; scratch_len(&plain).unwrap()]);
    assert_eq!(s1.len(), s2.len() + D + n, "a warped view and one view's distances more");
    let xs: Vec<f32> = queries.iter().flat_map(|q| q[..2 * D].iter().copied()).collect();
    let mut batch = vec![0.0; xs.len() / D * n];
    ldl_core::batch::distances(&aligned, &xs, xs.len() / D, &mut batch).unwrap();
    let mut moved = 0;
    for (x, row) in xs.chunks_exact(D).zip(batch.chunks_exact(n)) {
        let mut got = vec![0.0; n];
        let c = classify(&aligned, x, rule, &mut s1, &mut got).unwrap();
        let mut want = vec![0.0; n];
        classify(&plain, x, rule, &mut s2, &mut want).unwrap();
        let mut view = vec![0.0; D];
        let mut other = vec![0.0; n];
        for inv in ALIGNS[1] {
            warp(x, w, h, inv, &mut view).unwrap();
            classify(&plain, &view, rule, &mut s2, &mut other).unwrap();
            for (a, b) in want.iter_mut().zip(&other) {
                if b < a {
                    moved += 1;
                    *a = *b;
                }
            }
        }
        assert_eq!(got, want, "the least over the views, bit for bit");
        assert_eq!(c.best, ldl_core::classify::closest(&want).unwrap());
        for (a, b) in row.iter().zip(&got) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "batch {a} vs one at a time {b}");
        }
    }
    assert!(moved > 0, "some warp must come closer than the query, or nothing was tested");
    let two = ensemble(&views, D, 2, 3, |v, s| {
        ldl_core::methods::fit_compact(v, D, &LABELS, &cfg, Some((w, h)), 0, s)
    })
    .unwrap();
    assert_eq!(
        classify(&two, &xs[..D], rule, &mut vec![0.0; 4096], &mut vec![0.0; n]).unwrap_err(),
        ldl_core::Error::InvalidParameter
    );
    let unknown = ClosedFormConfig {
        align: ALIGNS.len() as u8,
        ..cfg
    };
    assert_eq!(
        ldl_core::methods::fit_compact(&views, D, &LABELS, &unknown, Some((w, h)), 0, 5).err(),
        Some(ldl_core::Error::InvalidParameter)
    );
    let mut blind = aligned.clone();
    blind.preprocess.image = None;
    assert_eq!(scratch_len(&blind).unwrap_err(), ldl_core::Error::InvalidParameter);
}
