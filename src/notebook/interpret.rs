//! Notebook 9's helpers: why a run said what it said (Grad-CAM galleries of
//! [`crate::explain::explain_files`]' heatmaps), how sure it is (a calibration table), and
//! how it fares on a class with few photos (an imbalanced copy of a folder, its warnings,
//! and the scores that see the small class). Each reads what the library wrote.
use super::{escape, Html};
use crate::calibration::Calibration;
use crate::classifier::Classifier;
use crate::events::{parse_line, LogLevel, RunEvent};
use crate::explain::Explained;
use crate::report::RunData;
use crate::rundir::RunDir;
use crate::{Error, Result};
use base64::Engine;
use polars::prelude::{df, DataFrame};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The first `right` photos `model` classifies as their folder's class and the first
/// `wrong` it does not (the folder `.../<class>/photo.jpg` is the truth), in `photos`'
/// order: `(right, wrong)`. Photos that cannot be read are left out.
pub fn right_and_wrong(
    model: &Classifier,
    photos: &[PathBuf],
    right: usize,
    wrong: usize,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut r, mut w) = (vec![], vec![]);
    for p in model.predict(photos, 1, 32)? {
        let Some((top, _)) = p.top.first() else { continue };
        let ok = folder_class(&p.path).is_some_and(|c| c == *top);
        match ok {
            true if r.len() < right => r.push(p.path),
            false if w.len() < wrong => w.push(p.path),
            _ => {}
        }
    }
    Ok((r, w))
}

/// The class folder a photo sits in: `ants` for `photos/test/ants/1.jpg`.
pub fn folder_class(photo: &Path) -> Option<String> {
    photo.parent()?.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// The heatmaps `explain_files` wrote, inline, each captioned with its photo's folder
/// (the truth), the class its map explains and the probability the model gave that class.
/// Small maps are enlarged to 128 px with square pixels; a row without a heatmap shows its error.
pub fn heatmap_gallery(rows: &[Explained]) -> Result<Html> {
    let mut html = String::from("<div style=\"display:flex;flex-wrap:wrap;gap:8px;font:12px sans-serif\">\n");
    let mut plain = vec![];
    for r in rows {
        let truth = folder_class(&r.path).unwrap_or_default();
        let (Some(file), Some(class), Some(p)) = (&r.heatmap, &r.class, r.probability) else {
            let e = r.error.as_deref().unwrap_or("no heatmap");
            let _ = writeln!(html, "<p>{}: {}</p>", escape(&r.path.display().to_string()), escape(e));
            plain.push(format!("{}: {e}", r.path.display()));
            continue;
        };
        let caption = format!("in {truth}/ · map of {class} ({:.0}%)", p * 100.0);
        let bytes = std::fs::read(file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
        let (w, _) =
            image::image_dimensions(file).map_err(|e| Error::data(file, format!("not a readable PNG: {e}")))?;
        let show = w.max(128);
        let _ = writeln!(
            html,
            "<figure style=\"margin:0;width:{show}px\"><img width=\"{show}\" style=\"image-rendering:pixelated\" \
             src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>",
            base64::engine::general_purpose::STANDARD.encode(bytes),
            escape(&caption)
        );
        plain.push(caption);
    }
    html += "</div>";
    Ok(Html { html, plain: format!("[{} heatmaps: {}]", rows.len(), plain.join("; ")) })
}

/// Temperature, ECE and NLL before and after scaling: two rows.
pub fn calibration_table(c: &Calibration) -> Result<DataFrame> {
    df!(
        "probabilities" => ["before (T = 1)", "after"],
        "temperature" => [1.0, c.temperature],
        "ECE (15 bins)" => [c.before.ece, c.after.ece],
        "NLL" => [c.before.nll, c.after.nll],
    )
    .map_err(|e| Error::Table { path: "calibration table".into(), reason: e.to_string() })
}

/// One row a run: accuracy, balanced accuracy, macro-F1 and the lowest class recall on
/// the test split, under the label given with each run.
pub fn class_weight_table(runs: &[(&str, &RunData)]) -> Result<DataFrame> {
    let col = |f: &dyn Fn(&RunData) -> Option<f64>| runs.iter().map(|(_, r)| f(r)).collect::<Vec<_>>();
    let worst = |r: &RunData| r.confusion.per_class_accuracy().into_iter().flatten().reduce(f64::min);
    df!(
        "class weight" => runs.iter().map(|(l, _)| l.to_string()).collect::<Vec<_>>(),
        "accuracy" => col(&|r| Some(r.summary.test_accuracy)),
        "balanced accuracy" => col(&|r| r.summary.balanced_accuracy),
        "macro-F1" => col(&|r| r.summary.macro_f1),
        "lowest class recall" => col(&worst),
    )
    .map_err(|e| Error::Table { path: "class weight table".into(), reason: e.to_string() })
}

/// The warnings a run logged (its `events.jsonl`), in order.
pub fn run_warnings(run: &RunData) -> Result<Vec<String>> {
    let text = RunDir::open(&run.dir)?.read_events_text()?.unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(parse_line)
        .filter_map(|e| match e.event {
            RunEvent::Log { level: LogLevel::Warn, message } => Some(message),
            _ => None,
        })
        .collect())
}

/// A copy of the image folder `root` (`train/<class>/...`, `test/...`) in `out` where
/// `train/<class>` keeps only its first `keep` photos (sorted by name); every other
/// photo is kept, so the test split stays as it was. Files are hard-linked where the
/// file system allows, copied otherwise. Written once: an `out` that exists is returned.
pub fn imbalanced_copy(root: &Path, out: &Path, class: &str, keep: usize) -> Result<PathBuf> {
    if out.is_dir() {
        return Ok(out.to_path_buf());
    }
    if !root.join("train").join(class).is_dir() {
        return Err(Error::data(root.join("train"), format!("has no class folder `{class}`")));
    }
    // Written beside, then renamed: a half-written folder is never taken for a whole one.
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = out.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for split in sorted_dirs(root)? {
        for dir in sorted_dirs(&split)? {
            let cut = split.file_name().is_some_and(|s| s == "train") && dir.file_name().is_some_and(|c| c == class);
            let to = tmp.join(split.file_name().unwrap_or_default()).join(dir.file_name().unwrap_or_default());
            crate::fsutil::ensure_dir(&to)?;
            let files = sorted_entries(&dir)?.into_iter().filter(|p| p.is_file());
            for f in files.take(if cut { keep } else { usize::MAX }) {
                let dest = to.join(f.file_name().unwrap_or_default());
                if std::fs::hard_link(&f, &dest).is_err() {
                    std::fs::copy(&f, &dest).map_err(|e| Error::io(format!("copying {}", f.display()), e))?;
                }
            }
        }
    }
    match std::fs::rename(&tmp, out) {
        Ok(()) => Ok(out.to_path_buf()),
        // Another process finished first: theirs is whole.
        Err(_) if out.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(out.to_path_buf())
        }
        Err(e) => Err(Error::io(format!("writing {}", out.display()), e)),
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// Sub-folders of `dir`, hidden ones left out (as the folder reader does).
fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::{Bin, Scores};

    #[test]
    fn the_imbalanced_copy_cuts_one_training_class_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("photos");
        for (split, class, n) in [("train", "ants", 5), ("train", "bees", 5), ("test", "ants", 3)] {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                std::fs::write(d.join(format!("{i}.jpg")), [i as u8]).unwrap();
            }
        }
        let out = imbalanced_copy(&root, &tmp.path().join("small"), "ants", 2).unwrap();
        let count = |p: &str| std::fs::read_dir(out.join(p)).unwrap().count();
        assert_eq!((count("train/ants"), count("train/bees"), count("test/ants")), (2, 5, 3));
        // The first photos by name, with their bytes.
        assert_eq!(std::fs::read(out.join("train/ants/1.jpg")).unwrap(), [1]);
        assert!(!out.join("train/ants/2.jpg").exists());
        assert!(imbalanced_copy(&root, &tmp.path().join("other"), "wasps", 2)
            .unwrap_err()
            .to_string()
            .contains("wasps"));
    }

    #[test]
    fn the_gallery_embeds_each_heatmap_and_names_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let png = tmp.path().join("001-a-ants.png");
        let img = tch::Tensor::zeros([3, 8, 8], (tch::Kind::Uint8, tch::Device::Cpu));
        std::fs::write(&png, crate::explain::png(&img).unwrap()).unwrap();
        let row = |heatmap: Option<PathBuf>, error: Option<&str>| Explained {
            path: PathBuf::from("photos/test/bees/a.jpg"),
            class: heatmap.as_ref().map(|_| "ants".to_string()),
            probability: heatmap.as_ref().map(|_| 0.875),
            heatmap,
            error: error.map(String::from),
        };
        let g = heatmap_gallery(&[row(Some(png), None), row(None, Some("cannot decode"))]).unwrap();
        assert!(g.html.contains("in bees/ · map of ants (88%)"), "{}", g.html);
        assert!(g.html.contains("width=\"128\"") && g.html.matches("data:image/png;base64,").count() == 1);
        assert!(g.html.contains("photos/test/bees/a.jpg: cannot decode") && g.plain.contains("cannot decode"));
    }

    #[test]
    fn the_calibration_table_puts_before_and_after_side_by_side() {
        let s = |ece, nll| Scores { ece, nll, bins: vec![Bin { count: 1, confidence: 0.5, accuracy: 1.0 }] };
        let c = Calibration { temperature: 2.5, samples: 10, before: s(0.2, 1.1), after: s(0.05, 0.9) };
        let t = calibration_table(&c).unwrap();
        assert_eq!(t.height(), 2);
        let ece = t.column("ECE (15 bins)").unwrap().f64().unwrap().to_vec();
        assert_eq!(ece, [Some(0.2), Some(0.05)]);
        assert_eq!(t.column("temperature").unwrap().f64().unwrap().get(1), Some(2.5));
    }
}
