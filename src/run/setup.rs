//! Opening what a run reads: the device, both splits of the data and the backbone, with
//! the offline fallbacks said out loud.
use super::config::{RunConfig, WeightsChoice};
use crate::cache::Cache;
use crate::data::{self, DataSpec, Split};
use crate::events::EventSink;
use crate::models::{Backbone, WeightsEntry};
use crate::{Error, Result};
use tch::Device;

/// Opens both splits of the configured data, falling back to synthetic data when
/// CIFAR-10 cannot be fetched and `cfg.offline_fallback` allows it.
pub fn open_data(cfg: &RunConfig, cache: &Cache, sink: &mut dyn EventSink) -> Result<(data::Dataset, data::Dataset)> {
    let open_both = |spec: &DataSpec, sink: &mut dyn EventSink| -> Result<_> {
        Ok((data::open(spec, Split::Train, cache, sink)?, data::open(spec, Split::Test, cache, sink)?))
    };
    let (train, test) = match open_both(&cfg.data, sink) {
        Err(e @ Error::Download { .. }) if cfg.offline_fallback => {
            sink.warn(&format!(
                "CIFAR-10 could not be fetched ({e}). Using the SYNTHETIC dataset instead: results below are NOT CIFAR-10 results."
            ));
            open_both(&DataSpec::synthetic_default(), sink)?
        }
        other => other?,
    };
    Ok(match cfg.limit {
        Some(n) => (train.take(n), test.take(n)),
        None => (train, test),
    })
}

/// Builds the backbone, falling back to seeded random weights when the download fails
/// and `cfg.offline_fallback` allows it.
pub fn open_backbone(cfg: &RunConfig, cache: &Cache, device: Device, sink: &mut dyn EventSink) -> Result<Backbone> {
    match &cfg.weights {
        WeightsChoice::Random { seed } => Ok(Backbone::random(cfg.arch, *seed, device)),
        WeightsChoice::File { path } => Backbone::from_file(cfg.arch, path, device),
        WeightsChoice::Pretrained { variant } => {
            let entry = WeightsEntry::find(cfg.arch, *variant)?;
            match Backbone::pretrained(entry, cache, device, sink) {
                Err(e @ Error::Download { .. }) if cfg.offline_fallback => {
                    sink.warn(&format!(
                        "the ImageNet weights could not be fetched ({e}). Using SEEDED RANDOM weights: the result shows the pipeline working, not transfer learning."
                    ));
                    Ok(Backbone::random(cfg.arch, cfg.head.fit.seed, device))
                }
                other => other,
            }
        }
    }
}
