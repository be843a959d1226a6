//! The bench's printed tables, and its results on disk: `bench.json` (everything, samples
//! included) and `bench.csv` (one measured value a line), both written atomically.
use super::e2e::{EndToEnd, PROJECT_TO};
use super::head::{HeadTiming, PrecisionAccuracy};
use super::throughput::Throughput;
use super::{BenchConfig, BenchReport, Result};
use crate::fsutil::{write_atomic, write_json_atomic};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use tch::Device;

/// The machine and its load around the run: numbers mean little without it.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    /// Whether the CPU has bf16 instructions (avx512_bf16 / amx_bf16); without them
    /// bf16 convolutions are emulated and slower than fp32.
    pub native_bf16: bool,
    pub libtorch: String,
    pub cuda_available: bool,
    pub cuda_device: Option<String>,
    /// Ours' heap mode (`TLAB_HEAP`), whether tensors are on huge pages, the kernel's THP mode.
    pub heap: String,
    pub load_average_before: String,
    pub load_average_after: String,
}

fn cpuinfo(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
}

/// Ours' heap mode, and whether tensors are on huge pages (only `huge` asks for them).
fn heap_line() -> String {
    let (on, thp) = crate::heap::huge_pages();
    let thp = thp.as_deref().unwrap_or("absent");
    format!(
        "{}, tensors on huge pages: {} (kernel THP: {thp})",
        crate::heap::mode().name(),
        if on { "yes" } else { "no" }
    )
}

fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The GPU's name as nvidia-smi reports it.
fn cuda_device_name(device: Device) -> Option<String> {
    let Device::Cuda(i) = device else { return None };
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", &format!("--id={i}")])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

impl Machine {
    pub fn probe(_cfg: &BenchConfig, device: Device) -> Machine {
        let flags = cpuinfo("flags").unwrap_or_default();
        Machine {
            cpu: cpuinfo("model name").unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            native_bf16: flags.split_whitespace().any(|f| f == "avx512_bf16" || f == "amx_bf16"),
            libtorch: crate::LIBTORCH_VERSION.into(),
            cuda_available: tch::Cuda::is_available(),
            cuda_device: cuda_device_name(device),
            heap: heap_line(),
            load_average_before: load_average(),
            load_average_after: String::new(),
        }
    }

    pub fn finish(&mut self) {
        self.load_average_after = load_average();
    }

    pub fn print(&self) {
        println!(
            "machine: {} ({} cores, native bf16: {}), libtorch {}, tch::Cuda::is_available() = {}{}; ours' heap: {}; load average {}",
            self.cpu,
            self.cores,
            if self.native_bf16 { "yes" } else { "no" },
            self.libtorch,
            self.cuda_available,
            self.cuda_device.as_ref().map(|d| format!(", device {d}")).unwrap_or_default(),
            self.heap,
            self.load_average_before
        );
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

impl Throughput {
    pub fn print(&self) {
        let n = self.rows.first().map_or(0, |r| r.samples.len());
        println!(
            "\nExtraction throughput: ResNet50, {:.2} GFLOP/image (convolutions), median of {n} interleaved rounds",
            self.gflop_per_image
        );
        println!(
            "{:<44} {:>9} {:>8} {:>10} {:>9} {:>9}",
            "candidate", "images/s", "GFLOP/s", "of ceiling", "vs torch", "vs keras"
        );
        for r in &self.rows {
            let share = r.share_of_ceiling.map_or("-".into(), |s| format!("{:.0}%", s * 100.0));
            println!(
                "{:<44} {:>9.2} {:>8.1} {:>10} {:>9} {:>9}",
                r.name,
                r.images_per_s,
                r.gflop_per_s,
                share,
                ratio(r.vs_torch),
                ratio(r.vs_keras)
            );
        }
        for c in &self.ceiling {
            println!("ceiling {}: {:.1} GFLOP/s ({})", c.precision, c.gflop_per_s, c.shape);
        }
        println!("ratios: against PyTorch eager channels-last / Keras tf.function of the same precision");
        for (f, v) in &self.versions {
            println!("{f}: {v}");
        }
    }
}

impl EndToEnd {
    pub fn print(&self) {
        println!(
            "\nEnd to end at {}x{} (raw CIFAR-format bytes -> features on disk, whole process):",
            self.size, self.size
        );
        println!("{:<58} {:>7} {:>8} {:>9} {:>12}", "path", "images", "seconds", "images/s", "peak RSS MB");
        for r in &self.rows {
            let workers = r.workers_peak_rss_mb.map(|w| format!(" (+ workers {w:.0})")).unwrap_or_default();
            println!(
                "{:<58} {:>7} {:>8.1} {:>9.2} {:>12.0}{workers}",
                r.name, r.images, r.seconds, r.images_per_s, r.peak_rss_mb
            );
        }
        for p in &self.projections {
            let caveat = p.caveat.as_ref().map(|c| format!(" ({c})")).unwrap_or_default();
            println!(
                "peak RSS {}: {:.0} MB at {} images, {:.0} MB at {}: {:+.1} MB per 1,000 images -> {:.0} MB projected at {}{caveat}",
                p.name, p.peak_rss_mb[0], p.images[0], p.peak_rss_mb[1], p.images[1], p.mb_per_1000_images,
                p.projected_60000_mb, PROJECT_TO
            );
        }
        println!(
            "(ours holds at most one shard of features (2,048 rows) before writing it, and the dataset's \
             bytes, 3 KB per image; the script keeps every feature in memory until np.save)"
        );
    }
}

impl HeadTiming {
    pub fn print(&self) {
        println!(
            "\nHead training ({} x {} random features, {} epochs, batch 32, Dropout 0.3 + Dense 10, Adam): \
             ours {:.1} s, PyTorch {:.1} s ({:.2}x)",
            self.rows,
            self.dim,
            self.epochs,
            self.ours_seconds,
            self.torch_seconds,
            self.torch_seconds / self.ours_seconds
        );
    }
}

impl PrecisionAccuracy {
    pub fn print(&self) {
        println!(
            "\nbf16 vs fp32 features (synthetic data, random ResNet50, {} train / {} test at {}x{}):",
            self.train_images, self.test_images, self.size, self.size
        );
        for r in &self.rows {
            println!(
                "  {}: test accuracy {:.2}% (best val {:.2}%), extraction {:.1} s",
                r.precision,
                r.test_accuracy * 100.0,
                r.best_val_accuracy * 100.0,
                r.extract_seconds
            );
        }
        println!(
            "  test features cosine similarity min {:.6} mean {:.6}; predictions agree on {:.2}%",
            self.cosine_min,
            self.cosine_mean,
            self.prediction_agreement * 100.0
        );
    }
}

/// `bench.json` and `bench.csv` into `dir`.
pub fn write(report: &BenchReport, dir: &Path) -> Result<()> {
    write_json_atomic(&dir.join("bench.json"), report)?;
    write_atomic(&dir.join("bench.csv"), csv(report).as_bytes())?;
    println!("\nresults: {}", dir.display());
    Ok(())
}

/// `section,name,precision,metric,value`, one measured value a line.
fn csv(r: &BenchReport) -> String {
    let mut s = String::from("section,name,precision,metric,value\n");
    let mut line = |section: &str, name: &str, p: &str, metric: &str, v: f64| {
        let _ = writeln!(s, "{section},\"{}\",{p},{metric},{v}", name.replace('"', "'"));
    };
    if let Some(t) = &r.throughput {
        for row in &t.rows {
            let p = row.precision.name();
            line("throughput", &row.name, &p, "images_per_s", row.images_per_s);
            line("throughput", &row.name, &p, "gflop_per_s", row.gflop_per_s);
            for (m, v) in
                [("share_of_ceiling", row.share_of_ceiling), ("vs_torch", row.vs_torch), ("vs_keras", row.vs_keras)]
            {
                if let Some(v) = v {
                    line("throughput", &row.name, &p, m, v);
                }
            }
        }
        for c in &t.ceiling {
            line("ceiling", &c.shape, &c.precision.name(), "gflop_per_s", c.gflop_per_s);
        }
    }
    if let Some(e) = &r.end_to_end {
        for row in &e.rows {
            let name = format!("{} [{} images]", row.name, row.images);
            line("e2e", &name, "fp32", "seconds", row.seconds);
            line("e2e", &name, "fp32", "peak_rss_mb", row.peak_rss_mb);
        }
        for p in &e.projections {
            line("rss", &p.name, "fp32", "mb_per_1000_images", p.mb_per_1000_images);
            line("rss", &p.name, "fp32", "projected_60000_mb", p.projected_60000_mb);
        }
    }
    if let Some(f) = &r.families {
        for row in &f.rows {
            let a = row.arch.name();
            line("families", &a, "fp32", "ours_images_per_s", row.ours_images_per_s);
            line("families", &a, "fp32", "gflop_per_s", row.ours_gflop_per_s);
            line("families", &a, "fp32", "share_of_ceiling", row.share_of_ceiling);
            if let (Some(v), Some(r)) = (row.reference_images_per_s, row.vs_reference) {
                line("families", &a, "fp32", "reference_images_per_s", v);
                line("families", &a, "fp32", "vs_reference", r);
            }
        }
    }
    if let Some(e) = &r.explain {
        line("explain", "ours predict", "fp32", "seconds", e.predict_seconds);
        line("explain", "ours grad-cam", "fp32", "seconds", e.explain_seconds);
        line("explain", "grad-cam over predict", "fp32", "ratio", e.ratio);
    }
    if let Some(h) = &r.head {
        line("head", "ours", "fp32", "seconds", h.ours_seconds);
        line("head", "pytorch", "fp32", "seconds", h.torch_seconds);
    }
    if let Some(a) = &r.accuracy {
        for row in &a.rows {
            line("accuracy", "synthetic test", &row.precision.name(), "test_accuracy", row.test_accuracy);
        }
        line("accuracy", "bf16 vs fp32", "bf16", "cosine_min", a.cosine_min);
    }
    if let Some(f) = &r.folder {
        line("folder", "ours from files", "fp32", "images_per_s", f.files_images_per_s);
        line("folder", "ours pre-decoded", "fp32", "images_per_s", f.decoded_images_per_s);
        if let Some(t) = f.torch_images_per_s {
            line("folder", "pytorch imagefolder", "fp32", "images_per_s", t);
        }
    }
    if let Some(p) = &r.probes {
        line("probes", "ours logreg sweep", "fp32", "seconds", p.ours_sweep_seconds);
        if let Some(sk) = p.sklearn_sweep_seconds {
            line("probes", "scikit-learn logreg sweep", "fp64", "seconds", sk);
        }
        if let Some(r) = p.ours_peak_over_features {
            line("probes", "ours logreg sweep", "fp32", "peak_over_features", r);
        }
        line("probes", "ours knn", "fp32", "seconds", p.ours_knn_seconds);
        line("probes", "pytorch knn", "fp32", "seconds", p.torch_knn_seconds);
    }
    s
}
