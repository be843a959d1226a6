//! Streaming feature extraction into a sharded, resumable cache.
//!
//! Batches are decoded, upscaled and normalised on the fly (never the whole upscaled set
//! in memory), run through the frozen backbone, and written as safetensors shards of
//! `shard_size` rows plus a `manifest.json`. Each shard and each manifest update is
//! atomic, so a run killed at any point resumes from its last complete shard. Shards start
//! on batch boundaries, so a resumed run computes the same batches as an uninterrupted one.
use crate::cache::Cache;
use crate::data::Dataset;
use crate::download::sha256_file;
use crate::events::{EventSink, RunEvent};
use crate::fsutil::{ensure_dir, read_json, write_json_atomic};
use crate::models::folded::FoldedResNet;
pub use crate::models::folded::Precision;
use crate::models::{Arch, Backbone, Tap};
use crate::preprocess::Preprocess;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Bumped when the cache layout changes, so old caches are not misread.
pub const CACHE_FORMAT: u32 = 1;

/// Everything that changes the features; its hash names the cache folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    pub format: u32,
    pub dataset: String,
    pub split: String,
    pub dataset_digest: String,
    pub images: usize,
    pub weights_digest: String,
    pub arch: Arch,
    pub image_size: i64,
    pub normalization: crate::preprocess::Normalization,
    pub tap: Tap,
    /// Serialises as "fp32" / "bf16" / "fp16": fp32 keys (and cache folders) are the
    /// same as before precision was a choice.
    pub precision: Precision,
}

impl CacheKey {
    /// 16 hex digits of the SHA-256 of the key's JSON.
    pub fn id(&self) -> String {
        let json = serde_json::to_vec(self).expect("key serialises");
        hex::encode(Sha256::digest(&json))[..16].to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub rows: usize,
    pub sha256: String,
}

/// Where a cache folder's manifest lives; shards sit beside it.
fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("manifest.json")
}

/// `manifest.json` of one cache folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub key: CacheKey,
    pub dim: i64,
    pub shard_size: usize,
    pub shards: Vec<ShardInfo>,
    pub complete: bool,
    pub classes: Vec<String>,
    pub synthetic: bool,
    pub weights_label: String,
}

impl Manifest {
    fn rows_done(&self) -> usize {
        self.shards.iter().map(|s| s.rows).sum()
    }
}

/// How to extract.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtractConfig {
    pub preprocess: Preprocess,
    pub tap: Tap,
    pub batch_size: usize,
    /// Rows per shard; rounded up to a multiple of `batch_size`.
    pub shard_size: usize,
    /// The backbone's arithmetic; features are stored as fp32 whatever it is. Absent in
    /// configs written before it was a choice: fp32.
    #[serde(default)]
    pub precision: Precision,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        ExtractConfig {
            preprocess: Preprocess::default(),
            tap: Tap::Layer4,
            batch_size: 32,
            shard_size: 2048,
            precision: Precision::Fp32,
        }
    }
}

/// Features of one dataset split, loaded from the cache.
pub struct FeatureSet {
    /// `[N, D]` f32.
    pub features: Tensor,
    /// `[N]` i64.
    pub labels: Tensor,
    pub manifest: Manifest,
    pub dir: PathBuf,
}

impl FeatureSet {
    pub fn len(&self) -> usize {
        self.features.size()[0] as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn dim(&self) -> i64 {
        self.manifest.dim
    }
}

impl CacheKey {
    /// The dataset name made safe for a folder name (see [`Cache::features_dir`]).
    pub(crate) fn dataset_tag(&self) -> String {
        let tag: String = self.dataset.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        tag.chars().take(24).collect()
    }
}

/// Extracts (or reuses) the features of `data` and loads them: a cache hit returns at
/// once, an interrupted extraction resumes from its last complete shard.
pub fn extract_features(
    backbone: &Backbone,
    data: &Dataset,
    cfg: &ExtractConfig,
    cache: &Cache,
    sink: &mut dyn EventSink,
) -> Result<FeatureSet> {
    let dir = extract_to_cache(backbone, data, cfg, cache, sink)?;
    load_features(&dir)
}

/// Like [`extract_features`] but leaves the features on disk; returns the cache folder.
/// Memory stays flat whatever the dataset's size. `cfg.precision` fp32 runs the backbone's
/// own folded net; bf16 / fp16 (CUDA only) run a copy rounded once to that kind, into
/// their own cache entry.
pub fn extract_to_cache(
    backbone: &Backbone,
    data: &Dataset,
    cfg: &ExtractConfig,
    cache: &Cache,
    sink: &mut dyn EventSink,
) -> Result<PathBuf> {
    let precision = cfg.precision;
    if data.is_empty() {
        return Err(Error::invalid("dataset", format!("{} ({}) has no images", data.name, data.split.as_str())));
    }
    let device = backbone.vs.device();
    precision.check_device(device)?;
    backbone.check_normalization(cfg.preprocess.normalization, sink);
    let key = CacheKey {
        format: CACHE_FORMAT,
        dataset: data.name.clone(),
        split: data.split.as_str().into(),
        dataset_digest: data.digest.clone(),
        images: data.len(),
        weights_digest: backbone.weights.digest.clone(),
        arch: backbone.net.arch,
        image_size: cfg.preprocess.size,
        normalization: cfg.preprocess.normalization,
        tap: cfg.tap,
        precision,
    };
    let dir = cache.features_dir(&key);
    ensure_dir(&dir)?;
    remove_temp_files(&dir);
    let batch = cfg.batch_size.max(1);
    let shard_size = cfg.shard_size.max(1).div_ceil(batch) * batch;
    let dim = backbone.net.feature_dim(cfg.tap);
    let mut manifest = resume_manifest(&dir, &key, dim, shard_size)?.unwrap_or_else(|| Manifest {
        key: key.clone(),
        dim,
        shard_size,
        shards: vec![],
        complete: false,
        classes: data.classes.clone(),
        synthetic: data.synthetic,
        weights_label: backbone.weights.label.clone(),
    });
    let split = key.split.clone();
    let total = data.len();
    let started = Instant::now();
    let cache_hit = manifest.complete;
    if !cache_hit {
        crate::heap::release_free_pages();
        sink.emit(&RunEvent::ExtractionStarted {
            split: split.clone(),
            total_images: total as u64,
            done_images: manifest.rows_done() as u64,
            cache_dir: dir.display().to_string(),
        });
        // Built from the backbone's weights as they are now, once per extraction.
        let reduced =
            (precision != Precision::Fp32).then(|| FoldedResNet::with_precision(&backbone.net, true, precision));
        let mut done_here = 0usize;
        // One shard's rows, allocated before the first pass and reused: no per-batch
        // feature tensors living between a pass's large blocks (they fragment the heap).
        let rows = manifest.shard_size.min(total) as i64;
        let shard_feats = Tensor::zeros([rows, manifest.dim], (Kind::Float, Device::Cpu));
        let shard_labels = Tensor::zeros([rows], (Kind::Int64, Device::Cpu));
        // Every batch still to do, in order: image files are decoded ahead of the forward pass.
        let shard = manifest.shard_size;
        let ranges: Vec<_> = (manifest.rows_done()..total)
            .step_by(shard)
            .flat_map(|s| {
                let e = (s + shard).min(total);
                (s..e).step_by(batch).map(move |b| b..(b + batch).min(e))
            })
            .collect();
        let mut ahead = data.batches(ranges)?;
        while manifest.rows_done() < total {
            let start = manifest.rows_done();
            let end = (start + manifest.shard_size).min(total);
            for b in (start..end).step_by(batch) {
                crate::interrupt::check(|| {
                    format!(
                        "{} of {total} rows are cached in {} (the shard in progress is dropped); run the same \
                         command again to resume",
                        manifest.rows_done(),
                        dir.display()
                    )
                })?;
                let (imgs, lab) = ahead.next().expect("one batch per range")?;
                let x = cfg.preprocess.apply(&imgs, device)?;
                let f = match &reduced {
                    Some(net) => net.features(&x, cfg.tap),
                    None => backbone.features(&x, cfg.tap),
                };
                let (row, n) = ((b - start) as i64, lab.size()[0]);
                shard_feats.narrow(0, row, n).copy_(&f);
                shard_labels.narrow(0, row, n).copy_(&lab);
                done_here += (b + batch).min(end) - b;
                let rate = done_here as f64 / started.elapsed().as_secs_f64().max(1e-9);
                sink.emit(&RunEvent::ExtractionProgressed {
                    split: split.clone(),
                    done_images: (b + batch).min(end) as u64,
                    total_images: total as u64,
                    images_per_s: rate,
                });
            }
            let index = manifest.shards.len();
            let n = (end - start) as i64;
            let info = write_shard(&dir, index, &shard_feats.narrow(0, 0, n), &shard_labels.narrow(0, 0, n))?;
            manifest.shards.push(info);
            write_json_atomic(&manifest_path(&dir), &manifest)?;
            sink.emit(&RunEvent::ShardWritten {
                split: split.clone(),
                index: index as u64,
                rows: (end - start) as u64,
            });
        }
        manifest.complete = true;
        write_json_atomic(&manifest_path(&dir), &manifest)?;
    }
    sink.emit(&RunEvent::ExtractionFinished {
        split,
        total_images: total as u64,
        cache_hit,
        elapsed_ms: started.elapsed().as_millis() as u64,
        peak_rss_bytes: peak_rss_bytes(),
    });
    Ok(dir)
}

/// The manifest already in `dir` when it is for `key`, dropping shards whose files are gone.
/// Its sizes must be the ones this extraction would write: they size the buffers.
fn resume_manifest(dir: &Path, key: &CacheKey, dim: i64, shard_size: usize) -> Result<Option<Manifest>> {
    let path = manifest_path(dir);
    if !path.exists() {
        return Ok(None);
    }
    let mut m: Manifest = read_json(&path)?;
    let bad = |reason: String| Error::Cache { path: path.clone(), reason: format!("{reason}; delete the folder") };
    if &m.key != key {
        return Err(bad("manifest key differs from the folder's key".into()));
    }
    if (m.dim, m.shard_size) != (dim, shard_size) {
        return Err(bad(format!(
            "manifest says {} features in shards of {} rows, this extraction makes {dim} in shards of {shard_size}",
            m.dim, m.shard_size
        )));
    }
    check_shard_list(&m).map_err(bad)?;
    if let Some(bad) = m.shards.iter().position(|s| !dir.join(&s.file).is_file()) {
        m.shards.truncate(bad);
        m.complete = false;
    }
    Ok(Some(m))
}

/// A shard entry names a file in its own folder, shards are full but the last, and the
/// rows add up to the key's image count (all of them once complete).
fn check_shard_list(m: &Manifest) -> std::result::Result<(), String> {
    if let Some(s) = m.shards.iter().find(|s| !is_plain_file_name(&s.file)) {
        return Err(format!("shard file `{}` is not a plain file name in the cache folder", s.file));
    }
    let last = m.shards.len().saturating_sub(1);
    if let Some(i) = m.shards.iter().enumerate().position(|(i, s)| s.rows == 0 || (i < last && s.rows != m.shard_size))
    {
        return Err(format!("shard {i} holds {} rows in shards of {}", m.shards[i].rows, m.shard_size));
    }
    // Checked: a hostile manifest's row counts can overflow a plain sum (found by the fuzzer).
    let rows = m.shards.iter().try_fold(0usize, |n, s| n.checked_add(s.rows)).unwrap_or(usize::MAX);
    if rows > m.key.images || (m.complete && rows != m.key.images) {
        return Err(format!("shards hold {rows} rows for {} images", m.key.images));
    }
    Ok(())
}

/// One path component, not `.` or `..`: a manifest cannot point outside its folder.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// Writes one shard atomically; returns its manifest entry.
fn write_shard(dir: &Path, index: usize, features: &Tensor, labels: &Tensor) -> Result<ShardInfo> {
    let file = format!("shard-{index:05}.safetensors");
    let path = dir.join(&file);
    let labels = labels.to_kind(Kind::Int64);
    let mut sha256 = String::new();
    crate::fsutil::write_via_temp(&path, |tmp| {
        Tensor::write_safetensors(&[("features", features), ("labels", &labels)], tmp)
            .map_err(|e| Error::Cache { path: path.clone(), reason: format!("writing the shard failed: {e}") })?;
        sha256 = sha256_file(tmp)?;
        Ok(())
    })?;
    Ok(ShardInfo { file, rows: features.size()[0] as usize, sha256 })
}

/// Leftovers of a killed writer; never part of the cache. A live writer's stay.
fn remove_temp_files(dir: &Path) {
    crate::fsutil::remove_stale_temps(dir);
}

/// Loads a complete cache folder, checking every shard against the manifest.
pub fn load_features(dir: &Path) -> Result<FeatureSet> {
    let manifest: Manifest = read_json(&manifest_path(dir))?;
    let err = |path: &Path, reason: String| Error::Cache { path: path.to_path_buf(), reason };
    if !manifest.complete {
        return Err(err(dir, "extraction is incomplete; rerun `tlab extract` to resume it".into()));
    }
    check_shard_list(&manifest).map_err(|e| err(&manifest_path(dir), format!("{e}; delete the folder")))?;
    if manifest.shards.is_empty() {
        return Err(err(&manifest_path(dir), "manifest lists no shards; delete the folder".into()));
    }
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    for s in &manifest.shards {
        let path = dir.join(&s.file);
        let sha = sha256_file(&path)?;
        if sha != s.sha256 {
            return Err(err(
                &path,
                format!("checksum {sha} differs from the manifest's {}; delete the folder and extract again", s.sha256),
            ));
        }
        let read = Tensor::read_safetensors(&path).map_err(|e| err(&path, format!("unreadable shard: {e}")))?;
        let mut named: std::collections::HashMap<String, Tensor> = read.into_iter().collect();
        let (Some(f), Some(l)) = (named.remove("features"), named.remove("labels")) else {
            return Err(err(&path, "shard lacks `features` or `labels`".into()));
        };
        let rows = s.rows as i64;
        if (f.kind(), f.size()) != (Kind::Float, vec![rows, manifest.dim]) {
            let want = format!("Float [{rows}, {}]", manifest.dim);
            return Err(err(&path, format!("features are {:?} {:?}, expected {want}", f.kind(), f.size())));
        }
        if (l.kind(), l.size()) != (Kind::Int64, vec![rows]) {
            return Err(err(&path, format!("labels are {:?} {:?}, expected Int64 [{rows}]", l.kind(), l.size())));
        }
        let classes = manifest.classes.len() as i64;
        if rows > 0 && (l.min().int64_value(&[]) < 0 || l.max().int64_value(&[]) >= classes) {
            return Err(err(&path, format!("labels outside 0..{classes}, the manifest's classes")));
        }
        feats.push(f);
        labels.push(l);
    }
    Ok(FeatureSet {
        features: Tensor::cat(&feats, 0),
        labels: Tensor::cat(&labels, 0),
        manifest,
        dir: dir.to_path_buf(),
    })
}

/// Peak resident set size of this process (VmHWM), in bytes; 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
