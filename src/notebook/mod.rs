//! Notebook output: HTML tables, inline charts and image grids in evcxr; plain text in a
//! terminal (`cargo run --example ...`), so the same tutorial code runs in both.
//!
//! ```no_run
//! # fn main() -> transfer_lab::Result<()> {
//! use transfer_lab::notebook::{show, Table};
//! let df = polars::df!("class" => ["cat", "dog"], "recall" => [0.9, 0.8]).unwrap();
//! show(&Table::new(&df, "per-class scores")); // an HTML table in Jupyter
//! # Ok(()) }
//! ```
use crate::report::Chart;
use crate::{Error, Result};
use base64::Engine;
use polars::prelude::{AnyValue, DataFrame};
use std::fmt::Write;
use tch::{Kind, Tensor};

mod backbones;
mod head;
mod interpret;
mod probes;
mod tokens;
mod tutorial;

pub use backbones::{fitted_size, published_linear_probe, weights_registry, BackboneComparison, BackboneRow};
pub use head::TrainedHead;
pub use interpret::{
    calibration_table, class_weight_table, folder_class, heatmap_gallery, imbalanced_copy, right_and_wrong,
    run_warnings,
};
pub use probes::{ProbeComparison, ProbeRow};
pub use tokens::{vit_table, PoolComparison, PoolRow};

pub use tutorial::{demo_photos_in, strategy_table, PoolingCheck, Tutorial, TutorialScale};

/// Something with a rich (MIME) form for notebooks and a plain form for terminals.
pub trait Rich {
    /// The MIME type of [`Rich::rich`]: `text/html`, `image/svg+xml`, ...
    fn mime(&self) -> &'static str;
    fn rich(&self) -> String;
    fn plain(&self) -> String;
}

/// True inside an evcxr kernel (it sets `EVCXR_IS_RUNTIME` in the process running cells).
pub fn in_notebook() -> bool {
    crate::settings::current().in_evcxr
}

/// Shows `x`: rich output in a notebook, its plain form on stdout elsewhere.
pub fn show(x: &impl Rich) {
    if in_notebook() {
        println!("EVCXR_BEGIN_CONTENT {}\n{}\nEVCXR_END_CONTENT", x.mime(), x.rich().trim_end());
    } else {
        println!("{}", x.plain().trim_end());
    }
}

impl Rich for Chart {
    fn mime(&self) -> &'static str {
        "image/svg+xml"
    }
    fn rich(&self) -> String {
        self.svg().to_string()
    }
    fn plain(&self) -> String {
        format!("[chart: SVG, {} KB; shown inline in a notebook]", self.svg().len().div_ceil(1024))
    }
}

/// HTML for a notebook with its plain-text twin for a terminal: what [`Table`] and
/// [`ImageGrid`] make.
pub struct Html {
    html: String,
    plain: String,
}

impl Rich for Html {
    fn mime(&self) -> &'static str {
        "text/html"
    }
    fn rich(&self) -> String {
        self.html.clone()
    }
    fn plain(&self) -> String {
        self.plain.clone()
    }
}

/// A polars DataFrame as an HTML table (all rows up to `max_rows`), with a caption.
pub struct Table;

impl Table {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(df: &DataFrame, caption: &str) -> Html {
        Table::with_max_rows(df, caption, 50)
    }

    pub fn with_max_rows(df: &DataFrame, caption: &str, max_rows: usize) -> Html {
        let mut html = String::from("<table>\n");
        let _ = writeln!(html, "<caption>{} ({} rows)</caption>", escape(caption), df.height());
        html += "<thead><tr>";
        for c in df.columns() {
            let _ = write!(html, "<th>{}</th>", escape(c.name()));
        }
        html += "</tr></thead>\n<tbody>\n";
        for i in 0..df.height().min(max_rows) {
            html += "<tr>";
            for c in df.columns() {
                let cell = c.get(i).map(|v| cell_text(&v)).unwrap_or_default();
                let align = if c.dtype().is_primitive_numeric() { " style=\"text-align:right\"" } else { "" };
                let _ = write!(html, "<td{align}>{}</td>", escape(&cell));
            }
            html += "</tr>\n";
        }
        html += "</tbody>\n</table>";
        if df.height() > max_rows {
            let _ = write!(html, "<p>... {} more rows</p>", df.height() - max_rows);
        }
        Html { html, plain: format!("{caption}\n{df}") }
    }
}

fn cell_text(v: &AnyValue<'_>) -> String {
    match v {
        AnyValue::Null => String::new(),
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        AnyValue::Float64(x) => format!("{x:.4}"),
        AnyValue::Float32(x) => format!("{x:.4}"),
        other => other.to_string(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Pictures with captions in a grid: inline PNGs in a notebook, a caption list elsewhere.
pub struct ImageGrid;

impl ImageGrid {
    /// `images` `[N, 3, H, W]` u8 (a dataset batch); each is enlarged `scale` times with
    /// nearest-neighbour so 32x32 pictures stay legible. `captions` pairs up with images.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(images: &Tensor, captions: &[String], columns: usize, scale: i64) -> Result<Html> {
        let s = images.size();
        if s.len() != 4 || s[1] != 3 || s[0] as usize != captions.len() || images.kind() != Kind::Uint8 {
            return Err(Error::invalid(
                "image grid",
                format!(
                    "images {s:?} ({:?}) with {} captions; want [N, 3, H, W] u8 and N captions",
                    images.kind(),
                    captions.len()
                ),
            ));
        }
        let (h, w) = (s[2] * scale.max(1), s[3] * scale.max(1));
        let big = images.upsample_nearest2d([h, w], None, None).permute([0, 2, 3, 1]).contiguous();
        let mut html = format!(
            "<div style=\"display:grid;grid-template-columns:repeat({columns},{w}px);gap:6px;font:12px sans-serif\">\n"
        );
        for (i, caption) in captions.iter().enumerate() {
            let pixels = Vec::<u8>::try_from(big.get(i as i64).reshape([-1]))?;
            let png = encode_png(&pixels, w as u32, h as u32)?;
            let _ = writeln!(
                html,
                "<figure style=\"margin:0\"><img width=\"{w}\" height=\"{h}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>",
                base64::engine::general_purpose::STANDARD.encode(png),
                escape(caption)
            );
        }
        html += "</div>";
        let plain = format!("[{} images, {}x{} each: {}]", captions.len(), s[3], s[2], captions.join(", "));
        Ok(Html { html, plain })
    }
}

impl ImageGrid {
    /// The first `max` items of `data` whose prediction is wrong, captioned
    /// `true -> predicted`; says so when there are none.
    pub fn mistakes(data: &crate::data::Dataset, labels: &[i64], predictions: &[i64], max: usize) -> Result<Html> {
        let wrong: Vec<i64> =
            (0..labels.len()).filter(|&i| labels[i] != predictions[i]).map(|i| i as i64).take(max).collect();
        if wrong.is_empty() {
            let text = format!("No mistakes among {} images.", labels.len());
            return Ok(Html { html: format!("<p>{text}</p>"), plain: text });
        }
        let name = |c: i64| data.classes.get(c as usize).map_or("?", String::as_str).to_string();
        let captions: Vec<String> = wrong
            .iter()
            .map(|&i| format!("{} -> {}", name(labels[i as usize]), name(predictions[i as usize])))
            .collect();
        let (images, _) = data.gather(&wrong)?;
        ImageGrid::new(&images, &captions, 8, 3)
    }
}

impl ImageGrid {
    /// Each predicted image as the model saw it (decoded, resized, cropped), captioned with
    /// its top classes and their probabilities; an image that could not be read is said
    /// below the grid.
    pub fn predictions(model: &crate::classifier::Classifier, rows: &[crate::classifier::Prediction]) -> Result<Html> {
        let ok: Vec<&crate::classifier::Prediction> = rows.iter().filter(|r| r.error.is_none()).collect();
        let mut pics = Vec::with_capacity(ok.len());
        for r in &ok {
            pics.push(model.decode(&r.path)?.round().clamp(0.0, 255.0).to_kind(Kind::Uint8));
        }
        let captions: Vec<String> = ok
            .iter()
            .map(|r| r.top.iter().map(|(c, p)| format!("{c} {:.0}%", p * 100.0)).collect::<Vec<_>>().join(" · "))
            .collect();
        let mut grid = if pics.is_empty() {
            Html { html: String::new(), plain: String::new() }
        } else {
            let size = pics[0].size()[1];
            let scale = (160 / size).max(1);
            ImageGrid::new(&Tensor::stack(&pics, 0), &captions, 4, scale)?
        };
        for r in rows.iter().filter(|r| r.error.is_some()) {
            let e = r.error.as_deref().unwrap_or_default();
            let _ = write!(grid.html, "<p>{}: {}</p>", escape(&r.path.display().to_string()), escape(e));
            let _ = write!(grid.plain, "\n{}: {e}", r.path.display());
        }
        Ok(grid)
    }
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::write_buffer_with_format(&mut out, rgb, w, h, image::ExtendedColorType::Rgb8, image::ImageFormat::Png)
        .map_err(|e| Error::Chart { chart: "image grid (PNG)".into(), reason: e.to_string() })?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_escapes_and_limits_rows() {
        let df = polars::df!("class" => ["<cat>", "dog", "emu"], "recall" => [0.5, 0.25, 1.0]).unwrap();
        let t = Table::with_max_rows(&df, "scores & more", 2);
        assert!(t.html.contains("<th>class</th><th>recall</th>"), "{}", t.html);
        assert!(t.html.contains("<td>&lt;cat&gt;</td><td style=\"text-align:right\">0.5000</td>"), "{}", t.html);
        assert!(!t.html.contains("emu") && t.html.contains("1 more rows"));
        assert!(t.html.contains("scores &amp; more (3 rows)"));
        assert!(t.plain.contains("emu"));
    }

    #[test]
    fn image_grid_embeds_decodable_pngs() {
        let imgs = Tensor::arange(2 * 3 * 4 * 4, (Kind::Uint8, tch::Device::Cpu)).reshape([2, 3, 4, 4]);
        let g = ImageGrid::new(&imgs, &["a".into(), "b".into()], 2, 3).unwrap();
        let b64 = g.html.split("base64,").nth(1).unwrap().split('"').next().unwrap();
        let png = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (12, 12));
        // Nearest-neighbour: pixel (2,2) of the big picture is pixel (0,0) of the small one.
        assert_eq!(img.get_pixel(2, 2).0, [0, 16, 32]);
        assert!(ImageGrid::new(&imgs, &["a".into()], 2, 3).is_err());
    }
}
