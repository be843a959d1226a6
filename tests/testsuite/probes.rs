//! The convex probes against scikit-learn (tests/fixtures/gen/make_logreg_reference.py,
//! make_logreg_balanced_reference.py)
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
    println!(
        "f32, tol 1e-4: {} iterations, predictions agree {agree:.4}, objective rel {rel_obj:.2e}, coef {err:.2e}",
        min.iterations
    );
    assert!(min.converged, "{min:?}");
    assert!(agree >= 0.995, "held-out predictions agree on {agree}");
    assert!(rel_obj <= 1e-4, "objective {} vs sklearn's {want_obj}", min.loss);
    // Measured 2.6e-3: both stop at a gradient of 1e-4, not at the optimum.
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
    // Measured 9.4e-6 and 1.9e-4 (scipy stops on a relative loss change of 64 eps).
    println!("objective: ours {} sklearn {want_obj}", min.loss);
    assert!(err <= 1e-4 && bias_err <= 1e-3, "coef {err:e}, intercept {bias_err:e}");
}

/// `class_weight='balanced'` (tests/fixtures/gen/make_logreg_balanced_reference.py): the
/// weights change 27 of the 400 held-out predictions; ours are sklearn's.
#[test]
fn balanced_logreg_matches_scikit_learn() {
    let _g = torch_lock();
    let r = read_tensors(
        &generated("tests/fixtures/gen/make_logreg_balanced_reference.py").join("logreg_balanced.safetensors"),
    );
    let want_obj = r["objective"].double_value(&[0]);
    let balanced = LogregConfig { class_weight: transfer_lab::metrics::ClassWeight::Balanced, ..Default::default() };
    for (what, x, xt, cfg) in [
        ("f32, tol 1e-4", r["x"].shallow_clone(), r["x_test"].shallow_clone(), balanced.clone()),
        (
            "f64, tol 1e-9",
            r["x"].to_kind(Kind::Double),
            r["x_test"].to_kind(Kind::Double),
            LogregConfig { tol: 1e-9, max_iter: 5000, ..balanced.clone() },
        ),
    ] {
        let (m, min) = logreg::fit(&x, &r["y"], 4, 0.05, &cfg).unwrap();
        let agree = agreement(&m.logits(&xt).argmax(-1, false), &r["pred_test"]);
        let rel_obj = (min.loss - want_obj).abs() / want_obj;
        println!("balanced, {what}: predictions agree {agree:.4}, objective rel {rel_obj:.2e}");
        // The f64 fit ends on a loss change below rounding, short of a 1e-9 gradient.
        assert!(agree == 1.0 && (min.converged || cfg.tol < 1e-4), "{what}: agree {agree}, {min:?}");
        assert!(rel_obj <= 1e-4, "{what}: objective {} vs sklearn's {want_obj}", min.loss);
    }
    let (plain, _) = logreg::fit(&r["x"], &r["y"], 4, 0.05, &LogregConfig::default()).unwrap();
    let agree = agreement(&plain.logits(&r["x_test"]).argmax(-1, false), &r["unweighted_pred_test"]);
    assert!(agree >= 0.995, "unweighted: {agree}");
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
        println!(
            "lambda {:.0e}: ours {:.4}, sklearn {:.4}, {} iterations",
            row.lambda, row.val_acc, s.val_acc[i], row.iterations
        );
        assert!((row.val_acc - s.val_acc[i]).abs() < 0.5 / 400.0, "lambda {}", row.lambda);
        assert!((row.c - 1.0 / (row.lambda * 1600.0)).abs() < 1e-12);
    }
    assert_eq!(out.best_row().lambda, s.chosen);
    let refit = out.refit.as_ref().unwrap();
    assert_eq!((refit.lambda, refit.rows), (s.chosen, 2000));
    assert!(tmp.path().join("head-best.safetensors").exists());
}

/// Writes `STOP` into the run directory when the `n`th lambda has been fitted.
struct StopAfter {
    dir: std::path::PathBuf,
    n: usize,
    seen: usize,
    lines: Vec<String>,
}

impl transfer_lab::events::EventSink for StopAfter {
    fn emit(&mut self, e: &transfer_lab::events::RunEvent) {
        if let transfer_lab::events::RunEvent::Log { message, .. } = e {
            let fitted = message.starts_with("logreg lambda");
            self.seen += fitted as usize;
            if fitted && self.seen == self.n {
                std::fs::write(self.dir.join("STOP"), b"test").unwrap();
            }
            self.lines.push(message.clone());
        }
    }
}

/// Features of hard synthetic classes (overlapping, not separable) by a random ResNet-18.
fn hard_features() -> (Tensor, Tensor) {
    tch::manual_seed(0);
    let data = transfer_lab::data::synthetic::synthetic_with(
        400,
        transfer_lab::data::Split::Train,
        0,
        transfer_lab::data::synthetic::Difficulty::Hard,
    );
    let (x, y) = data.batch(0..400).unwrap();
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = transfer_lab::models::ResNet::new(&vs.root(), transfer_lab::models::Arch::ResNet18, None);
    let x =
        transfer_lab::preprocess::Preprocess { size: 32, ..Default::default() }.apply(&x, tch::Device::Cpu).unwrap();
    let f = tch::no_grad(|| net.features(&x, transfer_lab::models::Tap::Layer4, false));
    (f, y)
}

#[test]
fn a_stopped_sweep_keeps_the_best_so_far_and_resumes_to_the_same_bytes() {
    let _g = torch_lock();
    let (x, y) = hard_features();
    let split = Split { train: (0..320).collect(), val: (320..400).collect() };
    let cfg = LogregConfig { lambdas: transfer_lab::probe::log_grid(1e-4, 1e2, 7), ..Default::default() };
    let whole = tempfile::tempdir().unwrap();
    let want = logreg::sweep(&x, &y, 10, &cfg, &split, &RunDir::at(whole.path()), &mut NullSink).unwrap();
    assert_eq!((want.rows.len(), want.stopped), (7, false));
    assert!(want.best_row().val_acc < 1.0, "the hard set must not be separable: {:?}", want.rows);

    let tmp = tempfile::tempdir().unwrap();
    let dir = RunDir::at(tmp.path());
    let mut sink = StopAfter { dir: tmp.path().into(), n: 3, seen: 0, lines: vec![] };
    let got = logreg::sweep(&x, &y, 10, &cfg, &split, &dir, &mut sink).unwrap();
    assert!(got.stopped && got.refit.is_none());
    assert_eq!(got.rows[..], want.rows[..got.rows.len()], "the rows before the stop are the whole sweep's");
    assert!((3..=4).contains(&got.rows.len()), "{} rows", got.rows.len());
    let said = sink.lines.join("\n");
    assert!(
        said.contains("best so far") && said.contains("no refit") && said.contains("tlab train --resume"),
        "{said}"
    );
    assert!(!tmp.path().join("STOP").exists(), "the request is honoured once");

    let mut sink = transfer_lab::events::VecSink::default();
    let resumed = logreg::sweep(&x, &y, 10, &cfg, &split, &dir, &mut sink).unwrap();
    assert_eq!(resumed.rows, want.rows);
    assert_eq!(resumed.refit, want.refit);
    let bytes = |d: &std::path::Path, f: &str| std::fs::read(d.join(f)).unwrap();
    for f in ["head-best.safetensors", "head-last.safetensors"] {
        assert!(bytes(tmp.path(), f) == bytes(whole.path(), f), "{f} differs from the uninterrupted sweep's");
    }
}

#[test]
fn nan_features_are_named_errors() {
    let _g = torch_lock();
    let x = Tensor::randn([50, 4], (Kind::Float, tch::Device::Cpu));
    let _ = x.get(7).get(2).fill_(f64::NAN);
    let err = transfer_lab::probe::check_finite(&x, "cache/features/abc".as_ref()).unwrap_err().to_string();
    assert!(err.contains("cache/features/abc") && err.contains("1 of 50") && err.contains("NaN"), "{err}");
    let y = Tensor::from_slice(&(0..50).map(|i| i % 2).collect::<Vec<i64>>());
    let err = logreg::fit(&x, &y, 2, 0.1, &LogregConfig::default()).unwrap_err().to_string();
    assert!(err.contains("NaN"), "{err}");
}

fn tlab(cache: &std::path::Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("tlab").unwrap();
    c.arg("--threads").arg(test_threads().to_string()).arg("--cache-dir").arg(cache);
    c
}

const SMALL: [&str; 12] = [
    "--dataset",
    "synthetic",
    "--synthetic-difficulty",
    "hard",
    "--synthetic-train",
    "300",
    "--synthetic-test",
    "100",
    "--arch",
    "resnet18",
    "--weights",
    "random",
];

#[test]
fn logreg_and_knn_run_end_to_end_and_bad_settings_are_named() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let run = |flags: &[&str]| {
        let out = tlab(tmp.path())
            .arg("run")
            .args(SMALL)
            .args(["--size", "32", "--runs-dir"])
            .arg(&runs)
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{flags:?}: {stderr}");
        (serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(), stderr)
    };
    let (s, stderr) = run(&["--strategy", "logreg", "--lambdas", "1e-4:1e2:7", "--standardize"]);
    assert!(stderr.contains("SYNTHETIC") && stderr.contains("lambda") && stderr.contains("chosen"), "{stderr}");
    assert_eq!(s["strategy"], "logreg");
    assert_eq!(s["probe"]["kind"], "logreg");
    let lambda = s["probe"]["lambda"].as_f64().unwrap();
    assert!(transfer_lab::probe::log_grid(1e-4, 1e2, 7).iter().any(|l| (l - lambda).abs() < 1e-12 * l), "{lambda}");
    assert_eq!(s["probe"]["refit"]["rows"], 300);
    let acc = s["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.2 && acc < 1.0, "logreg test accuracy {acc} on 10 overlapping classes");
    let dir = std::path::PathBuf::from(s["run_dir"].as_str().unwrap());
    let sweep = std::fs::read_to_string(dir.join("sweep.csv")).unwrap();
    assert_eq!(sweep.lines().count(), 8, "header + 7 lambdas:\n{sweep}");
    assert!(sweep.starts_with("lambda,sklearn_c,val_acc,val_loss,objective,iterations,evaluations,converged,grad_max"));
    assert!(dir.join("sweep.parquet").exists() && !dir.join("epochs.csv").exists());

    let (s, stderr) = run(&["--strategy", "knn", "--k", "5", "--temperature", "0.1"]);
    assert!(stderr.contains("k-NN (k 5, temperature 0.1)"), "{stderr}");
    assert_eq!(
        (s["probe"]["kind"].as_str(), s["probe"]["k"].as_u64(), s["probe"]["bank_rows"].as_u64()),
        (Some("knn"), Some(5), Some(300))
    );
    let acc = s["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.2 && acc < 1.0, "k-NN test accuracy {acc}");
    let knn_dir = std::path::PathBuf::from(s["run_dir"].as_str().unwrap());

    // Side by side: one table (test accuracy, what was chosen, fit time), one chart.
    let out = tmp.path().join("report");
    tlab(tmp.path()).arg("report").arg(&dir).arg(&knn_dir).arg("--out").arg(&out).assert().success();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| chosen on val |") && md.contains("| fit |"), "{md}");
    assert!(md.contains(&format!("lambda {lambda:.1e}")) && md.contains("k 5, T 0.1"), "{md}");
    let stem = dir.file_name().unwrap().to_string_lossy().to_string();
    assert!(out.join(format!("{stem}-sweep.svg")).exists() && out.join("comparison.svg").exists());
    assert!(!out.join(format!("{stem}-curves.svg")).exists(), "no epochs, so no training curves");

    let fails = |flags: &[&str], want: &str| {
        tlab(tmp.path())
            .arg("run")
            .args(SMALL)
            .args(["--size", "32", "--runs-dir"])
            .arg(&runs)
            .args(flags)
            .assert()
            .failure()
            .stderr(predicates::str::contains(want));
    };
    fails(&["--strategy", "logreg", "--lambdas", ""], "empty");
    fails(&["--strategy", "logreg", "--lambdas", "0.1,0"], "`0` is not a number > 0");
    fails(&["--strategy", "logreg", "--lambdas", "1:10:0"], "count");
    fails(&["--strategy", "knn", "--k", "0"], "--k");
    fails(&["--strategy", "knn", "--k", "400"], "--k 400 is larger than the 300 training rows");
    fails(&["--strategy", "knn", "--temperature=-1"], "--temperature");
    fails(&["--strategy", "knn", "--temperature", "0"], "`0` is not a number > 0");
}
