//! Datasets: CIFAR-10 binary files, image folders, and a synthetic set, all yielding
//! batches of u8 images `[B, 3, H, W]` with i64 labels `[B]`.
pub mod cifar;
pub mod decode;
pub mod folder;
pub mod resample;
pub mod synthetic;

use crate::cache::Cache;
use crate::{Error, Result};
use std::ops::Range;
use std::path::PathBuf;
use tch::{Kind, Tensor};

/// Which part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// Where a dataset's pixels live.
pub enum Source {
    /// Decoded in memory: images `[N, 3, H, W]` u8, labels `[N]` i64, on the CPU.
    Memory { images: Tensor, labels: Tensor },
    /// Image files decoded per batch, in worker threads, and brought to `pre.size`
    /// square as `pre.resize` says: batches are f32 in 0..=255. A file that fails to
    /// decode is left out of its batch and recorded in `decoding` (see [`decode`]).
    Files { paths: Vec<PathBuf>, labels: Vec<i64>, pre: crate::preprocess::Preprocess, decoding: decode::Decoding },
}

/// A labelled image dataset, one split of it.
pub struct Dataset {
    /// "cifar10", "synthetic", or "folder:<root>".
    pub name: String,
    pub split: Split,
    /// True for generated data; everything downstream labels its results with it.
    pub synthetic: bool,
    pub classes: Vec<String>,
    /// SHA-256 (hex) of the content; part of feature cache keys.
    pub digest: String,
    /// A given validation set: the items from this index on (an image folder's `val/`).
    pub val_from: Option<usize>,
    pub source: Source,
}

impl Dataset {
    pub fn len(&self) -> usize {
        match &self.source {
            Source::Memory { labels, .. } => labels.size()[0] as usize,
            Source::Files { paths, .. } => paths.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns images `[B, 3, H, W]` (u8 in memory, f32 0..=255 from files) and labels
    /// `[B]` i64 for `range`.
    pub fn batch(&self, range: Range<usize>) -> Result<(Tensor, Tensor)> {
        if range.end > self.len() || range.start > range.end {
            return Err(Error::invalid("batch range", format!("{range:?} of {}", self.len())));
        }
        match &self.source {
            Source::Memory { images, labels } => {
                let (s, e) = (range.start as i64, range.end as i64);
                Ok((images.narrow(0, s, e - s), labels.narrow(0, s, e - s)))
            }
            Source::Files { paths, labels, pre, decoding } => {
                let (paths, labels) = (&paths[range.clone()], &labels[range]);
                decode::decode_rows(paths, labels, decoding, |p| {
                    decode::decode_all(p, pre, decoding.max_pixels, decode::workers())
                })
            }
        }
    }

    /// Batches for `ranges`, in order. From files, a thread decodes up to
    /// [`decode::AHEAD`] batches ahead of the caller, so decoding overlaps its work.
    pub fn batches(&self, ranges: Vec<Range<usize>>) -> Result<decode::Batches<'_>> {
        if let Some(r) = ranges.iter().find(|r| r.end > self.len() || r.start > r.end) {
            return Err(Error::invalid("batch range", format!("{r:?} of {}", self.len())));
        }
        Ok(decode::Batches::new(self, ranges))
    }

    /// Images `[B, 3, H, W]` (as [`Dataset::batch`]) and labels `[B]` i64 at `indices`
    /// (any order).
    pub fn gather(&self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        if let Some(&bad) = indices.iter().find(|&&i| i < 0 || i as usize >= self.len()) {
            return Err(Error::invalid("sample index", format!("{bad} of {}", self.len())));
        }
        match &self.source {
            Source::Memory { images, labels } => {
                let idx = Tensor::from_slice(indices);
                Ok((images.index_select(0, &idx), labels.index_select(0, &idx)))
            }
            Source::Files { paths, labels, pre, decoding } => {
                let picked: Vec<PathBuf> = indices.iter().map(|&i| paths[i as usize].clone()).collect();
                let labels: Vec<i64> = indices.iter().map(|&i| labels[i as usize]).collect();
                decode::decode_rows(&picked, &labels, decoding, |p| {
                    decode::decode_all(p, pre, decoding.max_pixels, decode::workers())
                })
            }
        }
    }

    /// For image files: [`Dataset::gather`] with each image through torchvision's
    /// RandomResizedCrop + horizontal flip, drawn from the global (seeded) stream.
    /// `None` for in-memory data.
    pub fn gather_augmented(&self, indices: &[i64]) -> Result<Option<(Tensor, Tensor)>> {
        let Source::Files { paths, labels, pre, decoding } = &self.source else { return Ok(None) };
        if let Some(&bad) = indices.iter().find(|&&i| i < 0 || i as usize >= self.len()) {
            return Err(Error::invalid("sample index", format!("{bad} of {}", self.len())));
        }
        let n = indices.len() as i64;
        let draws = Tensor::rand([n, resample::AUGMENT_DRAWS as i64], (Kind::Float, tch::Device::Cpu));
        let draws = Vec::<f32>::try_from(draws.flatten(0, -1))?;
        let picked: Vec<PathBuf> = indices.iter().map(|&i| paths[i as usize].clone()).collect();
        let labels: Vec<i64> = indices.iter().map(|&i| labels[i as usize]).collect();
        let batch = decode::decode_rows(&picked, &labels, decoding, |p| {
            decode::decode_augmented(p, pre.size, decoding.max_pixels, &draws, decode::workers())
        })?;
        Ok(Some(batch))
    }

    /// The image files, for datasets read from a folder.
    pub fn paths(&self) -> Option<&[PathBuf]> {
        match &self.source {
            Source::Files { paths, .. } => Some(paths),
            Source::Memory { .. } => None,
        }
    }

    /// The files that failed to decode after listing, so far (left out of their batches).
    pub fn decode_failures(&self) -> Vec<folder::Skipped> {
        match &self.source {
            Source::Files { decoding, .. } => decoding.failed(),
            Source::Memory { .. } => vec![],
        }
    }

    /// Says, in one warning, which files failed to decode after listing and were left
    /// out of their batches (nothing when none did).
    pub fn warn_decode_failures(&self, sink: &mut dyn crate::events::EventSink) {
        let failed = self.decode_failures();
        if !failed.is_empty() {
            let what = folder::unusable(std::path::Path::new(""), &failed);
            sink.warn(&format!(
                "{} ({}): left out of their batches {what}, found when decoding; --strict makes this an error",
                self.name,
                self.split.as_str()
            ));
        }
    }

    /// Records files of rows that failed to decode in an earlier pass (a feature cache's
    /// skipped rows), so that [`Dataset::used_paths`] and the warning count them; with
    /// `--strict` they are the error.
    pub fn note_decode_failures(&self, rows: &[decode::SkippedRow]) -> Result<()> {
        if let Source::Files { paths, decoding, .. } = &self.source {
            let known: Vec<_> = rows
                .iter()
                .filter_map(|s| paths.get(s.row).map(|p| folder::Skipped { path: p.clone(), reason: s.reason.clone() }))
                .collect();
            decoding.note_earlier(known)?;
        }
        Ok(())
    }

    /// The image files less those that failed to decode so far: after a pass over every
    /// item in order, one path per row of its results.
    pub fn used_paths(&self) -> Option<Vec<PathBuf>> {
        let failed = self.decode_failures();
        let paths = self.paths()?;
        Some(paths.iter().filter(|p| !failed.iter().any(|f| &f.path == *p)).cloned().collect())
    }

    /// The labels of rows `r`, `[r.len()]` i64.
    pub fn labels_of(&self, r: Range<usize>) -> Tensor {
        match &self.source {
            Source::Memory { labels, .. } => labels.narrow(0, r.start as i64, r.len() as i64),
            Source::Files { labels, .. } => Tensor::from_slice(&labels[r]),
        }
    }

    /// All labels, `[N]` i64.
    pub fn labels(&self) -> Tensor {
        match &self.source {
            Source::Memory { labels, .. } => labels.shallow_clone(),
            Source::Files { labels, .. } => Tensor::from_slice(labels).to_kind(Kind::Int64),
        }
    }

    /// The first `n` items (all if `n` is larger); the digest records the cut.
    pub fn take(self, n: usize) -> Dataset {
        if n >= self.len() {
            return self;
        }
        let source = match self.source {
            Source::Memory { images, labels } => {
                Source::Memory { images: images.narrow(0, 0, n as i64), labels: labels.narrow(0, 0, n as i64) }
            }
            Source::Files { mut paths, mut labels, pre, decoding } => {
                paths.truncate(n);
                labels.truncate(n);
                Source::Files { paths, labels, pre, decoding }
            }
        };
        // A given validation set cut short keeps what is left of it.
        let val_from = self.val_from.filter(|&v| v < n);
        Dataset { digest: format!("{}:first{n}", self.digest), source, val_from, ..self }
    }

    /// What the data is, for notes: "CIFAR-10", "the image folder `photos`", or the
    /// synthetic set said to be generated.
    pub fn kind_label(&self) -> String {
        kind_label(&self.name, self.synthetic)
    }

    /// A label for output: "synthetic (generated, not CIFAR-10)" or the dataset name.
    pub fn describe(&self) -> String {
        describe(&self.name, self.synthetic)
    }
}

/// [`Dataset::kind_label`] of a dataset known by its name (a feature cache's key).
pub fn kind_label(name: &str, synthetic: bool) -> String {
    match name.strip_prefix("folder:") {
        _ if synthetic => "SYNTHETIC data (generated; not CIFAR-10)".into(),
        Some(folder) => format!("the image folder `{folder}`"),
        None if name == "cifar10" => "CIFAR-10".into(),
        None => name.to_string(),
    }
}

/// [`Dataset::describe`] of a dataset known by its name (a feature cache's key).
pub fn describe(name: &str, synthetic: bool) -> String {
    if synthetic {
        format!("{name} [SYNTHETIC: generated data, not CIFAR-10]")
    } else {
        name.to_string()
    }
}

/// Which dataset to use, as the CLI and notebooks name it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataSpec {
    /// CIFAR-10 binary; `path` is a local `cifar-10-batches-bin` folder, else the cache
    /// (fetched when absent).
    Cifar10 { path: Option<PathBuf> },
    /// Generated, CIFAR-shaped; never to be reported as CIFAR-10.
    Synthetic {
        train: usize,
        test: usize,
        seed: u64,
        /// Absent in older runs, which used the easy set.
        #[serde(default)]
        difficulty: synthetic::Difficulty,
    },
    /// `root/<class>/*.jpg`, or `root/{train,val,test}/<class>/..` (see [`folder`]).
    Folder(folder::FolderSpec),
}

impl DataSpec {
    /// The synthetic stand-in the main job uses offline.
    pub fn synthetic_default() -> DataSpec {
        let (train, test) = synthetic::DEFAULT_SIZES;
        DataSpec::Synthetic { train, test, seed: 0, difficulty: synthetic::Difficulty::Easy }
    }

    pub fn is_synthetic(&self) -> bool {
        matches!(self, DataSpec::Synthetic { .. })
    }
}

/// Opens one split of `spec`. CIFAR-10 not on disk is fetched into `cache`.
/// Like [`open`], but never downloads: CIFAR-10 must already be in `cache`, else the
/// error names the cache and the command that fills it. For readers of finished runs.
pub fn open_local(spec: &DataSpec, split: Split, cache: &Cache) -> Result<Dataset> {
    if let DataSpec::Cifar10 { path: None } = spec {
        let dir = cifar::cache_dir(cache);
        if !dir.is_dir() {
            return Err(Error::invalid(
                "CIFAR-10",
                format!(
                    "not in the cache at {} (`tlab --cache-dir {} fetch cifar10` puts it there)",
                    dir.display(),
                    cache.display()
                ),
            ));
        }
        return cifar::load_cifar10(&dir, split);
    }
    open(spec, split, cache, &mut crate::events::NullSink)
}

pub fn open(spec: &DataSpec, split: Split, cache: &Cache, sink: &mut dyn crate::events::EventSink) -> Result<Dataset> {
    match spec {
        DataSpec::Cifar10 { path: Some(p) } => cifar::load_cifar10(p, split),
        DataSpec::Cifar10 { path: None } => {
            let dir = cifar::fetch::fetch_default(cache, sink)?;
            cifar::load_cifar10(&dir, split)
        }
        DataSpec::Synthetic { train, test, seed, difficulty } => {
            let n = if split == Split::Train { *train } else { *test };
            Ok(synthetic::synthetic_with(n, split, *seed, *difficulty))
        }
        DataSpec::Folder(f) => folder::open_folder(f, split, sink),
    }
}
