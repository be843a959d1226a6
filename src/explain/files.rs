//! Heatmaps of image files into a folder: one PNG per image and an index,
//!
//! ```text
//! OUT_DIR/
//! ├── 001-<stem>-<class>.png   the photo at the model's input size, its map over it
//! └── heatmaps.csv             image, class, probability, heatmap, error (one row an image)
//! ```
use crate::classifier::Classifier;
use crate::Result;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The index `explain_files` writes beside the heatmaps.
pub const INDEX_FILE: &str = "heatmaps.csv";

/// One image's heatmap, or why it has none.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Explained {
    pub path: PathBuf,
    /// The class explained and the probability the model gave it; `None` on error.
    pub class: Option<String>,
    pub probability: Option<f64>,
    pub heatmap: Option<PathBuf>,
    pub error: Option<String>,
}

/// Writes a Grad-CAM heatmap of each image into `out` (created) for `class`, or for each
/// image's top class, `batch` images at a time. An image that cannot be read is a row
/// with its error and the others are still explained; a class the model does not have
/// is an error naming the classes it has.
pub fn explain_files(
    clf: &Classifier,
    paths: &[PathBuf],
    class: Option<&str>,
    out: &Path,
    batch: usize,
) -> Result<Vec<Explained>> {
    let class = class.map(|name| clf.class_index(name)).transpose()?;
    crate::fsutil::ensure_dir(out)?;
    let mut rows: Vec<Explained> = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch.max(1)) {
        crate::interrupt::check(|| format!("{} of {} images were explained", rows.len(), paths.len()))?;
        let mut ok: Vec<(usize, Tensor)> = Vec::new();
        for p in chunk {
            let row = Explained { path: p.clone(), class: None, probability: None, heatmap: None, error: None };
            match clf.decode(p) {
                Ok(x) => ok.push((rows.len(), x)),
                Err(e) => {
                    rows.push(Explained { error: Some(e.to_string()), ..row });
                    continue;
                }
            }
            rows.push(row);
        }
        if ok.is_empty() {
            continue;
        }
        let x = Tensor::stack(&ok.iter().map(|(_, t)| t.shallow_clone()).collect::<Vec<_>>(), 0);
        let cam = clf.explain(&x, class)?;
        let probs = clf.calibrated(&cam.logits).softmax(-1, Kind::Double);
        for (i, (row, image)) in ok.iter().enumerate() {
            let c = cam.classes[i];
            let name = &clf.meta.classes[c];
            let file = out.join(file_name(*row, &rows[*row].path, name));
            crate::fsutil::write_atomic(&file, &super::heatmap_png(image, &cam.maps.get(i as i64))?)?;
            let r = &mut rows[*row];
            r.class = Some(name.clone());
            r.probability = Some(probs.double_value(&[i as i64, c as i64]));
            r.heatmap = Some(file);
        }
    }
    crate::fsutil::write_atomic(&out.join(INDEX_FILE), index_csv(&rows).as_bytes())?;
    Ok(rows)
}

/// `001-<stem>-<class>.png`: numbered, so photos of the same name in two folders differ.
fn file_name(i: usize, path: &Path, class: &str) -> String {
    let safe =
        |s: &str| s.chars().map(|c| if c.is_alphanumeric() || "-_".contains(c) { c } else { '_' }).collect::<String>();
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{:03}-{}-{}.png", i + 1, safe(&stem), safe(class))
}

fn index_csv(rows: &[Explained]) -> String {
    let field =
        |s: &str| if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.into() };
    let mut out = String::from("image,class,probability,heatmap,error\n");
    for r in rows {
        let heatmap = r.heatmap.as_ref().and_then(|h| h.file_name()).map(|n| n.to_string_lossy().into_owned());
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            field(&r.path.display().to_string()),
            field(r.class.as_deref().unwrap_or("")),
            r.probability.map(|p| format!("{p:.6}")).unwrap_or_default(),
            field(heatmap.as_deref().unwrap_or("")),
            // One line an image, whatever the decoder said.
            field(&r.error.as_deref().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" "))
        );
    }
    out
}
