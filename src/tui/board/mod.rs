//! `tlab dash FOLDER` on a feature-cache folder: a sharded extraction's progress, read
//! from the folder's shared files alone (`extraction.json`, done records, claims, part
//! records; see [`crate::features::shards`]). It works from any host that sees the
//! folder, however many workers there are and whoever started them (Slurm, Kubernetes,
//! `--devices`). [`Board`] is what the folder says; [`Screen`] draws it, [`run_plain`]
//! prints it.
mod plain;
mod screen;

pub use plain::run_plain;
pub use screen::{Screen, BOARD_INTENTS};

use super::fmt;
use crate::features::shards::{self, ClaimInfo, Extraction, Part, Status};
use crate::features::{FeatureDir, Manifest};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// One worker's share, as its part record says.
#[derive(Debug, Clone, PartialEq)]
pub struct PartLine {
    pub part: Part,
    pub shards: usize,
    pub done: usize,
    /// Shards of this part being computed now (by anyone).
    pub running: Vec<usize>,
    /// The worker said it finished its share.
    pub finished: bool,
}

/// What a shard is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Done,
    Running,
    /// Claimed by a worker that is gone: the next worker takes it over.
    Stale,
    Waiting,
}

/// A sharded extraction as its folder shows it now.
#[derive(Debug, Clone)]
pub struct Board {
    pub folder: PathBuf,
    pub what: Extraction,
    pub cells: Vec<Cell>,
    pub rows_done: usize,
    pub claimed: Vec<(usize, ClaimInfo, bool)>,
    pub parts: Vec<PartLine>,
    /// Rows per second, all workers together, over the last shards to finish.
    pub rate: Option<f64>,
    /// The manifest is written: every shard is done and merged.
    pub complete: bool,
}

/// A folder `tlab dash` shows as an extraction rather than a run.
pub fn is_feature_folder(dir: &Path) -> bool {
    let folder = FeatureDir::new(dir);
    folder.extraction().is_file() || folder.manifest().is_file()
}

impl Board {
    pub fn read(dir: &Path) -> Result<Board> {
        let folder = dir.to_path_buf();
        let manifest = FeatureDir::new(dir).manifest();
        if manifest.is_file() {
            let m: Manifest = crate::fsutil::read_json(&manifest)?;
            if m.complete {
                let rows = m.shards.iter().map(|s| s.rows).sum();
                let what = Extraction {
                    key: m.key.id(),
                    dataset: m.key.dataset.clone(),
                    split: m.key.split.clone(),
                    arch: m.key.arch.to_string(),
                    image_size: m.key.image_size,
                    images: m.key.images,
                    shard_size: m.shard_size,
                    shards: m.shards.len(),
                };
                let cells = vec![Cell::Done; m.shards.len()];
                let (claimed, parts) = (vec![], vec![]);
                return Ok(Board { folder, what, cells, rows_done: rows, claimed, parts, rate: None, complete: true });
            }
        }
        let what = shards::read_extraction(dir)?.ok_or_else(|| Error::Cache {
            path: folder.clone(),
            reason: format!(
                "not a feature extraction: no {} or {} in it",
                FeatureDir::EXTRACTION,
                FeatureDir::MANIFEST
            ),
        })?;
        let st = Status::read(dir, what.shards, &what.key)?;
        let mut cells = vec![Cell::Waiting; what.shards];
        for &i in &st.done {
            cells[i] = Cell::Done;
        }
        for (i, _, stale) in &st.claimed {
            cells[*i] = if *stale { Cell::Stale } else { Cell::Running };
        }
        let rows_done = st.done.iter().map(|&i| what.rows(i)).sum();
        let times = shards::done_times(dir, &st.done);
        let rate = shards::recent_rate(times.into_iter().map(|(i, t)| (what.rows(i), t)).collect());
        let parts = st
            .parts
            .iter()
            .map(|p| PartLine {
                part: p.part,
                shards: p.shards.len(),
                done: p.shards.iter().filter(|&&i| cells.get(i) == Some(&Cell::Done)).count(),
                running: p.shards.iter().copied().filter(|&i| cells.get(i) == Some(&Cell::Running)).collect(),
                finished: p.done,
            })
            .collect();
        Ok(Board { folder, what, cells, rows_done, claimed: st.claimed, parts, rate, complete: false })
    }

    pub fn count(&self, c: Cell) -> usize {
        self.cells.iter().filter(|&&x| x == c).count()
    }

    pub fn fraction(&self) -> f64 {
        self.rows_done as f64 / self.what.images.max(1) as f64
    }

    /// The recent rate, while some worker is computing (a rate of workers that are gone
    /// says nothing of when the rest will be done).
    pub fn live_rate(&self) -> Option<f64> {
        self.rate.filter(|r| *r > 0.0 && self.count(Cell::Running) > 0)
    }

    /// Seconds left at the recent rate.
    pub fn eta_s(&self) -> Option<f64> {
        let left = self.what.images.saturating_sub(self.rows_done);
        self.live_rate().map(|r| left as f64 / r)
    }

    /// The one-line summary plain mode prints.
    pub fn line(&self) -> String {
        let w = &self.what;
        let mut out = format!(
            "{}: {} of {} shards, {} of {} images ({:.1}%)",
            w.split,
            self.count(Cell::Done),
            w.shards,
            fmt::count(self.rows_done as u64),
            fmt::count(w.images as u64),
            self.fraction() * 100.0
        );
        if self.complete {
            return out + ", complete (manifest written)";
        }
        out += &format!(", {} running", self.count(Cell::Running));
        if self.count(Cell::Stale) > 0 {
            out += &format!(", {} stale (worker gone)", self.count(Cell::Stale));
        }
        if !self.parts.is_empty() {
            let finished = self.parts.iter().filter(|p| p.finished).count();
            out += &format!(", parts {finished} of {} finished", self.parts[0].part.n);
        }
        match self.live_rate() {
            Some(r) => out += &format!(", {r:.1} images/s"),
            None if self.count(Cell::Running) == 0 => out += "; no worker is computing: start the parts not finished",
            None => {}
        }
        if let Some(eta) = self.eta_s() {
            out += &format!(", ETA {}", fmt::duration((eta * 1000.0) as u64));
        }
        out
    }

    /// One character a shard: `#` done, `>` running, `!` stale, `.` waiting.
    pub fn map(&self) -> String {
        self.cells.iter().map(|c| char_of(*c)).collect()
    }

    /// One line a part, for `--once` and the screen.
    pub fn part_text(p: &PartLine) -> String {
        let state = if p.done == p.shards {
            "done".to_string()
        } else if !p.running.is_empty() {
            let list: Vec<String> = p.running.iter().map(|i| i.to_string()).collect();
            format!("running shard {}", list.join(", "))
        } else {
            "waiting".to_string()
        };
        format!("part {:<7} {:>4} of {:<4} shards  {state}", p.part.to_string(), p.done, p.shards)
    }
}

pub(super) fn char_of(c: Cell) -> char {
    match c {
        Cell::Done => '#',
        Cell::Running => '>',
        Cell::Stale => '!',
        Cell::Waiting => '.',
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::shards::{ClaimInfo, Done, PartRecord};

    /// A folder with 5 shards of 10 (the last 4): 0 and 2 done, 1 claimed by a live
    /// process (this one), 3 by a dead one, 4 untouched; parts 0/2 and 1/2 recorded.
    #[test]
    fn a_folder_reads_as_cells_parts_and_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let what = Extraction {
            key: "abc".into(),
            dataset: "synthetic".into(),
            split: "train".into(),
            arch: "resnet18".into(),
            image_size: 32,
            images: 44,
            shard_size: 10,
            shards: 5,
        };
        shards::record_extraction(d, &what).unwrap();
        for i in [0, 2] {
            std::fs::write(d.join(shards::shard_file(i)), b"x").unwrap();
            shards::mark_done(d, i, &Done { key: "abc".into(), rows: 10, sha256: "0".into(), skipped: vec![] })
                .unwrap();
        }
        let me = ClaimInfo { host: shards::host(), pid: std::process::id(), part: Part { k: 1, n: 2 } };
        std::fs::write(FeatureDir::new(d).claim(1), serde_json::to_vec(&me).unwrap()).unwrap();
        let dead = ClaimInfo { pid: 0x7fff_fff0, part: Part { k: 1, n: 2 }, ..me.clone() };
        std::fs::write(FeatureDir::new(d).claim(3), serde_json::to_vec(&dead).unwrap()).unwrap();
        for (k, list, done) in [(0, vec![0, 2, 4], false), (1, vec![1, 3], false)] {
            let rec = PartRecord { key: "abc".into(), part: Part { k, n: 2 }, shards: list, done };
            shards::record_part(d, &rec).unwrap();
        }
        let b = Board::read(d).unwrap();
        assert!(is_feature_folder(d) && !b.complete);
        assert_eq!(b.map(), "#>#!.");
        assert_eq!(b.rows_done, 20);
        assert_eq!(
            b.parts[0],
            PartLine { part: Part { k: 0, n: 2 }, shards: 3, done: 2, running: vec![], finished: false }
        );
        assert_eq!(b.parts[1].running, [1]);
        assert_eq!(
            Board::part_text(&b.parts[1]).split_whitespace().collect::<Vec<_>>().join(" "),
            "part 1/2 0 of 2 shards running shard 1"
        );
        let line = b.line();
        assert!(line.starts_with("train: 2 of 5 shards, 20 of 44 images (45.5%), 1 running, 1 stale"), "{line}");
        assert!(line.contains("parts 0 of 2 finished"), "{line}");

        // A record of another extraction copied in is named, not shown as progress.
        let foreign = Done { key: "zzz".into(), rows: 10, sha256: "0".into(), skipped: vec![] };
        std::fs::write(d.join(shards::shard_file(4)), b"x").unwrap();
        shards::mark_done(d, 4, &foreign).unwrap();
        let e = Board::read(d).unwrap_err().to_string();
        assert!(e.contains("zzz") && e.contains("shard 4"), "{e}");

        let empty = tempfile::tempdir().unwrap();
        assert!(!is_feature_folder(empty.path()));
        let e = Board::read(empty.path()).unwrap_err().to_string();
        assert!(e.contains("extraction.json"), "{e}");
    }
}
