//! What a Grad-CAM heatmap costs: explaining 100 images (decode, forward and backward at
//! the tap, PNG overlays) against predicting them (decode, folded forward), same model
//! (ResNet-18, seeded random weights, `--size`), same files, interleaved repetitions.
//! The bar: explaining costs at most 3x predicting.
use super::{BenchConfig, Env};
use crate::classifier::{Classifier, ModelMeta, FORMAT};
use crate::models::{Arch, Tap};
use crate::preprocess::Preprocess;
use crate::train::Strategy;
use crate::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct ExplainTiming {
    pub images: usize,
    pub size: i64,
    /// Medians over the repetitions.
    pub predict_seconds: f64,
    pub explain_seconds: f64,
    /// `explain_seconds / predict_seconds`.
    pub ratio: f64,
}

const IMAGES: usize = 100;

pub fn run(cfg: &BenchConfig, env: &Env) -> Result<ExplainTiming> {
    eprintln!("bench: Grad-CAM, {IMAGES} images of {} px: predict, then explain, {} rounds", cfg.size, cfg.reps);
    let work = env.out.join("explain-work");
    crate::fsutil::ensure_dir(&work)?;
    let paths: Vec<PathBuf> = (0..IMAGES)
        .map(|i| {
            let p = work.join(format!("{i:03}.png"));
            let img = image::RgbImage::from_fn(cfg.size as u32, cfg.size as u32, |x, y| {
                image::Rgb([(x * 7 + i as u32) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
            });
            img.save(&p).map(|_| p).map_err(|e| crate::Error::data(work.join(format!("{i:03}.png")), e.to_string()))
        })
        .collect::<Result<_>>()?;
    let meta = ModelMeta {
        format: FORMAT,
        arch: Arch::ResNet18,
        tap: Tap::Layer4,
        pool: crate::models::Pool::Mean,
        classes: (0..10).map(|c| format!("class{c}")).collect(),
        preprocess: Preprocess { size: cfg.size, ..Default::default() },
        strategy: Strategy::LinearProbe,
        weights: "resnet18 random(seed=0)".into(),
        weights_digest: "random".into(),
        pretrained: false,
        dataset: "bench images".into(),
        synthetic: true,
        best_val_acc: 0.0,
        test_accuracy: None,
        test_samples: None,
        crate_version: env!("CARGO_PKG_VERSION").into(),
        temperature: None,
    };
    let clf = Classifier::untrained(meta, 0, env.device);
    let heatmaps = work.join("heatmaps");
    let (mut predict, mut explain) = (vec![], vec![]);
    for _ in 0..cfg.reps {
        let t = Instant::now();
        clf.predict(&paths, 3, cfg.batch as usize)?;
        predict.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        crate::explain::explain_files(&clf, &paths, None, &heatmaps, cfg.batch as usize)?;
        explain.push(t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&work);
    let (predict_seconds, explain_seconds) = (median(&mut predict), median(&mut explain));
    Ok(ExplainTiming {
        images: IMAGES,
        size: cfg.size,
        predict_seconds,
        explain_seconds,
        ratio: explain_seconds / predict_seconds,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl ExplainTiming {
    pub fn print(&self) {
        println!(
            "\nGrad-CAM ({} images of {} px, ResNet-18): predict {:.2} s, explain {:.2} s: {:.2}x predicting \
             (the bar: at most 3x)",
            self.images, self.size, self.predict_seconds, self.explain_seconds, self.ratio
        );
    }
}
