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

    /// Whether [`Objective::line`] is cheaper than full evaluations along a line.
    fn has_lines(&self) -> bool {
        false
    }

    /// The function along `x + t d`, for objectives whose trial steps are cheap once the
    /// line is known (a linear model's logits there are `z + t z_d`): the line search then
    /// pays one gradient per iteration instead of one per trial step. Called only when
    /// [`Objective::has_lines`] says so.
    fn line(&mut self, _x: &Tensor, _d: &Tensor) -> Result<Box<dyn Line + '_>> {
        Err(Error::Training("this objective has no line restriction".into()))
    }
}

/// An objective restricted to one line `x + t d` (see [`Objective::line`]).
pub trait Line {
    /// `f(x + t d)` and its slope in `t`, `∇f(x + t d) · d`.
    fn value_slope(&mut self, t: f64) -> Result<(f64, f64)>;
    /// `∇f(x + t d)`.
    fn grad(&mut self, t: f64) -> Result<Tensor>;
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
    /// The gradient at `x`.
    pub grad: Tensor,
    /// The curvature pairs the last iterations kept, for a warm start of a nearby problem.
    pub history: History,
}

/// L-BFGS's memory: the last steps `s` and gradient changes `y`, oldest first.
#[derive(Debug, Default)]
pub struct History {
    pub steps: Vec<Tensor>,
    pub changes: Vec<Tensor>,
}

/// The two-loop recursion's form of a [`History`]: pairs with positive curvature, `1 / y.s`
/// of each, and the initial scaling `y.s / y.y` of the last.
struct Memory {
    dirs: Vec<Tensor>,
    steps: Vec<Tensor>,
    ro: Vec<f64>,
    h_diag: f64,
}

impl Memory {
    fn new() -> Memory {
        Memory { dirs: vec![], steps: vec![], ro: vec![], h_diag: 1.0 }
    }

    /// Keeps `(s, y)` when its curvature is clearly positive, dropping the oldest beyond
    /// `size`. Relative, not PyTorch's absolute 1e-10: near the optimum every pair is
    /// tiny, and skipping them all stalls the tail (scipy keeps them).
    fn push(&mut self, s: Tensor, y: Tensor, size: usize) {
        let (ys, yy) = (dot(&y, &s), dot(&y, &y));
        if ys > 1e-10 * yy {
            if self.dirs.len() == size {
                drop(self.dirs.remove(0));
                drop(self.steps.remove(0));
                self.ro.remove(0);
            }
            self.h_diag = ys / yy;
            self.dirs.push(y);
            self.steps.push(s);
            self.ro.push(1.0 / ys);
        }
    }

    fn into_history(self) -> History {
        History { steps: self.steps, changes: self.dirs }
    }
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
    minimize_from(f, x0, None, History::default(), cfg, stop)
}

/// [`minimize`] when `f(x0)` and its gradient are already known (`first`), as a warm
/// start often knows them: one evaluation fewer. `history` holds curvature pairs of `f`
/// measured elsewhere (a warm start's, adapted to `f`); the first step then follows them
/// instead of the gradient.
pub fn minimize_from(
    f: &mut dyn Objective,
    x0: &Tensor,
    first: Option<(f64, Tensor)>,
    history: History,
    cfg: &LbfgsConfig,
    stop: &mut dyn FnMut() -> bool,
) -> Result<Minimum> {
    let _guard = tch::no_grad_guard();
    let mut x = x0.copy();
    let mut evals = usize::from(first.is_none());
    let (mut loss, mut g) = match first {
        Some(known) => known,
        None => eval(f, &x)?,
    };
    let mut grad_max = abs_max(&g);
    let mut iterations = 0;
    let mut mem = Memory::new();
    for (s, y) in history.steps.into_iter().zip(history.changes) {
        mem.push(s, y, cfg.history);
    }
    let warm = !mem.dirs.is_empty();
    let mut prev: Option<(Tensor, Tensor, f64)> = None; // (d, g, t) of the last iteration
    while grad_max > cfg.tol_grad && iterations < cfg.max_iter && !stop() {
        iterations += 1;
        if let Some((d_prev, g_prev, t_prev)) = prev.take() {
            mem.push(&d_prev * t_prev, &g - &g_prev, cfg.history);
        }
        let d = if mem.dirs.is_empty() { -&g } else { two_loop(&g, &mem.dirs, &mem.steps, &mem.ro, mem.h_diag) };
        let gtd = dot(&g, &d);
        if gtd > -cfg.tol_change {
            break;
        }
        // scipy's first step, 1/||g||_2 (PyTorch's 1/||g||_1 is far shorter in many dimensions).
        let t0 = if iterations == 1 && !warm { (1.0 / dot(&g, &g).sqrt()).min(1.0) } else { 1.0 };
        let d_norm = abs_max(&d);
        let ls = if f.has_lines() {
            let mut line = f.line(&x, &d)?;
            strong_wolfe(&mut Cheap(&mut *line), t0, d_norm, loss, &g, gtd, cfg)?
        } else {
            strong_wolfe(&mut Full { f: &mut *f, x: &x, d: &d }, t0, d_norm, loss, &g, gtd, cfg)?
        };
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
    if let Some((d_prev, g_prev, t_prev)) = prev {
        mem.push(&d_prev * t_prev, &g - &g_prev, cfg.history);
    }
    Ok(Minimum {
        x,
        loss,
        grad_max,
        iterations,
        evaluations: evals,
        converged: grad_max <= cfg.tol_grad,
        grad: g,
        history: mem.into_history(),
    })
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
/// A trial step of the line search: `(f, slope)`, and the gradient when it came at no
/// extra cost.
type Trial = (f64, f64, Option<Tensor>);

/// What the line search evaluates along `x + t d`.
trait Probe {
    fn at(&mut self, t: f64) -> Result<Trial>;
    /// The gradient at `t`, for the point chosen when its trial did not give one.
    fn grad(&mut self, t: f64) -> Result<Tensor>;
}

/// Every trial a full evaluation.
struct Full<'a> {
    f: &'a mut dyn Objective,
    x: &'a Tensor,
    d: &'a Tensor,
}

impl Probe for Full<'_> {
    fn at(&mut self, t: f64) -> Result<Trial> {
        let (fv, g) = eval(self.f, &(self.x + self.d * t))?;
        let gtd = dot(&g, self.d);
        Ok((fv, gtd, Some(g)))
    }

    fn grad(&mut self, t: f64) -> Result<Tensor> {
        Ok(eval(self.f, &(self.x + self.d * t))?.1)
    }
}

/// Trials along a [`Line`]: values and slopes only; one gradient at the end.
struct Cheap<'a>(&'a mut dyn Line);

impl Probe for Cheap<'_> {
    fn at(&mut self, t: f64) -> Result<Trial> {
        let (fv, slope) = self.0.value_slope(t)?;
        if !fv.is_finite() {
            return Err(Error::Training(format!("the objective is {fv}; are there NaN or infinite features?")));
        }
        Ok((fv, slope, None))
    }

    fn grad(&mut self, t: f64) -> Result<Tensor> {
        self.0.grad(t)
    }
}

struct Point {
    t: f64,
    f: f64,
    g: Option<Tensor>,
    gtd: f64,
}

impl Point {
    fn of(t: f64, (f, gtd, g): Trial) -> Point {
        Point { t, f, g, gtd }
    }

    fn copy(&self) -> Point {
        Point { t: self.t, f: self.f, g: self.g.as_ref().map(|g| g.shallow_clone()), gtd: self.gtd }
    }
}

struct LineSearch {
    t: f64,
    f: f64,
    g: Tensor,
    /// Gradients computed (full passes over the data).
    evals: usize,
}

const C1: f64 = 1e-4;
const C2: f64 = 0.9;

/// The chosen point with its gradient, computed now if its trial did not give one.
fn finish(probe: &mut dyn Probe, p: Point, mut evals: usize) -> Result<LineSearch> {
    let g = match p.g {
        Some(g) => g,
        None => {
            evals += 1;
            probe.grad(p.t)?
        }
    };
    Ok(LineSearch { t: p.t, f: p.f, g, evals })
}

fn strong_wolfe(
    probe: &mut dyn Probe,
    mut t: f64,
    d_norm: f64,
    f0: f64,
    g0: &Tensor,
    gtd0: f64,
    cfg: &LbfgsConfig,
) -> Result<LineSearch> {
    // Full trials each cost a gradient; cheap ones none (counted in `finish`).
    let mut evals = 0;
    let count = |p: &Point| usize::from(p.g.is_some());
    let mut new = Point::of(t, probe.at(t)?);
    evals += count(&new);
    let origin = || Point { t: 0.0, f: f0, g: Some(g0.shallow_clone()), gtd: gtd0 };
    let mut prev = origin();
    let mut ls_iter = 0;
    let mut bracket: Vec<Point> = loop {
        if ls_iter >= cfg.max_ls {
            break vec![origin(), new];
        }
        if new.f > f0 + C1 * t * gtd0 || (ls_iter > 1 && new.f >= prev.f) {
            break vec![prev, new];
        }
        if new.gtd.abs() <= -C2 * gtd0 {
            return finish(probe, new, evals);
        }
        if new.gtd >= 0.0 {
            break vec![prev, new];
        }
        let (min_step, max_step) = (t + 0.01 * (t - prev.t), t * 10.0);
        let next = cubic_interpolate(prev.t, prev.f, prev.gtd, t, new.f, new.gtd, Some((min_step, max_step)));
        prev = new;
        t = next;
        new = Point::of(t, probe.at(t)?);
        evals += count(&new);
        ls_iter += 1;
    };
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
        let p = Point::of(t, probe.at(t)?);
        evals += count(&p);
        ls_iter += 1;
        if p.f > f0 + C1 * t * gtd0 || p.f >= bracket[lo].f {
            bracket[hi] = p;
            (lo, hi) = if bracket[0].f <= bracket[1].f { (0, 1) } else { (1, 0) };
        } else {
            let done = p.gtd.abs() <= -C2 * gtd0;
            if !done && p.gtd * (bracket[hi].t - bracket[lo].t) >= 0.0 {
                bracket[hi] = bracket[lo].copy();
            }
            bracket[lo] = p;
            if done {
                break;
            }
        }
    }
    let best = bracket.swap_remove(lo);
    finish(probe, best, evals)
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
