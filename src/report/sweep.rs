//! The logreg probe's lambda sweep: validation accuracy against the L2 penalty.
use super::{draw_chart, draw_empty, RunLabel};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Input of [`lambda_sweep`]: `sweep.csv`'s points and the chosen penalty.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub run: RunLabel,
    /// `(lambda, validation accuracy)` in fitting order.
    pub points: Vec<(f64, f64)>,
    pub chosen: Option<f64>,
    /// Test accuracy of the final fit (train + validation), drawn as a dashed line.
    pub test_accuracy: Option<f64>,
}

const VAL: RGBColor = super::PALETTE[1];
const TEST: RGBColor = super::PALETTE[2];

/// Validation accuracy per lambda (log axis), the chosen one ringed.
pub fn lambda_sweep<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &Sweep) -> crate::Result<()> {
    draw_chart("lambda sweep", root, |root| {
        let title = data.run.title("Logistic regression: L2 penalty on the validation split");
        let pts: Vec<(f64, f64)> = data.points.iter().copied().filter(|(l, a)| *l > 0.0 && a.is_finite()).collect();
        if pts.is_empty() {
            return draw_empty(root, &title, "no lambda fitted");
        }
        let lo = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(|p| p.0).fold(0.0, f64::max);
        let (lo, hi) = if hi > lo { (lo / 1.5, hi * 1.5) } else { (lo / 10.0, hi * 10.0) };
        let floor = pts.iter().map(|p| p.1).chain(data.test_accuracy).fold(1.0f64, f64::min);
        let y_lo = (floor * 10.0 - 0.5).floor().max(0.0) / 10.0;
        let mut chart = ChartBuilder::on(root)
            .caption(&title, super::title_font(root, &title)?)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((lo..hi).log_scale(), y_lo..1.0)?;
        chart
            .configure_mesh()
            .x_desc("lambda (mean cross-entropy + lambda/2 ||W||^2)")
            .y_desc("validation accuracy")
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .draw()?;
        let mut sorted = pts.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(sorted, VAL.stroke_width(2)))?
            .label("validation accuracy")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], VAL.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, VAL.filled())))?;
        if let Some(best) = data.chosen.and_then(|c| pts.iter().find(|p| p.0 == c)) {
            chart
                .draw_series([Circle::new(*best, 8, VAL.stroke_width(2))])?
                .label(format!("chosen: lambda {:.1e}", best.0))
                .legend(|(x, y)| Circle::new((x + 10, y), 6, VAL.stroke_width(2)));
        }
        if let Some(t) = data.test_accuracy {
            let style = TEST.stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new([(lo, t), (hi, t)], 8, 5, style))?
                .label(format!("test acc after refit {:.1}%", t * 100.0))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 13))
            .draw()?;
        Ok(())
    })
}
