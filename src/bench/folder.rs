//! A folder of photos to features: generated 500x375 JPEGs (the size of a typical phone
//! photo scaled for the web), read by ours end to end (decoding threads ahead of the
//! forward pass) against ours on the same images already decoded in memory (the forward
//! pass alone), and against the usual PyTorch script (`bench/folder_torch.py`: ImageFolder,
//! DataLoader workers, Resize/CenterCrop, channels-last, `inference_mode`). Ours are timed
//! in this process from the first batch to the last shard written; the script times its
//! own loop, after its model and loader are built.
use super::{BenchConfig, Env};
use crate::data::folder::{open_folder, FolderSpec};
use crate::data::{decode, Dataset, Source, Split};
use crate::events::NullSink;
use crate::features::{extract_to_cache, ExtractConfig};
use crate::models::{Arch, Backbone};
use crate::preprocess::{Preprocess, ResizeMode};
use crate::{Error, Result};
use serde::Serialize;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct FolderTiming {
    pub images: usize,
    pub size: i64,
    /// Ours from the JPEG files: decode, resize, forward, shards written.
    pub files_images_per_s: f64,
    /// Ours on the same images decoded beforehand: the forward pass and the shards.
    pub decoded_images_per_s: f64,
    pub torch_images_per_s: Option<f64>,
    pub torch_workers: usize,
    pub decode_threads: usize,
    /// Every round's rates, in order: (files, decoded, PyTorch's script).
    pub rounds: Vec<(f64, f64, f64)>,
}

/// Writes `n` 500x375 JPEGs (quality 90) in two classes under `root/train/`.
pub fn write_photos(root: &Path, n: usize) -> Result<()> {
    for i in 0..n {
        let class = if i % 2 == 0 { "a" } else { "b" };
        let dir = root.join("train").join(class);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let seed = (i as u32).wrapping_mul(2654435761);
        let img = image::RgbImage::from_fn(500, 375, |x, y| {
            // Gradients plus a pseudo-random texture: JPEG works as hard as on a photo.
            let t = (x.wrapping_mul(73) ^ y.wrapping_mul(151) ^ seed) % 41;
            image::Rgb([(x / 2 + t) as u8, (y / 2 + t) as u8, ((x + y) / 4 + t) as u8])
        });
        let path = dir.join(format!("{i:05}.jpg"));
        let file = std::fs::File::create(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90);
        enc.encode_image(&img).map_err(|e| Error::data(&path, format!("cannot encode: {e}")))?;
    }
    Ok(())
}

fn rate(backbone: &Backbone, data: &Dataset, cfg: &ExtractConfig, cache: &Path) -> Result<f64> {
    let _ = std::fs::remove_dir_all(cache);
    let t = Instant::now();
    extract_to_cache(backbone, data, cfg, &crate::cache::Cache::new(cache), &mut NullSink)?;
    Ok(data.len() as f64 / t.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(cfg: &BenchConfig, env: &Env) -> Result<FolderTiming> {
    let work = env.out.join("folder-work");
    let root = work.join("photos");
    eprintln!("bench: folder, writing {} 500x375 JPEGs", cfg.folder_images);
    write_photos(&root, cfg.folder_images)?;
    let spec =
        FolderSpec { root: root.clone(), size: cfg.size, resize: ResizeMode::Crop, strict: true, ..Default::default() };
    let files = open_folder(&spec, Split::Train, &mut NullSink)?;
    let pre = Preprocess { size: cfg.size, resize: ResizeMode::Crop, ..Default::default() };
    let paths = files.paths().expect("a folder dataset has paths").to_vec();
    let (images, _) = decode::decode_all(&paths, &pre, spec.max_pixels, decode::workers())?;
    let decoded = Dataset {
        name: "folder:decoded".into(),
        digest: format!("{}:decoded", files.digest),
        source: Source::Memory { images, labels: files.labels() },
        classes: files.classes.clone(),
        split: Split::Train,
        synthetic: false,
        val_from: None,
    };
    let backbone = Backbone::random(Arch::ResNet50, 0, env.device);
    let ecfg = ExtractConfig { preprocess: pre, batch_size: cfg.batch as usize, ..Default::default() };
    // One untimed pass settles the allocator and oneDNN's kernels; then alternate.
    rate(&backbone, &decoded, &ecfg, &work.join("cache-warm"))?;
    // The PyTorch script runs in every round too: this shared machine's speed drifts by
    // more than the margins measured, and each ratio should compare neighbours in time.
    let mut rounds = Vec::new();
    for r in 0..cfg.reps.min(3) {
        eprintln!("bench: folder, round {}: ours from files, ours decoded, the PyTorch script", r + 1);
        let f = rate(&backbone, &files, &ecfg, &work.join("cache-files"))?;
        let d = rate(&backbone, &decoded, &ecfg, &work.join("cache-decoded"))?;
        let t = torch_script(cfg, env, &root.join("train"))?;
        rounds.push((f, d, t));
    }
    let torch = Some(median(rounds.iter().map(|r| r.2).collect()));
    let _ = std::fs::remove_dir_all(&work);
    Ok(FolderTiming {
        images: paths.len(),
        size: cfg.size,
        files_images_per_s: median(rounds.iter().map(|r| r.0).collect()),
        decoded_images_per_s: median(rounds.iter().map(|r| r.1).collect()),
        torch_images_per_s: torch,
        torch_workers: cfg.torch_workers,
        decode_threads: decode::workers(),
        rounds,
    })
}

fn torch_script(cfg: &BenchConfig, env: &Env, root: &Path) -> Result<f64> {
    let mut cmd = Command::new(&env.torch_python);
    cmd.arg(env.script("folder_torch.py"))
        .arg("run")
        .arg(root)
        .args(["--size", &cfg.size.to_string(), "--batch", &cfg.batch.to_string()])
        .args(["--threads", &cfg.threads.to_string(), "--workers", &cfg.torch_workers.to_string()])
        .args(["--device", &crate::models::folded::device_name(env.device)]);
    let out = cmd.output().map_err(|e| Error::io("running bench/folder_torch.py", e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::BenchSetup(format!("folder_torch.py failed ({}): {}", out.status, err.trim_end())));
    }
    #[derive(serde::Deserialize)]
    struct Info {
        images: usize,
        loop_seconds: f64,
    }
    let info: Info = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("@tlab folder ").and_then(|j| serde_json::from_str(j).ok()))
        .ok_or_else(|| Error::BenchSetup("folder_torch.py printed no `@tlab folder` line".into()))?;
    Ok(info.images as f64 / info.loop_seconds)
}

impl FolderTiming {
    pub fn print(&self) {
        println!(
            "\nA folder of {} 500x375 JPEGs -> ResNet50 features at {} px (crop), {} decoding threads:",
            self.images, self.size, self.decode_threads
        );
        println!(
            "ours from the files {:.2} images/s; ours on the same images decoded beforehand {:.2} images/s: \
             files / decoded = {:.2}x (target >= 0.9x)",
            self.files_images_per_s,
            self.decoded_images_per_s,
            self.files_images_per_s / self.decoded_images_per_s
        );
        if let Some(t) = self.torch_images_per_s {
            let each: Vec<String> = self.rounds.iter().map(|r| format!("{:.2}x", r.0 / r.2)).collect();
            println!(
                "PyTorch ImageFolder + DataLoader ({} workers) {t:.2} images/s: ours / PyTorch = {:.2}x (target >= 1.5x); \
                 round by round {}",
                self.torch_workers,
                self.files_images_per_s / t,
                each.join(", ")
            );
        }
    }
}
