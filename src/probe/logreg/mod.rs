//! Multinomial logistic regression on frozen features, the linear-evaluation protocol of
//! Kornblith et al. (2019): full-batch L-BFGS on mean cross-entropy + `lambda/2 ||W||^2`
//! (bias not penalised), `lambda` swept over a grid with each fit warm-started from the
//! previous one (strongest penalty first), the best `lambda` chosen on the validation
//! split, then one fit on train + validation.
//!
//! scikit-learn's `LogisticRegression(C=c)` minimises the same function with
//! `c = 1 / (lambda * N)` (N training rows): since 1.2 it scales the data term by 1/N.
//!
//! The parts: `objective` (the penalised loss, its gradient and cheap line searches),
//! `warm` (one fit, warm-started from the last), `sweep` (the grid, the refit and exact
//! resume through [`crate::checkpoint`]).
use super::lbfgs::{LbfgsConfig, Minimum};
use crate::{Error, Result};
use objective::Data;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

mod objective;
mod sweep;
mod warm;

pub use sweep::{sweep, Refit, SweepOutcome, SweepRow};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogregConfig {
    /// Penalties to try; fitted from the largest down.
    pub lambdas: Vec<f64>,
    pub max_iter: usize,
    /// Gradient tolerance (largest entry of the gradient of the mean objective).
    pub tol: f64,
    /// Scale each feature to zero mean and unit variance (statistics of the rows fitted);
    /// the saved weights take raw features either way.
    pub standardize: bool,
    /// How each class's rows weigh in the loss (`--class-weight`).
    #[serde(default)]
    pub class_weight: crate::metrics::ClassWeight,
}

impl Default for LogregConfig {
    fn default() -> Self {
        let (lo, hi, n) = crate::probe::DEFAULT_LAMBDA_GRID;
        LogregConfig {
            lambdas: log_grid(lo, hi, n),
            max_iter: 1000,
            tol: 1e-4,
            standardize: false,
            class_weight: Default::default(),
        }
    }
}

/// `n` values from `lo` to `hi`, evenly spaced in log10 (NumPy's `logspace`).
pub fn log_grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let (a, b) = (lo.log10(), hi.log10());
    match n {
        0 => vec![],
        1 => vec![lo],
        _ => (0..n).map(|i| 10f64.powf(a + (b - a) * i as f64 / (n - 1) as f64)).collect(),
    }
}

impl LogregConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::invalid("logreg settings", reason));
        if self.lambdas.is_empty() {
            return bad("the lambda grid is empty; give at least one value with --lambdas".into());
        }
        if let Some(l) = self.lambdas.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
            return bad(format!("lambda {l} is not a positive number; every penalty must be > 0"));
        }
        if self.max_iter == 0 {
            return bad("--max-iter 0: at least one iteration is needed".into());
        }
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return bad(format!("--tol {}: the gradient tolerance must be > 0", self.tol));
        }
        Ok(())
    }

    fn lbfgs(&self) -> LbfgsConfig {
        LbfgsConfig { max_iter: self.max_iter, tol_grad: self.tol, ..Default::default() }
    }

    /// The grid in fitting order: largest penalty first, duplicates dropped.
    pub fn order(&self) -> Vec<f64> {
        let mut l = self.lambdas.clone();
        l.sort_by(|a, b| b.total_cmp(a));
        l.dedup();
        l
    }
}

/// A fitted model on raw features: logits = `x W^T + b`.
#[derive(Debug)]
pub struct Logreg {
    /// `[C, D]`
    pub weight: Tensor,
    /// `[C]`
    pub bias: Tensor,
}

impl Logreg {
    /// `[N, D]` -> `[N, C]` logits.
    pub fn logits(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.weight.tr()) + &self.bias
    }

    /// Named as the head's `fc`, so `evaluate` and the head's loader read it unchanged.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        vec![("fc.weight".into(), self.weight.shallow_clone()), ("fc.bias".into(), self.bias.shallow_clone())]
    }
}

/// Fits one model at `lambda` on features `[N, D]` and labels `[N]` (a library call; the
/// parity tests use it).
pub fn fit(
    features: &Tensor,
    labels: &Tensor,
    classes: i64,
    lambda: f64,
    cfg: &LogregConfig,
) -> Result<(Logreg, Minimum)> {
    let data = Data::new(features.shallow_clone(), labels, classes, cfg.standardize, cfg.class_weight);
    let m = warm::fit_one(&data, classes, lambda, None, cfg, &mut || false)?;
    Ok((data.model(&m.x, classes), m))
}

/// Accuracy and mean cross-entropy of `model` on `x` `[N, D]`, `y` `[N]`.
pub fn score(model: &Logreg, x: &Tensor, y: &Tensor) -> (f64, f64) {
    tch::no_grad(|| {
        let logits = model.logits(x);
        let y = y.to_device(x.device());
        let loss = logits.cross_entropy_for_logits(&y).double_value(&[]);
        let acc = logits.argmax(-1, false).eq_tensor(&y).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
        (acc, loss)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_grid_is_45_log_spaced_points() {
        let g = log_grid(1e-6, 1e5, 45);
        assert_eq!(g.len(), 45);
        assert!((g[0] - 1e-6).abs() < 1e-18 && (g[44] - 1e5).abs() < 1e-6);
        assert!((g[4] / g[0] - 10f64.powf(1.0)).abs() < 1e-9, "four steps make a decade: {}", g[4] / g[0]);
    }

    #[test]
    fn bad_settings_are_named() {
        let cfg = |l: Vec<f64>| LogregConfig { lambdas: l, ..Default::default() };
        assert!(cfg(vec![]).validate().unwrap_err().to_string().contains("empty"));
        assert!(cfg(vec![1.0, 0.0]).validate().unwrap_err().to_string().contains("lambda 0"));
        assert!(cfg(vec![-1.0]).validate().unwrap_err().to_string().contains("positive"));
        assert!(cfg(vec![f64::NAN]).validate().is_err());
        assert_eq!(cfg(vec![1.0, 10.0, 1.0]).order(), vec![10.0, 1.0]);
    }
}
