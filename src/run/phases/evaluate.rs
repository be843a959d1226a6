//! Evaluation: the best checkpoint of a trained run on the test split; the tables and
//! `summary.json`.
use super::super::config::{stage, RunConfig, RunSummary};
use super::super::records::{load_head, write_table, FeatureDirs, RecordedConfig, Timings, Trained};
use super::super::setup::open_backbone;
use super::extract_cfg;
use crate::cache::Cache;
use crate::data::{self, Split};
use crate::events::{EventSink, RunEvent};
use crate::features::extract_features;
use crate::metrics::Confusion;
use crate::probe;
use crate::rundir::{RunDir, Table, Weights};
use crate::tables;
use crate::train::{evaluate, evaluate_images, Evaluation, ImageModel, Strategy};
use crate::Result;

/// Evaluates a trained run directory on the test split.
pub(crate) fn evaluate_in(dir: &RunDir, cache: &Cache, sink: &mut dyn EventSink) -> Result<RunSummary> {
    let cfg = RecordedConfig::read(dir)?.config;
    let t = Trained::read(dir)?;
    let device = cfg.device.resolve();
    let ev = stage(sink, "evaluate", |s| {
        let mut test = data::open(&t.data, Split::Test, cache, s)?;
        if let Some(n) = cfg.limit {
            test = test.take(n);
        }
        let ev = if cfg.strategy.on_images() {
            evaluate_model(&cfg, &t, &test, dir, device)?
        } else if cfg.strategy == Strategy::Knn {
            evaluate_knn(&cfg, &t, &test, dir, cache, device, s)?
        } else {
            evaluate_probe(&cfg, &t, &test, dir, cache, device, s)?
        };
        s.emit(&RunEvent::Evaluated { split: "test".into(), accuracy: ev.accuracy, samples: ev.labels.len() as u64 });
        test.warn_decode_failures(s);
        // One path a row: those that failed to decode have no row.
        let mut frame = tables::predictions_frame(test.used_paths().as_deref(), &ev, &t.classes)?;
        write_table(dir, Table::Predictions, &mut frame)?;
        Ok(ev)
    })?;
    let confusion = Confusion::new(&ev.labels, &ev.predictions, &t.classes);
    write_table(dir, Table::PerClass, &mut tables::per_class_frame(&confusion)?)?;
    write_table(dir, Table::Confusion, &mut tables::confusion_frame(&confusion)?)?;
    let expected = match cfg.strategy {
        s if s.is_convex_probe() => 0,
        s if s.on_images() => cfg.images.fit.epochs,
        _ => cfg.head.fit.epochs,
    };
    let timings = Timings::read(dir).ok();
    let summary = RunSummary {
        run_dir: dir.path().to_path_buf(),
        strategy: Some(cfg.strategy),
        stopped: t.stopped || t.epochs_run < expected as usize,
        probe: t.probe.clone(),
        train_ms: timings.map(|t| t.train_ms),
        dataset: t.dataset,
        synthetic: t.synthetic,
        weights: t.weights_label,
        pretrained: t.pretrained,
        best_epoch: t.best_epoch,
        best_val_acc: t.best_val_acc,
        test_accuracy: ev.accuracy,
        test_samples: ev.labels.len(),
        balanced_accuracy: Some(confusion.balanced_accuracy()),
        macro_f1: Some(confusion.macro_f1()),
        note: t.note,
    };
    summary.write(dir)?;
    Ok(summary)
}

/// Probe strategies: test features (a cache hit after the first time), the saved head.
fn evaluate_probe(
    cfg: &RunConfig,
    t: &Trained,
    test: &data::Dataset,
    dir: &RunDir,
    cache: &Cache,
    device: tch::Device,
    sink: &mut dyn EventSink,
) -> Result<Evaluation> {
    let ftest = test_features(cfg, t, test, dir, cache, device, sink)?;
    let head = load_head(dir, Some(ftest.dim()), t.classes.len() as i64, &cfg.head, device)?;
    evaluate(&head, &ftest.features.to_device(device), &ftest.labels)
}

/// The test split's features by the weights training used (a cache hit after the first
/// time), recorded in `features.json`.
fn test_features(
    cfg: &RunConfig,
    t: &Trained,
    test: &data::Dataset,
    dir: &RunDir,
    cache: &Cache,
    device: tch::Device,
    sink: &mut dyn EventSink,
) -> Result<crate::features::FeatureSet> {
    let used = RunConfig { weights: t.weights.clone(), offline_fallback: false, ..cfg.clone() };
    let backbone = open_backbone(&used, cache, device, sink)?;
    let ftest = extract_features(&backbone, test, &extract_cfg(cfg, t.tap), cache, sink)?;
    let mut dirs = FeatureDirs::read(dir).unwrap_or_default();
    dirs.test = Some(ftest.dir.clone());
    dirs.write(dir)?;
    Ok(ftest)
}

/// k-NN: the test split's features vote with every training row (train + validation).
fn evaluate_knn(
    cfg: &RunConfig,
    t: &Trained,
    test: &data::Dataset,
    dir: &RunDir,
    cache: &Cache,
    device: tch::Device,
    sink: &mut dyn EventSink,
) -> Result<Evaluation> {
    let Some(train_dir) = FeatureDirs::read(dir)?.train else {
        return Err(crate::Error::data(dir.features_file(), "names no training features, which k-NN votes with"));
    };
    let ftrain = crate::features::load_features(&train_dir)?;
    probe::check_finite(&ftrain.features, &ftrain.dir)?;
    let ftest = test_features(cfg, t, test, dir, cache, device, sink)?;
    probe::check_finite(&ftest.features, &ftest.dir)?;
    let classes = t.classes.len() as i64;
    let x = ftest.features.to_device(device);
    let votes = probe::knn::classify(&ftrain.features, &ftrain.labels, &x, classes, &cfg.probe.knn)?;
    let (accuracy, loss) = votes.score(&ftest.labels);
    Ok(Evaluation {
        loss,
        accuracy,
        predictions: Vec::<i64>::try_from(&votes.predictions.to_device(tch::Device::Cpu))?,
        confidence: Vec::<f64>::try_from(
            &votes.probabilities.amax(-1, false).to_kind(tch::Kind::Double).to_device(tch::Device::Cpu),
        )?,
        labels: Vec::<i64>::try_from(&ftest.labels)?,
    })
}

/// Image strategies: the best whole-model checkpoint on test images.
fn evaluate_model(
    cfg: &RunConfig,
    t: &Trained,
    test: &data::Dataset,
    dir: &RunDir,
    device: tch::Device,
) -> Result<Evaluation> {
    let pool = cfg.arch.pool(cfg.extract.pool)?;
    let mut model = ImageModel::with_pool(cfg.arch, pool, t.classes.len() as i64, cfg.images.dropout, device);
    crate::checkpoint::load(&mut model.vs, &dir.best(Weights::Model))?;
    let idx: Vec<i64> = (0..test.len() as i64).collect();
    evaluate_images(&model, test, &idx, &cfg.extract.preprocess, cfg.images.fit.batch_size)
}
