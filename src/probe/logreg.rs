//! Multinomial logistic regression on frozen features, the linear-evaluation protocol of
//! Kornblith et al. (2019): full-batch L-BFGS on mean cross-entropy + `lambda/2 ||W||^2`
//! (bias not penalised), `lambda` swept over a grid with each fit warm-started from the
//! previous one (strongest penalty first), the best `lambda` chosen on the validation
//! split, then one fit on train + validation.
//!
//! scikit-learn's `LogisticRegression(C=c)` minimises the same function with
//! `c = 1 / (lambda * N)` (N training rows): since 1.2 it scales the data term by 1/N.
//!
//! Resume is exact: after every `lambda` the rows so far and the warm start (parameters,
//! gradient, L-BFGS curvature pairs) go into `head-last.safetensors` (one rename), so a stopped or killed sweep continues at the next
//! `lambda` from the same warm start and ends with the same bytes.
use super::lbfgs::{minimize, minimize_from, History, LbfgsConfig, Line, Minimum, Objective};
use crate::checkpoint::{resume_hint, Checkpoint, Identity};
use crate::events::EventSink;
use crate::rundir::{RunDir, Weights};
use crate::train::Split;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tch::{Kind, Tensor};

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
}

impl Default for LogregConfig {
    fn default() -> Self {
        LogregConfig { lambdas: log_grid(1e-6, 1e5, 45), max_iter: 1000, tol: 1e-4, standardize: false }
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

/// The rows one fit sees, standardised when asked, with what undoes it.
struct Data {
    x: Tensor,
    onehot: Tensor,
    /// Per-feature `(mean, std)` the rows were standardised with.
    scale: Option<(Tensor, Tensor)>,
}

impl Data {
    fn new(x: Tensor, y: &Tensor, classes: i64, standardize: bool) -> Data {
        let y = y.to_device(x.device());
        let onehot = y.one_hot(classes).to_kind(x.kind());
        let (x, scale) = if standardize {
            let mean = x.mean_dim([0i64].as_slice(), true, x.kind());
            let std = x.std_mean_correction(Some([0i64].as_slice()), 0, true).0;
            // Constant features stay as they are (divided by one).
            let std = std.where_self(&std.gt(1e-12), &std.ones_like());
            ((&x - &mean) / &std, Some((mean, std)))
        } else {
            (x, None)
        };
        Data { x, onehot, scale }
    }

    fn rows(&self) -> f64 {
        self.x.size()[0] as f64
    }

    /// The parameter vector `[C*D + C]` as the model on raw features.
    fn model(&self, theta: &Tensor, classes: i64) -> Logreg {
        let d = self.x.size()[1];
        let w = theta.narrow(0, 0, classes * d).view([classes, d]);
        let b = theta.narrow(0, classes * d, classes);
        match &self.scale {
            None => Logreg { weight: w.copy(), bias: b.copy() },
            Some((mean, std)) => {
                let w_raw = &w / std;
                let b_raw = &b - w_raw.matmul(&mean.view([-1]));
                Logreg { weight: w_raw, bias: b_raw }
            }
        }
    }
}

/// Mean cross-entropy + `lambda/2 ||W||^2` and its gradient, as one flat vector.
struct Penalised<'a> {
    data: &'a Data,
    lambda: f64,
    classes: i64,
    /// The logits `[N, C]` at the parameters last evaluated, so that a line from there
    /// starts without a pass over the features; recomputed exactly every so often.
    logits: Option<(Tensor, Tensor)>,
    lines: usize,
    /// Off only to test the line search against full evaluations.
    cheap_lines: bool,
}

/// Lines started from carried logits before they are recomputed from the features (f32
/// rounding in `z + t z_d` would otherwise accumulate over a long fit).
const REFRESH_LINES: usize = 25;

impl<'a> Penalised<'a> {
    fn new(data: &'a Data, lambda: f64, classes: i64) -> Self {
        Penalised { data, lambda, classes, logits: None, lines: 0, cheap_lines: true }
    }

    fn split(&self, theta: &Tensor) -> (Tensor, Tensor) {
        let d = self.data.x.size()[1];
        (theta.narrow(0, 0, self.classes * d).view([self.classes, d]), theta.narrow(0, self.classes * d, self.classes))
    }

    /// `x W^T + b`, a block of rows at a time. Between 9 and 15 classes, `W` is padded
    /// with zero rows to 16: libtorch's product of the `[1024, 2048]` blocks with 16
    /// columns took 28 ms a pass over 40,000 rows, with 10 columns 42 ms (2 threads).
    fn affine(&self, theta: &Tensor) -> Tensor {
        let (w, b) = self.split(theta);
        let (x, rows) = (&self.data.x, self.data.x.size()[0]);
        let c = self.classes;
        let (w, b) = if c > 8 && c < 16 {
            let opts = (w.kind(), w.device());
            let (zw, zb) = (Tensor::zeros([16 - c, w.size()[1]], opts), Tensor::zeros([16 - c], opts));
            (Tensor::cat(&[w, zw], 0), Tensor::cat(&[b, zb], 0))
        } else {
            (w, b)
        };
        let wt = w.tr();
        let blocks: Vec<Tensor> = (0..rows)
            .step_by(BLOCK_ROWS as usize)
            .map(|s| b.addmm(&x.narrow(0, s, BLOCK_ROWS.min(rows - s)), &wt))
            .collect();
        Tensor::cat(&blocks, 0).narrow(1, 0, c).contiguous()
    }
}

/// [`Penalised`] along `theta + t d`: the logits are `z + t z_d`, so trial steps cost
/// `[N, C]` work, not a pass over the `[N, D]` features.
struct PenalisedLine<'p, 'a> {
    owner: &'p mut Penalised<'a>,
    theta: Tensor,
    d: Tensor,
    z: Tensor,
    zd: Tensor,
    /// `||W||^2`, `W . D_w`, `||D_w||^2` for the penalty along the line.
    ww: f64,
    wd: f64,
    dd: f64,
}

impl PenalisedLine<'_, '_> {
    fn logits(&self, t: f64) -> Tensor {
        self.z.g_add(&(&self.zd * t))
    }

    fn residual(&self, z: &Tensor) -> (Tensor, f64) {
        let onehot = &self.owner.data.onehot;
        let lse = z.logsumexp([1i64].as_slice(), true);
        let picked = (z * onehot).sum_dim_intlist([1i64].as_slice(), true, z.kind());
        let data_term = (&lse - picked).sum(Kind::Double).double_value(&[]);
        ((z - lse).exp() - onehot, data_term)
    }
}

impl Line for PenalisedLine<'_, '_> {
    fn value_slope(&mut self, t: f64) -> Result<(f64, f64)> {
        let (n, lambda) = (self.owner.data.rows(), self.owner.lambda);
        let (resid, data_term) = self.residual(&self.logits(t));
        let slope = (resid * &self.zd).sum(Kind::Double).double_value(&[]) / n + lambda * (self.wd + t * self.dd);
        let value = data_term / n + 0.5 * lambda * (self.ww + 2.0 * t * self.wd + t * t * self.dd);
        Ok((value, slope))
    }

    fn grad(&mut self, t: f64) -> Result<Tensor> {
        let z = self.logits(t);
        let (resid, _) = self.residual(&z);
        let theta = &self.theta + &self.d * t;
        let g = self.owner.gradient(&theta, &resid);
        self.owner.logits = Some((theta, z));
        Ok(g)
    }
}

impl Penalised<'_> {
    /// `[gW / N + lambda W, gb / N]` from the residual `softmax(z) - onehot`.
    fn gradient(&self, theta: &Tensor, resid: &Tensor) -> Tensor {
        let (w, _) = self.split(theta);
        let (x, rows) = (&self.data.x, self.data.x.size()[0]);
        let mut gw = w.zeros_like();
        for s in (0..rows).step_by(BLOCK_ROWS as usize) {
            let len = BLOCK_ROWS.min(rows - s);
            gw = gw.addmm(&resid.narrow(0, s, len).tr(), &x.narrow(0, s, len));
        }
        let n = self.data.rows();
        let gb = resid.sum_dim_intlist([0i64].as_slice(), false, resid.kind());
        Tensor::cat(&[(gw / n + &w * self.lambda).view([-1]), gb / n], 0)
    }
}

/// Rows per block of the objective: each block's rows are read once for the logits and
/// again for the gradient while still in cache (measured 27 -> 22 ms per evaluation on
/// 8,000 x 2,048 features, 2 threads).
const BLOCK_ROWS: i64 = 1024;

impl Objective for Penalised<'_> {
    fn value_grad(&mut self, theta: &Tensor) -> Result<(f64, Tensor)> {
        let (x, rows) = (&self.data.x, self.data.x.size()[0]);
        let (w, b) = self.split(theta);
        let wt = w.tr();
        let mut gw = w.zeros_like();
        let mut gb = b.zeros_like();
        let mut data_term = 0.0;
        let mut start = 0;
        let mut all_logits = vec![];
        while start < rows {
            let len = BLOCK_ROWS.min(rows - start);
            let (xb, onehot) = (x.narrow(0, start, len), self.data.onehot.narrow(0, start, len));
            let logits = b.addmm(&xb, &wt);
            all_logits.push(logits.shallow_clone());
            let lse = logits.logsumexp([1i64].as_slice(), true);
            let picked = (&logits * &onehot).sum_dim_intlist([1i64].as_slice(), true, logits.kind());
            // Sums in f64: the objective is compared across line-search steps.
            data_term += (&lse - picked).sum(Kind::Double).double_value(&[]);
            let resid = (logits - lse).exp() - onehot;
            gw = gw.addmm(&resid.tr(), &xb);
            gb += resid.sum_dim_intlist([0i64].as_slice(), false, resid.kind());
            start += len;
        }
        let n = self.data.rows();
        let penalty = 0.5 * self.lambda * (&w * &w).sum(Kind::Double).double_value(&[]);
        let gw = gw / n + &w * self.lambda;
        if self.cheap_lines {
            self.logits = Some((theta.copy(), Tensor::cat(&all_logits, 0)));
        }
        Ok((data_term / n + penalty, Tensor::cat(&[gw.view([-1]), gb / n], 0)))
    }

    fn has_lines(&self) -> bool {
        self.cheap_lines
    }

    fn line(&mut self, theta: &Tensor, d: &Tensor) -> Result<Box<dyn Line + '_>> {
        self.lines += 1;
        let carried = match self.logits.take() {
            Some((at, z)) if self.lines % REFRESH_LINES != 0 && at.equal(theta) => Some(z),
            _ => None,
        };
        let z = match carried {
            Some(z) => z,
            None => self.affine(theta),
        };
        let zd = self.affine(d);
        let ((w, _), (dw, _)) = (self.split(theta), self.split(d));
        let dot = |a: &Tensor, b: &Tensor| (a * b).sum(Kind::Double).double_value(&[]);
        let (ww, wd, dd) = (dot(&w, &w), dot(&w, &dw), dot(&dw, &dw));
        let (theta, d) = (theta.copy(), d.shallow_clone());
        Ok(Box::new(PenalisedLine { owner: self, theta, d, z, zd, ww, wd, dd }))
    }
}

/// Where a fit starts: parameters, and when they are the last fit's on the same rows, that
/// fit's objective, gradient, curvature pairs and `lambda`.
struct Start<'a> {
    theta: &'a Tensor,
    known: Option<Known<'a>>,
}

struct Known<'a> {
    loss: f64,
    grad: &'a Tensor,
    history: &'a History,
    lambda: f64,
}

/// One fit at `lambda` from `start` (zeros when `None`).
fn fit_one(
    data: &Data,
    classes: i64,
    lambda: f64,
    start: Option<Start>,
    cfg: &LogregConfig,
    stop: &mut dyn FnMut() -> bool,
) -> Result<Minimum> {
    let d = data.x.size()[1];
    let Some(start) = start else {
        let x0 = Tensor::zeros([classes * d + classes], (data.x.kind(), data.x.device()));
        return minimize(&mut Penalised::new(data, lambda, classes), &x0, &cfg.lbfgs(), stop);
    };
    let Some(known) = start.known else {
        return minimize(&mut Penalised::new(data, lambda, classes), start.theta, &cfg.lbfgs(), stop);
    };
    // Only the penalty depends on lambda: moving from the last fit's to this one adds
    // `step / 2 ||W||^2` to the objective, `step W` to its gradient and `step s_W` to each
    // curvature pair's gradient change `y`, all exact. So the fit starts without a pass
    // over the features and with the last fit's picture of the curvature, not a gradient
    // step (the bench's 45-lambda sweep and refit: 321 -> 234 iterations).
    let step = lambda - known.lambda;
    let w = start.theta.narrow(0, 0, classes * d);
    let ww = (&w * &w).sum(Kind::Double).double_value(&[]);
    let g = known.grad.copy();
    let _ = g.narrow(0, 0, classes * d).g_add_(&(&w * step));
    let history = moved(known.history, classes * d, step);
    let first = Some((known.loss + 0.5 * step * ww, g));
    minimize_from(&mut Penalised::new(data, lambda, classes), start.theta, first, history, &cfg.lbfgs(), stop)
}

/// Curvature pairs of the objective at one lambda as pairs of the objective at
/// `lambda + step`: each gradient change `y` gains `step s_W` (the first `weights` entries).
fn moved(history: &History, weights: i64, step: f64) -> History {
    let changes = history.changes.iter().zip(&history.steps).map(|(y, s)| {
        let y = y.copy();
        let _ = y.narrow(0, 0, weights).g_add_(&(s.narrow(0, 0, weights) * step));
        y
    });
    History { changes: changes.collect(), steps: history.steps.iter().map(|s| s.copy()).collect() }
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
    let data = Data::new(features.shallow_clone(), labels, classes, cfg.standardize);
    let m = fit_one(&data, classes, lambda, None, cfg, &mut || false)?;
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

/// One grid point of the sweep: a row of `sweep.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub lambda: f64,
    /// scikit-learn's `C` for the same fit: `1 / (lambda * N_train)`.
    pub c: f64,
    pub val_acc: f64,
    pub val_loss: f64,
    /// The penalised objective on the training split at the end of the fit.
    pub objective: f64,
    pub iterations: usize,
    /// Gradients computed (each a pass over the features).
    #[serde(default)]
    pub evaluations: usize,
    pub converged: bool,
    pub grad_max: f64,
}

/// The final fit on train + validation at the chosen `lambda`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refit {
    pub lambda: f64,
    pub rows: usize,
    pub iterations: usize,
    pub converged: bool,
    pub objective: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SweepState {
    config: LogregConfig,
    samples: i64,
    data: String,
    rows: Vec<SweepRow>,
    #[serde(default)]
    refit: Option<Refit>,
}

impl SweepState {
    fn identity(&self) -> Identity<'_, LogregConfig> {
        Identity { settings: Some(&self.config), samples: Some(self.samples), data: Some(&self.data) }
    }
}

const STATE_KEY: &str = "tlab.sweep_state";

#[derive(Debug)]
pub struct SweepOutcome {
    /// In fitting order (largest `lambda` first).
    pub rows: Vec<SweepRow>,
    /// Index into `rows` of the chosen `lambda`.
    pub best: usize,
    /// `None` when a `STOP` ended the sweep: the best model is then its training-split fit.
    pub refit: Option<Refit>,
    pub stopped: bool,
    pub model: Logreg,
    pub train_samples: usize,
    pub val_samples: usize,
}

impl SweepOutcome {
    pub fn best_row(&self) -> &SweepRow {
        &self.rows[self.best]
    }
}

/// Rows `idx` of `t`: a view when they are one contiguous run (Keras' split), else a copy.
fn take_rows(t: &Tensor, idx: &[i64]) -> Tensor {
    let contiguous = idx.windows(2).all(|w| w[1] == w[0] + 1);
    match (contiguous, idx.first()) {
        (true, Some(&first)) => t.narrow(0, first, idx.len() as i64),
        _ => t.index_select(0, &Tensor::from_slice(idx).to_device(t.device())),
    }
}

/// The first row with the highest validation accuracy (ties: the stronger penalty).
fn best_of(rows: &[SweepRow]) -> usize {
    let mut best = 0;
    for (i, r) in rows.iter().enumerate() {
        if r.val_acc > rows[best].val_acc {
            best = i;
        }
    }
    best
}

fn fingerprint(features: &Tensor, labels: &Tensor) -> String {
    // Summed in f64 a block at a time: no f64 copy of the whole features.
    let sum = |t: &Tensor| {
        let n = t.size().first().copied().unwrap_or(0);
        (0..n)
            .step_by(BLOCK_ROWS as usize)
            .map(|i| t.narrow(0, i, BLOCK_ROWS.min(n - i)).to_kind(Kind::Double).sum(Kind::Double).double_value(&[]))
            .sum::<f64>()
    };
    format!("features {:?} sum {:e}, labels sum {:e}", features.size(), sum(features), sum(labels))
}

/// The sweep on `features` `[N, D]` / `labels` `[N]` cut by `split`, in `dir`: the chosen
/// model is `head-best.safetensors`; the grid is returned for `sweep.csv`.
pub fn sweep(
    features: &Tensor,
    labels: &Tensor,
    classes: i64,
    cfg: &LogregConfig,
    split: &Split,
    dir: &RunDir,
    sink: &mut dyn EventSink,
) -> Result<SweepOutcome> {
    cfg.validate()?;
    let _guard = tch::no_grad_guard();
    let n = features.size()[0];
    let best_path = dir.best(Weights::Head);
    let fresh =
        SweepState { config: cfg.clone(), samples: n, data: fingerprint(features, labels), rows: vec![], refit: None };
    let (mut state, mut theta, mut best_theta, mut grad, mut history) = resume(dir, fresh, sink)?;
    let train =
        Data::new(take_rows(features, &split.train), &take_rows(labels, &split.train), classes, cfg.standardize);
    let (xv, yv) = (take_rows(features, &split.val), take_rows(labels, &split.val));
    let grid = cfg.order();
    let total = grid.len();
    let mut stopped = false;
    // Asked between L-BFGS iterations; a fit cut short is not recorded.
    let asked = std::cell::Cell::new(false);
    let mut stop = || {
        let s = dir.stop_requested() || crate::interrupt::requested().is_some();
        asked.set(s);
        s
    };
    for (i, &lambda) in grid.iter().enumerate().skip(state.rows.len()) {
        if state.refit.is_some() {
            break;
        }
        let start = theta.as_ref().map(|theta| Start {
            theta,
            known: grad.as_ref().zip(state.rows.last()).map(|(grad, row)| Known {
                loss: row.objective,
                grad,
                history: &history,
                lambda: row.lambda,
            }),
        });
        let m = fit_one(&train, classes, lambda, start, cfg, &mut stop)?;
        if asked.get() {
            stopped = true;
            break;
        }
        let model = train.model(&m.x, classes);
        let (val_acc, val_loss) = score(&model, &xv, &yv);
        let row = SweepRow {
            lambda,
            c: 1.0 / (lambda * split.train.len() as f64),
            val_acc,
            val_loss,
            objective: m.loss,
            iterations: m.iterations,
            evaluations: m.evaluations,
            converged: m.converged,
            grad_max: m.grad_max,
        };
        sink.info(&format!(
            "logreg lambda {lambda:.3e} ({} of {total}): validation accuracy {val_acc:.4}, {} iterations{}",
            i + 1,
            m.iterations,
            if m.converged { "" } else { ", NOT converged" }
        ));
        state.rows.push(row);
        if best_of(&state.rows) == state.rows.len() - 1 {
            crate::tensorfile::write(&best_path, &model.tensors(), &HashMap::new())?;
            best_theta = Some(m.x.copy());
        }
        theta = Some(m.x);
        grad = Some(m.grad);
        history = m.history;
        let warm = grad.as_ref().map(|g| (g, &history));
        save_state(dir, &state, theta.as_ref().unwrap(), best_theta.as_ref().unwrap(), warm)?;
        crate::interrupt::check(|| resume_hint(dir, "sweep", &format!("after lambda {} of {total}", i + 1)))?;
    }
    if state.rows.is_empty() {
        return Err(Error::Training(format!(
            "stopped before the first lambda was fitted; {}",
            resume_hint(dir, "sweep", "")
        )));
    }
    let best = best_of(&state.rows);
    let row = state.rows[best].clone();
    if stopped {
        let _ = std::fs::remove_file(dir.stop_file());
        sink.warn(&format!(
            "logreg sweep stopped on request after {} of {total} lambdas; the best so far (lambda {:.3e}, validation \
             accuracy {:.4}) is kept, fitted on the training split only (no refit on train + validation); {}",
            state.rows.len(),
            row.lambda,
            row.val_acc,
            resume_hint(dir, "sweep", "")
        ));
    } else if state.refit.is_none() {
        let all = Data::new(features.shallow_clone(), labels, classes, cfg.standardize);
        let start = best_theta.as_ref().map(|theta| Start { theta, known: None });
        let m = fit_one(&all, classes, row.lambda, start, cfg, &mut || false)?;
        let model = all.model(&m.x, classes);
        crate::tensorfile::write(&best_path, &model.tensors(), &HashMap::new())?;
        state.refit = Some(Refit {
            lambda: row.lambda,
            rows: n as usize,
            iterations: m.iterations,
            converged: m.converged,
            objective: m.loss,
        });
        save_state(dir, &state, &m.x, &m.x, None)?;
        sink.info(&format!(
            "logreg: lambda {:.3e} chosen (validation accuracy {:.4}); refit on {n} rows in {} iterations{}",
            row.lambda,
            row.val_acc,
            m.iterations,
            if m.converged { "" } else { ", NOT converged" }
        ));
    }
    let (saved, _) = crate::tensorfile::read(&best_path)?;
    let (Some(weight), Some(bias)) = (saved.get("fc.weight"), saved.get("fc.bias")) else {
        return Err(Error::Checkpoint {
            path: best_path,
            source: tch::TchError::FileFormat("fc.weight or fc.bias is missing".into()),
        });
    };
    Ok(SweepOutcome {
        model: Logreg { weight: weight.shallow_clone(), bias: bias.shallow_clone() },
        rows: state.rows,
        best,
        refit: state.refit,
        stopped,
        train_samples: split.train.len(),
        val_samples: split.val.len(),
    })
}

/// The rows so far, the last fit's parameters (the next warm start), gradient and
/// curvature pairs (so that a resumed sweep starts its next fit as an uninterrupted one
/// would), and the best's.
fn save_state(
    dir: &RunDir,
    state: &SweepState,
    theta: &Tensor,
    best: &Tensor,
    warm: Option<(&Tensor, &History)>,
) -> Result<()> {
    let mut tensors = vec![("theta".into(), theta.shallow_clone()), ("theta_best".into(), best.shallow_clone())];
    if let Some((g, history)) = warm {
        tensors.push(("grad".into(), g.shallow_clone()));
        if !history.steps.is_empty() {
            tensors.push(("history_steps".into(), Tensor::stack(&history.steps, 0)));
            tensors.push(("history_changes".into(), Tensor::stack(&history.changes, 0)));
        }
    }
    checkpoint(dir).save(state, &tensors)
}

/// The saved sweep when `dir` holds this one's (same settings and data), with the warm
/// start and the best fit's parameters.
type Resumed = (SweepState, Option<Tensor>, Option<Tensor>, Option<Tensor>, History);

fn resume(dir: &RunDir, fresh: SweepState, sink: &mut dyn EventSink) -> Result<Resumed> {
    let start = || (fresh.clone(), None, None, None, History::default());
    let ckpt = checkpoint(dir);
    let Some(mut loaded) = ckpt.load::<SweepState>()? else {
        return Ok(start());
    };
    let Some(state) = loaded.state.take() else {
        sink.warn(&format!("{} is not a logreg sweep's; the sweep starts over", loaded.path.display()));
        return Ok(start());
    };
    if !ckpt.same_job(state.identity(), fresh.identity(), "the sweep", sink) {
        return Ok(start());
    }
    let (theta, best) = (loaded.take("theta")?, loaded.take("theta_best")?);
    // Absent in sweeps saved before it was kept: the next fit then evaluates it.
    let grad = loaded.tensors.remove("grad");
    let history = match (loaded.tensors.remove("history_steps"), loaded.tensors.remove("history_changes")) {
        (Some(s), Some(y)) => History { steps: s.unbind(0), changes: y.unbind(0) },
        _ => History::default(),
    };
    sink.info(&format!(
        "resuming the logreg sweep after {} of {} lambdas from {}",
        state.rows.len(),
        fresh.config.order().len(),
        loaded.path.display()
    ));
    Ok((state, Some(theta), Some(best), grad, history))
}

fn checkpoint(dir: &RunDir) -> Checkpoint<'_> {
    Checkpoint { dir, weights: Weights::Head, key: STATE_KEY }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

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

    /// `rows` x `dim` standard-normal f64 features with `classes` random labels, from `seed`.
    fn random_data(seed: i64, rows: i64, dim: i64, classes: i64) -> Data {
        tch::manual_seed(seed);
        let x = Tensor::randn([rows, dim], (Kind::Double, Device::Cpu));
        let y = Tensor::randint(classes, [rows], (Kind::Int64, Device::Cpu));
        Data::new(x, &y, classes, false)
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let data = random_data(3, 40, 5, 3);
        let mut obj = Penalised::new(&data, 0.3, 3);
        let theta = Tensor::randn([18], (Kind::Double, Device::Cpu));
        let (_, g) = obj.value_grad(&theta).unwrap();
        for i in 0..18 {
            let e = Tensor::zeros([18], (Kind::Double, Device::Cpu)).index_fill(0, &Tensor::from_slice(&[i]), 1e-6);
            let (fp, _) = obj.value_grad(&(&theta + &e)).unwrap();
            let (fm, _) = obj.value_grad(&(&theta - &e)).unwrap();
            let fd = (fp - fm) / 2e-6;
            assert!((fd - g.double_value(&[i])).abs() < 1e-6, "entry {i}: {fd} vs {}", g.double_value(&[i]));
        }
    }

    /// The line search on carried logits reaches the minimum that full evaluations reach,
    /// with one gradient per iteration (plus the first); its values and slopes along a
    /// line are those of the objective itself.
    #[test]
    fn cheap_lines_agree_with_full_evaluations() {
        let data = random_data(5, 300, 20, 4);
        let cfg = LbfgsConfig { tol_grad: 1e-9, tol_change: 0.0, ..Default::default() };
        let x0 = Tensor::zeros([84], (Kind::Double, Device::Cpu));
        let mut cheap = Penalised::new(&data, 1e-3, 4);
        let a = minimize(&mut cheap, &x0, &cfg, &mut || false).unwrap();
        let mut full = Penalised { cheap_lines: false, ..Penalised::new(&data, 1e-3, 4) };
        let b = minimize(&mut full, &x0, &cfg, &mut || false).unwrap();
        assert!(a.converged && b.converged, "{a:?} {b:?}");
        assert!((a.loss - b.loss).abs() < 1e-12 * b.loss, "{} vs {}", a.loss, b.loss);
        assert!((&a.x - &b.x).abs().max().double_value(&[]) < 1e-6);
        assert_eq!(a.evaluations, a.iterations + 1, "{a:?}");

        let theta = Tensor::randn([84], (Kind::Double, Device::Cpu));
        let d = Tensor::randn([84], (Kind::Double, Device::Cpu));
        let mut obj = Penalised::new(&data, 0.3, 4);
        for t in [0.0, 0.37, 1.5] {
            let (want_f, want_g) = obj.value_grad(&(&theta + &d * t)).unwrap();
            let mut line = obj.line(&theta, &d).unwrap();
            let (f, slope) = line.value_slope(t).unwrap();
            let g = line.grad(t).unwrap();
            drop(line);
            assert!((f - want_f).abs() < 1e-12 * want_f.abs().max(1.0), "t {t}: {f} vs {want_f}");
            let want_slope = want_g.dot(&d).double_value(&[]);
            assert!((slope - want_slope).abs() < 1e-9 * want_slope.abs().max(1.0), "t {t}: {slope} vs {want_slope}");
            assert!((g - want_g).abs().max().double_value(&[]) < 1e-12);
        }
    }

    /// A warm start at a new lambda, with the last fit's objective, gradient and curvature
    /// pairs moved to it, reaches the cold fit's minimum; each moved pair is exactly the
    /// new objective's gradient change over its step.
    #[test]
    fn warm_starts_carry_exact_curvature_to_the_next_lambda() {
        let data = random_data(6, 300, 20, 4);
        let cfg = LogregConfig { tol: 1e-6, ..Default::default() };
        let first = fit_one(&data, 4, 1e-1, None, &cfg, &mut || false).unwrap();
        assert!(!first.history.steps.is_empty());
        let known = Known { loss: first.loss, grad: &first.grad, history: &first.history, lambda: 1e-1 };
        let warm =
            fit_one(&data, 4, 1e-2, Some(Start { theta: &first.x, known: Some(known) }), &cfg, &mut || false).unwrap();
        let cold = fit_one(&data, 4, 1e-2, None, &cfg, &mut || false).unwrap();
        assert!(warm.converged && cold.converged, "{warm:?} {cold:?}");
        assert!((warm.loss - cold.loss).abs() < 1e-10, "{} vs {}", warm.loss, cold.loss);
        assert!((&warm.x - &cold.x).abs().max().double_value(&[]) < 1e-4);

        // A pair measured at lambda 1e-1, moved to 1e-2, against the 1e-2 objective's.
        let (a, b) =
            (Tensor::randn([84], (Kind::Double, Device::Cpu)), Tensor::randn([84], (Kind::Double, Device::Cpu)));
        let grad = |lambda: f64, t: &Tensor| Penalised::new(&data, lambda, 4).value_grad(t).unwrap().1;
        let pair = History { steps: vec![&b - &a], changes: vec![grad(1e-1, &b) - grad(1e-1, &a)] };
        let want = grad(1e-2, &b) - grad(1e-2, &a);
        let got = moved(&pair, 80, 1e-2 - 1e-1);
        assert!((&got.changes[0] - &want).abs().max().double_value(&[]) < 1e-12);
        assert!((&got.changes[0] - &pair.changes[0]).abs().max().double_value(&[]) > 1e-3, "the move changed it");
    }

    #[test]
    fn standardising_is_folded_into_raw_feature_weights() {
        tch::manual_seed(4);
        let x = Tensor::randn([60, 4], (Kind::Double, Device::Cpu)) * 7.0 + 3.0;
        let y = Tensor::randint(2, [60], (Kind::Int64, Device::Cpu));
        let cfg = LogregConfig { standardize: true, tol: 1e-8, ..Default::default() };
        let data = Data::new(x.shallow_clone(), &y, 2, true);
        let m = fit_one(&data, 2, 0.1, None, &cfg, &mut || false).unwrap();
        let raw = data.model(&m.x, 2);
        let w = m.x.narrow(0, 0, 8).view([2, 4]);
        let b = m.x.narrow(0, 8, 2);
        let direct = data.x.matmul(&w.tr()) + b;
        let diff = (raw.logits(&x) - direct).abs().max().double_value(&[]);
        assert!(diff < 1e-9, "{diff}");
    }
}
