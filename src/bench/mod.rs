//! `tlab bench`: extraction speed against PyTorch and Keras, measured side by side in one
//! run, plus end to end (raw CIFAR bytes -> features on disk), head training, peak memory
//! and the accuracy cost of bf16. A benchmark, not a test: nothing here asserts on time.
//!
//! Peers are long-lived Python processes (`bench/peer.py`, one per framework) driven over
//! stdin/stdout, so repetitions interleave round-robin with ours and medians compare
//! like with like. PyTorch comes from `.tlab/venv` (`scripts/setup.sh --test`); TensorFlow
//! is installed on first use by `bench/setup.sh` into `.tlab/bench-venv`, which also sees
//! `.tlab/venv`'s torch through a `.pth` file.
pub mod e2e;
pub mod explain;
pub mod families;
pub mod folder;
pub mod head;
pub mod peer;
pub mod probes;
pub mod report;
pub mod throughput;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Device;

use crate::{Error, Result};

/// The parts of a bench run, selectable with `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    /// Our extraction throughput
    Ours,
    /// PyTorch eager, channels-last, beside ours
    Torch,
    /// Keras 3 (TensorFlow backend), beside ours
    Keras,
    /// The measured convolution ceiling
    Ceiling,
    /// End to end: CIFAR bytes to features, ours and PyTorch, and peak RSS
    E2e,
    /// The end-to-end runs of ours alone (peak RSS at large sizes, quickly)
    E2eOurs,
    /// Decoding image folders, ours and PyTorch
    Folder,
    /// Head training
    Head,
    /// Accuracy of the head, ours and PyTorch
    Accuracy,
    /// logreg's sweep against scikit-learn and k-NN against PyTorch
    Probes,
    /// Each backbone family (`--arches`) against its reference implementation
    Families,
    /// Grad-CAM heatmaps of 100 images against predicting them
    Explain,
}

crate::choice::choice!(Section, "bench section");

/// Every setting of one bench run; saved with the results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchConfig {
    pub batch: i64,
    pub size: i64,
    /// Intra-op threads for every framework.
    pub threads: i32,
    /// Interleaved rounds; each reports a median.
    pub reps: usize,
    pub sections: Vec<Section>,
    /// Precisions of the throughput candidates and the ceiling.
    pub precisions: Vec<crate::features::Precision>,
    /// "cpu" or "cuda[:N]".
    pub device: crate::device::DeviceChoice,
    /// End to end and peak RSS: images of the two runs.
    pub e2e_images: [usize; 2],
    /// DataLoader workers of the PyTorch script.
    pub torch_workers: usize,
    pub head_rows: i64,
    pub head_epochs: u32,
    /// Rows of the probes section's generated features (2048 wide).
    #[serde(default = "default_probe_rows")]
    pub probe_rows: i64,
    /// Time only ours' sweep (scikit-learn's takes many minutes at 50,000 rows).
    #[serde(default)]
    pub skip_sklearn_sweep: bool,
    /// bf16 vs fp32 accuracy: synthetic train / test images, and their side.
    pub accuracy_images: [usize; 2],
    pub accuracy_size: i64,
    /// JPEGs in the `folder` section.
    #[serde(default = "default_folder_images")]
    pub folder_images: usize,
    pub results_dir: PathBuf,
    /// The families section's architectures.
    #[serde(default = "default_arches")]
    pub arches: Vec<crate::models::Arch>,
}

/// One architecture of each family.
pub fn default_arches() -> Vec<crate::models::Arch> {
    // The representatives give DINOv2 ViT-S/14; CLIP's ViT-B/16 is the other ViT layout.
    let mut a = crate::models::Arch::representatives();
    a.push(crate::models::Arch::ClipVitb16);
    a
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            batch: 32,
            size: 200,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get() as i32),
            reps: 5,
            sections: Section::all().to_vec(),
            precisions: vec![crate::features::Precision::Fp32, crate::features::Precision::Bf16],
            device: crate::device::DeviceChoice::Cpu,
            e2e_images: [128, 384],
            torch_workers: 2,
            head_rows: 50_000,
            head_epochs: 10,
            probe_rows: default_probe_rows(),
            skip_sklearn_sweep: false,
            accuracy_images: [600, 300],
            accuracy_size: 64,
            folder_images: default_folder_images(),
            results_dir: PathBuf::from("bench/results"),
            arches: default_arches(),
        }
    }
}

fn default_folder_images() -> usize {
    192
}

fn default_probe_rows() -> i64 {
    50_000
}

impl BenchConfig {
    /// Fewer repetitions and smaller side runs; same model, size and batch.
    pub fn quick(mut self) -> Self {
        self.reps = 2;
        self.e2e_images = [64, 160];
        self.head_epochs = 2;
        self.probe_rows = 10_000;
        self.accuracy_images = [300, 150];
        self.folder_images = 64;
        self
    }

    pub fn has(&self, section: Section) -> bool {
        self.sections.contains(&section)
    }

    /// Checks the settings; returns the device.
    pub fn validate(&self) -> Result<Device> {
        let bad = |what: &str, reason: String| Err(Error::Invalid { what: what.into(), reason });
        if self.batch < 1 || self.reps < 1 || self.threads < 1 || !(32..=1024).contains(&self.size) {
            return bad("settings", "batch, reps and threads must be >= 1 and size in 32..=1024".into());
        }
        if self.precisions.is_empty() || self.precisions.contains(&crate::features::Precision::Fp16) {
            return bad("--precisions", "expected fp32 and/or bf16".into());
        }
        let device = self.device.resolve();
        if device.is_cuda() && !tch::Cuda::is_available() {
            return bad(
                "--device",
                format!(
                    "`{}`: CUDA is not available (tch::Cuda::is_available() = false, {} devices seen by libtorch)",
                    self.device,
                    tch::Cuda::device_count()
                ),
            );
        }
        Ok(device)
    }
}

/// Where things are: the repository (for `bench/*.py`), the Pythons, the results.
pub struct Env {
    pub root: PathBuf,
    pub torch_python: PathBuf,
    /// The bench venv's Python (TensorFlow + torch), once set up.
    pub keras_python: Option<PathBuf>,
    pub out: PathBuf,
    pub device: Device,
}

impl Env {
    /// Finds the repository, checks the torch venv and sets up TensorFlow when `keras` runs.
    pub fn prepare(cfg: &BenchConfig, device: Device) -> Result<Env> {
        use Section::*;
        let root = repo_root()?;
        let torch_python = root.join(".tlab/venv/bin/python");
        let needs_python = [Torch, Keras, E2e, Folder, Head, Probes, Families].into_iter().any(|s| cfg.has(s));
        if needs_python && !torch_python.exists() {
            return Err(Error::BenchSetup(format!("{} missing: run scripts/setup.sh --test", torch_python.display())));
        }
        // Keras' ResNet50 in the families section is measured against Keras itself.
        let keras_arch =
            cfg.has(Families) && cfg.arches.iter().any(|a| a.family() == crate::models::Family::KerasResNet);
        let keras_python = if cfg.has(Keras) || keras_arch { Some(setup_bench_venv(&root)?) } else { None };
        let stamp = crate::rundir::RunDir::create(&cfg.results_dir, "bench")?.path().to_path_buf();
        Ok(Env { root, torch_python, keras_python, out: stamp, device })
    }

    pub fn script(&self, name: &str) -> PathBuf {
        self.root.join("bench").join(name)
    }
}

/// The repository root: the working directory when it holds `bench/peer.py`, else the
/// folder this crate was built from.
fn repo_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(|e| Error::Io { context: "current dir".into(), source: e })?;
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [cwd, built]
        .into_iter()
        .find(|d| d.join("bench/peer.py").is_file())
        .ok_or_else(|| Error::BenchSetup("bench/peer.py not found: run `tlab bench` from the repository".into()))
}

/// Runs `bench/setup.sh` (idempotent); returns the bench venv's Python.
fn setup_bench_venv(root: &Path) -> Result<PathBuf> {
    let script = root.join("bench/setup.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::Io { context: format!("running {}", script.display()), source: e })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(p) if out.status.success() => Ok(PathBuf::from(p.trim())),
        _ => Err(Error::BenchSetup(format!("{} failed ({})", script.display(), out.status))),
    }
}

/// Everything one bench run measured.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub config: BenchConfig,
    pub machine: report::Machine,
    pub throughput: Option<throughput::Throughput>,
    pub end_to_end: Option<e2e::EndToEnd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<folder::FolderTiming>,
    pub head: Option<head::HeadTiming>,
    pub accuracy: Option<head::PrecisionAccuracy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<probes::ProbeTiming>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub families: Option<families::Families>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<explain::ExplainTiming>,
    pub results_dir: PathBuf,
}

/// Runs the selected sections in order, printing each as it finishes; writes
/// `bench.json` and `bench.csv` into a new folder under `cfg.results_dir`.
pub fn run_bench(cfg: &BenchConfig) -> Result<BenchReport> {
    use Section::*;
    let device = cfg.validate()?;
    tch::set_num_threads(cfg.threads);
    let env = Env::prepare(cfg, device)?;
    let mut machine = report::Machine::probe(cfg, device);
    machine.print();
    let throughput = if [Ours, Torch, Keras, Ceiling].into_iter().any(|s| cfg.has(s)) {
        let t = throughput::run(cfg, &env)?;
        t.print();
        Some(t)
    } else {
        None
    };
    let end_to_end = (cfg.has(E2e) || cfg.has(E2eOurs)).then(|| e2e::run(cfg, &env)).transpose()?;
    if let Some(e) = &end_to_end {
        e.print();
    }
    let folder = cfg.has(Folder).then(|| folder::run(cfg, &env)).transpose()?;
    if let Some(f) = &folder {
        f.print();
    }
    let head = cfg.has(Head).then(|| head::run_timing(cfg, &env)).transpose()?;
    if let Some(h) = &head {
        h.print();
    }
    let accuracy = cfg.has(Accuracy).then(|| head::run_accuracy(cfg, &env)).transpose()?;
    if let Some(a) = &accuracy {
        a.print();
    }
    let probes = cfg.has(Probes).then(|| probes::run(cfg, &env)).transpose()?;
    if let Some(p) = &probes {
        p.print();
    }
    let families = cfg.has(Families).then(|| families::run(cfg, &env)).transpose()?;
    if let Some(f) = &families {
        f.print();
    }
    let explain = cfg.has(Explain).then(|| explain::run(cfg, &env)).transpose()?;
    if let Some(e) = &explain {
        e.print();
    }
    machine.finish();
    let report = BenchReport {
        config: cfg.clone(),
        machine,
        throughput,
        end_to_end,
        folder,
        head,
        accuracy,
        probes,
        families,
        explain,
        results_dir: env.out.clone(),
    };
    report::write(&report, &env.out)?;
    Ok(report)
}
