//! The convex probes against scikit-learn (tests/fixtures/gen/make_logreg_reference.py)
//! and end to end.
use crate::common::*;
use tch::{Kind, Tensor};
use transfer_lab::events::NullSink;
use transfer_lab::probe::{logreg, LogregConfig};
use transfer_lab::rundir::RunDir;
use transfer_lab::train::Split;

const SCRIPT: &str = "tests/fixtures/gen/make_logreg_reference.py";

#[derive(serde::Deserialize)]
struct SweepRef {
    lambda: f64,
    grid: Vec<f64>,
    val_acc: Vec<f64>,
    chosen: f64,
}

fn reference() -> (std::collections::HashMap<String, Tensor>, SweepRef) {
    let dir = generated(SCRIPT);
    let t = read_tensors(&dir.join("logreg.safetensors"));
    let s = serde_json::from_str(&std::fs::read_to_string(dir.join("sweep.json")).unwrap()).unwrap();
    (t, s)
}

fn agreement(a: &Tensor, b: &Tensor) -> f64 {
    a.eq_tensor(b).to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}

/// `||ours - theirs|| / ||theirs||` (Frobenius).
fn coef_err(ours: &Tensor, theirs: &Tensor) -> f64 {
    let theirs = theirs.to_kind(Kind::Double);
    let norm = |t: &Tensor| t.square().sum(Kind::Double).sqrt().double_value(&[]);
    norm(&(ours.to_kind(Kind::Double) - &theirs)) / norm(&theirs)
}

#[test]
fn logreg_matches_scikit_learn() {
    let _g = torch_lock();
    let (r, s) = reference();
    let (x, y) = (&r["x"], &r["y"]);
    let want_obj = r["objective"].double_value(&[0]);
    // The product's path: f32 features, default tolerance (sklearn's 1e-4 on the gradient).
    let (m, min) = logreg::fit(x, y, 10, s.lambda, &LogregConfig::default()).unwrap();
    let pred = m.logits(&r["x_test"]).argmax(-1, false);
    let (agree, rel_obj, err) =
        (agreement(&pred, &r["pred_test"]), (min.loss - want_obj).abs() / want_obj, coef_err(&m.weight, &r["coef"]));
    println!("f32, tol 1e-4: {} iterations, predictions agree {agree:.4}, objective rel {rel_obj:.2e}, coef {err:.2e}", min.iterations);
    assert!(min.converged, "{min:?}");
    assert!(agree >= 0.995, "held-out predictions agree on {agree}");
    assert!(rel_obj <= 1e-4, "objective {} vs sklearn's {want_obj}", min.loss);
    // Measured 2.9e-3: both stop at a gradient of 1e-4, not at the optimum.
    assert!(err <= 1e-2, "coefficients differ by {err:.2e} (relative Frobenius)");
    // Run to a tight tolerance in f64, the two optima coincide.
    let cfg = LogregConfig { tol: 1e-9, max_iter: 5000, ..Default::default() };
    let (m, min) = logreg::fit(&x.to_kind(Kind::Double), y, 10, s.lambda, &cfg).unwrap();
    let pred = m.logits(&r["x_test"].to_kind(Kind::Double)).argmax(-1, false);
    let (agree, rel_obj, err) =
        (agreement(&pred, &r["pred_test"]), (min.loss - want_obj).abs() / want_obj, coef_err(&m.weight, &r["coef"]));
    let bias_err = coef_err(&m.bias, &r["intercept"]);
    println!("f64, tol 1e-9: {} iterations, agree {agree:.4}, objective rel {rel_obj:.2e}, coef {err:.2e}, bias {bias_err:.2e}", min.iterations);
    assert_eq!(agree, 1.0);
    assert!(rel_obj <= 1e-9, "{rel_obj:e}");
    // Measured 4.6e-6 and 9.4e-5 (scipy stops on a relative loss change of 64 eps).
    println!("objective: ours {} sklearn {want_obj}", min.loss);
    assert!(err <= 1e-4 && bias_err <= 1e-3, "coef {err:e}, intercept {bias_err:e}");
}

#[test]
fn the_sweep_picks_the_lambda_scikit_learn_picks() {
    let _g = torch_lock();
    let (r, s) = reference();
    let (x, y) = (r["x"].to_kind(Kind::Double), &r["y"]);
    let split = Split { train: (0..1600).collect(), val: (1600..2000).collect() };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LogregConfig { lambdas: s.grid.clone(), tol: 1e-7, max_iter: 5000, ..Default::default() };
    let out = logreg::sweep(&x, y, 10, &cfg, &split, &RunDir::at(tmp.path()), &mut NullSink).unwrap();
    for row in &out.rows {
        let i = s.grid.iter().position(|&l| l == row.lambda).unwrap();
        println!("lambda {:.0e}: ours {:.4}, sklearn {:.4}, {} iterations", row.lambda, row.val_acc, s.val_acc[i], row.iterations);
        assert!((row.val_acc - s.val_acc[i]).abs() < 0.5 / 400.0, "lambda {}", row.lambda);
        assert!((row.c - 1.0 / (row.lambda * 1600.0)).abs() < 1e-12);
    }
    assert_eq!(out.best_row().lambda, s.chosen);
    let refit = out.refit.as_ref().unwrap();
    assert_eq!((refit.lambda, refit.rows), (s.chosen, 2000));
    assert!(tmp.path().join("head-best.safetensors").exists());
}
