//! Extraction: the public entry points (a whole extraction, one worker's part, the merge
//! and the status of a shared one) and the loop that takes, waits for and takes over
//! shards.
use super::plan::Plan;
use super::shards::{self, Part, PartRecord, Status, Taken};
use super::worker::Worker;
use super::{load_features, FeatureSet};
use crate::cache::Cache;
use crate::data::Dataset;
use crate::events::{EventSink, RunEvent};
use crate::fsutil::ensure_dir;
use crate::models::folded::Precision;
use crate::models::{Backbone, Pool, Tap};
use crate::preprocess::Preprocess;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// How to extract.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtractConfig {
    pub preprocess: Preprocess,
    pub tap: Tap,
    /// How the tap becomes a vector; `None`: the architecture's own (`Arch::default_pool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Pool>,
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
            pool: None,
            batch_size: 32,
            shard_size: 2048,
            precision: Precision::Fp32,
        }
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
/// shares the work shard by shard (see [`shards`]).
pub fn extract_to_cache(
    backbone: &Backbone,
    data: &Dataset,
    cfg: &ExtractConfig,
    cache: &Cache,
    sink: &mut dyn EventSink,
) -> Result<PathBuf> {
    extract_part(backbone, data, cfg, cache, Part::default(), sink)
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
    let dir = plan.dir.root().to_path_buf();
    ensure_dir(&dir)?;
    shards::remove_temp_files(&plan.dir);
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
            let status = plan.status()?;
            sink.info(&format!(
                "part {part} is done; {}. The last worker to finish, or `tlab extract --merge`, writes the manifest",
                status.describe_missing(part.n)
            ));
        }
    }
    // Rows left out, by this process or an earlier one: the dataset names their files.
    if let Ok(m) = crate::fsutil::read_json::<super::Manifest>(&plan.dir.manifest()) {
        let skipped: Vec<_> = m.shards.into_iter().flat_map(|s| s.skipped).collect();
        data.note_decode_failures(&skipped)?;
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
        return Ok(plan.dir.into_root());
    }
    if !plan.merge(data, backbone)? {
        let status = plan.status()?;
        let reason = format!("cannot merge yet: {}; rerun those parts", status.describe_missing(parts.max(1)));
        return Err(Error::Cache { path: plan.dir.into_root(), reason });
    }
    Ok(plan.dir.into_root())
}

/// `tlab extract --status`: the cache folder and the state of its shards and parts.
pub fn part_status(
    backbone: &Backbone,
    data: &Dataset,
    cfg: &ExtractConfig,
    cache: &Cache,
) -> Result<(PathBuf, Status, bool)> {
    let plan = Plan::new(backbone, data, cfg, cache)?;
    let complete = plan.manifest_complete();
    let status = plan.status()?;
    Ok((plan.dir.into_root(), status, complete))
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
