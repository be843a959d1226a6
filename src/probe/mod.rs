//! Convex probes on cached features, the protocols papers use to measure frozen
//! features: L-BFGS logistic regression with an L2 sweep ([`logreg`]) and weighted k-NN
//! ([`knn`]). The post's head (Dropout -> Dense, Adam) lives in `train::head`.
pub mod knn;
pub mod lbfgs;
pub mod logreg;

pub use knn::{KnnConfig, Votes};

/// logreg's default sweep: 45 penalties from 1e-6 to 1e5, log-spaced, as (lo, hi, count).
pub const DEFAULT_LAMBDA_GRID: (f64, f64, usize) = (1e-6, 1e5, 45);
pub use logreg::{log_grid, Logreg, LogregConfig, Refit, SweepOutcome, SweepRow};

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::Tensor;

/// Settings of both probes; part of a run's config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeConfig {
    #[serde(default)]
    pub logreg: LogregConfig,
    #[serde(default)]
    pub knn: KnnConfig,
}

/// What a probe chose, for `trained.json` and `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProbeResult {
    Logreg {
        /// The chosen penalty and scikit-learn's `C` for the final fit (`1 / (lambda * N)`).
        lambda: f64,
        c: f64,
        grid_points: usize,
        /// `None` when a `STOP` ended the sweep before the refit.
        refit: Option<Refit>,
    },
    Knn {
        k: usize,
        temperature: f64,
        /// Training rows the neighbours come from.
        bank_rows: usize,
    },
}

/// Fails, naming `dir`, when features `[N, D]` hold NaN or infinite values.
pub fn check_finite(features: &Tensor, dir: &Path) -> Result<()> {
    let bad = features.isfinite().logical_not().any_dim(1, false).sum(tch::Kind::Int64).int64_value(&[]);
    if bad > 0 {
        return Err(Error::Cache {
            path: dir.to_path_buf(),
            reason: format!(
                "{bad} of {} feature rows hold NaN or infinite values; a probe cannot use them (delete the folder \
                 and extract again, or check the backbone's weights)",
                features.size()[0]
            ),
        });
    }
    Ok(())
}
