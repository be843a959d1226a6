//! The two halves of a run: training (fetch, extract, train) and evaluation on the test
//! split from the saved best checkpoint. `tlab run` does both; `tlab train` and
//! `tlab evaluate` one each, in separate processes if the user likes.
use super::config::{run_note, stage, RecordedConfig, RunConfig, RunSummary, WeightsChoice};
use super::setup::{open_backbone, open_data, parse_device};
use crate::cache::Cache;
use crate::data::{self, DataSpec, Split};
use crate::events::{EventSink, RunEvent};
use crate::features::{extract_features, ExtractConfig};
use crate::metrics::Confusion;
use crate::models::{Backbone, Tap};
use crate::rundir::{self, FeatureDirs, RunDir, Table, Weights};
use crate::tables;
use crate::train::{
    evaluate, evaluate_images, train_head, train_on_images, Evaluation, Head, ImageModel, Strategy, TrainOutcome,
};
use crate::Result;
use serde::{Deserialize, Serialize};

/// What training leaves for evaluation: `trained.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Trained {
    /// The data and weights actually used (after any offline fallback).
    data: DataSpec,
    weights: WeightsChoice,
    tap: Tap,
    classes: Vec<String>,
    dataset: String,
    synthetic: bool,
    weights_label: String,
    pretrained: bool,
    note: String,
    best_epoch: u32,
    best_val_acc: f64,
    epochs_run: usize,
}

/// The layer a probe strategy reads: `earlier-layer` moves the default to layer3.
fn probe_tap(cfg: &RunConfig) -> Tap {
    match (cfg.strategy, cfg.extract.tap) {
        (Strategy::EarlierLayer, Tap::Layer4) => Tap::Layer3,
        (_, t) => t,
    }
}

pub(crate) fn train_in(cfg: &RunConfig, dir: &RunDir, cache: &Cache, sink: &mut dyn EventSink) -> Result<Trained> {
    let device = parse_device(&cfg.device)?;
    let (train, backbone) = stage(sink, "fetch", |s| {
        let (train, _test) = open_data(cfg, cache, s)?;
        let backbone = match cfg.strategy {
            // The control: the same network, never pretrained.
            Strategy::Scratch => Backbone::random(cfg.arch, cfg.head.seed, device),
            _ => open_backbone(cfg, cache, device, s)?,
        };
        Ok((train, backbone))
    })?;
    let note = run_note(train.synthetic, backbone.weights.pretrained);
    sink.emit(&RunEvent::RunStarted { name: cfg.name.clone(), synthetic: train.synthetic, note: note.clone() });
    dir.write_json(rundir::CONFIG, &RecordedConfig::new(cfg, &train, &backbone))?;
    let classes = train.classes.len() as i64;
    let outcome = if cfg.strategy.on_images() {
        train_images(cfg, &backbone, &train, dir, classes, sink)?
    } else {
        train_probe(cfg, &backbone, &train, dir, cache, classes, sink)?
    };
    dir.write_table(Table::Epochs, &mut tables::epochs_frame(&outcome.history)?)?;
    dir.write_table(Table::Steps, &mut tables::steps_frame(&outcome.steps)?)?;
    let trained = Trained {
        data: if train.synthetic && !cfg.data.is_synthetic() {
            DataSpec::synthetic_default()
        } else {
            cfg.data.clone()
        },
        weights: match (&cfg.weights, backbone.weights.pretrained) {
            (w, true) => w.clone(),
            (WeightsChoice::Random { seed }, false) => WeightsChoice::Random { seed: *seed },
            (_, false) => WeightsChoice::Random { seed: cfg.head.seed },
        },
        tap: probe_tap(cfg),
        classes: train.classes.clone(),
        dataset: train.describe(),
        synthetic: train.synthetic,
        weights_label: backbone.weights.label.clone(),
        pretrained: backbone.weights.pretrained,
        note,
        best_epoch: outcome.best_epoch,
        best_val_acc: outcome.best_val_acc,
        epochs_run: outcome.history.len(),
    };
    dir.write_json(rundir::TRAINED, &trained)?;
    Ok(trained)
}

fn extract_cfg(cfg: &RunConfig, tap: Tap) -> ExtractConfig {
    ExtractConfig { tap, ..cfg.extract.clone() }
}

/// The linear probe (and earlier-layer): training features into the cache, head on them.
fn train_probe(
    cfg: &RunConfig,
    backbone: &Backbone,
    train: &data::Dataset,
    dir: &RunDir,
    cache: &Cache,
    classes: i64,
    sink: &mut dyn EventSink,
) -> Result<TrainOutcome> {
    let ecfg = extract_cfg(cfg, probe_tap(cfg));
    let ftrain = stage(sink, "extract", |s| extract_features(backbone, train, &ecfg, cache, s))?;
    dir.write_json(rundir::FEATURES, &FeatureDirs { train: Some(ftrain.dir.clone()), test: None })?;
    let (_head, outcome) =
        stage(sink, "train", |s| train_head(&ftrain.features, &ftrain.labels, classes, &cfg.head, dir, s))?;
    Ok(outcome)
}

/// Fine-tune (after a linear probe), pretrained-init and scratch: trained on images.
fn train_images(
    cfg: &RunConfig,
    backbone: &Backbone,
    train: &data::Dataset,
    dir: &RunDir,
    classes: i64,
    sink: &mut dyn EventSink,
) -> Result<TrainOutcome> {
    let mut model = ImageModel::new(cfg.arch, classes, cfg.images.dropout, backbone.vs.device());
    copy_body(&backbone.vs, &model.vs)?;
    if cfg.strategy == Strategy::FineTune {
        sink.info("fine-tune: training the head on frozen features first");
        let probe_dir = dir.probe().ensure()?;
        let ecfg = extract_cfg(cfg, Tap::Layer4);
        // The probe's small feature cache lives in the run: the body is about to change.
        let ftrain =
            stage(sink, "extract", |s| extract_features(backbone, train, &ecfg, &Cache::new(probe_dir.path()), s))?;
        let _ = train_head(&ftrain.features, &ftrain.labels, classes, &cfg.head, &probe_dir, sink)?;
        model.load_head(&probe_dir.best(Weights::Head))?;
    }
    let pre = cfg.extract.preprocess;
    stage(sink, "train", |s| train_on_images(&mut model, train, &pre, &cfg.images, dir, s))
}

/// Copies every body tensor of `from` into the same-named variable of `to`.
fn copy_body(from: &tch::nn::VarStore, to: &tch::nn::VarStore) -> Result<()> {
    let src = from.variables();
    tch::no_grad(|| {
        for (name, mut dst) in to.variables() {
            if let Some(s) = src.get(&name) {
                dst.f_copy_(s)?;
            }
        }
        Ok(())
    })
}

/// Evaluates a trained run directory on the test split.
pub(crate) fn evaluate_in(dir: &RunDir, cache: &Cache, sink: &mut dyn EventSink) -> Result<RunSummary> {
    let cfg = dir.read_config()?;
    let t: Trained = dir.read_json(rundir::TRAINED)?;
    let device = parse_device(&cfg.device)?;
    let ev = stage(sink, "evaluate", |s| {
        let mut test = data::open(&t.data, Split::Test, cache, s)?;
        if let Some(n) = cfg.limit {
            test = test.take(n);
        }
        let ev = if cfg.strategy.on_images() {
            evaluate_model(&cfg, &t, &test, dir, device)?
        } else {
            evaluate_probe(&cfg, &t, &test, dir, cache, device, s)?
        };
        s.emit(&RunEvent::Evaluated { split: "test".into(), accuracy: ev.accuracy, samples: ev.labels.len() as u64 });
        Ok(ev)
    })?;
    let confusion = Confusion::new(&ev.labels, &ev.predictions, &t.classes);
    dir.write_table(Table::PerClass, &mut tables::per_class_frame(&confusion)?)?;
    dir.write_table(Table::Confusion, &mut tables::confusion_frame(&confusion)?)?;
    let expected = if cfg.strategy.on_images() { cfg.images.epochs } else { cfg.head.epochs };
    let summary = RunSummary {
        run_dir: dir.path().to_path_buf(),
        strategy: Some(cfg.strategy),
        stopped: t.epochs_run < expected as usize,
        dataset: t.dataset,
        synthetic: t.synthetic,
        weights: t.weights_label,
        pretrained: t.pretrained,
        best_epoch: t.best_epoch,
        best_val_acc: t.best_val_acc,
        test_accuracy: ev.accuracy,
        test_samples: ev.labels.len(),
        note: t.note,
    };
    dir.write_json(rundir::SUMMARY, &summary)?;
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
    let used = RunConfig { weights: t.weights.clone(), offline_fallback: false, ..cfg.clone() };
    let backbone = open_backbone(&used, cache, device, sink)?;
    let ftest = extract_features(&backbone, test, &extract_cfg(cfg, t.tap), cache, sink)?;
    let mut head = Head::new(ftest.dim(), t.classes.len() as i64, cfg.head.dropout, device);
    crate::train::fit::load(&mut head.vs, &dir.best(Weights::Head))?;
    let mut dirs = dir.read_feature_dirs().unwrap_or_default();
    dirs.test = Some(ftest.dir.clone());
    dir.write_json(rundir::FEATURES, &dirs)?;
    evaluate(&head, &ftest.features, &ftest.labels)
}

/// Image strategies: the best whole-model checkpoint on test images.
fn evaluate_model(
    cfg: &RunConfig,
    t: &Trained,
    test: &data::Dataset,
    dir: &RunDir,
    device: tch::Device,
) -> Result<Evaluation> {
    let mut model = ImageModel::new(cfg.arch, t.classes.len() as i64, cfg.images.dropout, device);
    crate::train::fit::load(&mut model.vs, &dir.best(Weights::Model))?;
    let idx: Vec<i64> = (0..test.len() as i64).collect();
    evaluate_images(&model, test, &idx, &cfg.extract.preprocess, cfg.images.batch_size)
}
