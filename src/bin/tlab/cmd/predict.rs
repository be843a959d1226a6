//! `tlab predict MODEL IMAGES...`: top classes of images, by a run directory or an
//! exported model file; `--explain DIR` adds their Grad-CAM heatmaps.
use super::Ctx;
use anyhow::{bail, Result};
use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use transfer_lab::classifier::{expand_paths, Classifier, Prediction};
use transfer_lab::data::folder::DEFAULT_MAX_PIXELS;
use transfer_lab::device::DeviceChoice;
use transfer_lab::explain::{explain_files, INDEX_FILE};

/// How `predict` writes its rows.
#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub(crate) enum PredictFormat {
    /// Aligned columns (the default on a terminal)
    Table,
    Csv,
    /// One JSON array
    Json,
    /// One JSON object a line
    Jsonl,
}

#[derive(Args)]
pub(crate) struct PredictArgs {
    /// A run directory or a file written by `tlab export`
    model: PathBuf,
    /// Images, folders (walked) or quoted glob patterns
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Classes per image
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    top_k: usize,
    /// Output format [default: table]
    #[arg(long, value_enum, default_value_t = PredictFormat::Table)]
    format: PredictFormat,
    /// Write to this file (atomically) instead of stdout
    #[arg(long)]
    out: Option<PathBuf>,
    /// Device: auto, cpu, cuda or cuda:N
    #[arg(long, default_value_t)]
    device: DeviceChoice,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    batch_size: usize,
    /// Pixels (width x height) an image's header may claim; a larger one is an error row
    /// (PIL's limit by default)
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS, value_parser = clap::value_parser!(u64).range(1..))]
    max_image_pixels: u64,
    /// Also write each image's Grad-CAM heatmap (PNG) and heatmaps.csv into this folder
    #[arg(long, value_name = "OUT_DIR")]
    explain: Option<PathBuf>,
    /// The class the heatmaps explain [default: each image's top class]
    #[arg(long, value_name = "NAME", requires = "explain")]
    class: Option<String>,
}

impl PredictArgs {
    pub(crate) fn exec(self, ctx: &mut Ctx) -> Result<()> {
        let a = self;
        let mut model = Classifier::load(&a.model, &ctx.cache, a.device.resolve())?;
        model.max_pixels = a.max_image_pixels;
        let paths = expand_paths(&a.paths)?;
        // A wrong class name fails before anything is predicted.
        if let Some(c) = &a.class {
            model.class_index(c)?;
        }
        let rows = model.predict(&paths, a.top_k, a.batch_size)?;
        let text = render(&rows, a.format, a.top_k)?;
        match &a.out {
            Some(out) => {
                write_atomic(out, text.as_bytes())?;
                eprintln!("{} predictions written to {}", rows.len(), out.display());
            }
            None => print!("{text}"),
        }
        if let Some(dir) = &a.explain {
            let done = explain_files(&model, &paths, a.class.as_deref(), dir, a.batch_size)?;
            let n = done.iter().filter(|r| r.heatmap.is_some()).count();
            eprintln!("{n} heatmaps written to {} (index: {})", dir.display(), dir.join(INDEX_FILE).display());
        }
        if model.meta.synthetic || !model.meta.pretrained {
            eprintln!("note: this model was trained on {} with {} weights", model.meta.dataset, model.meta.weights);
        }
        let failed = rows.iter().filter(|r| r.error.is_some()).count();
        if failed > 0 {
            bail!("{failed} of {} images could not be predicted (their rows say why)", rows.len());
        }
        Ok(())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("writing {}: {e}", path.display())
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The rows as text: a table, CSV (one row per image: path, then class and probability
/// for each rank, then the error), a JSON array or JSON lines.
fn render(rows: &[Prediction], format: PredictFormat, k: usize) -> Result<String> {
    let mut out = String::new();
    match format {
        PredictFormat::Json => {
            out = serde_json::to_string_pretty(&rows.iter().map(json_row).collect::<Vec<_>>())?;
            out.push('\n');
        }
        PredictFormat::Jsonl => {
            for r in rows {
                writeln!(out, "{}", serde_json::to_string(&json_row(r))?)?;
            }
        }
        PredictFormat::Csv => {
            let mut head = vec!["path".to_string()];
            for i in 1..=k {
                head.push(format!("class_{i}"));
                head.push(format!("prob_{i}"));
            }
            head.push("error".into());
            writeln!(out, "{}", head.join(","))?;
            for r in rows {
                let mut f = vec![csv_field(&r.path.display().to_string())];
                for i in 0..k {
                    match r.top.get(i) {
                        Some((c, p)) => f.extend([csv_field(c), format!("{p:.6}")]),
                        None => f.extend([String::new(), String::new()]),
                    }
                }
                f.push(csv_field(r.error.as_deref().unwrap_or("")));
                writeln!(out, "{}", f.join(","))?;
            }
        }
        PredictFormat::Table => {
            let width = rows.iter().map(|r| r.path.display().to_string().chars().count()).max().unwrap_or(4).max(4);
            writeln!(out, "{:<width$}  top {k}", "image")?;
            for r in rows {
                let cells = match &r.error {
                    Some(e) => format!("error: {e}"),
                    None => {
                        r.top.iter().map(|(c, p)| format!("{c} {:5.1}%", p * 100.0)).collect::<Vec<_>>().join("   ")
                    }
                };
                writeln!(out, "{:<width$}  {cells}", r.path.display().to_string())?;
            }
        }
    }
    Ok(out)
}

fn json_row(r: &Prediction) -> serde_json::Value {
    let top: Vec<_> = r.top.iter().map(|(c, p)| serde_json::json!({"class": c, "probability": p})).collect();
    serde_json::json!({"path": r.path, "top": top, "error": r.error})
}
