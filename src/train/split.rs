//! How the validation set is cut from the training samples: the rule ([`ValSplit`]) and
//! the cut itself ([`Split`]), shared by the head, the image strategies and the probes.
use crate::data::DataSpec;
use crate::events::EventSink;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::fit::FitConfig;

/// How the validation set is cut from the training samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ValSplit {
    /// Keras' `validation_split`: the last fraction, before any shuffling.
    #[default]
    Last,
    /// A seeded random subset.
    Random,
    /// A seeded random subset of each class, in proportion: every class is validated.
    Stratified,
}

crate::choice::choice!(ValSplit, "validation split");

impl ValSplit {
    /// Keras' `last` split for CIFAR-10 and synthetic data (as in the post); a stratified
    /// one for image folders, whose files are listed class by class.
    pub fn default_for(data: &DataSpec) -> ValSplit {
        match data {
            DataSpec::Folder(_) => ValSplit::Stratified,
            _ => ValSplit::Last,
        }
    }
}

/// Training and validation sample indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<i64>,
    pub val: Vec<i64>,
}

impl Split {
    /// The samples with `labels` (`[N]` i64) cut as `cfg` says: a given validation set,
    /// or `val_fraction` of them by `val_split`; `random` and `stratified` draw from the
    /// global stream as it stands.
    pub fn new(labels: &Tensor, cfg: &FitConfig) -> Result<Split> {
        let labels = Vec::<i64>::try_from(&labels.to_device(Device::Cpu).to_kind(Kind::Int64))?;
        let n = labels.len() as i64;
        if let Some(from) = cfg.fit.val_from {
            let from = from as i64;
            if from < 2 || from >= n {
                let reason = format!("{from} training and {} validation samples; need at least 2 and 1", n - from);
                return Err(Error::invalid("training data", reason));
            }
            return Ok(Split { train: (0..from).collect(), val: (from..n).collect() });
        }
        let n_val = ((n as f64) * cfg.fit.val_fraction).floor() as i64;
        if n - n_val < 2 || n_val < 1 {
            return Err(Error::invalid(
                "training data",
                format!(
                    "{n} samples with validation fraction {}; need at least 2 to train and 1 to validate",
                    cfg.fit.val_fraction
                ),
            ));
        }
        let order: Vec<i64> = match cfg.fit.val_split {
            ValSplit::Last => (0..n).collect(),
            ValSplit::Random => Vec::<i64>::try_from(&Tensor::randperm(n, (Kind::Int64, Device::Cpu)))?,
            ValSplit::Stratified => return stratified(&labels, cfg.fit.val_fraction),
        };
        let (tr, va) = order.split_at((n - n_val) as usize);
        Ok(Split { train: tr.to_vec(), val: va.to_vec() })
    }

    /// The classes (of `0..classes`) the training part has and the validation part lacks.
    pub fn unvalidated_classes(&self, labels: &Tensor) -> Result<Vec<i64>> {
        let labels = Vec::<i64>::try_from(&labels.to_device(Device::Cpu).to_kind(Kind::Int64))?;
        let set = |idx: &[i64]| idx.iter().map(|&i| labels[i as usize]).collect::<std::collections::BTreeSet<i64>>();
        let (tr, va) = (set(&self.train), set(&self.val));
        Ok(tr.difference(&va).copied().collect())
    }

    /// Warns, naming them, when classes are missing from the validation part: its
    /// accuracy then says nothing about them, and the best epoch is chosen without them.
    pub fn warn_unvalidated(
        &self,
        labels: &Tensor,
        names: &[String],
        cfg: &FitConfig,
        sink: &mut dyn EventSink,
    ) -> Result<()> {
        let missing = self.unvalidated_classes(labels)?;
        if missing.is_empty() {
            return Ok(());
        }
        let named: Vec<&str> = missing.iter().map(|&c| names.get(c as usize).map_or("?", |s| s.as_str())).collect();
        let why = match (cfg.fit.val_from, cfg.fit.val_split) {
            (Some(_), _) => "the given validation folder has none of them".to_string(),
            (None, ValSplit::Last) => {
                "`--val-split last` takes the last rows, and the data looks sorted by class; use `--val-split stratified`".into()
            }
            (None, s) => format!("`--val-split {}` drew none of them", s.name()),
        };
        sink.warn(&format!(
            "the validation split ({} samples) holds no sample of {} of the {} classes ({}): {why}",
            self.val.len(),
            missing.len(),
            names.len(),
            named.join(", ")
        ));
        Ok(())
    }
}

/// `fraction` of each class (rounded, at least one where a class has two or more, and at
/// least one left to train on), drawn by a seeded permutation per class; both parts sorted.
fn stratified(labels: &[i64], fraction: f64) -> Result<Split> {
    let mut by_class: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i as i64);
    }
    let (mut train, mut val) = (vec![], vec![]);
    for idx in by_class.values() {
        let n = idx.len() as i64;
        let perm = Vec::<i64>::try_from(&Tensor::randperm(n, (Kind::Int64, Device::Cpu)))?;
        let want = ((n as f64) * fraction).round() as i64;
        let k = if n >= 2 { want.clamp(1, n - 1) } else { 0 };
        for (j, &p) in perm.iter().enumerate() {
            if (j as i64) < k {
                val.push(idx[p as usize])
            } else {
                train.push(idx[p as usize])
            }
        }
    }
    train.sort_unstable();
    val.sort_unstable();
    if train.len() < 2 || val.is_empty() {
        let reason = format!("{} samples cannot be split by class into training and validation", labels.len());
        return Err(Error::invalid("training data", reason));
    }
    Ok(Split { train, val })
}
