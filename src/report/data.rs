//! One run directory, read through [`RunDir`], into what the charts draw. The records are
//! the run's own types (`RunSummary`, `EpochMetrics`, `metrics::Confusion`); charts add
//! only a [`RunLabel`].
use super::RunLabel;
use crate::events::{parse_line, RunEvent};
use crate::metrics;
use crate::run::records::{self, RecordedConfig};
use crate::run::RunSummary;
use crate::rundir::RunDir;
use crate::train::EpochMetrics;
use crate::Result;
use std::path::{Path, PathBuf};

/// Input of [`super::training_curves`].
#[derive(Debug, Clone)]
pub struct Curves {
    pub run: RunLabel,
    pub epochs: Vec<EpochMetrics>,
    /// Drawn as a dashed horizontal line.
    pub test_accuracy: Option<f64>,
    /// The epoch whose head was kept; its validation point is ringed.
    pub best_epoch: Option<u32>,
}

/// A confusion matrix with the run it belongs to: input of the heatmap and per-class bars.
#[derive(Debug, Clone)]
pub struct ConfusionChart {
    pub run: RunLabel,
    pub matrix: metrics::Confusion,
}

impl std::ops::Deref for ConfusionChart {
    type Target = metrics::Confusion;
    fn deref(&self) -> &metrics::Confusion {
        &self.matrix
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

/// Everything a report needs from one run directory.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    /// The directory's name: unique, so it labels the run in comparisons.
    pub name: String,
    pub summary: RunSummary,
    pub epochs: Vec<EpochMetrics>,
    pub confusion: ConfusionChart,
    /// Empty when the run has no `events.jsonl`.
    pub throughput: Throughput,
    /// Preprocessing size from `config.json`, when recorded.
    pub image_size: Option<i64>,
    /// The logreg probe's lambda sweep (`sweep.csv`), when the run has one.
    pub sweep: Option<super::Sweep>,
    /// The temperature scaling of a `--calibrate` run (`calibration.json`).
    pub calibration: Option<super::Reliability>,
}

impl RunData {
    /// Reads a finished run directory; errors name the directory or file at fault.
    pub fn load(dir: &Path) -> Result<RunData> {
        let rd = RunDir::open(dir)?;
        let summary = RunSummary::read(&rd)?;
        let name = rd.name();
        let run = RunLabel { name: name.clone(), synthetic: summary.synthetic, pretrained: summary.pretrained };
        // The convex probes fit without epochs.
        let convex = summary.strategy.is_some_and(|s| s.is_convex_probe());
        let epochs = if convex { vec![] } else { records::read_epochs(&rd)? };
        let chosen = match &summary.probe {
            Some(crate::probe::ProbeResult::Logreg { lambda, .. }) => Some(*lambda),
            _ => None,
        };
        let sweep = records::read_sweep(&rd)?.map(|points| super::Sweep {
            run: run.clone(),
            points,
            chosen,
            test_accuracy: Some(summary.test_accuracy),
        });
        let confusion = ConfusionChart { run: run.clone(), matrix: records::read_confusion(&rd)? };
        let throughput = match rd.read_events_text()? {
            Some(text) => parse_throughput(&text, run),
            None => Throughput { run, points: vec![], cache_hits: vec![] },
        };
        let image_size = RecordedConfig::read(&rd).ok().map(|r| r.config.extract.preprocess.size);
        let calibration = crate::calibration::Calibration::read(&rd)?
            .map(|calibration| super::Reliability { run: confusion.run.clone(), calibration });
        Ok(RunData {
            dir: dir.to_path_buf(),
            name,
            summary,
            epochs,
            confusion,
            throughput,
            image_size,
            sweep,
            calibration,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_table_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let rd = RunDir::at(dir.path());
        std::fs::write(
            rd.table_csv(crate::rundir::Table::Epochs),
            "epoch,train_loss,train_acc,val_loss,val_acc\n1,0.5,x,0.4,0.8\n",
        )
        .unwrap();
        let e = records::read_epochs(&rd).unwrap_err().to_string();
        assert!(e.contains("epochs.csv") && e.contains("train_acc"), "{e}");
        std::fs::write(rd.table_csv(crate::rundir::Table::Confusion), "true\\pred,a,b\na,1,2\n").unwrap();
        let c = records::read_confusion(&rd).unwrap_err().to_string();
        assert!(c.contains("confusion.csv") && c.contains("1 rows for 2 classes"), "{c}");
    }

    #[test]
    fn per_class_accuracy_is_row_recall() {
        let c = metrics::Confusion { classes: vec!["a".into(), "b".into()], counts: vec![vec![3, 1], vec![0, 0]] };
        assert_eq!(c.per_class_accuracy(), vec![Some(0.75), None]);
    }
}
