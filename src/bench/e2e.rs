//! End to end: raw CIFAR-format bytes -> features on disk, as whole processes timed by the
//! wall clock (start-up and imports included): `tlab extract` on a generated CIFAR-format
//! set, against the usual PyTorch script (`bench/e2e_torch.py`: torchvision CIFAR10 +
//! DataLoader + Resize/ToTensor/Normalize -> ResNet50 -> np.save). Both runs at two
//! dataset sizes give peak RSS at each, projected linearly to 60,000 images.
use super::{BenchConfig, Env};
use crate::data::synthetic::write_synthetic_cifar;
use crate::events::{parse_line, RunEvent};
use crate::{Error, Result};
use serde::Serialize;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// One process run.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub images: usize,
    pub seconds: f64,
    pub images_per_s: f64,
    pub peak_rss_mb: f64,
    /// The PyTorch script's DataLoader workers (largest one); none for ours.
    pub workers_peak_rss_mb: Option<f64>,
}

/// Peak RSS at two dataset sizes and its straight-line extension.
#[derive(Debug, Clone, Serialize)]
pub struct Projection {
    pub name: String,
    pub images: [usize; 2],
    pub peak_rss_mb: [f64; 2],
    pub mb_per_1000_images: f64,
    pub projected_60000_mb: f64,
    /// False when the two sizes cannot give a slope: the peaks differ by less than
    /// allocator noise ([`NOISE_MB`]), or the first run is below the size where memory stops
    /// growing (one shard for ours). The projection is then an upper bound; `caveat` says why.
    pub resolved: bool,
    pub caveat: Option<String>,
}

/// Peak RSS differences below this are noise (allocator arenas, page granularity, and
/// for ours the one feature shard held before it is written, at most 2,048 x 2,048 x 4 B
/// twice over).
pub const NOISE_MB: f64 = 32.0;

#[derive(Debug, Serialize)]
pub struct EndToEnd {
    pub size: i64,
    pub rows: Vec<Row>,
    pub projections: Vec<Projection>,
}

pub const PROJECT_TO: f64 = 60_000.0;

/// Generates the data sets, then runs ours and the script alternately at each size.
pub fn run(cfg: &BenchConfig, env: &Env) -> Result<EndToEnd> {
    let work = env.out.join("e2e-work");
    let io = |context: String| move |source| Error::Io { context, source };
    let mut rows = Vec::new();
    // Section `e2e-ours` alone: our side only (peak RSS at large sizes in minutes).
    let with_torch = cfg.has(super::Section::E2e);
    for &n in &cfg.e2e_images {
        let data = work.join(format!("cifar-{n}"));
        write_synthetic_cifar(&data, n, 10, 0)?;
        eprintln!("bench: end to end, {n} images: ours");
        rows.push(ours(cfg, env, &data, n)?);
        if !with_torch {
            std::fs::remove_dir_all(&data).map_err(io(format!("removing {}", data.display())))?;
            continue;
        }
        let prep = Command::new(&env.torch_python)
            .arg(env.script("e2e_torch.py"))
            .arg("prepare")
            .arg(&data)
            .status()
            .map_err(io("running e2e_torch.py prepare".into()))?;
        if !prep.success() {
            return Err(Error::BenchSetup(format!("e2e_torch.py prepare {} failed", data.display())));
        }
        eprintln!("bench: end to end, {n} images: PyTorch script");
        rows.push(torch_script(cfg, env, &data, n)?);
        std::fs::remove_dir_all(&data).map_err(io(format!("removing {}", data.display())))?;
    }
    let _ = std::fs::remove_dir_all(&work);
    let projections = ["ours", "pytorch"]
        .iter()
        .filter_map(|g| {
            let r: Vec<&Row> = rows.iter().filter(|r| r.name.starts_with(g)).collect();
            // Ours holds one shard of features at most: below a full shard, a run has not
            // reached its plateau yet and the slope between the two sizes overstates growth.
            let plateau = if *g == "ours" { crate::features::ExtractConfig::default().shard_size } else { 0 };
            (r.len() == 2).then(|| project(&r[0].name, [r[0], r[1]], plateau))
        })
        .collect();
    Ok(EndToEnd { size: cfg.size, rows, projections })
}

/// Linear projection to [`PROJECT_TO`] images; `plateau`: the size from which memory is
/// expected to stay flat (one shard for ours), which both runs must reach.
fn project(name: &str, r: [&Row; 2], plateau: usize) -> Projection {
    let (n0, n1) = (r[0].images as f64, r[1].images as f64);
    let growth = r[1].peak_rss_mb - r[0].peak_rss_mb;
    let caveat = if r[0].images < plateau {
        Some(format!("upper bound: {} images is below one shard ({plateau} rows), where growth stops", r[0].images))
    } else if growth.abs() < NOISE_MB {
        Some(format!("upper bound: flat within allocator noise ({NOISE_MB} MB)"))
    } else {
        None
    };
    // Unresolved: as if it grew by at least the noise, all the way: an upper bound.
    let slope = if caveat.is_some() { growth.max(NOISE_MB) } else { growth } / (n1 - n0);
    Projection {
        name: name.split(':').next().unwrap_or(name).to_string(),
        images: [r[0].images, r[1].images],
        peak_rss_mb: [r[0].peak_rss_mb, r[1].peak_rss_mb],
        mb_per_1000_images: slope * 1000.0,
        projected_60000_mb: r[1].peak_rss_mb + slope * (PROJECT_TO - n1),
        resolved: caveat.is_none(),
        caveat,
    }
}

/// Runs `cmd`, timing it; returns the wall seconds and its stdout, or an error with its stderr.
fn timed(mut cmd: Command, what: &str) -> Result<(f64, String)> {
    let t = Instant::now();
    let out = cmd.output().map_err(|source| Error::Io { context: format!("running {what}"), source })?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String =
            err.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(Error::BenchSetup(format!("{what} failed ({}):\n{tail}", out.status)));
    }
    Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// `tlab extract` (this very binary when it is `tlab`) into a fresh cache.
fn ours(cfg: &BenchConfig, env: &Env, data: &Path, n: usize) -> Result<Row> {
    let cache = data.with_extension("cache");
    let events = data.with_extension("events.jsonl");
    let exe = tlab_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["--threads", &cfg.threads.to_string(), "--cache-dir"])
        .arg(&cache)
        .args(["extract", "--dataset", "cifar10", "--data"])
        .arg(data)
        .args(["--arch", "resnet50", "--weights", "random", "--split", "train"])
        .args(["--size", &cfg.size.to_string(), "--batch-size", &cfg.batch.to_string()])
        .args(["--device", &crate::models::folded::device_name(env.device), "--events"])
        .arg(&events);
    let (seconds, _) = timed(cmd, "tlab extract")?;
    let text = std::fs::read_to_string(&events)
        .map_err(|source| Error::Io { context: format!("reading {}", events.display()), source })?;
    let rss = text.lines().filter_map(parse_line).find_map(|e| match e.event {
        RunEvent::ExtractionFinished { peak_rss_bytes, .. } => Some(peak_rss_bytes),
        _ => None,
    });
    let _ = std::fs::remove_dir_all(&cache);
    Ok(Row {
        name: "ours: tlab extract (CIFAR bytes -> safetensors shards)".into(),
        images: n,
        seconds,
        images_per_s: n as f64 / seconds,
        peak_rss_mb: rss.unwrap_or(0) as f64 / 1e6,
        workers_peak_rss_mb: None,
    })
}

/// The `tlab` binary: this process when it is `tlab`, else `target/<profile>/tlab` beside it.
fn tlab_exe() -> Result<std::path::PathBuf> {
    let me = std::env::current_exe().map_err(|source| Error::Io { context: "current exe".into(), source })?;
    if me.file_stem().is_some_and(|s| s == "tlab") {
        return Ok(me);
    }
    let beside = me.parent().and_then(|p| p.parent()).map(|p| p.join("tlab")).filter(|p| p.is_file());
    beside.ok_or_else(|| Error::BenchSetup("the tlab binary was not found; run `cargo build` first".into()))
}

#[derive(serde::Deserialize)]
struct ScriptInfo {
    peak_rss_bytes: u64,
    workers_peak_rss_bytes: u64,
}

fn torch_script(cfg: &BenchConfig, env: &Env, data: &Path, n: usize) -> Result<Row> {
    let out = data.with_extension("npy");
    let mut cmd = Command::new(&env.torch_python);
    cmd.arg(env.script("e2e_torch.py"))
        .arg("run")
        .arg(data)
        .arg(&out)
        .args(["--size", &cfg.size.to_string(), "--batch", &cfg.batch.to_string()])
        .args(["--threads", &cfg.threads.to_string(), "--workers", &cfg.torch_workers.to_string()])
        .args(["--device", &crate::models::folded::device_name(env.device)]);
    let (seconds, stdout) = timed(cmd, "bench/e2e_torch.py")?;
    let info: ScriptInfo = stdout
        .lines()
        .find_map(|l| l.strip_prefix("@tlab e2e "))
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| Error::BenchSetup("e2e_torch.py printed no `@tlab e2e` line".into()))?;
    let _ = std::fs::remove_file(&out);
    Ok(Row {
        name: format!("pytorch: usual script (DataLoader, {} workers)", cfg.torch_workers),
        images: n,
        seconds,
        images_per_s: n as f64 / seconds,
        peak_rss_mb: info.peak_rss_bytes as f64 / 1e6,
        workers_peak_rss_mb: (cfg.torch_workers > 0).then_some(info.workers_peak_rss_bytes as f64 / 1e6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(images: usize, peak_rss_mb: f64) -> Row {
        Row { name: "ours: x".into(), images, seconds: 1.0, images_per_s: 1.0, peak_rss_mb, workers_peak_rss_mb: None }
    }

    #[test]
    fn projection_extends_a_measured_slope() {
        let p = project("pytorch: script", [&row(2000, 1000.0), &row(4000, 1100.0)], 0);
        assert!(p.resolved && p.caveat.is_none());
        assert!((p.mb_per_1000_images - 50.0).abs() < 1e-9);
        assert!((p.projected_60000_mb - (1100.0 + 50.0 * 56.0)).abs() < 1e-6);
        assert_eq!(p.name, "pytorch");
    }

    #[test]
    fn flat_or_below_the_plateau_is_an_upper_bound_with_its_reason() {
        let flat = project("ours", [&row(2048, 1200.0), &row(6144, 1210.0)], 2048);
        assert!(!flat.resolved);
        assert!(flat.caveat.as_deref().unwrap().contains("noise"));
        // As if it grew by the whole noise between the two sizes.
        assert!((flat.mb_per_1000_images - NOISE_MB / 4096.0 * 1000.0).abs() < 1e-9);
        assert!(flat.projected_60000_mb > 1210.0);
        let below = project("ours", [&row(1024, 1180.0), &row(4096, 1235.0)], 2048);
        assert!(!below.resolved);
        assert!(below.caveat.as_deref().unwrap().contains("below one shard"));
        assert!((below.mb_per_1000_images - 55.0 / 3072.0 * 1000.0).abs() < 1e-9);
    }
}
