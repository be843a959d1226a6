//! How far to trust a model's probabilities: temperature scaling (Guo et al. 2017), one
//! parameter `T` dividing the logits, fitted on the validation split by minimising its
//! negative log-likelihood with the project's L-BFGS ([`crate::probe::lbfgs`]); expected
//! calibration error over 15 equal-width confidence bins and NLL, before and after.
//! Dividing by `T > 0` keeps every prediction; only the probabilities move.
use crate::probe::lbfgs::{self, LbfgsConfig, Objective};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Confidence bins of the ECE and the reliability diagram: `(i/15, (i+1)/15]`.
pub const BINS: usize = 15;

/// A fitted temperature and what it changed, on the rows it was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub temperature: f64,
    /// Validation rows the temperature was fitted on.
    pub samples: usize,
    pub before: Scores,
    pub after: Scores,
}

/// Calibration scores of probabilities against labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Expected calibration error: the bins' |accuracy - confidence|, weighted by rows.
    pub ece: f64,
    /// Mean negative log-likelihood of the true class.
    pub nll: f64,
    /// The [`BINS`] bins, lowest confidence first.
    pub bins: Vec<Bin>,
}

/// One confidence bin of the reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub count: usize,
    /// Mean top probability and accuracy of the bin's rows (0 when empty).
    pub confidence: f64,
    pub accuracy: f64,
}

impl Calibration {
    /// A run's `calibration.json`; `None` when the run was not calibrated.
    pub fn read(dir: &crate::rundir::RunDir) -> Result<Option<Calibration>> {
        let path = dir.calibration_file();
        if !path.is_file() {
            return Ok(None);
        }
        crate::fsutil::read_json(&path).map(Some)
    }

    pub fn write(&self, dir: &crate::rundir::RunDir) -> Result<()> {
        crate::fsutil::write_json_atomic(&dir.calibration_file(), self)
    }

    /// Fits `T` on `logits` `[N, K]` with `labels` `[N]` and scores both sides of it.
    pub fn fit(logits: &Tensor, labels: &Tensor) -> Result<Calibration> {
        let t = fit_temperature(logits, labels)?;
        Ok(Calibration {
            temperature: t,
            samples: logits.size()[0] as usize,
            before: scores(logits, labels)?,
            after: scores(&(logits.to_kind(Kind::Double) / t), labels)?,
        })
    }
}

/// The temperature minimising the mean NLL of `softmax(logits / T)`; `[N, K]`, `[N]`.
pub fn fit_temperature(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    check(logits, labels)?;
    let mut nll = Nll { logits: logits.to_kind(Kind::Double).detach(), labels: labels.to_kind(Kind::Int64) };
    // log T, so that every step keeps T positive; one parameter converges to rounding.
    let x0 = Tensor::zeros([1], (Kind::Double, logits.device()));
    let cfg = LbfgsConfig { tol_grad: 1e-10, ..Default::default() };
    let m = lbfgs::minimize(&mut nll, &x0, &cfg, &mut || false)?;
    Ok(m.x.double_value(&[0]).exp())
}

/// ECE over [`BINS`] bins, NLL and the bins, of `softmax(logits)` against `labels`.
pub fn scores(logits: &Tensor, labels: &Tensor) -> Result<Scores> {
    check(logits, labels)?;
    let logits = logits.to_kind(Kind::Double).to_device(tch::Device::Cpu);
    let labels = labels.to_kind(Kind::Int64).to_device(tch::Device::Cpu);
    let nll = mean_nll(&logits, &labels);
    let (conf, pred) = logits.softmax(-1, Kind::Double).max_dim(-1, false);
    let conf = Vec::<f64>::try_from(&conf)?;
    let right: Vec<bool> =
        Vec::<i64>::try_from(&pred)?.into_iter().zip(Vec::<i64>::try_from(&labels)?).map(|(p, y)| p == y).collect();
    let mut sums = vec![(0usize, 0.0, 0.0); BINS];
    for (&c, &r) in conf.iter().zip(&right) {
        // (lo, hi]: a confidence of exactly i/15 is in bin i-1, as gpleiss's reference bins it.
        let i = ((c * BINS as f64).ceil() as usize).clamp(1, BINS) - 1;
        sums[i].0 += 1;
        sums[i].1 += c;
        sums[i].2 += r as u8 as f64;
    }
    let n = conf.len() as f64;
    let bins: Vec<Bin> = sums
        .iter()
        .map(|&(k, c, a)| match k {
            0 => Bin { count: 0, confidence: 0.0, accuracy: 0.0 },
            _ => Bin { count: k, confidence: c / k as f64, accuracy: a / k as f64 },
        })
        .collect();
    let ece = bins.iter().map(|b| b.count as f64 / n * (b.accuracy - b.confidence).abs()).sum();
    Ok(Scores { ece, nll, bins })
}

/// Mean `-log softmax(z)_y` in f64 (tch's `cross_entropy_for_logits` rounds to f32).
fn mean_nll(z: &Tensor, y: &Tensor) -> f64 {
    let logp = z.log_softmax(-1, Kind::Double).gather(1, &y.unsqueeze(1), false);
    -logp.mean(Kind::Double).double_value(&[])
}

fn check(logits: &Tensor, labels: &Tensor) -> Result<()> {
    let (s, l) = (logits.size(), labels.size());
    if s.len() != 2 || l.len() != 1 || s[0] != l[0] || s[0] == 0 {
        let reason = format!("logits {s:?} and labels {l:?}; expected [N, K] and [N] with N > 0");
        return Err(Error::invalid("calibration data", reason));
    }
    Ok(())
}

/// Mean NLL as a function of `x = log T`, with its gradient by hand (L-BFGS runs under
/// no_grad): for `s = e^-x` and `p = softmax(s z)`, `dNLL/dx = -s mean(p.z - z_y)`.
struct Nll {
    logits: Tensor,
    labels: Tensor,
}

impl Objective for Nll {
    fn value_grad(&mut self, x: &Tensor) -> Result<(f64, Tensor)> {
        let s = (-x).exp();
        let z = &self.logits;
        let scaled = z * &s;
        let loss = mean_nll(&scaled, &self.labels);
        let p = scaled.softmax(-1, Kind::Double);
        let zy = z.gather(1, &self.labels.unsqueeze(1), false).squeeze_dim(1);
        let ds = ((p * z).sum_dim_intlist([1i64].as_slice(), false, Kind::Double) - zy).mean(Kind::Double);
        Ok((loss, -(s * ds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fitted_temperature_is_where_the_nll_is_lowest_and_keeps_the_predictions() {
        tch::manual_seed(1);
        let labels = Tensor::randint(4, [300], (Kind::Int64, tch::Device::Cpu));
        // Overconfident: right 70% of the time with logits scaled up.
        let noise = Tensor::randn([300, 4], (Kind::Double, tch::Device::Cpu));
        let logits = (noise + labels.one_hot(4).to_kind(Kind::Double) * 1.5) * 4.0;
        let cal = Calibration::fit(&logits, &labels).unwrap();
        let nll = |t: f64| mean_nll(&(&logits / t), &labels);
        let t = cal.temperature;
        assert!(t > 1.5, "overconfident logits are cooled: T = {t}");
        assert!(nll(t) <= nll(t * 1.001) && nll(t) <= nll(t / 1.001), "T = {t} is a minimum");
        assert!((cal.after.nll - nll(t)).abs() < 1e-12 && cal.after.nll < cal.before.nll);
        assert!(cal.after.ece < cal.before.ece, "{} -> {}", cal.before.ece, cal.after.ece);
        assert_eq!(cal.before.bins.iter().map(|b| b.count).sum::<usize>(), 300);
        let acc = |s: &Scores| s.bins.iter().map(|b| b.accuracy * b.count as f64).sum::<f64>();
        assert!((acc(&cal.before) - acc(&cal.after)).abs() < 1e-9, "same predictions");
        assert!(Calibration::fit(&logits, &labels.narrow(0, 0, 5)).is_err());
    }
}
