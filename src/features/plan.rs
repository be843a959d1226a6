//! What one extraction's folder holds and how it is cut: the key, the shard boundaries,
//! what is already there (a cache hit, or shards of an interrupted run) and the merge
//! that writes the manifest once every shard is done.
use super::load::check_shard_list;
use super::shards::{self, Done, Extraction, Status};
use super::{CacheKey, ExtractConfig, FeatureDir, Manifest, ShardInfo, CACHE_FORMAT};
use crate::cache::Cache;
use crate::data::Dataset;
use crate::fsutil::{read_json, write_json_atomic};
use crate::models::Backbone;
use crate::{Error, Result};

pub(super) struct Plan {
    pub key: CacheKey,
    pub id: String,
    pub dir: FeatureDir,
    pub dim: i64,
    pub shard_size: usize,
    pub total: usize,
    pub shards: usize,
}

impl Plan {
    pub fn new(backbone: &Backbone, data: &Dataset, cfg: &ExtractConfig, cache: &Cache) -> Result<Plan> {
        if data.is_empty() {
            return Err(Error::invalid("dataset", format!("{} ({}) has no images", data.name, data.split.as_str())));
        }
        let arch = backbone.arch();
        let pool = arch.pool(cfg.pool)?;
        arch.check_size(cfg.preprocess.size)?;
        let key = CacheKey {
            format: CACHE_FORMAT,
            dataset: data.name.clone(),
            split: data.split.as_str().into(),
            dataset_digest: data.digest.clone(),
            images: data.len(),
            weights_digest: backbone.weights.digest.clone(),
            arch: backbone.arch(),
            image_size: cfg.preprocess.size,
            normalization: cfg.preprocess.normalization,
            tap: cfg.tap,
            pool,
            precision: cfg.precision,
        };
        let batch = cfg.batch_size.max(1);
        let shard_size = cfg.shard_size.max(1).div_ceil(batch) * batch;
        let total = data.len();
        Ok(Plan {
            id: key.id(),
            dir: FeatureDir::of(cache, &key),
            dim: backbone.pooled_dim(cfg.tap, pool),
            shard_size,
            total,
            shards: total.div_ceil(shard_size),
            key,
        })
    }

    pub fn record(&self, data: &Dataset) -> Extraction {
        Extraction {
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

    pub fn rows(&self, i: usize) -> std::ops::Range<usize> {
        i * self.shard_size..((i + 1) * self.shard_size).min(self.total)
    }

    /// The state of every shard and part.
    pub fn status(&self) -> Result<Status> {
        Status::read(self.dir.root(), self.shards, &self.id)
    }

    /// The manifest is there and says the folder is complete.
    pub fn manifest_complete(&self) -> bool {
        read_json::<Manifest>(&self.dir.manifest()).is_ok_and(|m| m.complete)
    }

    /// A complete manifest already there (a cache hit); an incomplete one from before
    /// shards were shared has its shards recorded as done, so they are not computed again.
    pub fn existing(&self) -> Result<bool> {
        let Some(m) = self.resume_manifest()? else { return Ok(false) };
        if m.complete {
            return Ok(true);
        }
        let dir = self.dir.root();
        for (i, s) in m.shards.iter().enumerate() {
            if shards::done(dir, i, &self.id)?.is_none() {
                let done =
                    Done { key: self.id.clone(), rows: s.rows, sha256: s.sha256.clone(), skipped: s.skipped.clone() };
                shards::mark_done(dir, i, &done)?;
            }
        }
        Ok(false)
    }

    /// Writes the manifest from the shards' records once every one is done; `Ok(false)`
    /// while some are not. Every writer writes the same bytes.
    pub fn merge(&self, data: &Dataset, backbone: &Backbone) -> Result<bool> {
        if !self.status()?.complete() {
            return Ok(false);
        }
        let mut list = Vec::with_capacity(self.shards);
        for i in 0..self.shards {
            let d = shards::done(self.dir.root(), i, &self.id)?.expect("complete");
            if d.rows != self.rows(i).len() {
                let reason =
                    format!("shard {i} holds {} rows, the plan {}; delete the folder", d.rows, self.rows(i).len());
                return Err(Error::Cache { path: self.dir.root().to_path_buf(), reason });
            }
            list.push(ShardInfo { file: shards::shard_file(i), rows: d.rows, sha256: d.sha256, skipped: d.skipped });
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
        write_json_atomic(&self.dir.manifest(), &manifest)?;
        Status::tidy(self.dir.root());
        Ok(true)
    }

    /// The manifest already in the folder when it is for this key, dropping shards whose
    /// files are gone. Its sizes must be the ones this extraction would write: they size
    /// the buffers.
    fn resume_manifest(&self) -> Result<Option<Manifest>> {
        let path = self.dir.manifest();
        if !path.exists() {
            return Ok(None);
        }
        let mut m: Manifest = read_json(&path)?;
        let bad = |reason: String| Error::Cache { path: path.clone(), reason: format!("{reason}; delete the folder") };
        if m.key != self.key {
            return Err(bad("manifest key differs from the folder's key".into()));
        }
        let (dim, shard_size) = (self.dim, self.shard_size);
        if (m.dim, m.shard_size) != (dim, shard_size) {
            return Err(bad(format!(
                "manifest says {} features in shards of {} rows, this extraction makes {dim} in shards of {shard_size}",
                m.dim, m.shard_size
            )));
        }
        check_shard_list(&m).map_err(bad)?;
        if let Some(bad) = m.shards.iter().position(|s| !self.dir.listed(&s.file).is_file()) {
            m.shards.truncate(bad);
            m.complete = false;
        }
        Ok(Some(m))
    }
}
