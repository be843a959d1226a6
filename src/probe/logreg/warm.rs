//! One fit at one `lambda`, from zeros or warm-started from the last fit: only the penalty
//! depends on `lambda`, so the last fit's objective, gradient and curvature pairs move to
//! the new `lambda` exactly.
use super::super::lbfgs::{minimize, minimize_from, History, Minimum};
use super::objective::{Data, Penalised};
use super::LogregConfig;
use crate::Result;
use tch::{Kind, Tensor};

/// Where a fit starts: parameters, and when they are the last fit's on the same rows, that
/// fit's objective, gradient, curvature pairs and `lambda`.
pub(super) struct Start<'a> {
    pub(super) theta: &'a Tensor,
    pub(super) known: Option<Known<'a>>,
}

pub(super) struct Known<'a> {
    pub(super) loss: f64,
    pub(super) grad: &'a Tensor,
    pub(super) history: &'a History,
    pub(super) lambda: f64,
}

/// One fit at `lambda` from `start` (zeros when `None`).
pub(super) fn fit_one(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::lbfgs::Objective;
    use crate::probe::logreg::objective::tests::random_data;
    use tch::Device;

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
}
