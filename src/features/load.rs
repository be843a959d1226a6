//! Reading a finished feature folder: its manifest, and every shard checked against it.
use super::{CacheKey, FeatureDir};
pub use crate::data::decode::SkippedRow;
use crate::download::sha256_file;
use crate::fsutil::read_json;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub rows: usize,
    pub sha256: String,
    /// Rows whose file failed to decode during the extraction; they hold zeros and are
    /// dropped on load. Absent when none, so manifests without any are unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedRow>,
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

/// Features of one dataset split, loaded from the cache.
pub struct FeatureSet {
    /// `[N, D]` f32: one row per dataset item, less the `skipped` ones.
    pub features: Tensor,
    /// `[N]` i64.
    pub labels: Tensor,
    /// The dataset rows left out (their files failed to decode), in row order.
    pub skipped: Vec<SkippedRow>,
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

    /// Where dataset row `row` lands among the loaded rows: `row` less the skipped rows
    /// before it (a given validation set's first row, say).
    pub fn loaded_row(&self, row: usize) -> usize {
        row - self.skipped.iter().filter(|s| s.row < row).count()
    }
}

/// A shard entry names a file in its own folder, shards are full but the last, and the
/// rows add up to the key's image count (all of them once complete).
pub(super) fn check_shard_list(m: &Manifest) -> std::result::Result<(), String> {
    if let Some(s) = m.shards.iter().find(|s| !is_plain_file_name(&s.file)) {
        return Err(format!("shard file `{}` is not a plain file name in the cache folder", s.file));
    }
    let last = m.shards.len().saturating_sub(1);
    if let Some(i) = m.shards.iter().enumerate().position(|(i, s)| s.rows == 0 || (i < last && s.rows != m.shard_size))
    {
        return Err(format!("shard {i} holds {} rows in shards of {}", m.shards[i].rows, m.shard_size));
    }
    let mut start = 0usize;
    for (i, s) in m.shards.iter().enumerate() {
        let end = start.saturating_add(s.rows);
        let mut last = None;
        for k in &s.skipped {
            if k.row < start || k.row >= end || last.is_some_and(|l| k.row <= l) {
                return Err(format!("shard {i} skips row {}, not one of its rows {start}..{end} in order", k.row));
            }
            last = Some(k.row);
        }
        start = end;
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

/// Loads a complete cache folder, checking every shard against the manifest.
pub fn load_features(dir: &Path) -> Result<FeatureSet> {
    let folder = FeatureDir::new(dir);
    let manifest_path = folder.manifest();
    let manifest: Manifest = read_json(&manifest_path)?;
    let err = |path: &Path, reason: String| Error::Cache { path: path.to_path_buf(), reason };
    if !manifest.complete {
        return Err(err(dir, "extraction is incomplete; rerun `tlab extract` to resume it".into()));
    }
    check_shard_list(&manifest).map_err(|e| err(&manifest_path, format!("{e}; delete the folder")))?;
    if manifest.shards.is_empty() {
        return Err(err(&manifest_path, "manifest lists no shards; delete the folder".into()));
    }
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    let mut skipped = Vec::new();
    // The dataset row of the shard's first row.
    let mut start = 0i64;
    for s in &manifest.shards {
        let path = folder.listed(&s.file);
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
        let (f, l) = if s.skipped.is_empty() {
            (f, l)
        } else {
            let kept: Vec<i64> = (0..rows).filter(|r| !s.skipped.iter().any(|k| k.row as i64 == start + r)).collect();
            let kept = Tensor::from_slice(&kept);
            (f.index_select(0, &kept), l.index_select(0, &kept))
        };
        skipped.extend(s.skipped.iter().cloned());
        start += rows;
        feats.push(f);
        labels.push(l);
    }
    Ok(FeatureSet {
        features: Tensor::cat(&feats, 0),
        labels: Tensor::cat(&labels, 0),
        skipped,
        manifest,
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(skipped: &[usize]) -> Manifest {
        let key: CacheKey = serde_json::from_value(serde_json::json!({
            "format": 1, "dataset": "d", "split": "train", "dataset_digest": "x", "images": 6,
            "weights_digest": "w", "arch": "resnet18", "image_size": 32, "normalization": "torchvision",
            "tap": "layer4", "precision": "fp32"
        }))
        .unwrap();
        let shard = |i: usize| ShardInfo {
            file: format!("shard-{i}.safetensors"),
            rows: 3,
            sha256: String::new(),
            skipped: skipped
                .iter()
                .filter(|&&r| r / 3 == i)
                .map(|&row| SkippedRow { row, reason: "bad".into() })
                .collect(),
        };
        Manifest {
            key,
            dim: 4,
            shard_size: 3,
            shards: vec![shard(0), shard(1)],
            complete: true,
            classes: vec!["a".into()],
            synthetic: false,
            weights_label: String::new(),
        }
    }

    #[test]
    fn skipped_rows_must_be_their_shards_own_in_order() {
        assert!(check_shard_list(&manifest(&[1, 4, 5])).is_ok());
        let mut m = manifest(&[4]);
        m.shards[0].skipped = m.shards[1].skipped.clone();
        assert!(check_shard_list(&m).unwrap_err().contains("shard 0 skips row 4"));
        let mut m = manifest(&[4, 5]);
        m.shards[1].skipped.reverse();
        assert!(check_shard_list(&m).unwrap_err().contains("in order"));
    }
}
