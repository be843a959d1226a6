//! The sweep: every `lambda` of the grid fitted on the training rows, warm-started from
//! the last, scored on the validation rows; the best refitted on all of them.
//!
//! Resume is exact: after every `lambda` the rows so far and the warm start (parameters,
//! gradient, L-BFGS curvature pairs) go into `head-last.safetensors` (one rename, by
//! [`crate::checkpoint`]), so a stopped or killed sweep continues at the next `lambda` from
//! the same warm start and ends with the same bytes.
use super::super::lbfgs::History;
use super::objective::{Data, BLOCK_ROWS};
use super::warm::{fit_one, Known, Start};
use super::{score, Logreg, LogregConfig};
use crate::checkpoint::{resume_hint, Checkpoint, Identity};
use crate::events::EventSink;
use crate::rundir::{RunDir, Weights};
use crate::train::Split;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tch::{Kind, Tensor};

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
    let train = Data::new(
        take_rows(features, &split.train),
        &take_rows(labels, &split.train),
        classes,
        cfg.standardize,
        cfg.class_weight,
    );
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
        let all = Data::new(features.shallow_clone(), labels, classes, cfg.standardize, cfg.class_weight);
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
