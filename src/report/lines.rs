//! Line charts: training curves per epoch, and extraction throughput over time.
use super::{colour, draw_chart, draw_empty, Curves, DrawError, Throughput};
use plotters::coord::Shift;
use plotters::prelude::*;

const TRAIN: RGBColor = super::PALETTE[0];
const VAL: RGBColor = super::PALETTE[1];
const TEST: RGBColor = super::PALETTE[2];

/// Accuracy (left) and loss (right) per epoch for train and validation; the test
/// accuracy is a dashed line and the best epoch's validation point is ringed.
pub fn training_curves<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &Curves) -> crate::Result<()> {
    draw_chart("training curves", root, |root| {
        let title = data.run.title("Training curves");
        if data.epochs.is_empty() {
            return draw_empty(root, &title, "no epochs recorded");
        }
        let area = root.titled(&title, super::title_font(root, &title)?)?;
        let panels = area.split_evenly((1, 2));
        accuracy_panel(&panels[0], data)?;
        loss_panel(&panels[1], data)
    })
}

/// Epoch axis; a single epoch gets some width so the mesh is not degenerate.
fn epoch_range(data: &Curves) -> std::ops::Range<f64> {
    let lo = data.epochs.iter().map(|e| e.epoch).min().unwrap_or(0) as f64;
    let hi = data.epochs.iter().map(|e| e.epoch).max().unwrap_or(0) as f64;
    if hi > lo {
        lo..hi
    } else {
        lo - 0.5..hi + 0.5
    }
}

/// Epochs are whole numbers: ask for about one tick per epoch (at most 10), label only whole ones.
fn epoch_ticks(data: &Curves) -> usize {
    data.epochs.len().clamp(2, 10)
}

fn whole(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-6 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

fn accuracy_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, data: &Curves) -> Result<(), DrawError> {
    let accs = data.epochs.iter().flat_map(|e| [e.train_acc, e.val_acc]).chain(data.test_accuracy);
    // Zoom to the data, in steps of 0.1, so close curves stay apart; never beyond [0, 1].
    let lo = (accs.fold(1.0f64, f64::min) * 10.0 - 0.5).floor().max(0.0) / 10.0;
    let x = epoch_range(data);
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(x.clone(), lo..1.0)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("accuracy")
        .x_labels(epoch_ticks(data))
        .x_label_formatter(&whole)
        .draw()?;
    series(&mut chart, data, "train acc", TRAIN, |e| e.train_acc)?;
    series(&mut chart, data, "val acc", VAL, |e| e.val_acc)?;
    if let Some(best) = data.best_epoch.and_then(|b| data.epochs.iter().find(|e| e.epoch == b)) {
        chart.draw_series([Circle::new((best.epoch as f64, best.val_acc), 7, VAL.stroke_width(2))])?;
    }
    if let Some(t) = data.test_accuracy {
        let style = TEST.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new([(x.start, t), (x.end, t)], 8, 5, style))?
            .label(format!("test acc {:.1}%", t * 100.0))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn loss_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, data: &Curves) -> Result<(), DrawError> {
    let hi = data.epochs.iter().flat_map(|e| [e.train_loss, e.val_loss]).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let hi = if hi > 0.0 { hi * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(epoch_range(data), 0.0..hi)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .x_labels(epoch_ticks(data))
        .x_label_formatter(&whole)
        .draw()?;
    series(&mut chart, data, "train loss", TRAIN, |e| e.train_loss)?;
    series(&mut chart, data, "val loss", VAL, |e| e.val_loss)?;
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

type Chart2d<'a, DB> =
    ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// One labelled line with a dot per epoch.
fn series<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart2d<'a, DB>,
    data: &Curves,
    label: &str,
    c: RGBColor,
    y: impl Fn(&crate::train::EpochMetrics) -> f64,
) -> Result<(), DrawError> {
    let pts: Vec<(f64, f64)> = data.epochs.iter().map(|e| (e.epoch as f64, y(e))).collect();
    chart
        .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a>(chart: &mut Chart2d<'a, DB>, pos: SeriesLabelPosition) -> Result<(), DrawError> {
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

/// Extraction speed (images/s, running mean) against seconds since the run started,
/// one line per split.
pub fn throughput<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &Throughput) -> crate::Result<()> {
    draw_chart("throughput", root, |root| {
        let title = data.run.title("Extraction throughput");
        if data.points.is_empty() {
            let why = if data.cache_hits.is_empty() {
                "no extraction progress recorded".to_string()
            } else {
                format!("features came from the cache ({}): nothing extracted", data.cache_hits.join(", "))
            };
            return draw_empty(root, &title, &why);
        }
        let t_hi = data.points.iter().map(|p| p.t_s).fold(0.0, f64::max).max(1e-3);
        let r_hi = data.points.iter().map(|p| p.images_per_s).filter(|v| v.is_finite()).fold(0.0, f64::max);
        let r_hi = if r_hi > 0.0 { r_hi * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(root)
            .caption(&title, super::title_font(root, &title)?)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_hi * 1.02, 0.0..r_hi)?;
        chart.configure_mesh().x_desc("time since run start (s)").y_desc("images/s").draw()?;
        let mut splits: Vec<&str> = vec![];
        for p in &data.points {
            if !splits.contains(&p.split.as_str()) {
                splits.push(&p.split);
            }
        }
        for (i, split) in splits.iter().enumerate() {
            let c = colour(i);
            let pts: Vec<(f64, f64)> =
                data.points.iter().filter(|p| p.split == *split).map(|p| (p.t_s, p.images_per_s)).collect();
            let last = pts.last().map(|p| p.1).unwrap_or(0.0);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
                .label(format!("{split} ({last:.1} images/s at the end)"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 2, c.filled())))?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}
