//! Where charts go: SVG and PNG files (atomic), and inline SVG in evcxr notebooks.
use super::{Comparison, ConfusionChart, Curves, Pca, Throughput};
use crate::fsutil::write_atomic;
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Draws with `draw` onto an SVG canvas of `w` x `h` pixels; returns the document.
pub fn render_svg(
    w: u32,
    h: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| chart_err("SVG", e))?;
    }
    Ok(svg)
}

/// Draws with `draw` onto an RGB bitmap of `w` x `h` pixels; returns the PNG bytes.
/// plotters' own PNG encoder is not enabled; the `image` crate encodes instead.
pub fn render_png(
    w: u32,
    h: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<Vec<u8>> {
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| chart_err("bitmap", e))?;
    }
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| chart_err("bitmap", "buffer size mismatch"))?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).map_err(|e| chart_err("PNG", e))?;
    Ok(png.into_inner())
}

fn chart_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Chart { chart: what.to_string(), reason: e.to_string() }
}

/// Writes an SVG chart to `path` atomically (temp file + rename).
pub fn save_svg(
    path: &Path,
    w: u32,
    h: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    write_atomic(path, render_svg(w, h, draw)?.as_bytes())
}

/// Writes a PNG chart to `path` atomically; text uses the shipped font.
pub fn save_png(
    path: &Path,
    w: u32,
    h: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    write_atomic(path, &render_png(w, h, draw)?)
}

/// An SVG chart held in memory: shows inline in evcxr notebooks.
#[derive(Debug, Clone)]
pub struct Chart {
    svg: String,
}

impl Chart {
    /// Renders `draw` (any chart function) at `w` x `h` pixels.
    pub fn render(
        w: u32,
        h: u32,
        draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
    ) -> Result<Chart> {
        Ok(Chart { svg: render_svg(w, h, draw)? })
    }

    pub fn svg(&self) -> &str {
        &self.svg
    }

    /// evcxr's rich-display protocol: the notebook shows the image, not text.
    pub fn evcxr_display(&self) {
        println!("{}", self.evcxr_content());
    }

    /// What [`Chart::evcxr_display`] prints.
    pub fn evcxr_content(&self) -> String {
        format!("EVCXR_BEGIN_CONTENT image/svg+xml\n{}\nEVCXR_END_CONTENT", self.svg.trim_end())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.svg.as_bytes())
    }
}

/// Any of the charts with its data: one value that draws on any backend at its usual size.
#[derive(Debug, Clone, Copy)]
pub enum Figure<'a> {
    TrainingCurves(&'a Curves),
    Confusion(&'a ConfusionChart),
    PerClassAccuracy(&'a ConfusionChart),
    Comparison(&'a Comparison),
    Throughput(&'a Throughput),
    Pca(&'a Pca),
    Sweep(&'a super::Sweep),
    Reliability(&'a super::Reliability),
    LearningCurve(&'a super::LearningCurve),
}

impl Figure<'_> {
    pub fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        match *self {
            Figure::TrainingCurves(d) => super::training_curves(area, d),
            Figure::Confusion(d) => super::confusion_heatmap(area, d),
            Figure::PerClassAccuracy(d) => super::per_class_accuracy(area, d),
            Figure::Comparison(d) => super::run_comparison(area, d),
            Figure::Throughput(d) => super::throughput(area, d),
            Figure::Pca(d) => super::pca_scatter(area, d),
            Figure::Sweep(d) => super::lambda_sweep(area, d),
            Figure::Reliability(d) => super::reliability_diagram(area, d),
            Figure::LearningCurve(d) => super::learning_curve_chart(area, d),
        }
    }

    /// Width and height in pixels that keep labels readable for this data.
    pub fn size(&self) -> (u32, u32) {
        let rows = |n: usize| (120 + 34 * n as u32).max(300);
        match *self {
            Figure::TrainingCurves(_) => (1000, 420),
            Figure::Confusion(c) => {
                let side = (260 + 60 * c.classes.len() as u32).clamp(420, 1400);
                (side + 60, side)
            }
            Figure::PerClassAccuracy(c) => (800, rows(c.classes.len())),
            Figure::Comparison(c) => (900, rows(c.bars.len())),
            Figure::Throughput(_) => (900, 420),
            Figure::Pca(_) => (800, 640),
            Figure::Sweep(_) => (900, 420),
            Figure::Reliability(_) => (720, 560),
            Figure::LearningCurve(_) => (900, 480),
        }
    }

    /// Inline SVG for a notebook, at [`Figure::size`].
    pub fn chart(&self) -> Result<Chart> {
        let (w, h) = self.size();
        Chart::render(w, h, |a| self.draw(a))
    }

    /// Writes `<dir>/<stem>.svg` and `<dir>/<stem>.png`; returns both paths.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        let (w, h) = self.size();
        let (svg, png) = (dir.join(format!("{stem}.svg")), dir.join(format!("{stem}.png")));
        save_svg(&svg, w, h, |a| self.draw(a))?;
        save_png(&png, w, h, |a| self.draw(a))?;
        Ok((svg, png))
    }
}
