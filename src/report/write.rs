//! `report.md` plus its charts, for one run or a comparison of several.
use super::{Comparison, ComparisonBar, Figure, RunData};
use crate::cache::Cache;
use crate::fsutil::{ensure_dir, write_atomic};
use crate::train::Strategy;
use crate::{Error, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One row of the summary table. Kept as plain data so a dataframe can replace the
/// Markdown writer later without touching the loading.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub name: String,
    pub strategy: Option<String>,
    pub dataset: String,
    pub synthetic: bool,
    pub weights: String,
    pub pretrained: bool,
    pub image_size: Option<i64>,
    pub best_epoch: u32,
    /// What was chosen on the validation split: "epoch 7", "lambda 1.8e-4", "k 20".
    pub chosen: String,
    /// Milliseconds fitting the classifier (extraction not included), when recorded.
    pub train_ms: Option<u64>,
    /// Training ended early on a `STOP` request.
    pub stopped: bool,
    pub best_val_acc: f64,
    pub test_accuracy: f64,
    pub test_samples: usize,
}

/// One row per run, in the order given.
pub fn summary_rows(runs: &[RunData]) -> Vec<SummaryRow> {
    runs.iter()
        .map(|r| SummaryRow {
            name: r.name.clone(),
            strategy: r.summary.strategy.map(Strategy::name),
            dataset: r.summary.dataset.clone(),
            synthetic: r.summary.synthetic,
            weights: r.summary.weights.clone(),
            pretrained: r.summary.pretrained,
            image_size: r.image_size,
            best_epoch: r.summary.best_epoch,
            chosen: match &r.summary.probe {
                Some(crate::probe::ProbeResult::Logreg { lambda, .. }) => format!("lambda {lambda:.1e}"),
                Some(crate::probe::ProbeResult::Knn { k, temperature, .. }) => format!("k {k}, T {temperature}"),
                None => format!("epoch {}", r.summary.best_epoch),
            },
            train_ms: r.summary.train_ms,
            stopped: r.summary.stopped,
            best_val_acc: r.summary.best_val_acc,
            test_accuracy: r.summary.test_accuracy,
            test_samples: r.summary.test_samples,
        })
        .collect()
}

/// The rows as a Markdown table; synthetic data and random weights are flagged in bold.
pub fn summary_markdown(rows: &[SummaryRow]) -> String {
    // Eight narrow columns, so the table fits a book page: the image size goes with the
    // backbone.
    let mut s = String::from("| run | strategy | data | backbone | chosen on val | val acc | test acc | fit |\n");
    s += "|---|---|---|---|---:|---:|---:|---:|\n";
    for r in rows {
        let dataset = if r.synthetic { format!("{} **(SYNTHETIC)**", cell(&r.dataset)) } else { cell(&r.dataset) };
        let weights = if r.pretrained { cell(&r.weights) } else { format!("{} **(RANDOM)**", cell(&r.weights)) };
        let size = r.image_size.map(|s| format!("{s} px")).unwrap_or_else(|| "?".into());
        let strategy = r.strategy.as_deref().map(cell).unwrap_or_else(|| "?".into());
        let stopped = if r.stopped { " (stopped early)" } else { "" };
        let fit = r.train_ms.map(|ms| format!("{:.2} s", ms as f64 / 1e3)).unwrap_or_else(|| "?".into());
        let _ = writeln!(
            s,
            "| {} | {strategy} | {dataset} | {weights}, {size} | {}{stopped} | {:.2}% | {:.2}% (n={}) | {fit} |",
            cell(&r.name),
            cell(&r.chosen),
            r.best_val_acc * 100.0,
            r.test_accuracy * 100.0,
            r.test_samples
        );
    }
    s
}

/// The summary as a polars DataFrame (written as CSV and Parquet beside the report).
pub fn summary_frame(rows: &[SummaryRow]) -> Result<polars::prelude::DataFrame> {
    use polars::prelude::*;
    df!(
        "run" => rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "strategy" => rows.iter().map(|r| r.strategy.clone()).collect::<Vec<_>>(),
        "dataset" => rows.iter().map(|r| r.dataset.clone()).collect::<Vec<_>>(),
        "synthetic" => rows.iter().map(|r| r.synthetic).collect::<Vec<_>>(),
        "weights" => rows.iter().map(|r| r.weights.clone()).collect::<Vec<_>>(),
        "pretrained" => rows.iter().map(|r| r.pretrained).collect::<Vec<_>>(),
        "image_size" => rows.iter().map(|r| r.image_size).collect::<Vec<_>>(),
        "best_epoch" => rows.iter().map(|r| r.best_epoch).collect::<Vec<_>>(),
        "chosen" => rows.iter().map(|r| r.chosen.clone()).collect::<Vec<_>>(),
        "train_ms" => rows.iter().map(|r| r.train_ms).collect::<Vec<_>>(),
        "stopped" => rows.iter().map(|r| r.stopped).collect::<Vec<_>>(),
        "best_val_acc" => rows.iter().map(|r| r.best_val_acc).collect::<Vec<_>>(),
        "test_accuracy" => rows.iter().map(|r| r.test_accuracy).collect::<Vec<_>>(),
        "test_samples" => rows.iter().map(|r| r.test_samples as u64).collect::<Vec<_>>(),
    )
    .map_err(|e| Error::Table { path: "summary table".into(), reason: e.to_string() })
}

/// The run's test-split feature cache, when the run recorded one (`features.json`).
fn test_features(run_dir: &Path) -> Option<crate::features::FeatureSet> {
    let dirs = crate::run::records::FeatureDirs::read(&crate::rundir::RunDir::at(run_dir)).ok()?;
    crate::features::load_features(&dirs.test?).ok()
}

/// A table cell: pipes and newlines would break the row.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Writes charts (SVG + PNG) and `report.md` for `run_dirs` into `out`, or into the run
/// directory itself when there is one run and no `out`. Several runs also get a
/// comparison chart. Pictures of mistakes come from `cache` (never downloaded into it).
/// Returns the path of `report.md`.
pub fn write_report(run_dirs: &[PathBuf], out: Option<&Path>, cache: &Cache) -> Result<PathBuf> {
    let out = match (out, run_dirs) {
        (_, []) => return Err(Error::invalid("report", "no run directories given")),
        (Some(o), _) => o.to_path_buf(),
        (None, [one]) => one.clone(),
        (None, _) => return Err(Error::invalid("report", "several runs need an output directory (--out DIR)")),
    };
    let runs = run_dirs.iter().map(|d| RunData::load(d)).collect::<Result<Vec<_>>>()?;
    ensure_dir(&out)?;
    let mut md = String::from("# Run report\n\n");
    let (synthetic, random) = (runs.iter().any(|r| r.summary.synthetic), runs.iter().any(|r| !r.summary.pretrained));
    if synthetic {
        md += "> **Synthetic data**: rows marked SYNTHETIC were trained and tested on generated images; they show the pipeline working and are not CIFAR-10 results.\n\n";
    }
    if random {
        md += "> **Random weights**: rows marked RANDOM used a seeded random backbone; they are not transfer learning.\n\n";
    }
    let rows = summary_rows(&runs);
    md += &summary_markdown(&rows);
    crate::tables::write_frame(&mut summary_frame(&rows)?, &out, "summary")?;
    md += "\nThe same table as data: [summary.csv](summary.csv), `summary.parquet`.\n";
    md += "\n";
    if runs.len() > 1 {
        Figure::Comparison(&comparison(&runs)).save(&out, "comparison")?;
        md += "## Comparison\n\n";
        md += &image_link("Test accuracy by run", "comparison");
    }
    let stems = stems(&runs);
    for (run, stem) in runs.iter().zip(&stems) {
        let prefix = if runs.len() > 1 { format!("{stem}-") } else { String::new() };
        let _ = write!(
            md,
            "## {}{}\n\n{}\n\nFrom the run directory `{}`.\n\n",
            run.name,
            run.label().caveats(),
            run.summary.note,
            run.name
        );
        if let (Some(b), Some(f)) = (run.summary.balanced_accuracy, run.summary.macro_f1) {
            let _ = write!(
                md,
                "On the test split: accuracy {:.2}%, balanced accuracy {:.2}% (the mean of the classes' \
                 recalls), macro-F1 {:.3}.\n\n",
                run.summary.test_accuracy * 100.0,
                b * 100.0,
                f
            );
        }
        let curves = run.curves();
        let mut figs = vec![];
        if !run.epochs.is_empty() {
            figs.push(("Training curves", "curves", Figure::TrainingCurves(&curves)));
        }
        if let Some(sweep) = &run.sweep {
            figs.push(("Validation accuracy by L2 penalty", "sweep", Figure::Sweep(sweep)));
        }
        figs.push(("Confusion matrix", "confusion", Figure::Confusion(&run.confusion)));
        figs.push(("Per-class accuracy", "per-class", Figure::PerClassAccuracy(&run.confusion)));
        for (alt, name, fig) in figs {
            let stem = format!("{prefix}{name}");
            fig.save(&out, &stem)?;
            md += &image_link(alt, &stem);
        }
        if let Some(r) = &run.calibration {
            let c = &r.calibration;
            let stem = format!("{prefix}reliability");
            Figure::Reliability(r).save(&out, &stem)?;
            let _ = write!(
                md,
                "### Calibration\n\nTemperature scaling on the {} validation photos: the logits are divided by \
                 T = {:.3} before the softmax (predictions unchanged; `tlab predict` and the exported model do \
                 it). Expected calibration error (15 bins) {:.4} -> {:.4}, NLL {:.4} -> {:.4}.\n\n",
                c.samples, c.temperature, c.before.ece, c.after.ece, c.before.nll, c.after.nll
            );
            md += &image_link("Reliability diagram", &stem);
        }
        if let Some(set) = test_features(&run.dir) {
            let pca = super::Pca::from_feature_set(run.name.clone(), &set, 2000)?;
            let stem = format!("{prefix}pca");
            Figure::Pca(&pca).save(&out, &stem)?;
            md += &image_link("PCA of the test features", &stem);
        }
        md += "### Most confident mistakes\n\n";
        let gallery_stem = format!("{prefix}mistakes");
        md += &super::mistakes::gallery(&crate::rundir::RunDir::at(&run.dir), &out, &gallery_stem, 12, cache)?;
        if run.throughput.points.is_empty() {
            md += "No extraction throughput: the run recorded no extraction progress (features from the cache, a strategy trained on images, or no `events.jsonl`).\n\n";
        } else {
            let stem = format!("{prefix}throughput");
            Figure::Throughput(&run.throughput).save(&out, &stem)?;
            md += &image_link("Extraction throughput", &stem);
        }
    }
    let path = out.join("report.md");
    write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

/// Test accuracy by run; labels add the strategy and image size where runs differ in them.
pub fn comparison(runs: &[RunData]) -> Comparison {
    let differ = |f: &dyn Fn(&RunData) -> Option<String>| runs.iter().any(|r| f(r) != f(&runs[0]));
    let strategy = |r: &RunData| r.summary.strategy.map(Strategy::name);
    let size = |r: &RunData| r.image_size.map(|s| format!("{s} px"));
    let (by_strategy, by_size) = (differ(&strategy), differ(&size));
    let bars = runs
        .iter()
        .map(|r| {
            let mut details = vec![];
            if by_strategy {
                details.extend(strategy(r));
            }
            if by_size {
                details.extend(size(r));
            }
            let label =
                if details.is_empty() { r.name.clone() } else { format!("{} ({})", r.name, details.join(", ")) };
            ComparisonBar { label, test_accuracy: r.summary.test_accuracy, synthetic: r.summary.synthetic }
        })
        .collect();
    Comparison { by: "run".into(), bars }
}

/// File-name-safe, unique stems for the runs' charts.
fn stems(runs: &[RunData]) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for r in runs {
        let base: String =
            r.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let mut stem = base.clone();
        let mut i = 2;
        while out.contains(&stem) {
            stem = format!("{base}-{i}");
            i += 1;
        }
        out.push(stem);
    }
    out
}

fn image_link(alt: &str, stem: &str) -> String {
    format!("![{alt}]({stem}.svg)\n\nPNG: [{stem}.png]({stem}.png)\n\n")
}
