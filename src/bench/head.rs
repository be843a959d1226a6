//! Head training time (ours, `train::train_head`, against the same loop in PyTorch,
//! `bench/head_torch.py`) on random features, and what bf16 extraction costs in accuracy:
//! a head trained on bf16 features and one on fp32 features, same synthetic data.
use super::{BenchConfig, Env};
use crate::cache::Cache;
use crate::data::{synthetic::synthetic, Split};
use crate::events::NullSink;
use crate::features::{extract_features, ExtractConfig, Precision};
use crate::models::{Arch, Backbone, Tap};
use crate::preprocess::{Normalization, Preprocess};
use crate::train::{evaluate, train_head, HeadConfig, TrainLoop};
use crate::{Error, Result};
use serde::Serialize;
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Serialize)]
pub struct HeadTiming {
    pub rows: i64,
    pub dim: i64,
    pub epochs: u32,
    pub ours_seconds: f64,
    pub torch_seconds: f64,
}

const DIM: i64 = 2048;

/// Ours in this process, then the PyTorch loop in a subprocess (its imports not timed).
pub fn run_timing(cfg: &BenchConfig, env: &Env) -> Result<HeadTiming> {
    eprintln!("bench: head training, {} x {DIM} random features, {} epochs: ours", cfg.head_rows, cfg.head_epochs);
    tch::manual_seed(0);
    let x = Tensor::randn([cfg.head_rows, DIM], (Kind::Float, env.device));
    let y = Tensor::randint(10, [cfg.head_rows], (Kind::Int64, Device::Cpu));
    let head_cfg =
        HeadConfig { fit: TrainLoop { epochs: cfg.head_epochs, ..Default::default() }, ..Default::default() };
    let dir = env.out.join("head-work");
    crate::fsutil::ensure_dir(&dir)?;
    let t = Instant::now();
    train_head(&x, &y, 10, &head_cfg, &crate::rundir::RunDir::at(&dir), &mut NullSink)?;
    let ours_seconds = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("bench: head training: PyTorch");
    let out = Command::new(&env.torch_python)
        .arg(env.script("head_torch.py"))
        .args(["--rows", &cfg.head_rows.to_string(), "--dim", &DIM.to_string()])
        .args(["--epochs", &cfg.head_epochs.to_string(), "--threads", &cfg.threads.to_string()])
        .args(["--device", &crate::models::folded::device_name(env.device)])
        .output()
        .map_err(|source| Error::Io { context: "running bench/head_torch.py".into(), source })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let torch_seconds = stdout
        .lines()
        .find_map(|l| l.strip_prefix("@tlab head "))
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .and_then(|v| v["seconds"].as_f64())
        .ok_or_else(|| {
            Error::BenchSetup(format!("head_torch.py failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
        })?;
    Ok(HeadTiming { rows: cfg.head_rows, dim: DIM, epochs: cfg.head_epochs, ours_seconds, torch_seconds })
}

/// One precision's head on the synthetic test split.
#[derive(Debug, Serialize)]
pub struct AccuracyRow {
    pub precision: Precision,
    pub test_accuracy: f64,
    pub best_val_accuracy: f64,
    pub extract_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct PrecisionAccuracy {
    pub train_images: usize,
    pub test_images: usize,
    pub size: i64,
    pub rows: Vec<AccuracyRow>,
    /// Test features, bf16 against fp32, per image.
    pub cosine_min: f64,
    pub cosine_mean: f64,
    /// Share of test images where the two heads predict the same class.
    pub prediction_agreement: f64,
}

/// Extracts synthetic train/test features in fp32 and bf16 through a seeded random
/// ResNet50, trains the post's head on each, evaluates both on the test split.
pub fn run_accuracy(cfg: &BenchConfig, env: &Env) -> Result<PrecisionAccuracy> {
    let [n_train, n_test] = cfg.accuracy_images;
    let backbone = Backbone::random(Arch::ResNet50, 0, env.device);
    let train = synthetic(n_train, Split::Train, 0);
    let test = synthetic(n_test, Split::Test, 0);
    let ex = ExtractConfig {
        preprocess: Preprocess {
            size: cfg.accuracy_size,
            normalization: Normalization::Torchvision,
            ..Default::default()
        },
        tap: Tap::Layer4,
        pool: None,
        batch_size: cfg.batch as usize,
        shard_size: 4096,
        precision: Precision::Fp32,
    };
    let cache = env.out.join("accuracy-work");
    let mut rows = Vec::new();
    let mut test_feats = Vec::new();
    let mut preds = Vec::new();
    for p in [Precision::Fp32, Precision::Bf16] {
        eprintln!("bench: accuracy, {p}: extracting {n_train} + {n_test} synthetic images at {}", cfg.accuracy_size);
        let t = Instant::now();
        let ex = ExtractConfig { precision: p, ..ex.clone() };
        let tr = extract_features(&backbone, &train, &ex, &Cache::new(&cache), &mut NullSink)?;
        let te = extract_features(&backbone, &test, &ex, &Cache::new(&cache), &mut NullSink)?;
        let extract_seconds = t.elapsed().as_secs_f64();
        let head_cfg = HeadConfig::default();
        let out = cache.join(format!("head-{p}"));
        crate::fsutil::ensure_dir(&out)?;
        let (head, outcome) =
            train_head(&tr.features, &tr.labels, 10, &head_cfg, &crate::rundir::RunDir::at(&out), &mut NullSink)?;
        let ev = evaluate(&head, &te.features, &te.labels)?;
        rows.push(AccuracyRow {
            precision: p,
            test_accuracy: ev.accuracy,
            best_val_accuracy: outcome.best_val_acc,
            extract_seconds,
        });
        test_feats.push(te.features);
        preds.push(ev.predictions);
    }
    let _ = std::fs::remove_dir_all(&cache);
    let (a, b) = (&test_feats[1], &test_feats[0]);
    let dot = (a * b).sum_dim_intlist(1, false, Kind::Double);
    let norm = |t: &Tensor| t.square().sum_dim_intlist(1, false, Kind::Double).sqrt();
    let cos = dot / (norm(a) * norm(b));
    let same = preds[0].iter().zip(&preds[1]).filter(|(x, y)| x == y).count();
    Ok(PrecisionAccuracy {
        train_images: n_train,
        test_images: n_test,
        size: cfg.accuracy_size,
        rows,
        cosine_min: cos.min().double_value(&[]),
        cosine_mean: cos.mean(Kind::Double).double_value(&[]),
        prediction_agreement: same as f64 / n_test.max(1) as f64,
    })
}
