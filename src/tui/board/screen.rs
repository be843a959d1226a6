//! The full screen of `tlab dash FOLDER`: state, gauge, the map of shards, parts and claims.
use super::{char_of, Board, Cell};
use crate::tui::{fmt, keys, view};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, LineGauge, Paragraph, Widget, Wrap};

fn color_of(c: Cell) -> Color {
    match c {
        Cell::Done => Color::Green,
        Cell::Running => Color::Yellow,
        Cell::Stale => Color::Red,
        Cell::Waiting => Color::DarkGray,
    }
}

/// The board's keys: it only shows, so it only quits.
pub const BOARD_INTENTS: &[keys::Intent] = &[keys::Intent::Quit];

/// The screen of `tlab dash FOLDER`; `message` is the latest read error, if any.
pub struct Screen<'a> {
    pub board: &'a Board,
    pub message: Option<&'a str>,
}

impl Widget for Screen<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let b = self.board;
        let w = &b.what;
        let [header, about, gauge, map, parts, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(area);
        let state = if b.complete {
            " COMPLETE ".black().on_green()
        } else if b.count(Cell::Running) > 0 {
            " RUNNING ".black().on_yellow()
        } else {
            " NO WORKER ".black().on_gray()
        };
        Line::from(vec![
            state,
            Span::raw(" tlab · sharded extraction · "),
            Span::raw(b.folder.display().to_string()).dim(),
        ])
        .render(header, buf);
        Line::from(format!(
            "{} · {} · {} at {} px · {} images in {} shards of {}",
            w.dataset,
            w.split,
            w.arch,
            w.image_size,
            fmt::count(w.images as u64),
            w.shards,
            w.shard_size
        ))
        .render(about, buf);
        let mut label = format!("{:.1}%", b.fraction() * 100.0);
        if let Some(r) = b.live_rate() {
            label += &format!(" · {r:.1} images/s");
        }
        if let Some(eta) = b.eta_s() {
            label += &format!(" · ETA {}", fmt::duration((eta * 1000.0) as u64));
        }
        LineGauge::default()
            .ratio(b.fraction().clamp(0.0, 1.0))
            .label(label)
            .filled_style(Style::default().fg(Color::Green))
            .render(gauge, buf);
        let cells: Vec<Span> = b.cells.iter().map(|c| Span::styled(char_of(*c).to_string(), color_of(*c))).collect();
        let legend = format!(
            "shards: {} done (#), {} running (>), {} stale (!), {} waiting (.)",
            b.count(Cell::Done),
            b.count(Cell::Running),
            b.count(Cell::Stale),
            b.count(Cell::Waiting)
        );
        Paragraph::new(Line::from(cells))
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(legend))
            .render(map, buf);
        let mut lines: Vec<Line> = b.parts.iter().map(|p| Line::from(Board::part_text(p))).collect();
        for (i, who, stale) in &b.claimed {
            let s = if *stale { " (stale: its worker is gone; the next worker takes it over)" } else { "" };
            lines.push(Line::from(format!("shard {i}: pid {} on {} (part {}){s}", who.pid, who.host, who.part)).dim());
        }
        if lines.is_empty() {
            lines.push(Line::from(if b.complete { "every shard is merged" } else { "no part has started yet" }).dim());
        }
        Paragraph::new(lines).block(Block::bordered().title("parts and claims")).render(parts, buf);
        let foot = match self.message {
            Some(m) => Line::from(m.to_string()).red(),
            None => {
                let mut spans = view::footer_keys(BOARD_INTENTS);
                spans.push(" · the workers go on".into());
                Line::from(spans).dim()
            }
        };
        foot.render(footer, buf);
    }
}
