//! The state of every shard and part of a folder, for `tlab extract --status`, the merge
//! and the board.
use super::claim::{is_stale, read_claim};
use super::{done, ClaimInfo, PartRecord};
use crate::features::FeatureDir;
use crate::{Error, Result};
use std::path::Path;

/// The state of every shard, for `tlab extract --status` and the merge.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub shards: usize,
    pub done: Vec<usize>,
    /// (shard, holder, stale)
    pub claimed: Vec<(usize, ClaimInfo, bool)>,
    pub missing: Vec<usize>,
    pub parts: Vec<PartRecord>,
}

impl Status {
    pub fn read(dir: &Path, shards: usize, key: &str) -> Result<Status> {
        let folder = FeatureDir::new(dir);
        let (mut done_v, mut claimed, mut missing) = (vec![], vec![], vec![]);
        for i in 0..shards {
            if done(dir, i, key)?.is_some() {
                done_v.push(i);
            } else if let Some((info, age)) = read_claim(&folder.claim(i)) {
                let stale = is_stale(&info, age);
                claimed.push((i, info, stale));
            } else {
                missing.push(i);
            }
        }
        let mut parts = vec![];
        for (name, path) in folder.entries() {
            if FeatureDir::is_part_record(&name) {
                let rec: PartRecord = crate::fsutil::read_json(&path)?;
                if rec.key != key {
                    let reason = format!("written for extraction {}, not this folder's {key}; delete it", rec.key);
                    return Err(Error::Cache { path, reason });
                }
                parts.push(rec);
            }
        }
        parts.sort_by_key(|p| (p.part.n, p.part.k));
        Ok(Status { shards, done: done_v, claimed, missing, parts })
    }

    pub fn complete(&self) -> bool {
        self.done.len() == self.shards
    }

    /// The shards not done, with the parts that own them, for errors: "2 (part 2/4), 6 (part 2/4)".
    pub fn describe_missing(&self, n: usize) -> String {
        let mut not_done: Vec<usize> = self.missing.iter().copied().chain(self.claimed.iter().map(|c| c.0)).collect();
        not_done.sort_unstable();
        let shown: Vec<String> = not_done.iter().take(12).map(|i| format!("{i} (part {}/{n})", i % n)).collect();
        let more = if not_done.len() > 12 { format!(" and {} more", not_done.len() - 12) } else { String::new() };
        format!("{} of {} shards are not done: {}{more}", not_done.len(), self.shards, shown.join(", "))
    }

    /// Removes what only workers need once the manifest is written: claims, records, parts.
    pub fn tidy(dir: &Path) {
        let folder = FeatureDir::new(dir);
        for (name, path) in folder.entries() {
            if FeatureDir::is_part_record(&name) || path == folder.extraction() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
