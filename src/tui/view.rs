//! The screen: `impl Widget for &App`. Layout, header, stages, progress or summary,
//! footer and overlays here; charts, device panel and logs in `panels.rs`.
use super::app::{App, Overlay};
use super::fmt;
use super::keys::{self, Intent};
use super::panels;
use super::state::{Progress, RunStatus, StageState, Unit};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, LineGauge, Padding, Paragraph, Sparkline, Widget, Wrap};

/// Below this the panels cannot say anything useful.
const MIN_SIZE: (u16, u16) = (60, 16);

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
            let msg = format!(
                "terminal too small ({}x{}); need {}x{} · q quits",
                area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
            );
            Paragraph::new(msg).wrap(Wrap { trim: true }).render(area, buf);
            return;
        }
        // Logs get a third of what the fixed rows leave; charts get the rest.
        let logs_h = ((area.height - 9) / 3).max(5);
        let [header, top, middle, logs, footer] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Length(6),
            Constraint::Min(8),
            Constraint::Length(logs_h),
            Constraint::Length(1),
        ])
        .areas(area);
        let [stages, progress] = Layout::horizontal([Constraint::Length(24), Constraint::Min(20)]).areas(top);
        let device_w = if area.width >= 110 { 38 } else { 30 };
        let [chart, device] = Layout::horizontal([Constraint::Min(20), Constraint::Length(device_w)]).areas(middle);
        render_header(self, header, buf);
        render_stages(self, stages, buf);
        match self.state.status() {
            RunStatus::Finished | RunStatus::Failed => render_summary(self, progress, buf),
            _ => render_progress(self, progress, buf),
        }
        panels::chart(self, chart, buf);
        panels::device(self, device, buf);
        panels::logs(self, logs, buf);
        render_footer(self, footer, buf);
        match self.overlay {
            Overlay::Help => render_help(area, buf),
            Overlay::ConfirmStop => render_confirm(area, buf),
            Overlay::None => {}
        }
    }
}

fn status_span(app: &App) -> Span<'static> {
    match app.state.status() {
        RunStatus::Waiting => " WAITING ".black().on_gray(),
        RunStatus::Running => " RUNNING ".black().on_cyan(),
        RunStatus::Finished => " FINISHED ".black().on_green(),
        RunStatus::Failed => " FAILED ".white().on_red().bold(),
    }
}

fn render_header(app: &App, area: Rect, buf: &mut Buffer) {
    let s = &app.state;
    let name = s.name.clone().unwrap_or_else(|| "(run not started yet)".into());
    let mut first = vec![
        " tlab dash ".bold(),
        status_span(app),
        format!(" {name} ").bold(),
        format!("· {}", fmt::duration(s.wall_ms(app.now_ms))).into(),
    ];
    if app.stop_requested && s.status() == RunStatus::Running {
        first.push("  STOP REQUESTED".yellow().bold());
    }
    first.push(format!(" · {}", app.run_dir).dark_gray());
    let second = match (&s.note, s.synthetic) {
        (Some(note), true) => {
            Line::from(vec![" SYNTHETIC DATA ".black().on_yellow().bold(), format!(" {note}").yellow()])
        }
        (Some(note), false) => Line::from(format!(" {note}").dark_gray()),
        (None, _) => Line::from(" data and weights not known until the fetch stage ends".dark_gray()),
    };
    Paragraph::new(vec![Line::from(first), second]).render(area, buf);
}

fn render_stages(app: &App, area: Rect, buf: &mut Buffer) {
    let lines: Vec<Line> = app
        .state
        .stages
        .iter()
        .map(|st| {
            let (mark, style) = match st.state {
                StageState::Pending => ("·", Style::new().dark_gray()),
                StageState::Running => ("▶", Style::new().cyan().bold()),
                StageState::Done => ("✓", Style::new().green()),
                StageState::Failed => ("✗", Style::new().red().bold()),
            };
            let time = st.elapsed_ms.map(fmt::duration).unwrap_or_default();
            Line::from(vec![Span::styled(format!(" {mark} {:<10}", st.name), style), Span::raw(format!("{time:>8}"))])
        })
        .collect();
    Paragraph::new(lines).block(Block::bordered().title(" Stages ")).render(area, buf);
}

fn progress_counts(p: &Progress) -> String {
    let (done, total, rate) = match p.unit {
        Unit::Images => (fmt::count(p.done), p.total.map(fmt::count), format!("{:.0} img/s", p.per_s)),
        Unit::Bytes => (fmt::bytes(p.done), p.total.map(fmt::bytes), format!("{}/s", fmt::bytes(p.per_s as u64))),
    };
    let mut s = match total {
        Some(t) => format!("{done} / {t}"),
        None => done,
    };
    if !p.finished {
        s += &format!(" · {rate}");
    }
    if let Some(eta) = p.eta_ms() {
        s += &format!(" · ETA {}", fmt::duration(eta));
    }
    s
}

fn render_progress(app: &App, area: Rect, buf: &mut Buffer) {
    let block = Block::bordered().title(" Progress ");
    let inner = block.inner(area);
    block.render(area, buf);
    let [gauge, text, spark] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let s = &app.state;
    let training = s.stages.iter().any(|st| st.name == "train" && st.state == StageState::Running);
    match (&s.progress, s.curves.last_step, training) {
        (_, Some((epoch, step, loss)), true) => {
            let best =
                s.curves.best.map(|(e, a)| format!(" · best val acc {} (epoch {e})", fmt::pct(a))).unwrap_or_default();
            Line::from(vec![
                " train ".cyan().bold(),
                format!("epoch {epoch} · step {} · loss {loss:.4}", fmt::count(step)).into(),
            ])
            .render(gauge, buf);
            Line::from(format!(" {} epochs done{best}", s.curves.epochs)).render(text, buf);
        }
        (Some(p), _, _) => {
            let label = format!(" {} {:>3.0}% ", p.label, p.ratio().unwrap_or(0.0) * 100.0);
            LineGauge::default()
                .ratio(p.ratio().unwrap_or(0.0))
                .label(label)
                .line_set(symbols::line::THICK)
                .filled_style(Style::new().cyan())
                .unfilled_style(Style::new().dark_gray())
                .render(gauge, buf);
            Line::from(format!(" {}", progress_counts(p))).render(text, buf);
        }
        (None, _, _) => Line::from(" nothing to count yet".dark_gray()).render(gauge, buf),
    }
    if !s.rate_history.is_empty() && spark.height > 0 {
        // The newest samples that fit, right-aligned like a scrolling strip chart.
        let w = spark.width.saturating_sub(7) as usize;
        let data: Vec<u64> = s.rate_history.iter().skip(s.rate_history.len().saturating_sub(w)).copied().collect();
        let [label, chart] = Layout::horizontal([Constraint::Length(7), Constraint::Min(1)]).areas(spark);
        Paragraph::new(" img/s").dark_gray().render(label, buf);
        Sparkline::default().data(&data).style(Style::new().cyan()).render(chart, buf);
    }
}

fn render_summary(app: &App, area: Rect, buf: &mut Buffer) {
    let s = &app.state;
    let wall = fmt::duration(s.wall_ms(app.now_ms));
    let best = s.curves.best.map(|(e, a)| format!("best epoch {e} · val acc {}", fmt::pct(a)));
    let mut lines = Vec::new();
    let (title, color) = match &s.failed {
        Some(err) => {
            lines.push(Line::from(format!("FAILED after {wall}").red().bold()));
            lines.push(Line::from(err.clone().red()));
            (" Summary: failed ", Color::Red)
        }
        None => {
            lines.push(Line::from(format!("FINISHED in {wall}").green().bold()));
            (" Summary ", Color::Green)
        }
    };
    if let Some(acc) = s.test_accuracy() {
        let samples = s.evaluated.as_ref().map(|e| format!(" on {} samples", fmt::count(e.2))).unwrap_or_default();
        let tag = if s.synthetic { " (SYNTHETIC data)" } else { "" };
        lines.push(Line::from(vec!["test accuracy ".into(), fmt::pct(acc).bold(), format!("{samples}{tag}").into()]));
    }
    if let Some(b) = best {
        lines.push(Line::from(b));
    }
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::bordered().title(title).border_style(Style::new().fg(color)).padding(Padding::horizontal(1)))
        .render(area, buf);
}

fn render_footer(app: &App, area: Rect, buf: &mut Buffer) {
    let mut spans = footer_keys(App::INTENTS);
    if let Some(m) = &app.message {
        spans.push(format!("   {m}").yellow());
    }
    Line::from(spans).dark_gray().render(area, buf);
}

/// The footer's key hints for a screen's `intents`, from the one key table.
pub(super) fn footer_keys(intents: &[Intent]) -> Vec<Span<'static>> {
    let mut spans = vec![" ".into()];
    for (i, (k, what)) in keys::bindings(intents).filter_map(|b| b.footer).enumerate() {
        if i > 0 {
            spans.push(" · ".into());
        }
        spans.push(Span::styled(k, Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan)));
        spans.push(format!(" {what}").into());
    }
    spans
}

/// A `w`x`h` box in the middle of `area`, clipped to it.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let (w, h) = (w.min(area.width), h.min(area.height));
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

fn popup(area: Rect, buf: &mut Buffer, title: &str, lines: Vec<Line>, color: Color) {
    let h = lines.len() as u16 + 2;
    let w = lines.iter().map(|l| l.width() as u16).max().unwrap_or(10) + 4;
    let r = centered(area, w, h);
    Clear.render(r, buf);
    Paragraph::new(lines)
        .block(Block::bordered().title(title.to_string()).border_style(Style::new().fg(color)))
        .render(r, buf);
}

fn render_help(area: Rect, buf: &mut Buffer) {
    let w = keys::bindings(App::INTENTS).map(|b| b.label.chars().count()).max().unwrap_or(0) + 2;
    let lines = keys::bindings(App::INTENTS)
        .map(|b| Line::from(vec![format!(" {:<w$}", b.label).cyan().bold(), b.help.into()]))
        .collect();
    popup(area, buf, " Keys ", lines, Color::Cyan);
}

fn render_confirm(area: Rect, buf: &mut Buffer) {
    let lines = vec![
        Line::from(" Stop the run gracefully?"),
        Line::from(" It finishes the current batch or epoch, saves a"),
        Line::from(" checkpoint and records that it was stopped."),
        Line::from(vec![" ".into(), "y".green().bold(), " stop · ".into(), "n".red().bold(), " keep running".into()]),
    ];
    popup(area, buf, " Stop run ", lines, Color::Yellow);
}
