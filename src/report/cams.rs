//! The mistakes gallery's second picture: where the model looked when it made each
//! mistake (Grad-CAM of the predicted class, [`crate::explain`]).
use super::mistakes::Mistake;
use crate::cache::Cache;
use crate::classifier::Classifier;
use crate::data::{self, Split};
use crate::preprocess::Preprocess;
use crate::run::records::{RecordedConfig, Trained};
use crate::run::WeightsChoice;
use crate::rundir::RunDir;
use crate::{Error, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// `[3, side, side]` u8 heatmaps of the predicted class over each mistake's picture. An
/// error when the run has no model to explain (k-NN), or its backbone is not in `cache`:
/// a report never downloads.
pub(crate) fn heatmaps(dir: &RunDir, mistakes: &[Mistake], cache: &Cache, side: i64) -> Result<Vec<Tensor>> {
    let cfg = RecordedConfig::read(dir)?.config;
    let t = Trained::read(dir)?;
    // Said without the run's path: reports are published (the book).
    if cfg.strategy == crate::train::Strategy::Knn {
        return Err(Error::invalid(
            "run",
            "a k-NN run has no weights to explain (Grad-CAM takes the head, logreg and image strategies)",
        ));
    }
    if let (false, WeightsChoice::Pretrained { variant }) = (cfg.strategy.on_images(), &t.weights) {
        let entry = crate::models::WeightsEntry::find(cfg.arch, *variant)?;
        if entry.cached_path(cache).is_none() {
            return Err(Error::invalid(
                "weights",
                format!("{} are not in the cache, and a report downloads nothing", entry.label()),
            ));
        }
    }
    let clf = Classifier::from_run(dir, cache, Device::Cpu)?;
    let pictures = pictures(dir, mistakes, cache, &clf.meta.preprocess)?;
    let thumb = Preprocess { size: side, ..Default::default() };
    let s = clf.meta.preprocess.size;
    mistakes
        .iter()
        .zip(pictures)
        .map(|(m, x)| {
            let cam = clf.explain(&x.unsqueeze(0), Some(clf.class_index(&m.predicted)?))?;
            let o = crate::explain::overlay(&x, &cam.maps.get(0)).to_kind(Kind::Float).unsqueeze(0);
            Ok(thumb.resize(&o, s, s)?.get(0).round().clamp(0.0, 255.0).to_kind(Kind::Uint8))
        })
        .collect()
}

/// The mistakes' pictures as `pre` sizes them: `[3, S, S]` f32 in 0..=255 each, from
/// their files, or from the dataset the run recorded when it is in memory.
pub(crate) fn pictures(dir: &RunDir, mistakes: &[Mistake], cache: &Cache, pre: &Preprocess) -> Result<Vec<Tensor>> {
    if mistakes.iter().all(|m| !m.image.is_empty()) {
        return mistakes
            .iter()
            .map(|m| data::folder::decode_sized(Path::new(&m.image), pre, data::folder::DEFAULT_MAX_PIXELS))
            .collect();
    }
    let t = Trained::read(dir)?;
    // The cache the caller was handed, and no download: a report only reads.
    let test = data::open_local(&t.data, Split::Test, cache)?;
    let idx: Vec<i64> = mistakes.iter().map(|m| m.index as i64).collect();
    let (imgs, _) = test.gather(&idx)?;
    let x = pre.resize(&imgs.to_kind(Kind::Float), imgs.size()[2], imgs.size()[3])?;
    Ok((0..idx.len() as i64).map(|i| x.get(i)).collect())
}
