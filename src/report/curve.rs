//! The learning curve ([`crate::curve`]) as a chart, a table and files: test accuracy
//! against training images per class, one line per method, the seeds' spread as bars.
use super::{draw_chart, draw_empty, Figure, RunLabel};
use crate::curve::{Curve, CurveConfig, CurveMethod};
use crate::rundir::RunDir;
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Input of [`learning_curve_chart`].
#[derive(Debug, Clone)]
pub struct LearningCurve {
    pub run: RunLabel,
    pub curve: Curve,
}

impl LearningCurve {
    /// Where `k` sits on the x axis: "all" at the largest class's count.
    fn x(&self, shots: Option<usize>) -> f64 {
        shots.unwrap_or(self.curve.largest_class).max(1) as f64
    }
}

/// Mean test accuracy per images-per-class (log axis), min..max over seeds as error bars.
pub fn learning_curve_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &LearningCurve,
) -> crate::Result<()> {
    draw_chart("learning curve", root, |root| {
        let title = data.run.title("Test accuracy by training images per class");
        let pts = &data.curve.points;
        if pts.is_empty() {
            return draw_empty(root, &title, "no points");
        }
        let hi = pts.iter().map(|p| data.x(p.shots)).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(root)
            .caption(&title, super::title_font(root, &title)?)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((0.8..hi * 1.25).log_scale(), 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc(format!("training images per class (all = {})", data.curve.largest_class))
            .y_desc(format!("test accuracy ({} images)", data.curve.test_samples))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for (i, method) in [CurveMethod::Logreg, CurveMethod::Knn, CurveMethod::Head].into_iter().enumerate() {
            let line: Vec<_> = pts.iter().filter(|p| p.method == method).collect();
            if line.is_empty() {
                continue;
            }
            let colour = super::colour(i);
            let xy: Vec<(f64, f64)> = line.iter().map(|p| (data.x(p.shots), p.mean)).collect();
            chart
                .draw_series(LineSeries::new(xy, colour.stroke_width(2)))?
                .label(method.name())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
            // The seeds' range as a bar through each mean.
            chart.draw_series(line.iter().map(|p| {
                PathElement::new([(data.x(p.shots), p.min), (data.x(p.shots), p.max)], colour.stroke_width(2))
            }))?;
            chart.draw_series(line.iter().map(|p| Circle::new((data.x(p.shots), p.mean), 4, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 13))
            .draw()?;
        Ok(())
    })
}

/// The curve as a Markdown table: a row per method and k, mean ± std over seeds.
pub fn curve_markdown(curve: &Curve) -> String {
    let mut s = String::from("| method | images per class | training rows | accuracy (mean ± std) | min | max |\n");
    s += "|---|---:|---:|---:|---:|---:|\n";
    for p in &curve.points {
        let k = p.shots.map_or("all".to_string(), |k| k.to_string());
        let _ = writeln!(
            s,
            "| {} | {k} | {} | {:.2}% ± {:.2} | {:.2}% | {:.2}% |",
            p.method.name(),
            p.rows,
            p.mean * 100.0,
            p.std * 100.0,
            p.min * 100.0,
            p.max * 100.0
        );
    }
    s
}

/// How close to its accuracy on every image a method must come to have levelled off.
pub const LEVEL_OFF_POINTS: f64 = 0.02;

/// The post's "small or large?" answered from the curve: where each method comes within
/// [`LEVEL_OFF_POINTS`] of its accuracy on every image, and whether the best of them
/// (highest on every image) is still rising there. Names the run with its caveats.
pub fn curve_answer(curve: &Curve, run: &RunLabel) -> String {
    let all = |m: CurveMethod| curve.points.iter().find(|p| p.method == m && p.shots.is_none()).map(|p| p.mean);
    let methods: Vec<CurveMethod> =
        [CurveMethod::Logreg, CurveMethod::Knn, CurveMethod::Head].into_iter().filter(|&m| all(m).is_some()).collect();
    let n = curve.largest_class;
    let Some(&best) =
        methods.iter().max_by(|&&a, &&b| all(a).partial_cmp(&all(b)).unwrap_or(std::cmp::Ordering::Equal))
    else {
        return format!("{}{}: no point on every image (`all`), so no answer.", run.name, run.caveats());
    };
    let at = |m: CurveMethod| curve.levels_off(m, LEVEL_OFF_POINTS).and_then(|p| p.shots);
    let each: Vec<String> = methods
        .iter()
        .map(|&m| match at(m) {
            Some(1) => format!("{} from 1 image per class", m.name()),
            Some(k) => format!("{} from {k} images per class", m.name()),
            None => format!("{} only with all of them", m.name()),
        })
        .collect();
    let points = LEVEL_OFF_POINTS * 100.0;
    let mut s = format!(
        "{}{}: within {points:.0} points of its accuracy on every image (up to {n} per class): {}. ",
        run.name,
        run.caveats(),
        each.join("; ")
    );
    let acc = all(best).unwrap_or(0.0) * 100.0;
    s += &match at(best) {
        None => format!(
            "The best, {} ({acc:.1}% on every image), is still rising at {n} per class: more photos would pay; \
             by this measure the data is small for it.",
            best.name()
        ),
        Some(k) => format!(
            "The best, {} ({acc:.1}% on every image), has levelled off by {k} per class: past that, more photos \
             of these classes add little; by this measure the data is large enough for it.",
            best.name()
        ),
    };
    s
}

/// Fits the learning curve of the run in `run` and writes `curve.csv`, `curve.md` and
/// the chart (`curve.svg`, `curve.png`) into `out` (default: the run directory); returns
/// the curve with its run's label, and `curve.md`'s path.
pub fn write_learning_curve(run: &Path, cfg: &CurveConfig, out: Option<&Path>) -> Result<(LearningCurve, PathBuf)> {
    let dir = RunDir::open(run)?;
    let curve = crate::curve::learning_curve(&dir, cfg)?;
    let out = out.map_or_else(|| dir.path().to_path_buf(), Path::to_path_buf);
    crate::fsutil::ensure_dir(&out)?;
    let summary = crate::run::RunSummary::read(&dir)?;
    let label = RunLabel { name: dir.name(), synthetic: summary.synthetic, pretrained: summary.pretrained };
    let data = LearningCurve { run: label, curve };
    let curve = &data.curve;
    Figure::LearningCurve(&data).save(&out, "curve")?;
    let mut csv = String::from("method,shots,rows,mean,std,min,max\n");
    for p in &curve.points {
        let k = p.shots.map_or("all".to_string(), |k| k.to_string());
        let _ = writeln!(csv, "{},{k},{},{},{},{},{}", p.method.name(), p.rows, p.mean, p.std, p.min, p.max);
    }
    crate::fsutil::write_atomic(&out.join("curve.csv"), csv.as_bytes())?;
    let mut md = format!(
        "# How much data do you need? {}\n\nTest accuracy of classifiers fitted on k training images per class of \
         the run's cached features, {} seeds a point.\n\n",
        data.run.name, cfg.seeds
    );
    md += &curve_markdown(curve);
    let _ = writeln!(md, "\n{}", curve_answer(curve, &data.run));
    for s in &curve.short {
        let _ = writeln!(md, "\nNote: {s}.");
    }
    md += "\n![Learning curve](curve.svg)\n";
    let path = out.join("curve.md");
    crate::fsutil::write_atomic(&path, md.as_bytes())?;
    Ok((data, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curve::CurvePoint;

    fn point(method: CurveMethod, shots: Option<usize>, rows: usize, mean: f64) -> CurvePoint {
        CurvePoint { method, shots, rows, mean, std: 0.0, min: mean, max: mean }
    }

    #[test]
    fn the_answer_names_where_each_method_levels_off_and_whether_the_best_still_rises() {
        let run = RunLabel { name: "r".into(), synthetic: true, pretrained: false };
        let mut c = Curve {
            points: vec![
                point(CurveMethod::Logreg, Some(2), 6, 0.50),
                point(CurveMethod::Logreg, Some(8), 24, 0.79),
                point(CurveMethod::Logreg, None, 60, 0.80),
                point(CurveMethod::Knn, Some(2), 6, 0.40),
                point(CurveMethod::Knn, Some(8), 24, 0.60),
                point(CurveMethod::Knn, None, 60, 0.70),
            ],
            largest_class: 20,
            test_samples: 30,
            short: vec![],
        };
        let a = curve_answer(&c, &run);
        assert!(a.starts_with("r [SYNTHETIC DATA] [RANDOM WEIGHTS]: "), "{a}");
        assert!(a.contains("logreg from 8 images per class; knn only with all of them"), "{a}");
        assert!(a.contains("The best, logreg (80.0% on every image), has levelled off by 8 per class"), "{a}");
        c.points[2].mean = 0.95;
        let a = curve_answer(&c, &run);
        assert!(a.contains("logreg (95.0% on every image), is still rising at 20 per class"), "{a}");
        c.points.retain(|p| p.shots.is_some());
        assert!(curve_answer(&c, &run).contains("no answer"));
    }
}
