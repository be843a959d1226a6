//! Training: fetch, extract, fit the strategy's classifier, and leave `trained.json`.
use super::super::config::{run_note, stage, RunConfig, WeightsChoice};
use super::super::records::{write_history, write_table, FeatureDirs, RecordedConfig, Timings, Trained};
use super::super::setup::{open_backbone, open_data};
use super::{extract_cfg, probe_tap};
use crate::cache::Cache;
use crate::data::{self, DataSpec};
use crate::events::{EventSink, RunEvent};
use crate::features::extract_features;
use crate::models::{Backbone, Tap};
use crate::probe::{self, ProbeResult};
use crate::rundir::{RunDir, Table, Weights};
use crate::tables;
use crate::train::{train_head, train_on_images, ImageModel, Strategy, TrainOutcome};
use crate::Result;
use std::time::Instant;

/// What the training step of any strategy leaves.
struct Fitted {
    outcome: TrainOutcome,
    probe: Option<ProbeResult>,
    stopped: bool,
}

pub(crate) fn train_in(cfg: &RunConfig, dir: &RunDir, cache: &Cache, sink: &mut dyn EventSink) -> Result<Trained> {
    // Before any download: a ViT's input must tile into patches, and only a ViT has a
    // class token to pool.
    cfg.arch.check_size(cfg.extract.preprocess.size)?;
    cfg.arch.pool(cfg.extract.pool)?;
    if cfg.images.layer_decay.is_some_and(|d| d != 1.0) && cfg.arch.patch().is_none() {
        let reason = format!("{} has no ladder of layers to decay over; it applies to ViTs", cfg.arch.name());
        return Err(crate::Error::invalid("--layer-decay", reason));
    }
    if cfg.strategy == Strategy::Knn && cfg.head.class_weight != crate::metrics::ClassWeight::None {
        let reason = "k-NN votes with its neighbours and has no loss to weigh; it applies to the head, logreg and \
                      the image strategies";
        return Err(crate::Error::invalid("--class-weight", reason));
    }
    let device = cfg.device.resolve();
    let (train, backbone) = stage(sink, "fetch", |s| {
        let (train, _test) = open_data(cfg, cache, s)?;
        let backbone = match cfg.strategy {
            // The control: the same network, never pretrained.
            Strategy::Scratch => Backbone::random(cfg.arch, cfg.head.fit.seed, device),
            _ => open_backbone(cfg, cache, device, s)?,
        };
        Ok((train, backbone))
    })?;
    // A given validation folder, then a warning if the split leaves a class unvalidated.
    let cfg = &with_given_val(cfg, train.val_from);
    warn_split(cfg, &train, sink)?;
    let note = run_note(&train.kind_label(), backbone.weights.pretrained);
    sink.emit(&RunEvent::RunStarted { name: cfg.name.clone(), synthetic: train.synthetic, note: note.clone() });
    RecordedConfig::new(cfg, &train, &backbone).write(dir)?;
    let classes = train.classes.len() as i64;
    let mut train_ms = 0;
    let Fitted { outcome, probe, stopped } = if cfg.strategy.on_images() {
        train_images(cfg, &backbone, &train, dir, classes, &mut train_ms, sink)?
    } else if cfg.strategy.is_convex_probe() {
        train_convex(cfg, &backbone, &train, dir, cache, classes, &mut train_ms, sink)?
    } else {
        train_probe(cfg, &backbone, &train, dir, cache, classes, &mut train_ms, sink)?
    };
    train.warn_decode_failures(sink);
    if !cfg.strategy.is_convex_probe() {
        write_history(dir, &outcome)?;
    }
    Timings { train_ms }.write(dir)?;
    let trained = Trained {
        data: if train.synthetic && !cfg.data.is_synthetic() {
            DataSpec::synthetic_default()
        } else {
            cfg.data.clone()
        },
        weights: match (&cfg.weights, backbone.weights.pretrained) {
            (w, true) => w.clone(),
            (WeightsChoice::Random { seed }, false) => WeightsChoice::Random { seed: *seed },
            (_, false) => WeightsChoice::Random { seed: cfg.head.fit.seed },
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
        stopped,
        probe,
        train_samples: outcome.train_samples,
        val_samples: outcome.val_samples,
    };
    trained.write(dir)?;
    if cfg.calibrate {
        super::calibrate::calibrate_in(cfg, &train, dir, sink)?;
    }
    Ok(trained)
}

/// `cfg` with the dataset's given validation set (an image folder's `val/`), if any.
fn with_given_val(cfg: &RunConfig, val_from: Option<usize>) -> RunConfig {
    let mut cfg = cfg.clone();
    cfg.head.fit.val_from = val_from;
    cfg.images.fit.val_from = val_from;
    cfg
}

/// Warns when the largest class has more than 3x the images of the smallest: accuracy
/// then hides how the small class fares.
fn warn_imbalance(labels: &[i64], classes: &[String], cfg: &RunConfig, sink: &mut dyn EventSink) {
    let mut counts = vec![0usize; classes.len()];
    for &y in labels.iter().filter(|&&y| (0..classes.len() as i64).contains(&y)) {
        counts[y as usize] += 1;
    }
    let (Some(big), Some(small)) =
        ((0..counts.len()).max_by_key(|&i| counts[i]), (0..counts.len()).min_by_key(|&i| counts[i]))
    else {
        return;
    };
    if counts[big] > 3 * counts[small] {
        let advice = match cfg.head.class_weight {
            crate::metrics::ClassWeight::None => {
                "; --class-weight balanced weighs the classes evenly (every strategy but k-NN)"
            }
            _ => "",
        };
        sink.warn(&format!(
            "the classes are imbalanced: `{}` has {} images, `{}` only {} (more than 3x); watch balanced accuracy \
             and macro-F1 in summary.json{advice}",
            classes[big], counts[big], classes[small], counts[small]
        ));
    }
}

/// Warns when the validation split training will use lacks a class (the same draw: the
/// same seed before the same call).
fn warn_split(cfg: &RunConfig, train: &data::Dataset, sink: &mut dyn EventSink) -> Result<()> {
    let fit = if cfg.strategy.on_images() { cfg.images.fit_config() } else { cfg.head.fit_config() };
    tch::manual_seed(fit.fit.seed);
    let labels = train.labels();
    warn_imbalance(&Vec::<i64>::try_from(&labels)?, &train.classes, cfg, sink);
    crate::train::Split::new(&labels, &fit)?.warn_unvalidated(&labels, &train.classes, &fit, sink)
}

/// `f` as the train stage, its time added to `ms`.
fn timed<T>(sink: &mut dyn EventSink, ms: &mut u64, f: impl FnOnce(&mut dyn EventSink) -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let out = stage(sink, "train", f)?;
    *ms += t.elapsed().as_millis() as u64;
    Ok(out)
}

/// The training split's features, from the cache (extracted first when missing).
fn train_features(
    cfg: &RunConfig,
    backbone: &Backbone,
    train: &data::Dataset,
    dir: &RunDir,
    cache: &Cache,
    sink: &mut dyn EventSink,
) -> Result<crate::features::FeatureSet> {
    let ecfg = extract_cfg(cfg, probe_tap(cfg));
    let ftrain = stage(sink, "extract", |s| extract_features(backbone, train, &ecfg, cache, s))?;
    FeatureDirs { train: Some(ftrain.dir.clone()), test: None }.write(dir)?;
    Ok(ftrain)
}

/// The linear probe (and earlier-layer): training features into the cache, head on them.
#[allow(clippy::too_many_arguments)]
fn train_probe(
    cfg: &RunConfig,
    backbone: &Backbone,
    train: &data::Dataset,
    dir: &RunDir,
    cache: &Cache,
    classes: i64,
    ms: &mut u64,
    sink: &mut dyn EventSink,
) -> Result<Fitted> {
    let ftrain = train_features(cfg, backbone, train, dir, cache, sink)?;
    let cfg = &super::on_features(cfg, &ftrain);
    let (_head, outcome) =
        timed(sink, ms, |s| train_head(&ftrain.features, &ftrain.labels, classes, &cfg.head, dir, s))?;
    let stopped = outcome.history.len() < cfg.head.fit.epochs as usize;
    Ok(Fitted { outcome, probe: None, stopped })
}

/// logreg and k-NN on the training split's features, cut into train and validation as
/// the head's are (`--val-split`, `--seed`).
#[allow(clippy::too_many_arguments)]
fn train_convex(
    cfg: &RunConfig,
    backbone: &Backbone,
    train: &data::Dataset,
    dir: &RunDir,
    cache: &Cache,
    classes: i64,
    ms: &mut u64,
    sink: &mut dyn EventSink,
) -> Result<Fitted> {
    let ftrain = train_features(cfg, backbone, train, dir, cache, sink)?;
    let cfg = &super::on_features(cfg, &ftrain);
    probe::check_finite(&ftrain.features, &ftrain.dir)?;
    let x = ftrain.features.to_device(cfg.device.resolve());
    let n = x.size()[0];
    tch::manual_seed(cfg.head.fit.seed);
    let split = crate::train::Split::new(&ftrain.labels, &cfg.head.fit_config())?;
    let (best_val_acc, probe, stopped) = match cfg.strategy {
        Strategy::Logreg => {
            let lr = &cfg.probe.logreg;
            let out = timed(sink, ms, |s| probe::logreg::sweep(&x, &ftrain.labels, classes, lr, &split, dir, s))?;
            write_table(dir, Table::Sweep, &mut tables::sweep_frame(&out.rows)?)?;
            let row = out.best_row();
            let rows = out.refit.as_ref().map_or(split.train.len(), |r| r.rows) as f64;
            let probe = ProbeResult::Logreg {
                lambda: row.lambda,
                c: 1.0 / (row.lambda * rows),
                grid_points: out.rows.len(),
                refit: out.refit.clone(),
            };
            (row.val_acc, probe, out.stopped)
        }
        _ => {
            let knn = &cfg.probe.knn;
            knn.validate(n as usize)?;
            let val_acc = timed(sink, ms, |s| {
                let rows = |idx: &[i64]| tch::Tensor::from_slice(idx).to_device(x.device());
                let (tr, va) = (rows(&split.train), rows(&split.val));
                let labels = ftrain.labels.to_device(x.device());
                let votes = probe::knn::classify(
                    &x.index_select(0, &tr),
                    &labels.index_select(0, &tr),
                    &x.index_select(0, &va),
                    classes,
                    knn,
                )?;
                let (acc, _) = votes.score(&labels.index_select(0, &va));
                s.info(&format!(
                    "k-NN (k {}, temperature {}): validation accuracy {acc:.4} voting with the {} training rows; \
                     the test split votes with all {n}",
                    knn.k,
                    knn.temperature,
                    split.train.len()
                ));
                Ok(acc)
            })?;
            (val_acc, ProbeResult::Knn { k: knn.k, temperature: knn.temperature, bank_rows: n as usize }, false)
        }
    };
    let outcome = TrainOutcome {
        history: vec![],
        steps: vec![],
        best_epoch: 0,
        best_val_acc,
        checkpoint: dir.best(Weights::Head),
        train_samples: split.train.len(),
        val_samples: split.val.len(),
    };
    Ok(Fitted { outcome, probe: Some(probe), stopped })
}

/// Fine-tune (after a linear probe), pretrained-init and scratch: trained on images.
fn train_images(
    cfg: &RunConfig,
    backbone: &Backbone,
    train: &data::Dataset,
    dir: &RunDir,
    classes: i64,
    ms: &mut u64,
    sink: &mut dyn EventSink,
) -> Result<Fitted> {
    let pool = cfg.arch.pool(cfg.extract.pool)?;
    let mut model = ImageModel::with_pool(cfg.arch, pool, classes, cfg.images.dropout, backbone.vs.device());
    copy_body(&backbone.vs, &model.vs)?;
    if cfg.strategy == Strategy::FineTune {
        sink.info("fine-tune: training the head on frozen features first");
        let probe_dir = dir.probe().ensure()?;
        let ecfg = extract_cfg(cfg, Tap::Layer4);
        // The probe's small feature cache lives in the run: the body is about to change.
        let ftrain =
            stage(sink, "extract", |s| extract_features(backbone, train, &ecfg, &Cache::new(probe_dir.path()), s))?;
        let head = super::on_features(cfg, &ftrain).head;
        let _ = train_head(&ftrain.features, &ftrain.labels, classes, &head, &probe_dir, sink)?;
        model.load_head(&probe_dir.best(Weights::Head))?;
    }
    let pre = cfg.extract.preprocess;
    let outcome = timed(sink, ms, |s| train_on_images(&mut model, train, &pre, &cfg.images, dir, s))?;
    let stopped = outcome.history.len() < cfg.images.fit.epochs as usize;
    Ok(Fitted { outcome, probe: None, stopped })
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
