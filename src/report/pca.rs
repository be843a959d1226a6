//! A 2-D PCA of extracted features, coloured by class: do the classes separate?
use super::{colour, draw_chart, draw_empty, RunLabel};
use crate::features::FeatureSet;
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use tch::{Device, Kind, Tensor};

/// Features projected on their first two principal components.
#[derive(Debug, Clone)]
pub struct Pca {
    pub run: RunLabel,
    pub classes: Vec<String>,
    /// `(pc1, pc2, class index)` per plotted sample.
    pub points: Vec<(f64, f64, usize)>,
    /// Fraction of the variance each component explains.
    pub explained: [f64; 2],
}

impl Pca {
    /// Projects `features` `[N, D]` (labels `[N]`, indices into `classes`) on their top two
    /// principal components. At most `max_points` evenly spaced rows are used: enough to
    /// see the structure, and the decomposition stays quick on a CPU.
    pub fn compute(
        run: RunLabel,
        features: &Tensor,
        labels: &Tensor,
        classes: &[String],
        max_points: usize,
    ) -> Result<Pca> {
        let (fs, ls) = (features.size(), labels.size());
        if fs.len() != 2 || ls.len() != 1 || fs[0] != ls[0] {
            return Err(Error::invalid(
                "PCA input",
                format!("features {fs:?} and labels {ls:?}; expected [N, D] and [N]"),
            ));
        }
        let n = fs[0] as usize;
        if n < 2 || fs[1] < 1 {
            return Err(Error::invalid("PCA input", format!("features {fs:?}: need at least 2 rows and 1 column")));
        }
        let take = n.min(max_points.max(2));
        let idx: Vec<i64> = (0..take).map(|i| (i * n / take) as i64).collect();
        let idx = Tensor::from_slice(&idx);
        let x = features.f_to_device(Device::Cpu)?.f_index_select(0, &idx)?.f_to_kind(Kind::Double)?;
        let y: Vec<i64> =
            Vec::<i64>::try_from(labels.f_to_device(Device::Cpu)?.f_index_select(0, &idx)?.f_to_kind(Kind::Int64)?)?;
        let x = x.f_sub(&x.f_mean_dim(0, true, Kind::Double)?)?;
        let (proj, eig) = top2(&x)?;
        let total: f64 = eig.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let (mut pc1, mut pc2) = (column(&proj, 0)?, column(&proj, 1)?);
        fix_sign(&mut pc1);
        fix_sign(&mut pc2);
        let mut points = Vec::with_capacity(take);
        for (i, &label) in y.iter().enumerate() {
            if label < 0 || label as usize >= classes.len() {
                return Err(Error::invalid(
                    "PCA labels",
                    format!("label {label} outside the {} classes", classes.len()),
                ));
            }
            points.push((pc1[i], pc2[i], label as usize));
        }
        let k = eig.len();
        let explained = [eig[k - 1] / total, if k > 1 { eig[k - 2] / total } else { 0.0 }];
        Ok(Pca { run, classes: classes.to_vec(), points, explained })
    }

    /// PCA of a loaded feature cache; the title carries the cache's synthetic flag.
    pub fn from_feature_set(name: impl Into<String>, set: &FeatureSet, max_points: usize) -> Result<Pca> {
        let m = &set.manifest;
        let run = RunLabel { name: name.into(), synthetic: m.synthetic, pretrained: true };
        Self::compute(run, &set.features, &set.labels, &m.classes, max_points)
    }
}

/// Centred `x` `[N, D]` -> (projections `[N, 2]`, eigenvalues ascending). Eigen-decomposes
/// the smaller of the Gram `[N, N]` and covariance `[D, D]` matrices.
fn top2(x: &Tensor) -> Result<(Tensor, Vec<f64>)> {
    let (n, d) = (x.size()[0], x.size()[1]);
    let (eig, proj) = if n <= d {
        let k = n;
        // Eigenvectors u of X X^T give projections u * sqrt(lambda).
        let (vals, vecs) = x.f_matmul(&x.f_tr()?)?.f_linalg_eigh("L")?;
        let top = vecs.f_narrow(1, k - 2, 2)?;
        let scale = vals.f_narrow(0, k - 2, 2)?.f_clamp_min(0.0)?.f_sqrt()?;
        (vals, top.f_mul(&scale)?)
    } else {
        let (vals, vecs) = x.f_tr()?.f_matmul(x)?.f_linalg_eigh("L")?;
        let m = d.min(2);
        (vals, x.f_matmul(&vecs.f_narrow(1, d - m, m)?)?)
    };
    // Highest component first; a single component gets a zero second axis.
    let proj = proj.f_flip([1])?;
    let proj =
        if proj.size()[1] == 1 { Tensor::f_cat(&[proj.shallow_clone(), proj.f_zeros_like()?], 1)? } else { proj };
    let eig: Vec<f64> = Vec::<f64>::try_from(eig.f_clamp_min(0.0)?)?;
    Ok((proj, eig))
}

fn column(t: &Tensor, j: i64) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(t.f_select(1, j)?.f_contiguous()?)?)
}

/// Eigenvector signs are arbitrary; make the largest-magnitude coordinate positive so the
/// same data always gives the same picture.
fn fix_sign(v: &mut [f64]) {
    let big = v.iter().copied().fold(0.0f64, |a, b| if b.abs() > a.abs() { b } else { a });
    if big < 0.0 {
        v.iter_mut().for_each(|x| *x = -*x);
    }
}

/// The PCA scatter: one colour per class, with a legend of class names.
pub fn pca_scatter<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &Pca) -> Result<()> {
    draw_chart("PCA", root, |root| {
        let title = data.run.title("Features, first two principal components");
        if data.points.is_empty() {
            return draw_empty(root, &title, "no samples");
        }
        let range = |f: fn(&(f64, f64, usize)) -> f64| {
            let (lo, hi) = data.points.iter().map(f).fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
            let pad = ((hi - lo) * 0.05).max(1e-6);
            lo - pad..hi + pad
        };
        let mut chart = ChartBuilder::on(root)
            .caption(&title, super::title_font(root, &title)?)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(range(|p| p.0), range(|p| p.1))?;
        chart
            .configure_mesh()
            .x_desc(format!("PC1 ({:.1}% of variance)", data.explained[0] * 100.0))
            .y_desc(format!("PC2 ({:.1}% of variance)", data.explained[1] * 100.0))
            .draw()?;
        for (c, name) in data.classes.iter().enumerate() {
            let col = colour(c);
            let pts =
                data.points.iter().filter(|p| p.2 == c).map(|p| Circle::new((p.0, p.1), 3, col.mix(0.75).filled()));
            chart.draw_series(pts)?.label(name).legend(move |(x, y)| Circle::new((x + 8, y), 4, col.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 13))
            .draw()?;
        Ok(())
    })
}
