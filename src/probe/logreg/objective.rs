//! The penalised objective of one fit: mean (class-weighted) cross-entropy + `lambda/2 ||W||^2` over the
//! rows a fit sees ([`Data`]), its gradient a block of rows at a time, and lines along
//! which trial steps cost `[N, C]` work, not a pass over the features.
use super::super::lbfgs::{Line, Objective};
use super::Logreg;
use crate::metrics::ClassWeight;
use crate::Result;
use tch::{Kind, Tensor};

/// The rows one fit sees, standardised when asked, with what undoes it.
pub(super) struct Data {
    pub(super) x: Tensor,
    pub(super) onehot: Tensor,
    /// Per-feature `(mean, std)` the rows were standardised with.
    pub(super) scale: Option<(Tensor, Tensor)>,
    /// Each row's class weight `[N, 1]` (`--class-weight balanced`); `None`: all 1.
    pub(super) row_weight: Option<Tensor>,
}

impl Data {
    pub(super) fn new(x: Tensor, y: &Tensor, classes: i64, standardize: bool, weight: ClassWeight) -> Data {
        let y = y.to_device(x.device());
        let row_weight = (weight != ClassWeight::None).then(|| {
            let labels = Vec::<i64>::try_from(&y.to_device(tch::Device::Cpu)).unwrap_or_default();
            let w =
                Tensor::from_slice(&weight.weights(&labels, classes as usize)).to_kind(x.kind()).to_device(x.device());
            w.index_select(0, &y).unsqueeze(1)
        });
        // Weighted one-hot rows: the picked logit and the residual carry the row's weight.
        let onehot = y.one_hot(classes).to_kind(x.kind());
        let onehot = match &row_weight {
            Some(w) => onehot * w,
            None => onehot,
        };
        let (x, scale) = if standardize {
            let mean = x.mean_dim([0i64].as_slice(), true, x.kind());
            let std = x.std_mean_correction(Some([0i64].as_slice()), 0, true).0;
            // Constant features stay as they are (divided by one).
            let std = std.where_self(&std.gt(1e-12), &std.ones_like());
            ((&x - &mean) / &std, Some((mean, std)))
        } else {
            (x, None)
        };
        Data { x, onehot, scale, row_weight }
    }

    pub(super) fn rows(&self) -> f64 {
        self.x.size()[0] as f64
    }

    /// The parameter vector `[C*D + C]` as the model on raw features.
    pub(super) fn model(&self, theta: &Tensor, classes: i64) -> Logreg {
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
pub(super) struct Penalised<'a> {
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
    pub(super) fn new(data: &'a Data, lambda: f64, classes: i64) -> Self {
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
        let (lse, p) = match &self.owner.data.row_weight {
            Some(w) => (&lse * w, (z - lse).exp() * w),
            None => (lse.shallow_clone(), (z - lse).exp()),
        };
        let data_term = (&lse - picked).sum(Kind::Double).double_value(&[]);
        (p - onehot, data_term)
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
pub(super) const BLOCK_ROWS: i64 = 1024;

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
            let (lse, p) = match &self.data.row_weight {
                Some(w) => {
                    let w = w.narrow(0, start, len);
                    (&lse * &w, (logits - lse).exp() * w)
                }
                None => (lse.shallow_clone(), (logits - lse).exp()),
            };
            // Sums in f64: the objective is compared across line-search steps.
            data_term += (&lse - picked).sum(Kind::Double).double_value(&[]);
            let resid = p - onehot;
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::probe::lbfgs::{minimize, LbfgsConfig};
    use crate::probe::LogregConfig;
    use tch::Device;

    /// `rows` x `dim` standard-normal f64 features with `classes` random labels, from `seed`.
    pub(in crate::probe::logreg) fn random_data(seed: i64, rows: i64, dim: i64, classes: i64) -> Data {
        // Our own generator: libtorch's global one is shared by tests running in
        // parallel, so a seed there does not fix the data.
        let mut s = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut uniform = move || {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let x: Vec<f64> = (0..rows * dim)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect();
        let y: Vec<i64> = (0..rows).map(|_| ((uniform() * classes as f64) as i64).min(classes - 1)).collect();
        let x = Tensor::from_slice(&x).view([rows, dim]);
        Data::new(x, &Tensor::from_slice(&y), classes, false, ClassWeight::None)
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let plain = random_data(3, 40, 5, 3);
        let balanced =
            Data::new(plain.x.shallow_clone(), &plain.onehot.argmax(-1, false), 3, false, ClassWeight::Balanced);
        for data in [plain, balanced] {
            check_gradient(&data);
        }
    }

    fn check_gradient(data: &Data) {
        let mut obj = Penalised::new(data, 0.3, 3);
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
        // Full evaluations may stall a hair above the tolerance where the cheap line
        // converges: both must be at the minimum.
        assert!(a.converged && (b.converged || b.grad_max < 1e-8), "{a:?} {b:?}");
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

    #[test]
    fn standardising_is_folded_into_raw_feature_weights() {
        tch::manual_seed(4);
        let x = Tensor::randn([60, 4], (Kind::Double, Device::Cpu)) * 7.0 + 3.0;
        let y = Tensor::randint(2, [60], (Kind::Int64, Device::Cpu));
        let cfg = LogregConfig { standardize: true, tol: 1e-8, ..Default::default() };
        let data = Data::new(x.shallow_clone(), &y, 2, true, ClassWeight::None);
        let m = super::super::warm::fit_one(&data, 2, 0.1, None, &cfg, &mut || false).unwrap();
        let raw = data.model(&m.x, 2);
        let w = m.x.narrow(0, 0, 8).view([2, 4]);
        let b = m.x.narrow(0, 8, 2);
        let direct = data.x.matmul(&w.tr()) + b;
        let diff = (raw.logits(&x) - direct).abs().max().double_value(&[]);
        assert!(diff < 1e-9, "{diff}");
    }
}
