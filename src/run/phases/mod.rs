//! The two halves of a run: training (fetch, extract, train) and evaluation on the test
//! split from the saved best checkpoint. `tlab run` does both; `tlab train` and
//! `tlab evaluate` one each, in separate processes if the user likes. They meet only
//! through the run directory's records ([`super::records`]).
use super::config::RunConfig;
use crate::features::ExtractConfig;
use crate::models::Tap;
use crate::train::Strategy;

mod calibrate;
mod evaluate;
mod train;

pub(crate) use evaluate::evaluate_in;
pub(crate) use train::train_in;

/// The layer a probe strategy reads: `earlier-layer` moves the default to layer3.
fn probe_tap(cfg: &RunConfig) -> Tap {
    match (cfg.strategy, cfg.extract.tap) {
        (Strategy::EarlierLayer, Tap::Layer4) => Tap::Layer3,
        (_, t) => t,
    }
}

fn extract_cfg(cfg: &RunConfig, tap: Tap) -> ExtractConfig {
    ExtractConfig { tap, ..cfg.extract.clone() }
}

/// `cfg` with its given validation set's first row moved to where it lands among the
/// features loaded: rows whose files failed to decode have none.
fn on_features(cfg: &RunConfig, f: &crate::features::FeatureSet) -> RunConfig {
    let mut cfg = cfg.clone();
    cfg.head.fit.val_from = cfg.head.fit.val_from.map(|v| f.loaded_row(v));
    cfg
}
