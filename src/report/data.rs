//! Reading one run directory (`summary.json`, `epochs.csv`, `confusion.csv`,
//! `events.jsonl`, `config.json`) into the plain structs the charts draw.
use super::RunLabel;
use crate::error::IoContext;
use crate::events::{parse_line, RunEvent};
use crate::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One line of `epochs.csv`; accuracies are fractions in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochRow {
    pub epoch: u32,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
}

/// Input of [`super::training_curves`].
#[derive(Debug, Clone)]
pub struct Curves {
    pub run: RunLabel,
    pub epochs: Vec<EpochRow>,
    /// Drawn as a dashed horizontal line.
    pub test_accuracy: Option<f64>,
    /// The epoch whose head was kept; its validation point is ringed.
    pub best_epoch: Option<u32>,
}

/// A confusion matrix: `counts[true][pred]`. Input of the heatmap and per-class bars.
#[derive(Debug, Clone)]
pub struct Confusion {
    pub run: RunLabel,
    pub classes: Vec<String>,
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// Recall of each class (diagonal / row sum); `None` for a class with no samples.
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let n: u64 = row.iter().sum();
                (n > 0).then(|| row.get(i).copied().unwrap_or(0) as f64 / n as f64)
            })
            .collect()
    }
}

/// One `extraction_progressed` event: the running mean rate at `t_s` seconds into the run.
#[derive(Debug, Clone, PartialEq)]
pub struct ThroughputPoint {
    pub split: String,
    pub t_s: f64,
    pub images_per_s: f64,
}

/// Input of [`super::throughput`]. Empty when the features came from the cache.
#[derive(Debug, Clone)]
pub struct Throughput {
    pub run: RunLabel,
    pub points: Vec<ThroughputPoint>,
    /// Splits whose features were a cache hit (no extraction, so no points).
    pub cache_hits: Vec<String>,
}

/// The parts of `summary.json` a report shows. Read leniently (unknown fields ignored,
/// newer fields optional) so runs written by older and newer versions all load.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunInfo {
    pub dataset: String,
    pub synthetic: bool,
    pub weights: String,
    pub pretrained: bool,
    pub best_epoch: u32,
    pub best_val_acc: f64,
    pub test_accuracy: f64,
    pub test_samples: usize,
    #[serde(default)]
    pub note: String,
    /// e.g. "linear-probe"; absent in runs from before strategies existed.
    #[serde(default)]
    pub strategy: Option<String>,
    /// A `STOP` request ended training early.
    #[serde(default)]
    pub stopped: bool,
}

/// Everything a report needs from one run directory.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    /// The directory's name: unique, so it labels the run in comparisons.
    pub name: String,
    pub summary: RunInfo,
    pub epochs: Vec<EpochRow>,
    pub confusion: Confusion,
    /// Empty when the run has no `events.jsonl`.
    pub throughput: Throughput,
    /// Preprocessing size from `config.json`, when recorded.
    pub image_size: Option<i64>,
}

impl RunData {
    /// Reads a finished run directory; errors name the directory or file at fault.
    pub fn load(dir: &Path) -> Result<RunData> {
        if !dir.is_dir() {
            return Err(Error::data(dir, "not a run directory (it does not exist or is not a folder)"));
        }
        let summary_path = dir.join("summary.json");
        if !summary_path.is_file() {
            return Err(Error::data(dir, "no summary.json: not a finished run directory (did the run fail?)"));
        }
        let summary: RunInfo = crate::fsutil::read_json(&summary_path)?;
        let name = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let name =
            name.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
        let run = RunLabel { name: name.clone(), synthetic: summary.synthetic, pretrained: summary.pretrained };
        let epochs = parse_epochs(&dir.join("epochs.csv"), &read_text(&dir.join("epochs.csv"))?)?;
        let confusion =
            parse_confusion(&dir.join("confusion.csv"), &read_text(&dir.join("confusion.csv"))?, run.clone())?;
        let events = dir.join("events.jsonl");
        let throughput = if events.is_file() {
            parse_throughput(&read_text(&events)?, run)
        } else {
            Throughput { run, points: vec![], cache_hits: vec![] }
        };
        let image_size = read_image_size(&dir.join("config.json"));
        Ok(RunData { dir: dir.to_path_buf(), name, summary, epochs, confusion, throughput, image_size })
    }

    pub fn label(&self) -> RunLabel {
        self.confusion.run.clone()
    }

    /// Training curves with the test accuracy and best epoch from `summary.json`.
    pub fn curves(&self) -> Curves {
        Curves {
            run: self.label(),
            epochs: self.epochs.clone(),
            test_accuracy: Some(self.summary.test_accuracy),
            best_epoch: Some(self.summary.best_epoch),
        }
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).ctx(|| format!("reading {}", path.display()))
}

/// Parses `epochs.csv` (header `epoch,train_loss,train_acc,val_loss,val_acc`).
pub(crate) fn parse_epochs(path: &Path, text: &str) -> Result<Vec<EpochRow>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    if header.split(',').map(unquote).ne(["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]) {
        return Err(Error::data(path, format!("unexpected header `{header}`")));
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let bad = || Error::data(path, format!("line {}: expected 5 numbers, got `{line}`", i + 2));
            let f: Vec<f64> =
                line.split(',').map(|s| unquote(s).parse::<f64>()).collect::<Result<_, _>>().map_err(|_| bad())?;
            match f[..] {
                [e, tl, ta, vl, va] if e >= 0.0 => {
                    Ok(EpochRow { epoch: e as u32, train_loss: tl, train_acc: ta, val_loss: vl, val_acc: va })
                }
                _ => Err(bad()),
            }
        })
        .collect()
}

/// A CSV cell without surrounding spaces and quotes.
fn unquote(cell: &str) -> &str {
    let c = cell.trim();
    c.strip_prefix('"').and_then(|c| c.strip_suffix('"')).unwrap_or(c)
}

/// Parses `confusion.csv`: header `true\pred,<classes>` (or `true,<classes>`), then
/// `<class>,<counts>` per row. Class names holding commas are not supported.
pub(crate) fn parse_confusion(path: &Path, text: &str, run: RunLabel) -> Result<Confusion> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    let classes: Vec<String> = header.split(',').skip(1).map(|s| unquote(s).to_string()).collect();
    if classes.is_empty() {
        return Err(Error::data(path, format!("header `{header}` names no classes")));
    }
    let mut counts = Vec::with_capacity(classes.len());
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let row: Option<Vec<u64>> = cells.iter().skip(1).map(|c| unquote(c).parse().ok()).collect();
        match row {
            Some(row) if row.len() == classes.len() => counts.push(row),
            _ => {
                let why = format!("line {}: expected a class name and {} counts, got `{line}`", i + 2, classes.len());
                return Err(Error::data(path, why));
            }
        }
    }
    if counts.len() != classes.len() {
        return Err(Error::data(path, format!("{} rows for {} classes", counts.len(), classes.len())));
    }
    Ok(Confusion { run, classes, counts })
}

/// Extraction rates over time from `events.jsonl`; time counts from the first event.
/// Unknown or malformed lines are skipped, as every events reader does.
pub(crate) fn parse_throughput(text: &str, run: RunLabel) -> Throughput {
    let envelopes: Vec<_> = text.lines().filter_map(parse_line).collect();
    let t0 = envelopes.first().map(|e| e.t_ms).unwrap_or(0);
    let mut points = vec![];
    let mut cache_hits = vec![];
    for env in envelopes {
        match env.event {
            RunEvent::ExtractionProgressed { split, images_per_s, .. } => {
                points.push(ThroughputPoint { split, t_s: env.t_ms.saturating_sub(t0) as f64 / 1e3, images_per_s });
            }
            RunEvent::ExtractionFinished { split, cache_hit: true, .. } => cache_hits.push(split),
            _ => {}
        }
    }
    Throughput { run, points, cache_hits }
}

/// `config.extract.preprocess.size` from `config.json`; optional, so any problem is `None`.
fn read_image_size(path: &Path) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v.pointer("/config/extract/preprocess/size")?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_csv_names_file_and_line() {
        let p = Path::new("r/epochs.csv");
        let e = parse_epochs(p, "epoch,train_loss,train_acc,val_loss,val_acc\n1,0.5,x,0.4,0.8\n").unwrap_err();
        assert!(e.to_string().contains("r/epochs.csv") && e.to_string().contains("line 2"), "{e}");
        let c = parse_confusion(Path::new("c.csv"), "true\\pred,a,b\na,1,2\n", RunLabel::new("r")).unwrap_err();
        assert!(c.to_string().contains("1 rows for 2 classes"), "{c}");
    }

    #[test]
    fn per_class_accuracy_is_row_recall() {
        let c = Confusion {
            run: RunLabel::new("r"),
            classes: vec!["a".into(), "b".into()],
            counts: vec![vec![3, 1], vec![0, 0]],
        };
        assert_eq!(c.per_class_accuracy(), vec![Some(0.75), None]);
    }
}
