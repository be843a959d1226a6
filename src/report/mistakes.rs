//! The most confident mistakes of a run's test split (fastai's "top losses"): read from
//! `predictions.csv`, shown as thumbnails with the true class, the prediction and the
//! probability the model gave it, and beside each, where the model looked (Grad-CAM of
//! its prediction, `cams.rs`).
use crate::cache::Cache;
use crate::rundir::{RunDir, Table};
use crate::{Error, Result};
use std::fmt::Write as _;
use std::path::Path;
use tch::Tensor;

/// One wrong prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Mistake {
    pub index: usize,
    /// The image file, for folder datasets; empty for in-memory data.
    pub image: String,
    pub truth: String,
    pub predicted: String,
    pub probability: f64,
}

/// Thumbnails' side in pixels.
const THUMB: i64 = 96;

/// The `max` wrong predictions with the highest probability, most confident first;
/// `None` when the run has no `predictions.csv` (runs from before it existed).
pub fn most_confident(dir: &RunDir, max: usize) -> Result<Option<Vec<Mistake>>> {
    let path = dir.table_csv(Table::Predictions);
    if !path.exists() {
        return Ok(None);
    }
    let df = crate::tables::read_csv(&path)?;
    let bad = |reason: String| Error::Table { path: path.clone(), reason };
    let strings = |name: &str| -> Result<Vec<String>> {
        let col = df.column(name).map_err(|_| bad(format!("no `{name}` column")))?;
        let col = col.cast(&polars::prelude::DataType::String).map_err(|e| bad(e.to_string()))?;
        Ok(col.str().map_err(|e| bad(e.to_string()))?.iter().map(|v| v.unwrap_or("").to_string()).collect())
    };
    let (image, truth, predicted) = (strings("image")?, strings("true")?, strings("predicted")?);
    let prob = strings("probability")?;
    let mut wrong: Vec<Mistake> = (0..truth.len())
        .filter(|&i| truth[i] != predicted[i])
        .map(|i| Mistake {
            index: i,
            image: image[i].clone(),
            truth: truth[i].clone(),
            predicted: predicted[i].clone(),
            probability: prob[i].parse().unwrap_or(f64::NAN),
        })
        .collect();
    wrong.sort_by(|a, b| b.probability.total_cmp(&a.probability).then(a.index.cmp(&b.index)));
    wrong.truncate(max);
    Ok(Some(wrong))
}

/// Writes the gallery's thumbnails as `<stem>-NN.png` into `out` and returns its Markdown.
/// Pictures come from the image files, or from the dataset the run recorded when it is in
/// memory (synthetic, or CIFAR-10 already in `cache`: a report never downloads); when neither can be read, the table is
/// given without them and says so.
pub fn gallery(dir: &RunDir, out: &Path, stem: &str, max: usize, cache: &Cache) -> Result<String> {
    let Some(mistakes) = most_confident(dir, max)? else {
        return Ok("No predictions table (a run from before `predictions.csv`): no gallery of mistakes.\n\n".into());
    };
    if mistakes.is_empty() {
        return Ok("No mistakes on the test split.\n\n".into());
    }
    let pictures = thumbnails(dir, &mistakes, cache);
    let cams = pictures.as_ref().ok().map(|_| super::cams::heatmaps(dir, &mistakes, cache, THUMB));
    let with_cams = matches!(cams, Some(Ok(_)));
    let mut md = String::from(if with_cams {
        "| image | where it looked (Grad-CAM) | true class | predicted | probability |\n|---|---|---|---|---:|\n"
    } else {
        "| image | true class | predicted | probability |\n|---|---|---|---:|\n"
    });
    let mut missing = None;
    for (k, m) in mistakes.iter().enumerate() {
        let cell = match &pictures {
            Ok(p) => {
                let name = format!("{stem}-{:02}.png", k + 1);
                crate::fsutil::write_atomic(&out.join(&name), &crate::explain::png(&p[k])?)?;
                format!("![test image {}]({name})", m.index)
            }
            Err(e) => {
                missing = Some(e.to_string());
                format!("#{}", m.index)
            }
        };
        let cam = match &cams {
            Some(Ok(c)) => {
                let name = format!("{stem}-{:02}-cam.png", k + 1);
                crate::fsutil::write_atomic(&out.join(&name), &crate::explain::png(&c[k])?)?;
                format!(" ![Grad-CAM of {}]({name}) |", m.predicted)
            }
            _ => String::new(),
        };
        let _ = writeln!(md, "| {cell} |{cam} {} | {} | {:.1}% |", m.truth, m.predicted, m.probability * 100.0);
    }
    if let Some(e) = missing {
        let _ = writeln!(md, "\nThumbnails could not be made: {e}");
    }
    match cams {
        Some(Ok(_)) => md.push_str(
            "\nThe heatmaps show which parts of each photo raised the score of the predicted class \
             (red most); `tlab predict RUN IMAGES --explain DIR` draws them for any photo.\n",
        ),
        Some(Err(e)) => {
            let _ = writeln!(md, "\nNo heatmaps of the mistakes: {e}");
        }
        None => {}
    }
    md.push('\n');
    Ok(md)
}

/// `[3, THUMB, THUMB]` u8 pictures of the mistakes.
fn thumbnails(dir: &RunDir, mistakes: &[Mistake], cache: &Cache) -> Result<Vec<Tensor>> {
    let pre = crate::preprocess::Preprocess { size: THUMB, ..Default::default() };
    let x = super::cams::pictures(dir, mistakes, cache, &pre)?;
    Ok(x.iter().map(|x| x.round().clamp(0.0, 255.0).to_kind(tch::Kind::Uint8)).collect())
}
