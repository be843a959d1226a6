//! Notebook 4's comparison beyond the post: the post's head, logreg (L2 sweep by L-BFGS)
//! and k-NN fitted on the same cached features, tested on the same test features.
use super::{TrainedHead, Tutorial};
use crate::events::NullSink;
use crate::features::FeatureSet;
use crate::probe::{knn, logreg, KnnConfig, LogregConfig};
use crate::report::{RunLabel, Sweep};
use crate::rundir::RunDir;
use crate::train::{evaluate, Split, ValSplit};
use crate::{Error, Result};
use polars::prelude::{df, DataFrame};
use std::time::Instant;

/// One row of the comparison.
#[derive(Debug, Clone)]
pub struct ProbeRow {
    pub method: String,
    pub chosen: String,
    pub val_acc: f64,
    pub test_acc: f64,
    /// Seconds of fitting (the head's from its own training run).
    pub fit_s: Option<f64>,
}

/// The three classifiers side by side, and the logreg sweep for its chart.
pub struct ProbeComparison {
    pub rows: Vec<ProbeRow>,
    pub sweep: Sweep,
}

impl ProbeComparison {
    pub fn table(&self) -> Result<DataFrame> {
        let r = &self.rows;
        df!(
            "classifier" => r.iter().map(|x| x.method.clone()).collect::<Vec<_>>(),
            "chosen on validation" => r.iter().map(|x| x.chosen.clone()).collect::<Vec<_>>(),
            "val acc" => r.iter().map(|x| x.val_acc).collect::<Vec<_>>(),
            "test acc" => r.iter().map(|x| x.test_acc).collect::<Vec<_>>(),
            "fit s" => r.iter().map(|x| x.fit_s).collect::<Vec<_>>(),
        )
        .map_err(|e| Error::Table { path: "probe comparison".into(), reason: e.to_string() })
    }
}

impl Tutorial {
    /// Fits logreg and k-NN on `train`'s features with the head's validation split (the
    /// last 20%), and scores all three on `test`'s features. The sweep lives in
    /// `<runs>/notebook-logreg`.
    pub fn compare_probes(&self, train: &FeatureSet, test: &FeatureSet, head: &TrainedHead) -> Result<ProbeComparison> {
        let classes = head.classes.len() as i64;
        let n = train.len() as i64;
        let n_val = (n as f64 * 0.2).floor() as i64;
        let split = Split { train: (0..n - n_val).collect(), val: (n - n_val..n).collect() };
        debug_assert_eq!(crate::train::HeadConfig::default().fit.val_split, ValSplit::Last);
        let ev = evaluate(&head.head, &test.features, &test.labels)?;
        let mut rows = vec![ProbeRow {
            method: "the post's head (Dropout -> Dense, Adam)".into(),
            chosen: format!("epoch {}", head.outcome.best_epoch),
            val_acc: head.outcome.best_val_acc,
            test_acc: ev.accuracy,
            fit_s: None,
        }];

        let dir = RunDir::at(self.runs.join("notebook-logreg")).ensure()?;
        // A fresh sweep each time the cell runs.
        let _ = std::fs::remove_file(dir.last(crate::rundir::Weights::Head));
        let t = Instant::now();
        let cfg = LogregConfig::default();
        let out = logreg::sweep(&train.features, &train.labels, classes, &cfg, &split, &dir, &mut NullSink)?;
        let fit_s = t.elapsed().as_secs_f64();
        let best = out.best_row();
        let (test_acc, _) = logreg::score(&out.model, &test.features, &test.labels);
        rows.push(ProbeRow {
            method: format!("logreg (L-BFGS, {} lambdas, refit)", out.rows.len()),
            chosen: format!("lambda {:.1e}", best.lambda),
            val_acc: best.val_acc,
            test_acc,
            fit_s: Some(fit_s),
        });

        let k = KnnConfig::default();
        let rows_of = |idx: &[i64]| tch::Tensor::from_slice(idx);
        let (tr, va) = (rows_of(&split.train), rows_of(&split.val));
        let t = Instant::now();
        let val = knn::classify(
            &train.features.index_select(0, &tr),
            &train.labels.index_select(0, &tr),
            &train.features.index_select(0, &va),
            classes,
            &k,
        )?;
        let on_test = knn::classify(&train.features, &train.labels, &test.features, classes, &k)?;
        let fit_s = t.elapsed().as_secs_f64();
        rows.push(ProbeRow {
            method: "weighted k-NN (cosine)".into(),
            chosen: format!("k {}, T {} (fixed)", k.k, k.temperature),
            val_acc: val.score(&train.labels.index_select(0, &va)).0,
            test_acc: on_test.score(&test.labels).0,
            fit_s: Some(fit_s),
        });
        let run =
            RunLabel { name: "notebook logreg".into(), synthetic: self.synthetic(), pretrained: self.pretrained() };
        let sweep = Sweep {
            run,
            points: out.rows.iter().map(|r| (r.lambda, r.val_acc)).collect(),
            chosen: Some(best.lambda),
            test_accuracy: Some(test_acc),
        };
        Ok(ProbeComparison { rows, sweep })
    }
}
