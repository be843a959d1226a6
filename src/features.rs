//! Streaming feature extraction into a sharded, resumable cache.
//!
//! Batches are decoded, upscaled and normalised on the fly (never the whole upscaled set
//! in memory), run through the frozen backbone, and written as safetensors shards of
//! `shard_size` rows plus a `manifest.json`. Each shard is written atomically and then
//! recorded as done, so a run killed at any point resumes from its complete shards; the
//! manifest is written once, when every shard is done. Shards start on batch boundaries
//! and are fixed by the data alone, so a resumed run, or any number of workers sharing the
//! extraction ([`crate::shards`]), writes the same files as one uninterrupted process.
use crate::cache::Cache;
use crate::data::Dataset;
use crate::download::sha256_file;
use crate::events::{EventSink, RunEvent};
use crate::fsutil::{ensure_dir, read_json, write_json_atomic};
use crate::models::folded::FoldedResNet;
pub use crate::models::folded::Precision;
use crate::models::{Arch, Backbone, Tap};
use crate::preprocess::Preprocess;
use crate::shards::{self, Part, PartRecord, Status, Taken};
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
    /// The dataset name made safe for a folder name (see [`CacheKey::folder_name`]).
    pub(crate) fn dataset_tag(&self) -> String {
        let tag: String = self.dataset.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        tag.chars().take(24).collect()
    }

    /// `<tag>-<split>-<id>`, the folder's name under the cache's `features/`: the tag
    /// (from the dataset name) and split make it recognisable; the key's hash, unique.
    pub fn folder_name(&self) -> String {
        format!("{}-{}-{}", self.dataset_tag(), self.split, self.id())
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
/// their own cache entry. Another process extracting the same features at the same time
/// shares the work shard by shard (see [`crate::shards`]).
pub fn extract_to_cache(
    backbone: &Backbone,
    data: &Dataset,
    cfg: &ExtractConfig,
    cache: &Cache,
    sink: &mut dyn EventSink,
) -> Result<PathBuf> {
    extract_part(backbone, data, cfg, cache, Part::default(), sink)
}

/// What one extraction's folder holds and how it is cut.
struct Plan {
    key: CacheKey,
    id: String,
    dir: PathBuf,
    dim: i64,
    shard_size: usize,
    total: usize,
    shards: usize,
}

impl Plan {
    fn new(backbone: &Backbone, data: &Dataset, cfg: &ExtractConfig, cache: &Cache) -> Result<Plan> {
        if data.is_empty() {
            return Err(Error::invalid("dataset", format!("{} ({}) has no images", data.name, data.split.as_str())));
        }
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
            precision: cfg.precision,
        };
        let batch = cfg.batch_size.max(1);
        let shard_size = cfg.shard_size.max(1).div_ceil(batch) * batch;
        let total = data.len();
        Ok(Plan {
            id: key.id(),
            dir: cache.features_dir(&key.folder_name()),
            dim: backbone.net.feature_dim(cfg.tap),
            shard_size,
            total,
            shards: total.div_ceil(shard_size),
            key,
        })
    }

    fn record(&self, data: &Dataset) -> shards::Extraction {
        shards::Extraction {
            key: self.id.clone(),
            dataset: data.describe(),
            split: self.key.split.clone(),
            arch: self.key.arch.to_string(),
            image_size: self.key.image_size,
            images: self.total,
            shard_size: self.shard_size,
            shards: self.shards,
        }
    }

    fn rows(&self, i: usize) -> std::ops::Range<usize> {
        i * self.shard_size..((i + 1) * self.shard_size).min(self.total)
    }

    /// A complete manifest already there (a cache hit); an incomplete one from before
    /// shards were shared has its shards recorded as done, so they are not computed again.
    fn existing(&self) -> Result<bool> {
        let Some(m) = resume_manifest(&self.dir, &self.key, self.dim, self.shard_size)? else { return Ok(false) };
        if m.complete {
            return Ok(true);
        }
        for (i, s) in m.shards.iter().enumerate() {
            if shards::done(&self.dir, i, &self.id)?.is_none() {
                shards::mark_done(
                    &self.dir,
                    i,
                    &shards::Done { key: self.id.clone(), rows: s.rows, sha256: s.sha256.clone() },
                )?;
            }
        }
        Ok(false)
    }

    /// Writes the manifest from the shards' records once every one is done; `Ok(false)`
    /// while some are not. Every writer writes the same bytes.
    fn merge(&self, data: &Dataset, backbone: &Backbone) -> Result<bool> {
        let status = Status::read(&self.dir, self.shards, &self.id)?;
        if !status.complete() {
            return Ok(false);
        }
        let mut list = Vec::with_capacity(self.shards);
        for i in 0..self.shards {
            let d = shards::done(&self.dir, i, &self.id)?.expect("complete");
            if d.rows != self.rows(i).len() {
                let reason =
                    format!("shard {i} holds {} rows, the plan {}; delete the folder", d.rows, self.rows(i).len());
                return Err(Error::Cache { path: self.dir.clone(), reason });
            }
            list.push(ShardInfo { file: shards::shard_file(i), rows: d.rows, sha256: d.sha256 });
        }
        let manifest = Manifest {
            key: self.key.clone(),
            dim: self.dim,
            shard_size: self.shard_size,
            shards: list,
            complete: true,
            classes: data.classes.clone(),
            synthetic: data.synthetic,
            weights_label: backbone.weights.label.clone(),
        };
        write_json_atomic(&manifest_path(&self.dir), &manifest)?;
        Status::tidy(&self.dir);
        Ok(true)
    }
}

/// Worker `part` of an extraction shared among processes, or hosts (`tlab extract --shard
/// K/N`, Slurm array tasks, Kubernetes indexed pods): computes its shards that no live
/// worker holds, waits for those that one does, and writes the manifest when it finds
/// every shard done. With `Part::default()` it is the whole extraction.
pub fn extract_part(
    backbone: &Backbone,
    data: &Dataset,
    cfg: &ExtractConfig,
    cache: &Cache,
    part: Part,
    sink: &mut dyn EventSink,
) -> Result<PathBuf> {
    let precision = cfg.precision;
    let device = backbone.vs.device();
    precision.check_device(device)?;
    backbone.check_normalization(cfg.preprocess.normalization, sink);
    let plan = Plan::new(backbone, data, cfg, cache)?;
    let dir = plan.dir.clone();
    ensure_dir(&dir)?;
    remove_temp_files(&dir);
    let split = plan.key.split.clone();
    let total = plan.total;
    let started = Instant::now();
    let cache_hit = plan.existing()?;
    if !cache_hit {
        let mine = part.shards(plan.shards);
        shards::record_extraction(&dir, &plan.record(data))?;
        shards::record_part(&dir, &PartRecord { key: plan.id.clone(), part, shards: mine.clone(), done: false })?;
        let mut todo = vec![];
        let mut done_rows = 0;
        for &i in &mine {
            match shards::done(&dir, i, &plan.id)? {
                Some(d) => done_rows += d.rows,
                None => todo.push(i),
            }
        }
        crate::heap::release_free_pages();
        sink.emit(&RunEvent::ExtractionStarted {
            split: split.clone(),
            total_images: mine.iter().map(|&i| plan.rows(i).len()).sum::<usize>() as u64,
            done_images: done_rows as u64,
            cache_dir: dir.display().to_string(),
        });
        if part.n > 1 && mine.is_empty() {
            sink.warn(&format!(
                "part {part} has no shard to compute: {} is {} shard(s) of {} rows, fewer than the {} workers; \
                 a smaller --shard-size shares it among them",
                split, plan.shards, plan.shard_size, part.n
            ));
        } else if part.n > 1 {
            sink.info(&format!(
                "part {part}: {} of the {} shards ({} still to do)",
                mine.len(),
                plan.shards,
                todo.len()
            ));
        }
        let mut work = Worker::new(backbone, data, cfg, &plan, part, split.clone(), done_rows, sink);
        // Shards another live worker holds are waited for, then taken over if it dies.
        let mut waited = false;
        while !todo.is_empty() {
            let mut busy = vec![];
            for i in todo {
                if shards::done(&dir, i, &plan.id)?.is_some() {
                    continue;
                }
                match shards::claim(&dir, i, part)? {
                    Taken::Mine(claim) => work.shard(i, &claim)?,
                    Taken::Busy(who) => {
                        if !waited {
                            work.sink.info(&format!(
                                "shard {i} is being computed by pid {} on {} (part {}): waiting for it",
                                who.pid, who.host, who.part
                            ));
                        }
                        busy.push(i);
                    }
                }
            }
            if !busy.is_empty() {
                waited = true;
                crate::interrupt::check(|| format!("stopped while waiting for other workers in {}", dir.display()))?;
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            todo = busy;
        }
        shards::record_part(&dir, &PartRecord { key: plan.id.clone(), part, shards: mine, done: true })?;
        if !plan.merge(data, backbone)? {
            let status = Status::read(&dir, plan.shards, &plan.id)?;
            sink.info(&format!(
                "part {part} is done; {}. The last worker to finish, or `tlab extract --merge`, writes the manifest",
                status.describe_missing(part.n)
            ));
        }
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

/// `tlab extract --merge`: writes the manifest of a sharded extraction whose parts are all
/// done; an error naming the shards (and parts) that are not.
pub fn merge_parts(
    backbone: &Backbone,
    data: &Dataset,
    cfg: &ExtractConfig,
    cache: &Cache,
    parts: usize,
) -> Result<PathBuf> {
    let plan = Plan::new(backbone, data, cfg, cache)?;
    if plan.existing()? {
        return Ok(plan.dir);
    }
    if !plan.merge(data, backbone)? {
        let status = Status::read(&plan.dir, plan.shards, &plan.id)?;
        let reason = format!("cannot merge yet: {}; rerun those parts", status.describe_missing(parts.max(1)));
        return Err(Error::Cache { path: plan.dir, reason });
    }
    Ok(plan.dir)
}

/// `tlab extract --status`: the cache folder and the state of its shards and parts.
pub fn part_status(
    backbone: &Backbone,
    data: &Dataset,
    cfg: &ExtractConfig,
    cache: &Cache,
) -> Result<(PathBuf, Status, bool)> {
    let plan = Plan::new(backbone, data, cfg, cache)?;
    let complete = manifest_path(&plan.dir).exists() && load_manifest_complete(&plan.dir);
    let status = Status::read(&plan.dir, plan.shards, &plan.id)?;
    Ok((plan.dir, status, complete))
}

fn load_manifest_complete(dir: &Path) -> bool {
    read_json::<Manifest>(&manifest_path(dir)).is_ok_and(|m| m.complete)
}

/// The forward pass over one shard at a time, with the buffers and the reduced-precision
/// net it reuses.
struct Worker<'a> {
    backbone: &'a Backbone,
    data: &'a Dataset,
    cfg: &'a ExtractConfig,
    plan: &'a Plan,
    reduced: Option<FoldedResNet>,
    feats: Tensor,
    labels: Tensor,
    split: String,
    done_rows: usize,
    started: Instant,
    /// Rows this process computed (for the rate).
    computed_here: usize,
    part_rows: usize,
    sink: &'a mut dyn EventSink,
}

impl<'a> Worker<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        backbone: &'a Backbone,
        data: &'a Dataset,
        cfg: &'a ExtractConfig,
        plan: &'a Plan,
        part: Part,
        split: String,
        done_rows: usize,
        sink: &'a mut dyn EventSink,
    ) -> Worker<'a> {
        let precision = cfg.precision;
        // Built from the backbone's weights as they are now, once per extraction.
        let reduced =
            (precision != Precision::Fp32).then(|| FoldedResNet::with_precision(&backbone.net, true, precision));
        // One shard's rows, allocated once and reused: no per-batch feature tensors living
        // between a pass's large blocks (they fragment the heap).
        let rows = plan.shard_size.min(plan.total) as i64;
        let part_rows = part.shards(plan.shards).iter().map(|&i| plan.rows(i).len()).sum();
        Worker {
            backbone,
            data,
            cfg,
            plan,
            reduced,
            feats: Tensor::zeros([rows, plan.dim], (Kind::Float, Device::Cpu)),
            labels: Tensor::zeros([rows], (Kind::Int64, Device::Cpu)),
            split,
            done_rows,
            started: Instant::now(),
            computed_here: 0,
            part_rows,
            sink,
        }
    }

    /// Computes shard `i` (claimed), writes it and its record.
    fn shard(&mut self, i: usize, claim: &shards::Claim) -> Result<()> {
        let range = self.plan.rows(i);
        let batch = self.cfg.batch_size.max(1);
        let ranges: Vec<_> = range.clone().step_by(batch).map(|b| b..(b + batch).min(range.end)).collect();
        let mut ahead = self.data.batches(ranges.clone())?;
        let device = self.backbone.vs.device();
        let mut computed = 0usize;
        for r in ranges {
            crate::interrupt::check(|| {
                format!(
                    "{} of {} rows are cached in {} (the shard in progress is dropped); run the same command \
                     again to resume",
                    self.done_rows,
                    self.part_rows,
                    self.plan.dir.display()
                )
            })?;
            let (imgs, lab) = ahead.next().expect("one batch per range")?;
            let x = self.cfg.preprocess.apply(&imgs, device)?;
            let f = match &self.reduced {
                Some(net) => net.features(&x, self.cfg.tap),
                None => self.backbone.features(&x, self.cfg.tap),
            };
            let (row, n) = ((r.start - range.start) as i64, lab.size()[0]);
            self.feats.narrow(0, row, n).copy_(&f);
            self.labels.narrow(0, row, n).copy_(&lab);
            computed += r.len();
            claim.beat();
            let rate = (computed + self.computed_here) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            self.sink.emit(&RunEvent::ExtractionProgressed {
                split: self.split.clone(),
                done_images: (self.done_rows + computed) as u64,
                total_images: self.part_rows as u64,
                images_per_s: rate,
            });
        }
        let n = range.len() as i64;
        let info = write_shard(&self.plan.dir, i, &self.feats.narrow(0, 0, n), &self.labels.narrow(0, 0, n))?;
        let done = shards::Done { key: self.plan.id.clone(), rows: info.rows, sha256: info.sha256 };
        shards::mark_done(&self.plan.dir, i, &done)?;
        self.done_rows += range.len();
        self.computed_here += range.len();
        self.sink.emit(&RunEvent::ShardWritten {
            split: self.split.clone(),
            index: i as u64,
            rows: range.len() as u64,
        });
        Ok(())
    }
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

/// Leftovers of a killed writer on this host; never part of the cache. Shard data is left
/// to the claims (a shard's temp file is cleared by whoever claims the shard next): on a
/// shared filesystem, another host's live writer has a pid this host does not know. The
/// small records are written and renamed in microseconds, so their temps are not at risk.
fn remove_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.contains(".tmp") && !(name.starts_with("shard-") && name.ends_with(".safetensors")) {
            crate::fsutil::remove_stale_temp(&e.path());
        }
    }
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
