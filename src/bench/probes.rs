//! The convex probes' speed (`--only probes`): ours' full lambda sweep plus refit against
//! scikit-learn's on the same features and grid (`bench/probes_sklearn.py`), and k-NN
//! against a PyTorch matmul baseline, with ours' peak memory over the features' own size.
use super::{BenchConfig, Env};
use crate::events::NullSink;
use crate::probe::{knn, logreg, KnnConfig, LogregConfig};
use crate::rundir::RunDir;
use crate::train::Split;
use crate::{Error, Result};
use serde::Serialize;
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Serialize)]
pub struct ProbeTiming {
    pub rows: i64,
    pub dim: i64,
    pub grid_points: usize,
    pub ours_sweep_seconds: f64,
    pub sklearn_sweep_seconds: Option<f64>,
    pub ours_lambda: f64,
    pub sklearn_lambda: Option<f64>,
    pub ours_iterations: usize,
    pub sklearn_iterations: Option<usize>,
    /// Ours' peak tensor memory during the sweep (the features included) over the
    /// features' bytes, from the heap pool's peak of live bytes; `None` unless
    /// `TLAB_HEAP=pool` (the default), where no such counter exists.
    pub ours_peak_over_features: Option<f64>,
    pub knn_queries: i64,
    pub ours_knn_seconds: f64,
    pub torch_knn_seconds: f64,
    pub ours_knn_accuracy: f64,
    pub torch_knn_accuracy: f64,
    pub sklearn_version: String,
}

const DIM: i64 = 2048;

/// Overlapping classes, non-negative like pooled ReLU features: `[n, DIM]`, labels `[n]`.
fn features(n: i64, means: &Tensor) -> (Tensor, Tensor) {
    let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(10);
    let x = (means.index_select(0, &y) + Tensor::randn([n, DIM], (Kind::Float, Device::Cpu)) + 0.5).relu();
    (x, y)
}

pub fn run(cfg: &BenchConfig, env: &Env) -> Result<ProbeTiming> {
    let n = cfg.probe_rows;
    let queries = (n / 5).max(1);
    tch::manual_seed(0);
    let means = Tensor::randn([10, DIM], (Kind::Float, Device::Cpu)) * 0.1;
    let (x, y) = features(n, &means);
    let (q, qy) = features(queries, &means);
    let grid = LogregConfig::default().order();
    let knn_cfg = KnnConfig::default();
    let file = env.out.join("probe-features.safetensors");
    let scalar = |v: f64| Tensor::from_slice(&[v]);
    let tensors = [
        ("x".to_string(), x.shallow_clone()),
        ("y".to_string(), y.shallow_clone()),
        ("q".to_string(), q.shallow_clone()),
        ("qy".to_string(), qy.shallow_clone()),
        ("lambdas".to_string(), Tensor::from_slice(&grid)),
        ("k".to_string(), scalar(knn_cfg.k as f64)),
        ("temperature".to_string(), scalar(knn_cfg.temperature)),
    ];
    crate::tensorfile::write(&file, &tensors, &Default::default())?;
    let x = x.to_device(env.device);
    let n_val = n / 5;
    let split = Split { train: (0..n - n_val).collect(), val: (n - n_val..n).collect() };
    let dir = RunDir::at(env.out.join("probe-work")).ensure()?;
    eprintln!("bench: probes, {n} x {DIM} features, {} lambdas + refit: ours", grid.len());
    // The pool's peak restarts from what is live now (the features and the queries).
    crate::heap::release_free_pages();
    let live_before = crate::heap::pool_stats().map(|s| s.live);
    let t = Instant::now();
    let out = logreg::sweep(&x, &y, 10, &LogregConfig::default(), &split, &dir, &mut NullSink)?;
    let ours_sweep_seconds = t.elapsed().as_secs_f64();
    let feature_bytes = (n * DIM * 4) as f64;
    let ours_peak_over_features = match (crate::heap::mode(), live_before, crate::heap::pool_stats()) {
        (crate::heap::Mode::Pool, Some(before), Some(after)) => {
            Some((feature_bytes + after.peak.saturating_sub(before) as f64) / feature_bytes)
        }
        _ => None,
    };
    let _ = std::fs::remove_dir_all(dir.path());
    eprintln!("bench: probes, k-NN of {queries} queries among {n} rows: ours");
    let t = Instant::now();
    let votes = knn::classify(&x, &y, &q.to_device(env.device), 10, &knn_cfg)?;
    let ours_knn_seconds = t.elapsed().as_secs_f64();
    let ours_knn_accuracy = votes.score(&qy).0;
    eprintln!("bench: probes: scikit-learn's sweep and PyTorch's k-NN");
    let mut cmd = Command::new(&env.torch_python);
    cmd.arg(env.script("probes_sklearn.py")).arg("--features").arg(&file).args(["--threads", &cfg.threads.to_string()]);
    if cfg.skip_sklearn_sweep {
        cmd.arg("--skip-sweep");
    }
    let res = cmd.output().map_err(|source| Error::Io { context: "running bench/probes_sklearn.py".into(), source })?;
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&res.stdout);
    let v: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("@tlab probes "))
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| {
            Error::BenchSetup(format!("probes_sklearn.py failed: {}", String::from_utf8_lossy(&res.stderr).trim()))
        })?;
    let best = out.best_row();
    Ok(ProbeTiming {
        rows: n,
        dim: DIM,
        grid_points: grid.len(),
        ours_sweep_seconds,
        sklearn_sweep_seconds: v["sweep_seconds"].as_f64(),
        ours_lambda: best.lambda,
        sklearn_lambda: v["chosen"].as_f64(),
        ours_iterations: out.rows.iter().map(|r| r.iterations).sum::<usize>()
            + out.refit.as_ref().map_or(0, |r| r.iterations),
        sklearn_iterations: v["iterations"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i.as_u64()).sum::<u64>() as usize),
        ours_peak_over_features,
        knn_queries: queries,
        ours_knn_seconds,
        torch_knn_seconds: v["knn_seconds"].as_f64().unwrap_or(f64::NAN),
        ours_knn_accuracy,
        torch_knn_accuracy: v["knn_accuracy"].as_f64().unwrap_or(f64::NAN),
        sklearn_version: v["sklearn_version"].as_str().unwrap_or("?").to_string(),
    })
}

impl ProbeTiming {
    pub fn print(&self) {
        let ratio = |a: Option<f64>, b: f64| a.map_or("-".into(), |a| format!("{:.2}x", a / b));
        println!(
            "\nProbes on {} x {} generated features (last 20% validation), scikit-learn {}:",
            self.rows, self.dim, self.sklearn_version
        );
        println!(
            "logreg, {} lambdas + refit: ours {:.1} s ({} iterations, lambda {:.1e}), scikit-learn {} ({} iterations, \
             lambda {}): scikit-learn / ours = {} (target >= 3x)",
            self.grid_points,
            self.ours_sweep_seconds,
            self.ours_iterations,
            self.ours_lambda,
            self.sklearn_sweep_seconds.map_or("skipped".into(), |s| format!("{s:.1} s")),
            self.sklearn_iterations.map_or("-".into(), |i| i.to_string()),
            self.sklearn_lambda.map_or("-".into(), |l| format!("{l:.1e}")),
            ratio(self.sklearn_sweep_seconds, self.ours_sweep_seconds),
        );
        let mb = (self.rows * self.dim * 4) as f64 / 1e6;
        match self.ours_peak_over_features {
            Some(r) => println!(
                "logreg peak tensor memory, the features included: {r:.2}x the features' {mb:.0} MB (target <= 2x)"
            ),
            None => println!("logreg peak memory: not measured (the heap pool's counter needs TLAB_HEAP=pool)"),
        }
        println!(
            "k-NN, {} queries among {} rows (k 20, T 0.07): ours {:.2} s, PyTorch matmul {:.2} s ({}); accuracy {:.4} vs {:.4}",
            self.knn_queries,
            self.rows,
            self.ours_knn_seconds,
            self.torch_knn_seconds,
            ratio(Some(self.torch_knn_seconds), self.ours_knn_seconds),
            self.ours_knn_accuracy,
            self.torch_knn_accuracy
        );
    }
}
