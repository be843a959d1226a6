//! The records workers leave in the folder: a done record per whole shard, a part record
//! per worker, and `extraction.json` for watchers; and the rate they imply.
use super::Part;
use crate::features::{FeatureDir, SkippedRow};
use crate::fsutil::{read_json, write_json_atomic};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::SystemTime;

/// `shard-NNNNN.done.json`: a whole shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// The cache key's id: a record copied in from another extraction is refused.
    pub key: String,
    pub rows: usize,
    pub sha256: String,
    /// Rows left out: their files failed to decode (see [`SkippedRow`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedRow>,
}

/// Publishes shard `i` as whole (after its file was renamed into place).
pub fn mark_done(dir: &Path, i: usize, done: &Done) -> Result<()> {
    write_json_atomic(&FeatureDir::new(dir).done(i), done)
}

/// The record of shard `i`, if it is done; a record of another key, or one whose shard
/// file is gone, is an error naming it.
pub fn done(dir: &Path, i: usize, key: &str) -> Result<Option<Done>> {
    let dir = FeatureDir::new(dir);
    let path = dir.done(i);
    if !path.exists() {
        return Ok(None);
    }
    let d: Done = read_json(&path)?;
    if d.key != key {
        let reason = format!("records shard {i} of extraction {}, not of this folder's {key}; delete it", d.key);
        return Err(Error::Cache { path, reason });
    }
    if !dir.shard(i).is_file() {
        return Ok(None);
    }
    Ok(Some(d))
}

/// `part-K-of-N.json`: what a worker was given and whether it finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    pub key: String,
    pub part: Part,
    pub shards: Vec<usize>,
    pub done: bool,
}

pub fn record_part(dir: &Path, rec: &PartRecord) -> Result<()> {
    write_json_atomic(&FeatureDir::new(dir).part(rec.part), rec)
}

/// `extraction.json`: what a folder's extraction is, so that a watcher given only the
/// folder (`tlab dash FOLDER`) can say how far it is. Every worker writes the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extraction {
    pub key: String,
    pub dataset: String,
    pub split: String,
    pub arch: String,
    pub image_size: i64,
    pub images: usize,
    pub shard_size: usize,
    pub shards: usize,
}

impl Extraction {
    pub fn rows(&self, i: usize) -> usize {
        self.images.min((i + 1) * self.shard_size).saturating_sub(i * self.shard_size)
    }
}

pub fn record_extraction(dir: &Path, e: &Extraction) -> Result<()> {
    write_json_atomic(&FeatureDir::new(dir).extraction(), e)
}

pub fn read_extraction(dir: &Path) -> Result<Option<Extraction>> {
    let path = FeatureDir::new(dir).extraction();
    if !path.exists() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

/// When each done shard was finished (its record's mtime), for rates: (shard, time).
pub fn done_times(dir: &Path, done: &[usize]) -> Vec<(usize, SystemTime)> {
    let dir = FeatureDir::new(dir);
    done.iter().filter_map(|&i| Some((i, std::fs::metadata(dir.done(i)).ok()?.modified().ok()?))).collect()
}

/// Rows per second over the last shards to finish, all workers together: `(rows, finished)`
/// of done shards. `None` until two have finished at different times.
pub fn recent_rate(mut done: Vec<(usize, SystemTime)>) -> Option<f64> {
    done.sort_by_key(|d| d.1);
    let recent = &done[done.len().saturating_sub(32)..];
    let (first, last) = (recent.first()?.1, recent.last()?.1);
    let secs = last.duration_since(first).ok()?.as_secs_f64();
    // The first shard's rows were computed before `first`: only the later ones count.
    let rows: usize = recent[1..].iter().map(|d| d.0).sum();
    (secs > 0.0).then(|| rows as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_count_the_shards_finished_after_the_first() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(recent_rate(vec![]), None);
        assert_eq!(recent_rate(vec![(64, at(0))]), None);
        assert_eq!(recent_rate(vec![(64, at(3)), (64, at(3))]), None);
        // Out of order, as records are read: 64 + 32 rows in 4 s after the first.
        assert_eq!(recent_rate(vec![(32, at(4)), (64, at(0)), (64, at(2))]), Some(24.0));
        let e = Extraction {
            key: "k".into(),
            dataset: "d".into(),
            split: "train".into(),
            arch: "resnet18".into(),
            image_size: 32,
            images: 200,
            shard_size: 64,
            shards: 4,
        };
        assert_eq!((0..4).map(|i| e.rows(i)).collect::<Vec<_>>(), [64, 64, 64, 8]);
    }
}
