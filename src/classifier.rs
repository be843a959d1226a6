//! A trained model that runs on images: backbone up to its tap, the linear head, the
//! class names and the preprocessing its training used. Loaded from a run directory or
//! from one exported file, which is this module's layout:
//!
//! ```text
//! model.safetensors
//! ├── conv1.weight, bn1.*, layer1..4.*   the backbone, torchvision's state-dict names
//! ├── fc.weight [C, D], fc.bias [C]      the head on the tap's pooled features
//! └── metadata "tlab.model"              JSON: ModelMeta (format, arch, tap, classes,
//!                                        preprocessing, weights' digest, run metrics,
//!                                        the calibration temperature if any)
//! ```
//! k-NN keeps its training features as its model and is not exported.
use crate::cache::Cache;
use crate::data::folder;
use crate::models::{load_tensors, Arch, Inference, Network, Pool, Tap};
use crate::preprocess::Preprocess;
use crate::rundir::{RunDir, Weights};
use crate::train::Strategy;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// The metadata key of an exported model.
pub const META_KEY: &str = "tlab.model";
/// Bumped when the exported layout changes.
pub const FORMAT: u32 = 1;

fn mean_pool() -> Pool {
    Pool::Mean
}

/// What an exported model says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub format: u32,
    pub arch: Arch,
    pub tap: Tap,
    /// How the tap became the head's input; absent in models exported before ViTs: the mean.
    #[serde(default = "mean_pool")]
    pub pool: Pool,
    pub classes: Vec<String>,
    pub preprocess: Preprocess,
    pub strategy: Strategy,
    /// The backbone weights training started from, and their SHA-256.
    pub weights: String,
    pub weights_digest: String,
    pub pretrained: bool,
    /// What the model was trained on ("CIFAR-10", "the image folder `photos`", ...).
    pub dataset: String,
    pub synthetic: bool,
    pub best_val_acc: f64,
    /// Absent when the run was not evaluated before export.
    pub test_accuracy: Option<f64>,
    pub test_samples: Option<usize>,
    pub crate_version: String,
    /// The temperature the logits are divided by before the softmax, when the run was
    /// calibrated (`tlab run --calibrate`); absent otherwise and in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
}

/// One image's result: its top classes, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub path: PathBuf,
    /// (class, probability), most likely first; empty when `error` is set.
    pub top: Vec<(String, f64)>,
    pub error: Option<String>,
}

/// A classifier ready to predict.
pub struct Classifier {
    pub meta: ModelMeta,
    vs: nn::VarStore,
    net: Box<dyn Network>,
    /// The inference copy (BatchNorm folded), built once the weights are in.
    folded: Box<dyn Inference>,
    /// Pixels an image's header may claim (see [`folder::DEFAULT_MAX_PIXELS`]).
    pub max_pixels: u64,
}

impl Classifier {
    /// A run directory or an exported `.safetensors` file, on `device`. A run directory
    /// of a probe reads its backbone's weights from `cache`.
    pub fn load(path: &Path, cache: &Cache, device: Device) -> Result<Classifier> {
        if path.is_dir() {
            Classifier::from_run(&RunDir::open(path)?, cache, device)
        } else {
            Classifier::from_file(path, device)
        }
    }

    /// An exported model file.
    pub fn from_file(path: &Path, device: Device) -> Result<Classifier> {
        if !path.is_file() {
            return Err(Error::data(path, "no such model file or run directory"));
        }
        let (tensors, metadata) = crate::tensorfile::read(path)?;
        let Some(json) = metadata.get(META_KEY) else {
            let reason = format!("holds no `{META_KEY}` metadata: not a model exported by `tlab export`");
            return Err(Error::data(path, reason));
        };
        let meta: ModelMeta = serde_json::from_str(json)
            .map_err(|e| Error::data(path, format!("its `{META_KEY}` metadata does not read: {e}")))?;
        if meta.format != FORMAT {
            let reason = format!("format {} is not the {FORMAT} this tlab reads", meta.format);
            return Err(Error::data(path, reason));
        }
        // Checked against the tensors before anything is allocated from the metadata.
        check_meta(&meta, &tensors).map_err(|reason| Error::data(path, reason))?;
        let (mut vs, net) = build(&meta, device);
        load_tensors(&mut vs, tensors, path, &[])?;
        Ok(Classifier::assemble(meta, vs, net))
    }

    /// The best checkpoint of a trained run (not k-NN).
    pub fn from_run(dir: &RunDir, cache: &Cache, device: Device) -> Result<Classifier> {
        use crate::run::records::{RecordedConfig, Trained};
        if !dir.trained_file().is_file() {
            let reason = "holds no trained.json: the run has not finished training (`tlab train --resume` it)";
            return Err(Error::data(dir.path(), reason));
        }
        let RecordedConfig { config: cfg, weights: info, .. } = RecordedConfig::read(dir)?;
        let t = Trained::read(dir)?;
        if t.stopped {
            let reason = "was stopped before it finished training; finish it with `tlab train --resume`";
            return Err(Error::data(dir.path(), reason));
        }
        if cfg.strategy == Strategy::Knn {
            let reason = "is a k-NN run: its model is its training features, with no weights to export, \
                          predict with or explain (Grad-CAM); those take the head, logreg and image strategies";
            return Err(Error::data(dir.path(), reason));
        }
        let summary = crate::run::RunSummary::read(dir).ok();
        let (tensors, source) = if cfg.strategy.on_images() {
            let path = dir.best(Weights::Model);
            (crate::models::load_state_dict(&path)?, path)
        } else {
            // The probe's backbone is the run's starting weights, from the cache.
            let used = crate::run::RunConfig { weights: t.weights.clone(), offline_fallback: false, ..cfg.clone() };
            let b = crate::run::open_backbone(&used, cache, Device::Cpu, &mut crate::events::NullSink)?;
            let mut tensors: Vec<(String, Tensor)> = b.vs.variables().into_iter().collect();
            let path = dir.best(Weights::Head);
            tensors.extend(crate::models::load_state_dict(&path)?);
            (tensors, path)
        };
        let tap = if cfg.strategy.on_images() { Tap::Layer4 } else { t.tap };
        let meta = ModelMeta {
            format: FORMAT,
            arch: cfg.arch,
            tap,
            pool: cfg.arch.pool(cfg.extract.pool)?,
            classes: t.classes.clone(),
            preprocess: run_preprocess(&cfg),
            strategy: cfg.strategy,
            weights: info.label,
            weights_digest: info.digest,
            pretrained: t.pretrained,
            dataset: kind_label(&t.dataset, t.synthetic),
            synthetic: t.synthetic,
            best_val_acc: t.best_val_acc,
            test_accuracy: summary.as_ref().map(|s| s.test_accuracy),
            test_samples: summary.as_ref().map(|s| s.test_samples),
            crate_version: env!("CARGO_PKG_VERSION").into(),
            temperature: crate::calibration::Calibration::read(dir)?.map(|c| c.temperature),
        };
        let (mut vs, net) = build(&meta, device);
        load_tensors(&mut vs, tensors, &source, &[])?;
        Ok(Classifier::assemble(meta, vs, net))
    }

    /// A classifier of seeded random weights for `meta`: for tests and examples, not for use.
    pub fn untrained(meta: ModelMeta, seed: i64, device: Device) -> Classifier {
        tch::manual_seed(seed);
        let (vs, net) = build(&meta, device);
        Classifier::assemble(meta, vs, net)
    }

    fn assemble(meta: ModelMeta, mut vs: nn::VarStore, net: Box<dyn Network>) -> Classifier {
        // Inference only; a traced graph also needs weights without gradients.
        vs.freeze();
        let folded = net.inference(&vs, crate::models::folded::Precision::Fp32);
        Classifier { meta, vs, net, folded, max_pixels: folder::DEFAULT_MAX_PIXELS }
    }

    /// Writes the model as one safetensors file (temp file, then rename).
    pub fn export(&self, path: &Path) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        let json = serde_json::to_string(&self.meta).expect("metadata serialises");
        crate::tensorfile::write(path, &tensors, &HashMap::from([(META_KEY.to_string(), json)]))
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The head's logits for decoded images `[B, 3, S, S]` f32 in 0..=255.
    pub fn logits(&self, images: &Tensor) -> Result<Tensor> {
        let x = self.meta.preprocess.apply(images, self.device())?;
        let f = self.folded.readout(&x, self.meta.tap, self.meta.pool);
        let (w, b) = (self.fc("weight"), self.fc("bias"));
        Ok(tch::no_grad(|| f.linear(&w, Some(&b))))
    }

    /// Class probabilities `[B, C]` for decoded images `[B, 3, S, S]` f32 in 0..=255;
    /// calibrated when the model carries a temperature.
    pub fn probabilities(&self, images: &Tensor) -> Result<Tensor> {
        Ok(self.calibrated(&self.logits(images)?).softmax(-1, Kind::Float))
    }

    /// `logits` divided by the model's temperature, if it has one.
    pub fn calibrated(&self, logits: &Tensor) -> Tensor {
        match self.meta.temperature {
            Some(t) => logits / t,
            None => logits.shallow_clone(),
        }
    }

    /// Grad-CAM maps at the tap for decoded images `[B, 3, S, S]` f32 in 0..=255, for
    /// `class` or each image's top class ([`crate::models::cam`]).
    pub fn explain(&self, images: &Tensor, class: Option<usize>) -> Result<crate::models::GradCam> {
        // A head on the patch-token mean is weighed at the tap's map; one reading a class
        // token, at the tokens entering the last block (a class token has no map).
        if self.meta.pool != Pool::Mean {
            let Some(tokens) = self.net.token_net() else {
                let reason =
                    format!("{} has no tokens to weigh for --pool {}", self.meta.arch.name(), self.meta.pool.name());
                return Err(Error::invalid("--explain", reason));
            };
            let x = self.meta.preprocess.apply(images, self.device())?;
            let (w, b) = (self.fc("weight"), self.fc("bias"));
            return crate::models::grad_cam_tokens(tokens, self.meta.tap, self.meta.pool, &w, &b, &x, class);
        }
        let x = self.meta.preprocess.apply(images, self.device())?;
        let (tap, w, b) = (self.meta.tap, self.fc("weight"), self.fc("bias"));
        // The folded copy's map where it has one: the same numbers, 2-3x sooner.
        match self.folded.map(&x, tap) {
            Some(map) => crate::models::grad_cam_on_map(self.net.as_ref(), tap, &w, &b, &map, class),
            None => crate::models::grad_cam(self.net.as_ref(), tap, &w, &b, &x, class),
        }
    }

    /// The index of the class called `name`; an error listing the classes otherwise.
    pub fn class_index(&self, name: &str) -> Result<usize> {
        let classes = &self.meta.classes;
        classes.iter().position(|c| c == name).ok_or_else(|| {
            Error::invalid("class", format!("`{name}` is not one of the model's classes ({})", classes.join(", ")))
        })
    }

    /// The head's weight or bias; made before any trace (see [`Preprocess::constants`]).
    fn fc(&self, which: &str) -> Tensor {
        self.vs.variables()[&format!("fc.{which}")].shallow_clone()
    }

    /// Decodes an image file as the model's training did: `[3, S, S]` f32.
    pub fn decode(&self, path: &Path) -> Result<Tensor> {
        folder::decode_sized(path, &self.meta.preprocess, self.max_pixels)
    }

    /// The `top_k` classes of each image, in batches of `batch`. An image that cannot be
    /// read is a prediction with its error; the others are still predicted.
    pub fn predict(&self, paths: &[PathBuf], top_k: usize, batch: usize) -> Result<Vec<Prediction>> {
        let mut out = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(batch.max(1)) {
            crate::interrupt::check(|| {
                format!("{} of {} images were predicted; nothing was written", out.len(), paths.len())
            })?;
            // Decode one by one so that one bad file costs only its own row.
            let mut ok = Vec::new();
            let mut rows: Vec<Prediction> = Vec::new();
            for p in chunk {
                match self.decode(p) {
                    Ok(x) => {
                        ok.push((rows.len(), x));
                        rows.push(Prediction { path: p.clone(), top: vec![], error: None });
                    }
                    Err(e) => rows.push(Prediction { path: p.clone(), top: vec![], error: Some(e.to_string()) }),
                }
            }
            if !ok.is_empty() {
                let x = Tensor::stack(&ok.iter().map(|(_, t)| t.shallow_clone()).collect::<Vec<_>>(), 0);
                let probs = self.probabilities(&x)?.to_device(Device::Cpu);
                let k = top_k.clamp(1, self.meta.classes.len()) as i64;
                let (vals, idx) = probs.topk(k, -1, true, true);
                for (r, (row, _)) in ok.iter().enumerate() {
                    let v = Vec::<f64>::try_from(vals.get(r as i64).to_kind(Kind::Double))?;
                    let i = Vec::<i64>::try_from(idx.get(r as i64))?;
                    rows[*row].top =
                        i.iter().zip(v).map(|(&c, p)| (self.meta.classes[c as usize].clone(), p)).collect();
                }
            }
            out.extend(rows);
        }
        Ok(out)
    }

    /// Traces [`Classifier::forward_unfolded`] with tch and saves it (temp file, then
    /// rename): `torch.jit.load(path)(images)` gives the probabilities in Python.
    pub fn export_torchscript(&self, path: &Path) -> Result<()> {
        let s = self.meta.preprocess.size;
        let example = Tensor::rand([2, 3, s, s], (Kind::Float, self.device())) * 255.0;
        let norm = self.meta.preprocess.constants(self.device());
        let mut f = |xs: &[Tensor]| vec![self.forward_unfolded(&xs[0], &norm)];
        let module = tch::CModule::create_by_tracing("TlabClassifier", "forward", &[example], &mut f)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
        module.save(&tmp).map_err(|e| Error::data(&tmp, format!("cannot write TorchScript: {e}")))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!("writing {}", path.display()), e)
        })
    }

    /// The whole network as a module, for tracing: `[B, 3, S, S]` f32 in 0..=255 ->
    /// probabilities `[B, C]`. Unfolded (BatchNorm in eval mode), so the trace holds plain
    /// torchvision layers.
    pub fn forward_unfolded(&self, images: &Tensor, norm: &crate::preprocess::NormConstants) -> Tensor {
        let x = norm.apply(images);
        let f = self.net.readout_t(&x, self.meta.tap, self.meta.pool, false);
        self.calibrated(&f.linear(&self.fc("weight"), Some(&self.fc("bias")))).softmax(-1, Kind::Float)
    }
}

/// Whether `meta` describes `tensors`: the head's shape is the tap's width by the number
/// of classes, and the input size is one `tlab` can run.
fn check_meta(meta: &ModelMeta, tensors: &HashMap<String, Tensor>) -> std::result::Result<(), String> {
    let dim = meta.arch.pooled_dim(meta.tap, meta.pool);
    let c = meta.classes.len() as i64;
    let shape = |k: &str| tensors.get(k).map(|t| t.size());
    if c < 2 {
        return Err(format!("its metadata names {c} classes; a classifier has at least two"));
    }
    if shape("fc.weight") != Some(vec![c, dim]) || shape("fc.bias") != Some(vec![c]) {
        return Err(format!(
            "its head is {:?} / {:?}, but the metadata says {c} classes on {} {} features ([{c}, {dim}])",
            shape("fc.weight"),
            shape("fc.bias"),
            meta.arch.name(),
            meta.tap.name()
        ));
    }
    if let Some(t) = meta.temperature.filter(|t| !(t.is_finite() && *t > 0.0)) {
        return Err(format!("its calibration temperature {t} is not a positive number"));
    }
    if !(16..=1024).contains(&meta.preprocess.size) {
        return Err(format!("its input size {} is outside 16..=1024", meta.preprocess.size));
    }
    if let Some(side) = meta.preprocess.resize_side.filter(|&s| !(meta.preprocess.size..=4096).contains(&s)) {
        return Err(format!("its resize side {side} is outside {}..=4096", meta.preprocess.size));
    }
    Ok(())
}

/// The variables a model with `meta` holds, under its family's published names.
fn build(meta: &ModelMeta, device: Device) -> (nn::VarStore, Box<dyn Network>) {
    let vs = nn::VarStore::new(device);
    let net = meta.arch.build(&vs.root());
    let dim = meta.arch.pooled_dim(meta.tap, meta.pool);
    let _ = nn::linear(vs.root() / "fc", dim, meta.classes.len() as i64, Default::default());
    (vs, net)
}

/// The preprocessing a run's images went through: a folder's resize mode is the data's.
fn run_preprocess(cfg: &crate::run::RunConfig) -> Preprocess {
    match &cfg.data {
        crate::data::DataSpec::Folder(f) => Preprocess {
            size: f.size,
            resize: f.resize,
            interpolation: f.interpolation,
            resize_side: f.resize_side,
            ..cfg.extract.preprocess
        },
        _ => cfg.extract.preprocess,
    }
}

/// "CIFAR-10", "the image folder `x`", or the synthetic label, from a run's dataset name.
fn kind_label(dataset: &str, synthetic: bool) -> String {
    if synthetic {
        "SYNTHETIC data (generated; not CIFAR-10)".into()
    } else if let Some(f) = dataset.strip_prefix("folder:") {
        format!("the image folder `{f}`")
    } else if dataset == "cifar10" {
        "CIFAR-10".into()
    } else {
        dataset.into()
    }
}

/// Image files named by `args`: files as they are, folders listed as training lists
/// them (see [`folder::listing`]: at any depth, links followed, each real file once,
/// hidden entries skipped, sorted), and glob patterns expanded (sorted). An entry the
/// listing cannot use (a broken link) is kept, so that its row says why. A name that
/// matches nothing is an error.
pub fn expand_paths(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        let s = a.to_string_lossy();
        if a.is_dir() {
            let mut walker = folder::listing::Walker::new();
            let mut found = walker.files(a)?;
            found.extend(walker.skipped.into_iter().map(|s| s.path));
            found.sort_by(|x, y| x.as_os_str().as_encoded_bytes().cmp(y.as_os_str().as_encoded_bytes()));
            out.extend(found);
        } else if a.exists() {
            out.push(a.clone());
        } else if s.contains(['*', '?', '[']) {
            let matches: Vec<PathBuf> = glob::glob(&s)
                .map_err(|e| Error::invalid("image pattern", format!("`{s}`: {e}")))?
                .filter_map(|m| m.ok())
                .filter(|p| p.is_file())
                .collect();
            if matches.is_empty() {
                return Err(Error::data(a, "the pattern matches no file"));
            }
            out.extend(matches);
        } else {
            return Err(Error::data(a, "no such image file or folder"));
        }
    }
    Ok(out)
}
