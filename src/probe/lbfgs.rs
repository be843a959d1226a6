//! L-BFGS with a strong-Wolfe line search, on tch tensors so it runs on the features'
//! device. The algorithm and constants are PyTorch's `torch.optim.LBFGS`
//! (`line_search_fn="strong_wolfe"`), which follows Nocedal & Wright, Algorithms 7.4
//! and 3.5-3.6.
//!
//! Why our own: the maintained Rust crates (argmin, liblbfgs bindings) work on host
//! vectors (`Vec`, ndarray, nalgebra), so each objective call would copy the parameters
//! off the device and back; here every vector stays a tensor where the features are.
use crate::{Error, Result};
use tch::Tensor;

/// A smooth function of a flat parameter vector: its value and gradient at `x`.
pub trait Objective {
    /// `(f(x), ∇f(x))`, the gradient shaped like `x`.
    fn value_grad(&mut self, x: &Tensor) -> Result<(f64, Tensor)>;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbfgsConfig {
    pub max_iter: usize,
    /// Converged when the largest gradient entry is at most this (scipy's `gtol`).
    pub tol_grad: f64,
    /// Stop when the largest step entry, or the loss change relative to the loss (at
    /// least 1), is at most this: progress below rounding.
    pub tol_change: f64,
    /// Pairs of past steps kept (scipy's default).
    pub history: usize,
    /// Objective evaluations allowed per line search.
    pub max_ls: usize,
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        LbfgsConfig { max_iter: 1000, tol_grad: 1e-4, tol_change: 1e-12, history: 10, max_ls: 25 }
    }
}

/// Where a minimisation ended.
#[derive(Debug)]
pub struct Minimum {
    pub x: Tensor,
    pub loss: f64,
    /// Largest absolute gradient entry at `x`.
    pub grad_max: f64,
    pub iterations: usize,
    pub evaluations: usize,
    /// The gradient tolerance was met (not only a step or loss change too small).
    pub converged: bool,
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.dot(b).double_value(&[])
}

fn abs_max(a: &Tensor) -> f64 {
    a.abs().max().double_value(&[])
}

/// Minimises `f` from `x0`. `stop` is asked between iterations; when it says yes the
/// point reached so far is returned with `converged: false`. A non-finite loss is an error.
pub fn minimize(
    f: &mut dyn Objective,
    x0: &Tensor,
    cfg: &LbfgsConfig,
    stop: &mut dyn FnMut() -> bool,
) -> Result<Minimum> {
    let _guard = tch::no_grad_guard();
    let mut x = x0.copy();
    let (mut loss, mut g) = eval(f, &x)?;
    let mut evals = 1;
    let mut grad_max = abs_max(&g);
    let mut iterations = 0;
    let (mut dirs, mut steps, mut ro): (Vec<Tensor>, Vec<Tensor>, Vec<f64>) = (vec![], vec![], vec![]);
    let mut h_diag = 1.0;
    let mut prev: Option<(Tensor, Tensor, f64)> = None; // (d, g, t) of the last iteration
    while grad_max > cfg.tol_grad && iterations < cfg.max_iter && !stop() {
        iterations += 1;
        let d = match prev.take() {
            None => -&g,
            Some((d_prev, g_prev, t_prev)) => {
                let y = &g - &g_prev;
                let s = &d_prev * t_prev;
                let (ys, yy) = (dot(&y, &s), dot(&y, &y));
                // Relative, not PyTorch's absolute 1e-10: near the optimum every pair is
                // tiny, and skipping them all stalls the tail (scipy keeps them).
                if ys > 1e-10 * yy {
                    if dirs.len() == cfg.history {
                        drop(dirs.remove(0));
                        drop(steps.remove(0));
                        ro.remove(0);
                    }
                    h_diag = ys / yy;
                    dirs.push(y);
                    steps.push(s);
                    ro.push(1.0 / ys);
                }
                two_loop(&g, &dirs, &steps, &ro, h_diag)
            }
        };
        let gtd = dot(&g, &d);
        if gtd > -cfg.tol_change {
            break;
        }
        // scipy's first step, 1/||g||_2 (PyTorch's 1/||g||_1 is far shorter in many dimensions).
        let t0 = if iterations == 1 { (1.0 / dot(&g, &g).sqrt()).min(1.0) } else { 1.0 };
        let ls = strong_wolfe(f, &x, t0, &d, loss, &g, gtd, cfg)?;
        evals += ls.evals;
        let step = &d * ls.t;
        x += &step;
        let (prev_loss, g_old) = (loss, std::mem::replace(&mut g, ls.g));
        loss = ls.f;
        grad_max = abs_max(&g);
        let scale = loss.abs().max(prev_loss.abs()).max(1.0);
        if abs_max(&step) <= cfg.tol_change || (loss - prev_loss).abs() <= cfg.tol_change * scale {
            break;
        }
        prev = Some((d, g_old, ls.t));
    }
    Ok(Minimum { x, loss, grad_max, iterations, evaluations: evals, converged: grad_max <= cfg.tol_grad })
}

fn eval(f: &mut dyn Objective, x: &Tensor) -> Result<(f64, Tensor)> {
    let (v, g) = f.value_grad(x)?;
    if !v.is_finite() {
        return Err(Error::Training(format!("the objective is {v}; are there NaN or infinite features?")));
    }
    Ok((v, g))
}

/// The L-BFGS direction `-H g` by the two-loop recursion.
fn two_loop(g: &Tensor, dirs: &[Tensor], steps: &[Tensor], ro: &[f64], h_diag: f64) -> Tensor {
    let mut q = -g;
    let mut al = vec![0.0; dirs.len()];
    for i in (0..dirs.len()).rev() {
        al[i] = dot(&steps[i], &q) * ro[i];
        q -= &dirs[i] * al[i];
    }
    let mut r = q * h_diag;
    for i in 0..dirs.len() {
        let be = dot(&dirs[i], &r) * ro[i];
        r += &steps[i] * (al[i] - be);
    }
    r
}

/// The minimiser of the cubic through `(x1, f1, g1)` and `(x2, f2, g2)`, clamped to `bounds`.
fn cubic_interpolate(x1: f64, f1: f64, g1: f64, x2: f64, f2: f64, g2: f64, bounds: Option<(f64, f64)>) -> f64 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        min_pos.max(lo).min(hi)
    } else {
        (lo + hi) / 2.0
    }
}

/// One end of a bracketing interval: step, loss, gradient, directional derivative.
struct Point {
    t: f64,
    f: f64,
    g: Tensor,
    gtd: f64,
}

struct LineSearch {
    t: f64,
    f: f64,
    g: Tensor,
    evals: usize,
}

const C1: f64 = 1e-4;
const C2: f64 = 0.9;

/// A step along `d` satisfying the strong Wolfe conditions (or the best point found).
#[allow(clippy::too_many_arguments)]
fn strong_wolfe(
    f: &mut dyn Objective,
    x: &Tensor,
    mut t: f64,
    d: &Tensor,
    f0: f64,
    g0: &Tensor,
    gtd0: f64,
    cfg: &LbfgsConfig,
) -> Result<LineSearch> {
    let d_norm = abs_max(d);
    let mut at = |t: f64| -> Result<(f64, Tensor, f64)> {
        let (fv, g) = eval(f, &(x + d * t))?;
        let gtd = dot(&g, d);
        Ok((fv, g, gtd))
    };
    let (mut f_new, mut g_new, mut gtd_new) = at(t)?;
    let mut evals = 1;
    let mut prev = Point { t: 0.0, f: f0, g: g0.shallow_clone(), gtd: gtd0 };
    let mut ls_iter = 0;
    // Bracketing: grow the step until an interval holds a point that satisfies Wolfe.
    let mut bracket: Vec<Point> = loop {
        if ls_iter >= cfg.max_ls {
            break vec![
                Point { t: 0.0, f: f0, g: g0.shallow_clone(), gtd: gtd0 },
                Point { t, f: f_new, g: g_new, gtd: gtd_new },
            ];
        }
        if f_new > f0 + C1 * t * gtd0 || (ls_iter > 1 && f_new >= prev.f) {
            break vec![prev, Point { t, f: f_new, g: g_new, gtd: gtd_new }];
        }
        if gtd_new.abs() <= -C2 * gtd0 {
            return Ok(LineSearch { t, f: f_new, g: g_new, evals });
        }
        if gtd_new >= 0.0 {
            break vec![prev, Point { t, f: f_new, g: g_new, gtd: gtd_new }];
        }
        let (min_step, max_step) = (t + 0.01 * (t - prev.t), t * 10.0);
        let next = cubic_interpolate(prev.t, prev.f, prev.gtd, t, f_new, gtd_new, Some((min_step, max_step)));
        prev = Point { t, f: f_new, g: g_new, gtd: gtd_new };
        t = next;
        (f_new, g_new, gtd_new) = at(t)?;
        evals += 1;
        ls_iter += 1;
    };
    // Zoom: shrink the interval to a Wolfe point.
    let mut insuf_progress = false;
    let (mut lo, mut hi) = if bracket[0].f <= bracket[1].f { (0, 1) } else { (1, 0) };
    while ls_iter < cfg.max_ls {
        if (bracket[1].t - bracket[0].t).abs() * d_norm < cfg.tol_change {
            break;
        }
        let (b0, b1) = (&bracket[0], &bracket[1]);
        t = cubic_interpolate(b0.t, b0.f, b0.gtd, b1.t, b1.f, b1.gtd, None);
        let (bmin, bmax) = (b0.t.min(b1.t), b0.t.max(b1.t));
        let eps = 0.1 * (bmax - bmin);
        if (bmax - t).min(t - bmin) < eps {
            if insuf_progress || t >= bmax || t <= bmin {
                t = if (t - bmax).abs() < (t - bmin).abs() { bmax - eps } else { bmin + eps };
                insuf_progress = false;
            } else {
                insuf_progress = true;
            }
        } else {
            insuf_progress = false;
        }
        let (fv, g, gtd) = at(t)?;
        evals += 1;
        ls_iter += 1;
        if fv > f0 + C1 * t * gtd0 || fv >= bracket[lo].f {
            bracket[hi] = Point { t, f: fv, g, gtd };
            (lo, hi) = if bracket[0].f <= bracket[1].f { (0, 1) } else { (1, 0) };
        } else {
            let done = gtd.abs() <= -C2 * gtd0;
            if !done && gtd * (bracket[hi].t - bracket[lo].t) >= 0.0 {
                let low = &bracket[lo];
                bracket[hi] = Point { t: low.t, f: low.f, g: low.g.shallow_clone(), gtd: low.gtd };
            }
            bracket[lo] = Point { t, f: fv, g, gtd };
            if done {
                break;
            }
        }
    }
    let best = bracket.swap_remove(lo);
    Ok(LineSearch { t: best.t, f: best.f, g: best.g, evals })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The 2-D Rosenbrock function, minimum at (1, 1): the classic quasi-Newton test.
    struct Rosenbrock;

    impl Objective for Rosenbrock {
        fn value_grad(&mut self, x: &Tensor) -> Result<(f64, Tensor)> {
            let v = Vec::<f64>::try_from(x).unwrap();
            let (a, b) = (v[0], v[1]);
            let f = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            let g = [-2.0 * (1.0 - a) - 400.0 * a * (b - a * a), 200.0 * (b - a * a)];
            Ok((f, Tensor::from_slice(&g)))
        }
    }

    #[test]
    fn finds_rosenbrocks_minimum() {
        let x0 = Tensor::from_slice(&[-1.2f64, 1.0]);
        let cfg = LbfgsConfig { tol_grad: 1e-8, tol_change: 0.0, ..Default::default() };
        let m = minimize(&mut Rosenbrock, &x0, &cfg, &mut || false).unwrap();
        let x = Vec::<f64>::try_from(&m.x).unwrap();
        assert!(m.converged, "{m:?}");
        assert!((x[0] - 1.0).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6, "{x:?}");
        // Nocedal & Wright report ~35 iterations for BFGS from (-1.2, 1).
        assert!(m.iterations < 60, "{} iterations", m.iterations);
    }

    struct Quadratic(Tensor);

    impl Objective for Quadratic {
        fn value_grad(&mut self, x: &Tensor) -> Result<(f64, Tensor)> {
            let r = x - &self.0;
            Ok(((&r * &r).sum(Kind::Double).double_value(&[]), r * 2.0))
        }
    }

    #[test]
    fn stops_when_asked_and_says_not_converged() {
        let target = Tensor::ones([50], (Kind::Float, Device::Cpu));
        let x0 = Tensor::zeros([50], (Kind::Float, Device::Cpu));
        let mut calls = 0;
        let m = minimize(&mut Quadratic(target.shallow_clone()), &x0, &Default::default(), &mut || {
            calls += 1;
            true
        })
        .unwrap();
        assert_eq!((m.iterations, m.converged, calls), (0, false, 1));
        let m = minimize(&mut Quadratic(target), &x0, &Default::default(), &mut || false).unwrap();
        assert!(m.converged && m.loss < 1e-8, "{m:?}");
    }

    struct NanAt(f64);

    impl Objective for NanAt {
        fn value_grad(&mut self, x: &Tensor) -> Result<(f64, Tensor)> {
            let v = x.double_value(&[0]);
            Ok((if v > self.0 { f64::NAN } else { (v - 5.0).powi(2) }, (x - 5.0) * 2.0))
        }
    }

    #[test]
    fn a_non_finite_objective_is_an_error() {
        let err =
            minimize(&mut NanAt(1.0), &Tensor::from_slice(&[0.0f64]), &Default::default(), &mut || false).unwrap_err();
        assert!(err.to_string().contains("NaN"), "{err}");
    }
}
