//! The tutorial's set-up: real CIFAR-10 and ImageNet weights when they are on this
//! machine, a labelled synthetic stand-in otherwise, at a scale that fits the hardware.
use crate::cache::Cache;
use crate::data::{self, DataSpec, Dataset, Split};
use crate::events::ConsoleSink;
use crate::features::{extract_features, FeatureSet};
use crate::models::Tap;
use crate::models::{Arch, Backbone, WeightsEntry};
use crate::preprocess::Preprocess;
use crate::report::RunData;
use crate::run::{self, RunConfig, WeightsChoice};
use crate::train::{ImageTrainConfig, Strategy, ValSplit};
use crate::Result;
use polars::prelude::{df, DataFrame};
use std::path::PathBuf;
use tch::Kind;

/// Environment variable: `quick` forces the small synthetic set-up (CI, a first look);
/// `full` insists on CIFAR-10 and the post's settings.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TutorialScale {
    /// The post's job: CIFAR-10 at 200x200, 10 head epochs, 5 image epochs.
    Full,
    /// Synthetic images, a few hundred of them; image strategies at 64x64 for one epoch.
    Quick,
}

/// Where the tutorial's data, weights and runs come from. [`Tutorial::detect`] prints
/// what it chose, so a notebook's first output says whether its results are real.
#[derive(Debug, Clone)]
pub struct Tutorial {
    pub scale: TutorialScale,
    pub data: DataSpec,
    pub weights: WeightsChoice,
    pub arch: Arch,
    pub cache: Cache,
    /// Run directories go here (`TLAB_RUNS_DIR`, else `runs` in the working directory).
    pub runs: PathBuf,
}

impl Tutorial {
    /// Looks in the cache (`TLAB_CACHE_DIR` or the user cache) for CIFAR-10 and the
    /// ResNet50 weights. Never downloads: `tlab fetch cifar10` and
    /// `tlab fetch weights resnet50` do that, with progress and resume.
    pub fn detect() -> Result<Tutorial> {
        // A notebook's process reads the environment once, here, as `tlab` does in main.
        crate::settings::install(crate::settings::Settings::from_env());
        let settings = crate::settings::current();
        let cache = Cache::locate(settings.cache_dir.as_deref());
        let cifar = crate::data::cifar::cache_dir(&cache);
        let have_cifar = cifar.join("test_batch.bin").is_file();
        let forced = settings.tutorial.clone();
        let scale = match forced.as_deref() {
            Some("quick") => TutorialScale::Quick,
            Some("full") => TutorialScale::Full,
            Some(other) => {
                return Err(crate::Error::invalid(
                    crate::settings::TUTORIAL,
                    format!("`{other}`; expected quick or full"),
                ));
            }
            None if have_cifar => TutorialScale::Full,
            None => TutorialScale::Quick,
        };
        let data = match scale {
            TutorialScale::Full => DataSpec::Cifar10 { path: have_cifar.then_some(cifar) },
            TutorialScale::Quick => {
                DataSpec::Synthetic { train: 320, test: 160, seed: 0, difficulty: Default::default() }
            }
        };
        let entry = WeightsEntry::find(Arch::ResNet50, crate::models::WeightsVariant::V1)?;
        let weights = if cache.weights_file(entry.file).is_file() {
            WeightsChoice::Pretrained { variant: entry.variant }
        } else {
            WeightsChoice::Random { seed: 0 }
        };
        let runs = settings.runs_dir.clone().unwrap_or_else(|| "runs".into());
        let t = Tutorial { scale, data, weights, arch: Arch::ResNet50, cache, runs };
        println!("{}", t.banner());
        Ok(t)
    }

    pub fn synthetic(&self) -> bool {
        self.data.is_synthetic()
    }

    pub fn pretrained(&self) -> bool {
        matches!(self.weights, WeightsChoice::Pretrained { .. })
    }

    /// What this set-up is, with the caveats its results carry.
    pub fn banner(&self) -> String {
        let data = if self.synthetic() {
            "SYNTHETIC data (generated, not CIFAR-10: `tlab fetch cifar10` gets the real set)".to_string()
        } else {
            "CIFAR-10".to_string()
        };
        let weights = if self.pretrained() {
            "ResNet50 with torchvision's ImageNet weights".to_string()
        } else {
            "ResNet50 with SEEDED RANDOM weights (`tlab fetch weights resnet50` gets the ImageNet ones): \
             this shows the pipeline working, not transfer learning"
                .to_string()
        };
        let scale = match self.scale {
            TutorialScale::Full => "the post's settings",
            TutorialScale::Quick => "quick settings (a few hundred images; image strategies at 64x64, 1 epoch)",
        };
        format!("transfer-lab tutorial: {data}; {weights}; {scale}.")
    }

    /// The run configuration of `strategy` at this tutorial's scale.
    pub fn config(&self, strategy: Strategy) -> RunConfig {
        let mut cfg = RunConfig {
            name: format!("tutorial-{}", strategy.name()),
            data: self.data.clone(),
            arch: self.arch,
            weights: self.weights.clone(),
            offline_fallback: false,
            strategy,
            images: ImageTrainConfig::for_strategy(strategy),
            ..RunConfig::default()
        };
        if self.scale == TutorialScale::Quick && strategy.on_images() {
            cfg.extract.preprocess.size = 64;
            cfg.images.fit.epochs = 1;
        }
        cfg
    }

    /// One split of the tutorial's data.
    pub fn dataset(&self, split: Split) -> Result<Dataset> {
        data::open(&self.data, split, &self.cache, &mut ConsoleSink::new(false))
    }

    /// The frozen backbone the features come from.
    pub fn backbone(&self) -> Result<Backbone> {
        let cfg = self.config(Strategy::LinearProbe);
        let device = cfg.device.resolve();
        run::open_backbone(&cfg, &self.cache, device, &mut ConsoleSink::new(false))
    }

    /// Features of `data` through the cache shared with `tlab extract`; progress as text lines.
    pub fn features(&self, backbone: &Backbone, data: &Dataset) -> Result<FeatureSet> {
        let cfg = self.config(Strategy::LinearProbe);
        extract_features(backbone, data, &cfg.extract, &self.cache, &mut ConsoleSink::new(false))
    }

    /// The `tlab` command that runs the same extraction with the dashboard, for a long
    /// extraction started from a terminal; the notebook then loads its cache.
    pub fn extract_command(&self) -> String {
        let data = match &self.data {
            DataSpec::Synthetic { train, test, .. } => {
                format!("--dataset synthetic --synthetic-train {train} --synthetic-test {test}")
            }
            _ => "--dataset cifar10".into(),
        };
        let weights = if self.pretrained() { "v1" } else { "random" };
        format!("tlab extract {data} --arch resnet50 --weights {weights} --size 200 --dash")
    }

    /// A folder of generated photos, `synthetic-photos/{train,test}/<class>/*.jpg` in the
    /// cache: three classes of the synthetic set enlarged to 4:3 JPEGs, a stand-in for
    /// your own photos and named so everywhere its results appear. Written once.
    pub fn demo_photos(&self) -> Result<PathBuf> {
        demo_photos_in(&self.cache.root().join("tutorial").join("synthetic-photos"))
    }

    /// The run configuration of `strategy` on the image folder `root` (yours, or
    /// [`Tutorial::demo_photos`]): 224 px with torchvision's crop at full scale, 64 px quick.
    pub fn folder_config(&self, root: &std::path::Path, strategy: Strategy) -> RunConfig {
        let mut cfg = self.config(strategy);
        cfg.name = format!("tutorial-photos-{}", strategy.name());
        let size = if self.scale == TutorialScale::Quick { 64 } else { 224 };
        cfg.extract.preprocess.size = size;
        let resize = crate::preprocess::ResizeMode::Crop;
        let interpolation = cfg.extract.preprocess.interpolation;
        let eval = crate::models::eval_transform_for(cfg.arch, None, None);
        let resize_side = crate::preprocess::resize_side_for(size, eval.resize, eval.crop);
        let root = root.to_path_buf();
        let spec = data::folder::FolderSpec { root, size, resize, interpolation, resize_side, ..Default::default() };
        cfg.data = DataSpec::Folder(spec);
        cfg.head.fit.val_split = ValSplit::default_for(&cfg.data);
        cfg.images.fit.val_split = ValSplit::default_for(&cfg.data);
        cfg
    }

    /// A whole run of `strategy` on the image folder `root`.
    pub fn run_folder(&self, root: &std::path::Path, strategy: Strategy) -> Result<RunData> {
        self.run_with(&self.folder_config(root, strategy))
    }

    /// A whole run of `strategy` (train, checkpoint, evaluate) into a new run directory.
    pub fn run(&self, strategy: Strategy) -> Result<RunData> {
        self.run_with(&self.config(strategy))
    }

    /// A whole run of `cfg` (one of this tutorial's configs, changed) into a new run
    /// directory; warnings print as they happen and stay in its `events.jsonl`.
    pub fn run_with(&self, cfg: &RunConfig) -> Result<RunData> {
        let summary = run::run(cfg, &self.runs, &self.cache, &mut ConsoleSink::new(false))?;
        RunData::load(&summary.run_dir)
    }
}

/// [`Tutorial::demo_photos`] written into `root` (its last component should keep the word
/// `synthetic`, which names the data wherever its results appear). Written once.
pub fn demo_photos_in(root: &std::path::Path) -> Result<PathBuf> {
    let root = root.to_path_buf();
    if root.join("test").is_dir() {
        return Ok(root);
    }
    // Written beside, then renamed: a half-written folder is never taken for a whole one.
    let tmp = root.with_file_name(format!(".synthetic-photos.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for (split, n) in [(Split::Train, 400), (Split::Test, 150)] {
        let ds = data::synthetic::synthetic(n, split, 7);
        let (imgs, labels) = ds.batch(0..n)?;
        let big = imgs.to_kind(Kind::Float).upsample_bilinear2d([96, 128], false, None, None);
        let big = big.round().clamp(0.0, 255.0).to_kind(Kind::Uint8).permute([0, 2, 3, 1]).contiguous();
        let labels = Vec::<i64>::try_from(&labels)?;
        for (i, &l) in labels.iter().enumerate().filter(|(_, &l)| l < 3) {
            let dir = tmp.join(split.as_str()).join(&ds.classes[l as usize]);
            crate::fsutil::ensure_dir(&dir)?;
            let px = Vec::<u8>::try_from(big.get(i as i64).reshape([-1]))?;
            let path = dir.join(format!("{i:04}.jpg"));
            image::save_buffer(&path, &px, 128, 96, image::ExtendedColorType::Rgb8)
                .map_err(|e| crate::Error::data(&path, format!("cannot write: {e}")))?;
        }
    }
    match std::fs::rename(&tmp, &root) {
        Ok(()) => Ok(root),
        // Another process finished first: theirs is whole.
        Err(_) if root.join("test").is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(root)
        }
        Err(e) => Err(crate::Error::io(format!("writing {}", root.display()), e)),
    }
}

/// The post's table: which strategy for which dataset, and what each one trains.
pub fn strategy_table() -> Result<DataFrame> {
    let rows = [
        (Strategy::LinearProbe, "small", "similar", "a linear classifier on the last stage's pooled features"),
        (Strategy::FineTune, "large", "similar", "the head, then the top of the body (layer4)"),
        (Strategy::EarlierLayer, "small", "different", "a classifier on an earlier stage's features (layer3)"),
        (Strategy::PretrainedInit, "large", "different", "every layer, starting from the ImageNet weights"),
        (Strategy::Scratch, "(baseline)", "(baseline)", "every layer, from random weights"),
    ];
    let col = |f: fn(&(Strategy, &str, &str, &str)) -> String| rows.iter().map(f).collect::<Vec<_>>();
    df!(
        "strategy" => col(|r| r.0.name().to_string()),
        "dataset size" => col(|r| r.1.to_string()),
        "similar to ImageNet" => col(|r| r.2.to_string()),
        "what is trained" => col(|r| r.3.to_string()),
    )
    .map_err(|e| crate::Error::Table { path: "strategy table".into(), reason: e.to_string() })
}

/// Global average pooling of layer4's maps, done by hand on the plain net, against the
/// features the cache holds (computed by the folded inference net).
#[derive(Debug, Clone)]
pub struct PoolingCheck {
    /// `[C, H, W]` of one image's layer4 output.
    pub unpooled: Vec<i64>,
    pub pooled: i64,
    pub max_abs_diff: f64,
}

impl PoolingCheck {
    /// Runs the first `n` images of `data` through both paths.
    pub fn run(backbone: &Backbone, data: &Dataset, n: usize) -> Result<PoolingCheck> {
        let (images, _) = data.batch(0..n.min(data.len()))?;
        let x = Preprocess::default().apply(&images, backbone.vs.device())?;
        tch::no_grad(|| {
            let maps = backbone.net.taps_t(&x, Tap::Layer4, false);
            let layer4 = &maps[3];
            let by_hand = layer4.mean_dim([2i64, 3].as_slice(), false, Kind::Float);
            let cached = backbone.features(&x, Tap::Layer4).to_kind(Kind::Float);
            let max_abs_diff = (&by_hand - &cached).abs().max().double_value(&[]);
            Ok(PoolingCheck { unpooled: layer4.size()[1..].to_vec(), pooled: cached.size()[1], max_abs_diff })
        })
    }
}

impl std::fmt::Display for PoolingCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per_image: i64 = self.unpooled.iter().product();
        writeln!(f, "layer4 output per image: {:?} = {per_image} floats", self.unpooled)?;
        writeln!(
            f,
            "pooled feature per image: {} floats ({}x less to store)",
            self.pooled,
            per_image / self.pooled.max(1)
        )?;
        write!(f, "max |GAP(layer4) - cached feature| = {:.2e}", self.max_abs_diff)
    }
}
