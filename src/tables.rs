//! Results as polars DataFrames, written as CSV and Parquet (atomically).
use crate::error::IoContext;
use crate::metrics::Confusion;
use crate::train::EpochMetrics;
use crate::{Error, Result};
use polars::prelude::*;
use std::path::Path;

fn polars_err(what: &str, e: PolarsError) -> Error {
    Error::Table { path: what.into(), reason: e.to_string() }
}

/// One row per epoch: epoch, train_loss, train_acc, val_loss, val_acc.
pub fn epochs_frame(history: &[EpochMetrics]) -> Result<DataFrame> {
    df!(
        "epoch" => history.iter().map(|m| m.epoch).collect::<Vec<_>>(),
        "train_loss" => history.iter().map(|m| m.train_loss).collect::<Vec<_>>(),
        "train_acc" => history.iter().map(|m| m.train_acc).collect::<Vec<_>>(),
        "val_loss" => history.iter().map(|m| m.val_loss).collect::<Vec<_>>(),
        "val_acc" => history.iter().map(|m| m.val_acc).collect::<Vec<_>>(),
    )
    .map_err(|e| polars_err("epochs table", e))
}

/// One row per step: epoch, step, loss.
pub fn steps_frame(steps: &[(u32, u64, f64)]) -> Result<DataFrame> {
    df!(
        "epoch" => steps.iter().map(|s| s.0).collect::<Vec<_>>(),
        "step" => steps.iter().map(|s| s.1).collect::<Vec<_>>(),
        "loss" => steps.iter().map(|s| s.2).collect::<Vec<_>>(),
    )
    .map_err(|e| polars_err("steps table", e))
}

/// `sweep.csv`: one row per lambda of the logreg probe, in fitting order.
pub fn sweep_frame(rows: &[crate::probe::SweepRow]) -> Result<DataFrame> {
    let f = |g: fn(&crate::probe::SweepRow) -> f64| rows.iter().map(g).collect::<Vec<f64>>();
    df!(
        "lambda" => f(|r| r.lambda),
        "sklearn_c" => f(|r| r.c),
        "val_acc" => f(|r| r.val_acc),
        "val_loss" => f(|r| r.val_loss),
        "objective" => f(|r| r.objective),
        "iterations" => rows.iter().map(|r| r.iterations as u64).collect::<Vec<u64>>(),
        "evaluations" => rows.iter().map(|r| r.evaluations as u64).collect::<Vec<u64>>(),
        "converged" => rows.iter().map(|r| r.converged).collect::<Vec<bool>>(),
        "grad_max" => f(|r| r.grad_max),
    )
    .map_err(|e| polars_err("sweep table", e))
}

/// One row per class: class, precision, recall, f1, support.
pub fn per_class_frame(c: &Confusion) -> Result<DataFrame> {
    let s = c.per_class();
    df!(
        "class" => s.iter().map(|x| x.class.clone()).collect::<Vec<_>>(),
        "precision" => s.iter().map(|x| x.precision).collect::<Vec<_>>(),
        "recall" => s.iter().map(|x| x.recall).collect::<Vec<_>>(),
        "f1" => s.iter().map(|x| x.f1).collect::<Vec<_>>(),
        "support" => s.iter().map(|x| x.support).collect::<Vec<_>>(),
    )
    .map_err(|e| polars_err("per-class table", e))
}

/// One row per test item: index, image file (empty for in-memory data), true and
/// predicted class, and the probability the model gave its prediction.
pub fn predictions_frame(
    paths: Option<&[std::path::PathBuf]>,
    ev: &crate::train::Evaluation,
    classes: &[String],
) -> Result<DataFrame> {
    let (labels, predicted) = (&ev.labels, &ev.predictions);
    let name = |c: &i64| classes.get(*c as usize).cloned().unwrap_or_else(|| c.to_string());
    let images: Vec<String> = match paths {
        Some(p) => p.iter().map(|p| p.display().to_string()).collect(),
        None => vec![String::new(); labels.len()],
    };
    df!(
        "index" => (0..labels.len() as u64).collect::<Vec<_>>(),
        "image" => images,
        "true" => labels.iter().map(name).collect::<Vec<_>>(),
        "predicted" => predicted.iter().map(name).collect::<Vec<_>>(),
        "probability" => ev.confidence.clone(),
    )
    .map_err(|e| polars_err("predictions table", e))
}

/// Rows are true classes (column `true`), one count column per predicted class.
pub fn confusion_frame(c: &Confusion) -> Result<DataFrame> {
    let mut cols: Vec<Column> = vec![Column::new("true".into(), c.classes.clone())];
    for (j, name) in c.classes.iter().enumerate() {
        cols.push(Column::new(name.as_str().into(), c.counts.iter().map(|r| r[j]).collect::<Vec<u64>>()));
    }
    DataFrame::new(c.classes.len(), cols).map_err(|e| polars_err("confusion table", e))
}

/// One row per class of `data`: class, images, share (of the split).
pub fn class_balance(data: &crate::data::Dataset) -> Result<DataFrame> {
    let labels = Vec::<i64>::try_from(&data.labels())?;
    let mut counts = vec![0u64; data.classes.len()];
    for &l in &labels {
        if let Some(c) = usize::try_from(l).ok().and_then(|i| counts.get_mut(i)) {
            *c += 1;
        }
    }
    let n = labels.len().max(1) as f64;
    df!(
        "class" => data.classes.clone(),
        "images" => counts.clone(),
        "share" => counts.iter().map(|&c| c as f64 / n).collect::<Vec<_>>(),
    )
    .map_err(|e| polars_err("class balance", e))
}

/// Writes `<stem>.csv` and `<stem>.parquet` into `dir`, each through a temp file.
pub fn write_frame(df: &mut DataFrame, dir: &Path, stem: &str) -> Result<()> {
    let csv = dir.join(format!("{stem}.csv"));
    write_via_temp(&csv, |f| CsvWriter::new(f).finish(df).map_err(|e| polars_err(stem, e)))?;
    let pq = dir.join(format!("{stem}.parquet"));
    write_via_temp(&pq, |f| ParquetWriter::new(f).finish(df).map(|_| ()).map_err(|e| polars_err(stem, e)))
}

fn write_via_temp(path: &Path, write: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    crate::fsutil::write_via_temp(path, |tmp| {
        let mut f = std::fs::File::create(tmp).ctx(|| format!("creating {}", tmp.display()))?;
        write(&mut f)
    })
}

/// Reads a CSV written by [`write_frame`].
pub fn read_csv(path: &Path) -> Result<DataFrame> {
    CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(|e| polars_err(&path.display().to_string(), e))
}

/// A numeric column as f64, naming it when missing or not numeric.
fn f64_column(df: &DataFrame, name: &str) -> std::result::Result<Vec<f64>, String> {
    let col = df.column(name).map_err(|_| format!("no `{name}` column"))?;
    let col = col.cast(&DataType::Float64).map_err(|e| format!("column `{name}`: {e}"))?;
    let ca = col.f64().map_err(|e| format!("column `{name}`: {e}"))?;
    ca.iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| format!("column `{name}` line {}: empty or not a number", i + 2)))
        .collect()
}

/// `sweep.csv` read back: `(lambda, val_acc)` per row.
pub fn sweep_from_frame(df: &DataFrame) -> std::result::Result<Vec<(f64, f64)>, String> {
    Ok(f64_column(df, "lambda")?.into_iter().zip(f64_column(df, "val_acc")?).collect())
}

/// [`epochs_frame`] read back.
pub fn epochs_from_frame(df: &DataFrame) -> std::result::Result<Vec<EpochMetrics>, String> {
    let [epoch, tl, ta, vl, va] =
        ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"].map(|c| f64_column(df, c));
    let (epoch, tl, ta, vl, va) = (epoch?, tl?, ta?, vl?, va?);
    (0..df.height())
        .map(|i| {
            if epoch[i] < 0.0 || epoch[i].fract() != 0.0 {
                return Err(format!("line {}: epoch {} is not a whole number", i + 2, epoch[i]));
            }
            Ok(EpochMetrics {
                epoch: epoch[i] as u32,
                train_loss: tl[i],
                train_acc: ta[i],
                val_loss: vl[i],
                val_acc: va[i],
            })
        })
        .collect()
}

/// [`steps_frame`] read back: `(epoch, step, loss)` per row.
pub fn steps_from_frame(df: &DataFrame) -> std::result::Result<Vec<(u32, u64, f64)>, String> {
    let [epoch, step, loss] = ["epoch", "step", "loss"].map(|c| f64_column(df, c));
    let (epoch, step, loss) = (epoch?, step?, loss?);
    (0..df.height())
        .map(|i| match (whole(epoch[i]), whole(step[i])) {
            (Some(e), Some(s)) => Ok((e as u32, s, loss[i])),
            _ => Err(format!("line {}: epoch {} or step {} is not a whole number", i + 2, epoch[i], step[i])),
        })
        .collect()
}

/// `x` as a count, when it is one.
fn whole(x: f64) -> Option<u64> {
    (x >= 0.0 && x.fract() == 0.0).then_some(x as u64)
}

/// [`confusion_frame`] read back: the first column names the true class (`true`, or
/// `true\pred` in older runs), one count column per predicted class, in the same order.
pub fn confusion_from_frame(df: &DataFrame) -> std::result::Result<Confusion, String> {
    let cols = df.columns();
    let Some((first, rest)) = cols.split_first() else { return Err("no columns".into()) };
    if rest.is_empty() {
        return Err(format!("header `{}` names no classes", first.name()));
    }
    let classes: Vec<String> = rest.iter().map(|c| c.name().to_string()).collect();
    let rows = first.cast(&DataType::String).map_err(|e| format!("first column: {e}"))?;
    let rows: Vec<String> =
        rows.str().map_err(|e| e.to_string())?.iter().map(|v| v.unwrap_or("").to_string()).collect();
    if rows.len() != classes.len() {
        return Err(format!("{} rows for {} classes", rows.len(), classes.len()));
    }
    if rows != classes {
        return Err(format!("row classes {rows:?} differ from column classes {classes:?}"));
    }
    let mut counts = vec![vec![0u64; classes.len()]; classes.len()];
    for (j, c) in rest.iter().enumerate() {
        for (i, v) in f64_column(df, c.name())?.into_iter().enumerate() {
            if v < 0.0 || v.fract() != 0.0 {
                return Err(format!("column `{}` line {}: {v} is not a count", c.name(), i + 2));
            }
            counts[i][j] = v as u64;
        }
    }
    Ok(Confusion { classes, counts })
}
