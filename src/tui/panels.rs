//! The lower panels: charts (tabbed), device, recent log lines.
use super::app::{App, ChartTab};
use super::fmt;
use crate::events::LogLevel;
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph, Widget};

/// Tabs as a block title: the selected one highlighted.
fn tabs_title(selected: ChartTab) -> Line<'static> {
    let mut spans = vec![Span::raw(" ")];
    for t in ChartTab::ALL {
        let s = format!(" {} ", t.title());
        spans.push(if t == selected { s.black().on_cyan().bold() } else { s.dark_gray() });
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}

/// Axis bounds with a little headroom, never zero-width.
fn padded(lo: f64, hi: f64) -> [f64; 2] {
    let pad = ((hi - lo) * 0.05).max(1e-3);
    [lo - pad, hi + pad]
}

fn axis_labels(b: [f64; 2], decimals: usize) -> Vec<Span<'static>> {
    vec![format!("{:.*}", decimals, b[0]).into(), format!("{:.*}", decimals, b[1]).into()]
}

pub fn chart(app: &App, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered().title(tabs_title(app.chart));
    let c = &app.state.curves;
    let (series, empty_msg) = match app.chart {
        ChartTab::EpochLoss => (
            vec![("train", c.train_loss.points(), Color::Cyan), ("val", c.val_loss.points(), Color::Yellow)],
            "no epoch finished yet",
        ),
        ChartTab::EpochAccuracy => (
            vec![("train", c.train_acc.points(), Color::Cyan), ("val", c.val_acc.points(), Color::Yellow)],
            "no epoch finished yet",
        ),
        ChartTab::StepLoss => (vec![("step", c.step_loss.points(), Color::Magenta)], "no training step yet"),
    };
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).collect();
    if all.is_empty() {
        Paragraph::new(vec![Line::default(), Line::from(empty_msg.dark_gray())])
            .alignment(Alignment::Center)
            .block(block)
            .render(area, buf);
        return;
    }
    let fold = |f: fn(&(f64, f64)) -> f64| {
        all.iter().map(f).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let (x0, x1) = fold(|p| p.0);
    let (y0, y1) = fold(|p| p.1);
    let xb = if x1 > x0 { [x0, x1] } else { [x0 - 1.0, x1 + 1.0] };
    let mut yb = padded(y0, y1);
    if app.chart == ChartTab::EpochAccuracy {
        yb = [yb[0].max(0.0), yb[1].min(1.0)];
    }
    // A two-phase run: a dotted line where each later phase begins.
    let phases = if app.chart == ChartTab::StepLoss { &c.step_phases } else { &c.epoch_phases };
    let marks: Vec<Vec<(f64, f64)>> = phases
        .iter()
        .map(|&x| (0..=16).map(|i| (x, yb[0] + (yb[1] - yb[0]) * f64::from(i) / 16.0)).collect())
        .collect();
    let mut datasets: Vec<Dataset> = marks
        .iter()
        .map(|pts| {
            Dataset::default()
                .marker(Marker::Dot)
                .graph_type(GraphType::Scatter)
                .style(Style::new().dark_gray())
                .data(pts)
        })
        .collect();
    datasets.extend(series.iter().map(|(name, pts, color)| {
        // One point draws nothing as a line: show it as a dot.
        let kind = if pts.len() > 1 { GraphType::Line } else { GraphType::Scatter };
        Dataset::default().name(*name).marker(Marker::Braille).graph_type(kind).style(Style::new().fg(*color)).data(pts)
    }));
    // The legend as the bottom title: always visible, never drawn over the curves.
    let mut legend = vec![Span::raw(" ")];
    for (name, _, color) in &series {
        legend.push(Span::styled(format!("━ {name} "), Style::new().fg(*color)));
    }
    let x_unit = if app.chart == ChartTab::StepLoss { "step " } else { "epoch " };
    legend.push(Span::raw(format!("· x: {x_unit}")).dark_gray());
    if !phases.is_empty() {
        legend.push(Span::raw("· ┆ next phase (numbered from 1 again) ").dark_gray());
    }
    Chart::new(datasets)
        .block(block.title_bottom(Line::from(legend)))
        .legend_position(None)
        .x_axis(Axis::default().bounds(xb).labels(axis_labels(xb, 0)))
        .y_axis(Axis::default().bounds(yb).labels(axis_labels(yb, if yb[1] - yb[0] < 0.1 { 3 } else { 2 })))
        .render(area, buf);
}

pub fn device(app: &App, area: Rect, buf: &mut Buffer) {
    let d = &app.device;
    let w = area.width.saturating_sub(3) as usize;
    let mut lines =
        vec![Line::from(format!(" {}", fmt::clip(if d.name.is_empty() { "…" } else { &d.name }, w)).bold())];
    if let Some(g) = &d.gpu {
        lines.push(Line::from(format!(
            " GPU {:.0}% · {:.1}/{:.1} GiB",
            g.util_pct,
            g.mem_used_mib / 1024.0,
            g.mem_total_mib / 1024.0
        )));
    }
    let p = &d.process;
    lines.push(Line::from(format!(" {}", fmt::clip(&p.label, w)).dark_gray()));
    let rss = p.rss_bytes.map(|b| format!("{:.0} MiB", b as f64 / 1048576.0)).unwrap_or_else(|| "n/a".into());
    let cpu = p.cpu_pct.map(|c| format!("{c:.0}%")).unwrap_or_else(|| "n/a".into());
    lines.push(Line::from(format!(" RSS {rss} · CPU {cpu}")));
    let s = &app.state;
    let skipped = if s.skipped > 0 { format!(" ({} skipped)", fmt::count(s.skipped)) } else { String::new() };
    lines.push(Line::from(format!(" events {}{skipped}", fmt::count(s.events)).dark_gray()));
    if let Some(last) = s.last_t_ms {
        let ago = app.now_ms.saturating_sub(last);
        // A silent stream while the run claims to be running: say so.
        let style = if ago > 60_000 && s.status() == super::state::RunStatus::Running {
            Style::new().yellow()
        } else {
            Style::new().dark_gray()
        };
        lines.push(Line::from(Span::styled(format!(" last event {} ago", fmt::duration(ago)), style)));
    }
    Paragraph::new(lines).block(Block::bordered().title(" Device ")).render(area, buf);
}

pub fn logs(app: &App, area: Rect, buf: &mut Buffer) {
    let s = &app.state;
    let n = area.height.saturating_sub(2) as usize;
    let t0 = s.first_t_ms.unwrap_or(0);
    let w = area.width.saturating_sub(12) as usize;
    let lines: Vec<Line> = s
        .logs
        .iter()
        .skip(s.logs.len().saturating_sub(n))
        .map(|l| {
            let (tag, style) = match l.level {
                LogLevel::Info => ("", Style::new()),
                LogLevel::Warn => ("WARN ", Style::new().yellow().bold()),
                LogLevel::Error => ("ERROR ", Style::new().red().bold()),
            };
            let t = fmt::duration(l.t_ms.saturating_sub(t0));
            Line::from(vec![
                format!(" {t:>7} ").dark_gray(),
                Span::styled(fmt::clip(&format!("{tag}{}", l.text), w), style),
            ])
        })
        .collect();
    Paragraph::new(lines).block(Block::bordered().title(" Log ")).render(area, buf);
}
