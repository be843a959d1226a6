//! Charts and reports from what a run wrote: shared by `tlab report`, notebooks and the book.
//!
//! Each chart is one function generic over any plotters [`DrawingBackend`], so the same
//! code draws SVG (files, evcxr notebooks) and PNG (bitmaps). Inputs are small plain
//! structs ([`Curves`], [`ConfusionChart`], [`Comparison`], [`Throughput`], [`Pca`]) that
//! [`RunData::load`] builds from a run directory, or that a notebook builds by hand.
//!
//! ```no_run
//! # fn main() -> transfer_lab::Result<()> {
//! use transfer_lab::report::{self, Chart, RunData};
//! let run = RunData::load("runs/20260101-120000-linear-probe".as_ref())?;
//! Chart::render(900, 420, |area| report::training_curves(area, &run.curves()))?.evcxr_display();
//! # Ok(()) }
//! ```
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

mod bars;
mod cams;
mod curve;
mod data;
mod heatmap;
mod lines;
pub mod mistakes;
mod output;
mod pca;
mod reliability;
mod sweep;
mod write;

pub use bars::{per_class_accuracy, run_comparison, Comparison, ComparisonBar};
pub use curve::{
    curve_answer, curve_markdown, learning_curve_chart, write_learning_curve, LearningCurve, LEVEL_OFF_POINTS,
};
pub use data::{ConfusionChart, Curves, RunData, Throughput, ThroughputPoint};
pub use heatmap::confusion_heatmap;
pub use lines::{throughput, training_curves};
pub use output::{render_png, render_svg, save_png, save_svg, Chart, Figure};
pub use pca::{pca_scatter, Pca};
pub use reliability::{reliability_diagram, Reliability};
pub use sweep::{lambda_sweep, Sweep};
pub use write::{comparison, summary_markdown, summary_rows, write_report, SummaryRow};

/// Which run a chart shows, and the caveats its title must carry.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLabel {
    pub name: String,
    /// Trained and tested on generated data: not a CIFAR-10 result.
    pub synthetic: bool,
    /// False for seeded random backbone weights: not transfer learning.
    pub pretrained: bool,
}

impl RunLabel {
    /// A real-data, pretrained run called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        RunLabel { name: name.into(), synthetic: false, pretrained: true }
    }

    /// The caveats in capitals, e.g. " [SYNTHETIC DATA]", or "".
    pub fn caveats(&self) -> String {
        let mut s = String::new();
        if self.synthetic {
            s += " [SYNTHETIC DATA]";
        }
        if !self.pretrained {
            s += " [RANDOM WEIGHTS]";
        }
        s
    }

    /// "What: run [CAVEATS]": every chart title goes through here so none forgets them.
    pub fn title(&self, what: &str) -> String {
        format!("{what}: {}{}", self.name, self.caveats())
    }
}

/// The shipped font, so PNG text renders on machines without system fonts (and SVG
/// layout, which measures text through the same font, works too).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the shipped font as plotters' "sans-serif" once; every chart calls this.
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are ours and known good; a failure here is a build defect.
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            panic!("assets/fonts/DejaVuSans.ttf is not a valid font");
        }
    });
}

/// Ten distinguishable colours (matplotlib's tab10), cycled for classes and series.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Colour `i` of [`PALETTE`], cycling.
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A plotters failure, whatever the backend; turned into [`crate::Error`] naming the chart.
pub(crate) struct DrawError(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawError(e.to_string())
    }
}

impl DrawError {
    fn into_error(self, chart: &str) -> crate::Error {
        crate::Error::Chart { chart: chart.to_string(), reason: self.0 }
    }
}

/// Runs a chart's drawing code with the font registered, naming the chart on failure.
pub(crate) fn draw_chart<DB: DrawingBackend>(
    chart: &str,
    root: &DrawingArea<DB, Shift>,
    f: impl FnOnce(&DrawingArea<DB, Shift>) -> Result<(), DrawError>,
) -> crate::Result<()> {
    register_font();
    let res = root.fill(&WHITE).map_err(DrawError::from).and_then(|_| f(root));
    res.map_err(|e| e.into_error(chart))
}

/// The title font: 20 px, shrunk (down to 11 px) until `title` fits the area's width.
pub(crate) fn title_font<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
) -> Result<FontDesc<'static>, DrawError> {
    let width = area.dim_in_pixel().0.saturating_sub(20);
    let mut size = 20.0;
    while size > 11.0 && area.estimate_text_size(title, &("sans-serif", size).into_font().into())?.0 > width {
        size -= 1.0;
    }
    Ok(("sans-serif", size).into_font())
}

/// A "nothing to show" chart: the title, then `message` in the middle.
pub(crate) fn draw_empty<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    message: &str,
) -> Result<(), DrawError> {
    let area = root.titled(title, title_font(root, title)?)?;
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from(("sans-serif", 16)).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(message.to_string(), (w as i32 / 2, h as i32 / 2), style))?;
    Ok(())
}
