//! One run directory's layout: every file a run writes or reads, and nothing else joins
//! these names.
//!
//! ```text
//! runs/<UTC time>-<name>/
//! ├── config.json            every setting, plus the data and weights actually used
//! ├── events.jsonl           progress, one versioned event a line (the dashboard tails it)
//! ├── pid                    the process writing the run (the dashboard's device panel)
//! ├── STOP                   written by `tlab dash`'s `s`: training checkpoints and ends
//! ├── train-state.json       the training loop's progress (a readable copy)
//! ├── {head,model}-best.safetensors   best epoch's weights (head on features | whole net)
//! ├── {head,model}-last.safetensors   the resume checkpoint: weights, Adam's moments,
//! │                          and the progress in its metadata (one rename changes all)
//! ├── epochs.{csv,parquet}   one row per epoch        steps.{csv,parquet}  one per step
//! ├── sweep.{csv,parquet}    logreg: one row per lambda of the sweep
//! ├── timings.json           how long fitting the classifier took
//! ├── trained.json           what training leaves for evaluation
//! ├── calibration.json       `--calibrate`: the temperature fitted on the validation split
//! │                          and its ECE/NLL before and after (`calibration::Calibration`)
//! ├── features.json          the feature-cache folders the run read
//! ├── per_class.{csv,parquet}, confusion.{csv,parquet}   test-split tables
//! ├── predictions.{csv,parquet}   the test split, image by image: true and predicted class
//! ├── summary.json           the finished run's result
//! └── probe/                 fine-tune's first step: a run directory of its own
//! ```
//! Every write goes through a temp file and a rename, so a crash leaves the old file or
//! the new one. What each file holds, and its one reader and writer, is
//! `run::records`'s; the last checkpoints' progress is `checkpoint`'s.
use crate::error::IoContext;
use crate::fsutil::{ensure_dir, write_atomic};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub const CONFIG: &str = "config.json";
pub const EVENTS: &str = "events.jsonl";
pub const PID: &str = "pid";
pub const STOP: &str = "STOP";
pub const TRAIN_STATE: &str = "train-state.json";
pub const TRAINED: &str = "trained.json";
pub const CALIBRATION: &str = "calibration.json";
pub const FEATURES: &str = "features.json";
pub const SUMMARY: &str = "summary.json";
pub const TIMINGS: &str = "timings.json";
pub const PROBE: &str = "probe";

/// Which network a checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// The head alone (Dropout -> `fc`), trained on cached features.
    Head,
    /// Body and head, trained on images.
    Model,
}

/// The tables a run writes, each as CSV and Parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Epochs,
    Steps,
    PerClass,
    Confusion,
    /// The logreg probe's lambda grid.
    Sweep,
    /// The test split, one row per image: true and predicted class.
    Predictions,
}

impl Table {
    pub fn stem(self) -> &'static str {
        match self {
            Table::Epochs => "epochs",
            Table::Steps => "steps",
            Table::PerClass => "per_class",
            Table::Confusion => "confusion",
            Table::Sweep => "sweep",
            Table::Predictions => "predictions",
        }
    }
}

/// A run directory. Cheap to clone; holds only its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Makes `runs_root/<UTC time>-<name>`; a numeric suffix keeps two runs started in
    /// the same second apart.
    pub fn create(runs_root: &Path, name: &str) -> Result<RunDir> {
        ensure_dir(runs_root)?;
        let stamp = utc_stamp(std::time::SystemTime::now());
        let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        for i in 0.. {
            let path = runs_root.join(if i == 0 { format!("{stamp}-{safe}") } else { format!("{stamp}-{safe}-{i}") });
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
            }
        }
        unreachable!()
    }

    /// An existing folder (or one about to be made by [`RunDir::ensure`]); no check.
    pub fn at(path: impl Into<PathBuf>) -> RunDir {
        RunDir { path: path.into() }
    }

    /// An existing run directory; names the path when it is not a folder.
    pub fn open(path: impl Into<PathBuf>) -> Result<RunDir> {
        let path = path.into();
        if !path.is_dir() {
            return Err(Error::data(&path, "not a run directory (it does not exist or is not a folder)"));
        }
        Ok(RunDir { path })
    }

    /// Creates the folder (and parents) if missing.
    pub fn ensure(self) -> Result<RunDir> {
        ensure_dir(&self.path)?;
        Ok(self)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder's own name (unique under its runs root, so it labels a run).
    pub fn name(&self) -> String {
        let full = self.path.canonicalize().unwrap_or_else(|_| self.path.clone());
        full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| self.path.display().to_string())
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn events(&self) -> PathBuf {
        self.file(EVENTS)
    }

    pub fn config_file(&self) -> PathBuf {
        self.file(CONFIG)
    }

    pub fn summary_file(&self) -> PathBuf {
        self.file(SUMMARY)
    }

    pub fn trained_file(&self) -> PathBuf {
        self.file(TRAINED)
    }

    pub fn calibration_file(&self) -> PathBuf {
        self.file(CALIBRATION)
    }

    pub fn train_state_file(&self) -> PathBuf {
        self.file(TRAIN_STATE)
    }

    pub fn features_file(&self) -> PathBuf {
        self.file(FEATURES)
    }

    pub fn timings_file(&self) -> PathBuf {
        self.file(TIMINGS)
    }

    /// `head-best.safetensors` or `model-best.safetensors`.
    pub fn best(&self, w: Weights) -> PathBuf {
        self.file(&format!("{}-best.safetensors", w.prefix()))
    }

    /// `head-last.safetensors` or `model-last.safetensors`.
    pub fn last(&self, w: Weights) -> PathBuf {
        self.file(&format!("{}-last.safetensors", w.prefix()))
    }

    /// `<stem>.csv` of a table (its Parquet twin sits beside it).
    pub fn table_csv(&self, t: Table) -> PathBuf {
        self.file(&format!("{}.csv", t.stem()))
    }

    pub fn table_parquet(&self, t: Table) -> PathBuf {
        self.file(&format!("{}.parquet", t.stem()))
    }

    /// Fine-tune's linear probe, a run directory inside this one.
    pub fn probe(&self) -> RunDir {
        RunDir::at(self.file(PROBE))
    }

    /// Records this process as the run's, for a dashboard in another terminal.
    pub fn write_pid(&self) -> Result<()> {
        write_atomic(&self.file(PID), std::process::id().to_string().as_bytes())
    }

    /// The pid a run recorded, if any.
    pub fn read_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.file(PID)).ok().and_then(|s| s.trim().parse().ok())
    }

    pub fn stop_file(&self) -> PathBuf {
        self.file(STOP)
    }

    /// Asks the run to stop gracefully (the training loop checks after each batch).
    pub fn request_stop(&self, who: &str) -> Result<()> {
        let path = self.stop_file();
        let text =
            format!("stop requested by {who} (pid {}) at t_ms {}\n", std::process::id(), crate::events::now_ms());
        std::fs::write(&path, text).ctx(|| format!("writing {}", path.display()))
    }

    pub fn stop_requested(&self) -> bool {
        self.stop_file().exists()
    }

    /// The text of `events.jsonl`, or `None` when the run has none.
    pub fn read_events_text(&self) -> Result<Option<String>> {
        let p = self.events();
        if !p.is_file() {
            return Ok(None);
        }
        std::fs::read_to_string(&p).ctx(|| format!("reading {}", p.display())).map(Some)
    }
}

impl Weights {
    fn prefix(self) -> &'static str {
        match self {
            Weights::Head => "head",
            Weights::Model => "model",
        }
    }
}

impl AsRef<Path> for RunDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// `YYYYmmdd-HHMMSS` in UTC.
fn utc_stamp(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_started_together_get_their_own_folders() {
        let root = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8).map(|_| s.spawn(|| RunDir::create(root.path(), "same").unwrap().path)).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let unique: std::collections::HashSet<_> = dirs.iter().collect();
        assert_eq!(unique.len(), 8, "{dirs:?}");
        assert!(dirs.iter().all(|d| d.is_dir()));
    }

    #[test]
    fn utc_stamp_is_calendar_correct() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_910_400 + 3661);
        assert_eq!(utc_stamp(t), "20261129-010101"); // date -u -d @1795914061
    }

    #[test]
    fn two_runs_in_one_second_get_two_folders_and_stop_is_seen() {
        let root = tempfile::tempdir().unwrap();
        let a = RunDir::create(root.path(), "a b").unwrap();
        let b = RunDir::create(root.path(), "a b").unwrap();
        assert_ne!(a, b);
        assert!(a.name().ends_with("-a_b") || a.name().contains("-a_b-"), "{}", a.name());
        assert!(!a.stop_requested());
        a.request_stop("a test").unwrap();
        assert!(a.stop_requested() && !b.stop_requested());
        assert_eq!(a.best(Weights::Head).file_name().unwrap(), "head-best.safetensors");
        assert_eq!(a.probe().last(Weights::Head), a.path().join("probe/head-last.safetensors"));
    }
}
