//! `--calibrate`: after training, the best checkpoint's logits on the validation split
//! (cut again exactly as training cut it) fit one temperature ([`crate::calibration`]),
//! written to `calibration.json`; predict and export read it from there.
use super::super::config::RunConfig;
use super::super::records::{load_head, FeatureDirs};
use crate::calibration::Calibration;
use crate::data::Dataset;
use crate::events::EventSink;
use crate::rundir::{RunDir, Weights};
use crate::train::{ImageModel, Split, Strategy};
use crate::{Error, Result};
use tch::{Device, Tensor};

/// Fits and writes the temperature of the trained run in `dir` on its validation rows:
/// of `train`'s images for the image strategies, of its cached features for the probes.
pub(crate) fn calibrate_in(
    cfg: &RunConfig,
    train: &Dataset,
    dir: &RunDir,
    sink: &mut dyn EventSink,
) -> Result<Calibration> {
    if cfg.strategy == Strategy::Knn {
        let reason = "k-NN's probabilities are its neighbours' votes, with no logits to scale; \
                      calibration takes the head, logreg and image strategies";
        return Err(Error::invalid("--calibrate", reason));
    }
    let device = cfg.device.resolve();
    let classes = train.classes.len() as i64;
    let (logits, labels) = if cfg.strategy.on_images() {
        // The split training drew: the same seed, labels and settings.
        tch::manual_seed(cfg.images.fit.seed);
        let split = Split::new(&train.labels(), &cfg.images.fit_config())?;
        let mut model = ImageModel::new(cfg.arch, classes, cfg.images.dropout, device);
        crate::checkpoint::load(&mut model.vs, &dir.best(Weights::Model))?;
        let (mut logits, mut labels) = (vec![], vec![]);
        for rows in split.val.chunks(cfg.images.fit.batch_size.max(1) as usize) {
            let (imgs, y) = train.gather(rows)?;
            let x = cfg.extract.preprocess.apply(&imgs, device)?;
            logits.push(tch::no_grad(|| model.forward_t(&x, false, false)).to_device(Device::Cpu));
            labels.push(y);
        }
        (Tensor::cat(&logits, 0), Tensor::cat(&labels, 0))
    } else {
        let Some(features) = FeatureDirs::read(dir)?.train else {
            return Err(Error::data(dir.features_file(), "names no training features to calibrate on"));
        };
        let f = crate::features::load_features(&features)?;
        let cfg = &super::on_features(cfg, &f);
        tch::manual_seed(cfg.head.fit.seed);
        let split = Split::new(&f.labels, &cfg.head.fit_config())?;
        let head = load_head(dir, Some(f.dim()), classes, &cfg.head, device)?;
        let val = Tensor::from_slice(&split.val);
        let x = f.features.index_select(0, &val).to_device(device);
        (tch::no_grad(|| head.forward_t(&x, false)).to_device(Device::Cpu), f.labels.index_select(0, &val))
    };
    let cal = Calibration::fit(&logits, &labels)?;
    cal.write(dir)?;
    // Without a mistake, a smaller temperature always lowers the NLL: the fit runs
    // towards 0 and every probability towards 1, which the split cannot contradict.
    let wrong = logits.argmax(-1, false).ne_tensor(&labels.to_device(logits.device())).sum(tch::Kind::Int64);
    if wrong.int64_value(&[]) == 0 {
        sink.warn(&format!(
            "calibration: the {} validation images hold no mistake, so nothing bounds the temperature ({:.3}); \
             its probabilities are as sure as that split; a larger or harder validation split calibrates better",
            cal.samples, cal.temperature
        ));
    }
    sink.info(&format!(
        "calibrated on {} validation images: temperature {:.3}; ECE {:.4} -> {:.4}, NLL {:.4} -> {:.4}",
        cal.samples, cal.temperature, cal.before.ece, cal.after.ece, cal.before.nll, cal.after.nll
    ));
    Ok(cal)
}
