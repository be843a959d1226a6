//! The reliability diagram of a calibrated run: accuracy against confidence in the 15
//! bins of the validation split, before and after temperature scaling, and the diagonal a
//! perfectly calibrated model would follow.
use super::{draw_chart, draw_empty, RunLabel};
use crate::calibration::{Bin, Calibration, BINS};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Input of [`reliability_diagram`]: `calibration.json`, and the run it belongs to.
#[derive(Debug, Clone)]
pub struct Reliability {
    pub run: RunLabel,
    pub calibration: Calibration,
}

const BEFORE: RGBColor = super::PALETTE[7];
const AFTER: RGBColor = super::PALETTE[0];

/// Bars of each bin's accuracy (grey before, blue after scaling) over the diagonal.
pub fn reliability_diagram<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &Reliability) -> crate::Result<()> {
    draw_chart("reliability diagram", root, |root| {
        let c = &data.calibration;
        let title = data.run.title("Reliability on the validation split");
        if c.samples == 0 {
            return draw_empty(root, &title, "no validation rows");
        }
        let mut chart = ChartBuilder::on(root)
            .caption(&title, super::title_font(root, &title)?)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart.configure_mesh().x_desc("confidence (top probability)").y_desc("accuracy").draw()?;
        let w = 1.0 / BINS as f64;
        let bars = |bins: &[Bin], half: f64, colour: RGBColor| {
            let bins: Vec<(usize, Bin)> = bins.iter().cloned().enumerate().filter(|(_, b)| b.count > 0).collect();
            bins.into_iter().map(move |(i, b)| {
                let x0 = i as f64 * w + half * w / 2.0;
                Rectangle::new([(x0, 0.0), (x0 + w / 2.0, b.accuracy)], colour.mix(0.85).filled())
            })
        };
        let label = |what: &str, s: &crate::calibration::Scores| format!("{what}: ECE {:.3}, NLL {:.3}", s.ece, s.nll);
        chart
            .draw_series(bars(&c.before.bins, 0.0, BEFORE))?
            .label(label("logits as trained", &c.before))
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], BEFORE.filled()));
        chart
            .draw_series(bars(&c.after.bins, 1.0, AFTER))?
            .label(label(&format!("divided by T = {:.3}", c.temperature), &c.after))
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], AFTER.filled()));
        let diag = BLACK.mix(0.6).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new([(0.0, 0.0), (1.0, 1.0)], 6, 4, diag))?
            .label("calibrated: accuracy = confidence")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], diag));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 13))
            .draw()?;
        Ok(())
    })
}
