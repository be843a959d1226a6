//! The confusion matrix as a heatmap: true class down, predicted class across.
use super::{draw_chart, draw_empty, ConfusionChart};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Cells shaded by the row fraction (so classes of different sizes compare), each
/// labelled with its count; class names on both axes.
pub fn confusion_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ConfusionChart,
) -> crate::Result<()> {
    draw_chart("confusion matrix", root, |root| {
        let title = data.run.title("Confusion matrix");
        let k = data.classes.len() as i32;
        if k == 0 {
            return draw_empty(root, &title, "no classes");
        }
        let font = ("sans-serif", 13).into_font();
        let mut label_w = 0;
        for c in &data.classes {
            label_w = label_w.max(root.estimate_text_size(c, &font.clone().into())?.0);
        }
        let (w, h) = root.dim_in_pixel();
        // Predicted-class names turn vertical when they would overlap.
        let cell_w = w.saturating_sub(label_w + 60) / k as u32;
        let rotate = label_w + 6 > cell_w;
        let x_area = if rotate { label_w + 45 } else { 45 };
        let mut chart = ChartBuilder::on(root)
            .caption(&title, super::title_font(root, &title)?)
            .margin(15)
            .x_label_area_size(x_area.min(h / 3))
            .y_label_area_size((label_w + 45).min(w / 3))
            // An i32 range is inclusive, so 0..k-1 holds the k segments.
            .build_cartesian_2d((0..k - 1).into_segmented(), (0..k - 1).into_segmented())?;
        let name = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(s) if (0..k).contains(s) => data.classes[(k - 1 - s) as usize].clone(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(k as usize + 1)
            .y_labels(k as usize + 1)
            .x_label_formatter(&|_| String::new())
            .y_label_formatter(&name)
            .y_label_style(font.clone())
            .x_desc("predicted class")
            .y_desc("true class")
            .draw()?;
        // plotters rotates axis labels about their centre, which pushes long names into
        // the plot; placing them by hand keeps each one starting just below the axis.
        let (bx, by) = root.get_base_pixel();
        for (j, class) in data.classes.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(SegmentValue::CenterOf(j as i32), SegmentValue::Exact(0)));
            let (x, y) = (px - bx, py - by + 6);
            let style = if rotate {
                TextStyle::from(font.clone().transform(FontTransform::Rotate90)).pos(Pos::new(HPos::Left, VPos::Center))
            } else {
                TextStyle::from(font.clone()).pos(Pos::new(HPos::Center, VPos::Top))
            };
            root.draw(&Text::new(class.clone(), (x, y), style))?;
        }
        // Row 0 (the first true class) at the top: segment k-1.
        for (i, row) in data.counts.iter().enumerate().take(k as usize) {
            let n: u64 = row.iter().sum::<u64>().max(1);
            let y = k - 1 - i as i32;
            for (j, &count) in row.iter().enumerate().take(k as usize) {
                let frac = count as f64 / n as f64;
                let x = j as i32;
                let cell = [
                    (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                    (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                ];
                chart.draw_series([Rectangle::new(cell, shade(frac).filled())])?;
                let ink = if frac > 0.5 { WHITE } else { BLACK };
                let style = TextStyle::from(("sans-serif", 13)).pos(Pos::new(HPos::Center, VPos::Center)).color(&ink);
                let at = (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y));
                chart.draw_series([Text::new(count.to_string(), at, style)])?;
            }
        }
        Ok(())
    })
}

/// White (0) to deep blue (1).
fn shade(frac: f64) -> RGBColor {
    let f = frac.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
}
