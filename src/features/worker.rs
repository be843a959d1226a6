//! The forward pass over the shards a worker holds: batches decoded, upscaled and
//! normalised on the fly, run through the frozen backbone, and each shard written
//! atomically, then recorded as done.
use super::plan::Plan;
use super::shards::{self, Claim, Done, Part};
use super::{ExtractConfig, FeatureDir, ShardInfo, SkippedRow};
use crate::data::Dataset;
use crate::download::sha256_file;
use crate::events::{EventSink, RunEvent};
use crate::models::folded::Precision;
use crate::models::Backbone;
use crate::models::Inference;
use crate::{Error, Result};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The forward pass over one shard at a time, with the buffers and the reduced-precision
/// net it reuses.
pub(super) struct Worker<'a> {
    backbone: &'a Backbone,
    data: &'a Dataset,
    cfg: &'a ExtractConfig,
    plan: &'a Plan,
    reduced: Option<Box<dyn Inference>>,
    feats: Tensor,
    labels: Tensor,
    split: String,
    done_rows: usize,
    started: Instant,
    /// Rows this process computed (for the rate).
    computed_here: usize,
    part_rows: usize,
    pub sink: &'a mut dyn EventSink,
}

impl<'a> Worker<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
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
        let reduced = (precision != Precision::Fp32).then(|| backbone.inference_copy(precision));
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
    pub fn shard(&mut self, i: usize, claim: &Claim) -> Result<()> {
        let range = self.plan.rows(i);
        let batch = self.cfg.batch_size.max(1);
        let ranges: Vec<_> = range.clone().step_by(batch).map(|b| b..(b + batch).min(range.end)).collect();
        let mut ahead = self.data.batches(ranges.clone())?;
        let device = self.backbone.vs.device();
        let mut computed = 0usize;
        let mut skipped = vec![];
        for r in ranges {
            crate::interrupt::check(|| {
                format!(
                    "{} of {} rows are cached in {} (the shard in progress is dropped); run the same command \
                     again to resume",
                    self.done_rows,
                    self.part_rows,
                    self.plan.dir.root().display()
                )
            })?;
            let (imgs, lab) = ahead.next().expect("one batch per range")?;
            let (row, n) = ((r.start - range.start) as i64, r.len() as i64);
            // Rows keep their places: a file that failed to decode leaves a zero row,
            // recorded as skipped and dropped on load.
            let kept = (lab.size()[0] != n).then(|| self.kept_rows(r.clone(), &mut skipped));
            if kept.as_ref().is_some_and(|k| k.len() as i64 != imgs.size()[0]) {
                // The failures recorded do not account for the rows missing.
                let reason = format!("rows {}..{} lost images no recorded failure accounts for", r.start, r.end);
                return Err(Error::Cache { path: self.plan.dir.root().to_path_buf(), reason });
            }
            let mut rows = self.feats.narrow(0, row, n);
            if kept.is_some() {
                let _ = rows.zero_();
            }
            if imgs.size()[0] > 0 {
                let x = self.cfg.preprocess.apply(&imgs, device)?;
                let f = match &self.reduced {
                    Some(net) => net.readout(&x, self.cfg.tap, self.plan.key.pool),
                    None => self.backbone.readout(&x, self.cfg.tap, self.plan.key.pool),
                };
                match &kept {
                    None => rows.copy_(&f),
                    Some(k) => {
                        let _ = rows.index_copy_(0, &Tensor::from_slice(k), &f.to_device(Device::Cpu));
                    }
                }
            }
            let lab = if kept.is_some() { self.data.labels_of(r.clone()) } else { lab };
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
        if !skipped.is_empty() {
            self.sink.warn(&format!(
                "{} features, shard {i}: {} row(s) left out, their files failing to decode; the cache records \
                 them, so a rerun leaves out the same",
                self.split,
                skipped.len()
            ));
        }
        let done = Done { key: self.plan.id.clone(), rows: info.rows, sha256: info.sha256, skipped };
        shards::mark_done(self.plan.dir.root(), i, &done)?;
        self.done_rows += range.len();
        self.computed_here += range.len();
        self.sink.emit(&RunEvent::ShardWritten {
            split: self.split.clone(),
            index: i as u64,
            rows: range.len() as u64,
        });
        Ok(())
    }
    /// The positions in batch `r` of the rows that decoded; those whose files failed (the
    /// dataset recorded them) are added to `skipped`, with why.
    fn kept_rows(&self, r: std::ops::Range<usize>, skipped: &mut Vec<SkippedRow>) -> Vec<i64> {
        let failed = self.data.decode_failures();
        let paths = self.data.paths().unwrap_or_default();
        let mut kept = vec![];
        for (k, row) in r.enumerate() {
            match paths.get(row).and_then(|p| failed.iter().find(|f| &f.path == p)) {
                Some(f) => skipped.push(SkippedRow { row, reason: f.reason.clone() }),
                None => kept.push(k as i64),
            }
        }
        kept
    }
}

/// Writes one shard atomically; returns its manifest entry.
fn write_shard(dir: &FeatureDir, index: usize, features: &Tensor, labels: &Tensor) -> Result<ShardInfo> {
    let path = dir.shard(index);
    let labels = labels.to_kind(Kind::Int64);
    let mut sha256 = String::new();
    crate::fsutil::write_via_temp(&path, |tmp| {
        Tensor::write_safetensors(&[("features", features), ("labels", &labels)], tmp)
            .map_err(|e| Error::Cache { path: path.clone(), reason: format!("writing the shard failed: {e}") })?;
        sha256 = sha256_file(tmp)?;
        Ok(())
    })?;
    Ok(ShardInfo { file: shards::shard_file(index), rows: features.size()[0] as usize, sha256, skipped: vec![] })
}
