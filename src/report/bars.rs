//! Horizontal bar charts: per-class accuracy, and test accuracy across runs.
//! Horizontal, so long class and run names stay readable without rotated text.
use super::{colour, draw_chart, draw_empty, ConfusionChart, DrawError};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One bar of [`run_comparison`].
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonBar {
    /// A run name, strategy or setting such as "224 px".
    pub label: String,
    /// Fraction in [0, 1].
    pub test_accuracy: f64,
    /// Drawn grey and tagged "(synthetic)".
    pub synthetic: bool,
}

/// Input of [`run_comparison`].
#[derive(Debug, Clone)]
pub struct Comparison {
    /// What the bars vary, e.g. "run", "strategy" or "image size".
    pub by: String,
    pub bars: Vec<ComparisonBar>,
}

/// A bar: label, value (None: no data, drawn empty) and colour.
struct Bar {
    label: String,
    value: Option<f64>,
    colour: RGBColor,
}

/// Per-class accuracy (recall) from a confusion matrix, one bar per class.
pub fn per_class_accuracy<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ConfusionChart,
) -> crate::Result<()> {
    draw_chart("per-class accuracy", root, |root| {
        let bars = data
            .classes
            .iter()
            .zip(data.per_class_accuracy())
            .enumerate()
            .map(|(i, (c, v))| Bar { label: c.clone(), value: v, colour: colour(i) })
            .collect();
        hbars(root, &data.run.title("Per-class accuracy"), "accuracy (correct / samples of the class)", bars)
    })
}

/// Test accuracy of several runs (or strategies, or image sizes), one bar each.
pub fn run_comparison<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &Comparison) -> crate::Result<()> {
    draw_chart("run comparison", root, |root| {
        let mut title = format!("Test accuracy by {}", data.by);
        if data.bars.iter().any(|b| b.synthetic) {
            title += " [SYNTHETIC DATA in grey]";
        }
        let bars = data
            .bars
            .iter()
            .map(|b| Bar {
                label: if b.synthetic { format!("{} (synthetic)", b.label) } else { b.label.clone() },
                value: Some(b.test_accuracy),
                colour: if b.synthetic { RGBColor(160, 160, 160) } else { colour(0) },
            })
            .collect();
        hbars(root, &title, "test accuracy", bars)
    })
}

/// Bars from 0 to 1, first bar at the top, value printed at each bar's end.
fn hbars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    bars: Vec<Bar>,
) -> Result<(), DrawError> {
    if bars.is_empty() {
        return draw_empty(root, title, "nothing to compare");
    }
    let n = bars.len() as i32;
    let label_font = ("sans-serif", 14).into_font();
    let mut label_w = 0;
    for b in &bars {
        label_w = label_w.max(root.estimate_text_size(&b.label, &label_font.clone().into())?.0);
    }
    let (w, _) = root.dim_in_pixel();
    let mut chart = ChartBuilder::on(root)
        .caption(title, super::title_font(root, title)?)
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size((label_w + 15).min(w / 2))
        // An i32 range is inclusive, so 0..n-1 holds the n segments.
        .build_cartesian_2d(0.0..1.0f64, (0..n - 1).into_segmented())?;
    // Segment 0 is at the bottom; bar i sits in segment n-1-i so the list reads top-down.
    let label_of = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(s) if (0..n).contains(s) => bars[(n - 1 - s) as usize].label.clone(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len() + 1)
        .y_label_formatter(&label_of)
        .y_label_style(label_font.clone())
        .x_desc(x_desc)
        .x_label_formatter(&|v| format!("{:.0}%", v * 100.0))
        .draw()?;
    let value_style = TextStyle::from(("sans-serif", 13)).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, b) in bars.iter().enumerate() {
        let s = n - 1 - i as i32;
        let Some(v) = b.value else {
            chart.draw_series([Text::new(
                "no samples".to_string(),
                (0.01, SegmentValue::CenterOf(s)),
                value_style.clone(),
            )])?;
            continue;
        };
        let mut rect = Rectangle::new(
            [(0.0, SegmentValue::Exact(s)), (v.clamp(0.0, 1.0), SegmentValue::Exact(s + 1))],
            b.colour.filled(),
        );
        rect.set_margin(4, 4, 0, 0);
        chart.draw_series([rect])?;
        let text = format!("{:.1}%", v * 100.0);
        // Inside the bar's end when it is long, after it otherwise.
        let (x, style) = if v > 0.85 {
            (v - 0.01, value_style.clone().pos(Pos::new(HPos::Right, VPos::Center)).color(&WHITE))
        } else {
            (v + 0.01, value_style.clone())
        };
        chart.draw_series([Text::new(text, (x, SegmentValue::CenterOf(s)), style)])?;
    }
    Ok(())
}
