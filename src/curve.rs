//! How much data do you need? A learning curve on a run's cached features: `k` training
//! images per class (drawn per seed), logreg, k-NN and the head fitted on them, accuracy
//! on the whole test split; mean and spread over the seeds for each `k`.
//!
//! No validation split at these sizes (one image per class leaves none): logreg takes a
//! fixed penalty, the head a fixed number of epochs, k-NN at most the rows it has.
use crate::probe::knn::{self, KnnConfig};
use crate::probe::{logreg, LogregConfig};
use crate::run::records::{FeatureDirs, Trained};
use crate::rundir::RunDir;
use crate::train::{Head, HeadConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The classifiers a curve fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CurveMethod {
    /// Logistic regression by L-BFGS at a fixed penalty
    Logreg,
    /// k-NN voting
    Knn,
    /// The post's head (Dropout -> Dense) by Adam
    Head,
}

crate::choice::choice!(CurveMethod, "curve method");

/// What to fit: images per class (`None`: all), seeds, methods and their settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveConfig {
    pub shots: Vec<Option<usize>>,
    pub seeds: u64,
    pub methods: Vec<CurveMethod>,
    /// logreg's `lambda` (mean loss + lambda/2 ||W||^2).
    pub lambda: f64,
    pub knn: KnnConfig,
    pub head: HeadConfig,
}

impl Default for CurveConfig {
    fn default() -> Self {
        CurveConfig {
            shots: [1, 2, 4, 8, 16, 32].into_iter().map(Some).chain([None]).collect(),
            seeds: 3,
            methods: vec![CurveMethod::Logreg, CurveMethod::Knn, CurveMethod::Head],
            lambda: 1e-2,
            knn: KnnConfig { k: 20, ..Default::default() },
            head: HeadConfig::default(),
        }
    }
}

/// One method at one `k`: test accuracy over the seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub method: CurveMethod,
    /// Images per class asked for; `None` for all.
    pub shots: Option<usize>,
    /// Training rows actually used (fewer than `shots` x classes where a class is short).
    pub rows: usize,
    pub mean: f64,
    /// Standard deviation over the seeds (population), and the extremes.
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

/// A learning curve and what it had to make do with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub points: Vec<CurvePoint>,
    /// The most images any class has, where "all" sits on the x axis.
    pub largest_class: usize,
    pub test_samples: usize,
    /// "class `red` has 4 training images: 8 per class used all 4", once per class and k.
    pub short: Vec<String>,
}

impl Curve {
    /// The first point of `method`, fewest training rows first, whose mean accuracy is
    /// within `tolerance` of its mean on every image; `None` without an "all" point.
    pub fn levels_off(&self, method: CurveMethod, tolerance: f64) -> Option<&CurvePoint> {
        let mut line: Vec<&CurvePoint> = self.points.iter().filter(|p| p.method == method).collect();
        let all = line.iter().find(|p| p.shots.is_none())?.mean;
        line.sort_by_key(|p| (p.rows, p.shots.is_none()));
        line.into_iter().find(|p| p.mean >= all - tolerance)
    }
}

/// The curve of the finished probe run in `dir`, from its cached train and test features.
pub fn learning_curve(dir: &RunDir, cfg: &CurveConfig) -> Result<Curve> {
    let dirs = FeatureDirs::read(dir)?;
    let (Some(train), Some(test)) = (dirs.train, dirs.test) else {
        let reason = "names no cached train and test features: `tlab curve` takes a finished head, logreg or \
                      k-NN run (trained on features, then evaluated)";
        return Err(Error::data(dir.features_file(), reason));
    };
    let classes = Trained::read(dir)?.classes;
    let (train, test) = (crate::features::load_features(&train)?, crate::features::load_features(&test)?);
    curve_on(&train.features, &train.labels, &test.features, &test.labels, &classes, cfg)
}

/// The curve on features `[N, D]` with labels `[N]` in `0..names.len()`, tested on
/// `[M, D]`, `[M]`.
pub fn curve_on(
    x: &Tensor,
    y: &Tensor,
    xt: &Tensor,
    yt: &Tensor,
    names: &[String],
    cfg: &CurveConfig,
) -> Result<Curve> {
    let classes = names.len();
    let labels = Vec::<i64>::try_from(&y.to_device(Device::Cpu))?;
    let by_class: Vec<Vec<i64>> =
        (0..classes as i64).map(|c| (0..labels.len() as i64).filter(|&i| labels[i as usize] == c).collect()).collect();
    let largest_class = by_class.iter().map(Vec::len).max().unwrap_or(0);
    let mut short = vec![];
    for &k in cfg.shots.iter().flatten() {
        for (c, rows) in by_class.iter().enumerate().filter(|(_, r)| r.len() < k) {
            short.push(format!(
                "class `{}` has {} training images: {k} per class used all {}",
                names[c],
                rows.len(),
                rows.len()
            ));
        }
    }
    let mut points = vec![];
    for &method in &cfg.methods {
        for &k in &cfg.shots {
            let mut accs = vec![];
            let mut rows = 0;
            for seed in 0..cfg.seeds.max(1) {
                let idx = draw(&by_class, k, seed as i64)?;
                rows = idx.len();
                let t = Tensor::from_slice(&idx);
                let (xs, ys) = (x.index_select(0, &t), y.index_select(0, &t));
                accs.push(fit_and_score(method, &xs, &ys, xt, yt, classes as i64, seed as i64, cfg)?);
            }
            let n = accs.len() as f64;
            let mean = accs.iter().sum::<f64>() / n;
            let std = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n).sqrt();
            let (min, max) = (accs.iter().copied().fold(1.0, f64::min), accs.iter().copied().fold(0.0, f64::max));
            points.push(CurvePoint { method, shots: k, rows, mean, std, min, max });
        }
    }
    Ok(Curve { points, largest_class, test_samples: yt.size()[0] as usize, short })
}

/// `k` rows of each class (all of a short class's), drawn after `manual_seed(seed)`.
fn draw(by_class: &[Vec<i64>], k: Option<usize>, seed: i64) -> Result<Vec<i64>> {
    tch::manual_seed(seed);
    let mut out = vec![];
    for rows in by_class {
        let perm = Vec::<i64>::try_from(&Tensor::randperm(rows.len() as i64, (Kind::Int64, Device::Cpu)))?;
        out.extend(perm.iter().take(k.unwrap_or(rows.len())).map(|&i| rows[i as usize]));
    }
    Ok(out)
}

/// Test accuracy of `method` fitted on `x`, `y`.
#[allow(clippy::too_many_arguments)]
fn fit_and_score(
    method: CurveMethod,
    x: &Tensor,
    y: &Tensor,
    xt: &Tensor,
    yt: &Tensor,
    classes: i64,
    seed: i64,
    cfg: &CurveConfig,
) -> Result<f64> {
    let accuracy = |logits: &Tensor| {
        logits.argmax(-1, false).eq_tensor(yt).to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
    };
    match method {
        CurveMethod::Logreg => {
            let (m, _) = logreg::fit(x, y, classes, cfg.lambda, &LogregConfig::default())?;
            Ok(logreg::score(&m, xt, yt).0)
        }
        CurveMethod::Knn => {
            let knn = KnnConfig { k: cfg.knn.k.min(x.size()[0] as usize), ..cfg.knn.clone() };
            Ok(knn::classify(x, y, xt, classes, &knn)?.score(yt).0)
        }
        CurveMethod::Head => {
            tch::manual_seed(seed);
            let head = Head::new(x.size()[1], classes, cfg.head.dropout, x.device());
            let mut opt = cfg.head.optimizer(&head.vs)?;
            let (n, batch) = (x.size()[0], cfg.head.fit.batch_size.max(1));
            for _ in 0..cfg.head.fit.epochs {
                let perm = Tensor::randperm(n, (Kind::Int64, x.device()));
                for s in (0..n).step_by(batch as usize) {
                    let idx = perm.narrow(0, s, batch.min(n - s));
                    let loss = head
                        .forward_t(&x.index_select(0, &idx), true)
                        .cross_entropy_for_logits(&y.index_select(0, &idx));
                    opt.backward_step(&loss);
                }
            }
            Ok(tch::no_grad(|| accuracy(&head.forward_t(xt, false))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_shots_than_a_class_has_use_what_there_is_and_say_which() {
        tch::manual_seed(0);
        // Two classes apart in direction (k-NN votes by cosine), 6 and 2 rows; 10 to test.
        let y = Tensor::from_slice(&[0i64, 0, 0, 0, 0, 0, 1, 1]);
        let x = y.one_hot(3).to_kind(Kind::Float) * 4.0 + Tensor::randn([8, 3], (Kind::Float, Device::Cpu)) * 0.1;
        let yt = Tensor::from_slice(&[0i64, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
        let xt = yt.one_hot(3).to_kind(Kind::Float) * 4.0;
        let cfg = CurveConfig {
            shots: vec![Some(1), Some(4), None],
            seeds: 2,
            methods: vec![CurveMethod::Logreg, CurveMethod::Knn],
            knn: KnnConfig { k: 3, ..Default::default() },
            ..Default::default()
        };
        let names = ["ants".to_string(), "bees".to_string()];
        let c = curve_on(&x, &y, &xt, &yt, &names, &cfg).unwrap();
        assert_eq!(c.points.len(), 6);
        assert_eq!(c.short, vec!["class `bees` has 2 training images: 4 per class used all 2".to_string()]);
        assert_eq!(c.points.iter().map(|p| p.rows).collect::<Vec<_>>(), [2, 6, 8, 2, 6, 8]);
        assert!(c.points.iter().all(|p| p.mean == 1.0 && p.std == 0.0), "{:?}", c.points);
        assert_eq!((c.largest_class, c.test_samples), (6, 10));
    }

    #[test]
    fn a_curve_levels_off_where_it_comes_within_tolerance_of_all() {
        let p = |method, shots: Option<usize>, rows, mean| CurvePoint {
            method,
            shots,
            rows,
            mean,
            std: 0.0,
            min: mean,
            max: mean,
        };
        let c = Curve {
            points: vec![
                p(CurveMethod::Logreg, Some(1), 3, 0.40),
                p(CurveMethod::Logreg, Some(4), 12, 0.69),
                p(CurveMethod::Logreg, None, 60, 0.70),
                p(CurveMethod::Knn, None, 60, 0.80),
                p(CurveMethod::Knn, Some(4), 12, 0.60),
            ],
            largest_class: 20,
            test_samples: 30,
            short: vec![],
        };
        assert_eq!(c.levels_off(CurveMethod::Logreg, 0.02).and_then(|p| p.shots), Some(4));
        assert_eq!(c.levels_off(CurveMethod::Logreg, 0.001).map(|p| p.shots), Some(None));
        // Listed out of order: still the fewest rows first.
        assert_eq!(c.levels_off(CurveMethod::Knn, 0.02).map(|p| p.shots), Some(None));
        assert!(c.levels_off(CurveMethod::Head, 0.02).is_none());
    }
}
