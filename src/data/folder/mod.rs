//! The user's own photos. Two layouts, as torchvision's `ImageFolder` users know them:
//!
//! ```text
//! root/<class>/*.jpg                      validation drawn from it; every 5th image of
//!                                         each class held out as the test split
//! root/train/<class>/*.jpg                training
//! root/{val,valid}/<class>/*.jpg          the validation set (optional)
//! root/test/<class>/*.jpg                 the test split (`val` stands in when absent)
//! ```
//!
//! Every file under a class folder counts, at any depth, as `ImageFolder` lists them
//! (see [`listing`]: links followed, loops ended, each real file once, hidden files
//! ignored). Each file is checked whole when listed; pixels are decoded per batch (see
//! [`super::decode`]), so a folder can be far larger than memory. Files that cannot be
//! used (an unsupported format, a cut-off or damaged file, a header over the pixel limit,
//! a broken link) are counted and named in one warning, or refused with `strict`.
use super::{Dataset, Source, Split};
use crate::error::{Error, IoContext, Result};
use crate::events::EventSink;
use crate::preprocess::{Interpolation, Preprocess, ResizeMode};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

mod check;
mod file;
pub mod listing;

pub use file::{
    decode_augmented_into, decode_image, decode_resized, decode_rgb, decode_sized, decode_sized_into, usable,
    DEFAULT_MAX_PIXELS, FORMATS,
};

/// Names tried for a given validation set, in order.
const VAL_DIRS: [&str; 2] = ["val", "valid"];

/// How a folder dataset is read: where, at what size, and how strictly.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FolderSpec {
    pub root: PathBuf,
    /// Side of the decoded images (the model's input size).
    #[serde(alias = "side")]
    pub size: i64,
    /// Absent in older runs, which squashed.
    #[serde(default = "squash")]
    pub resize: ResizeMode,
    /// Unusable files are an error instead of a warning.
    #[serde(default)]
    pub strict: bool,
    /// The resampling filter, the weights' (bicubic for EfficientNet B0-B3); absent in
    /// older runs, which resized bilinearly.
    #[serde(default)]
    pub interpolation: Interpolation,
    /// The shorter side before the centre crop (the weights' resize/crop ratio at `size`);
    /// absent: `size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_side: Option<i64>,
    /// Pixels a file's header may claim (see [`DEFAULT_MAX_PIXELS`]); absent in older
    /// runs, which had a fixed limit.
    #[serde(default = "default_max_pixels", skip_serializing_if = "is_default_max_pixels")]
    pub max_pixels: u64,
}

impl Default for FolderSpec {
    fn default() -> Self {
        FolderSpec {
            root: PathBuf::new(),
            size: 0,
            resize: ResizeMode::default(),
            strict: false,
            interpolation: Interpolation::default(),
            resize_side: None,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

fn squash() -> ResizeMode {
    ResizeMode::Squash
}

fn default_max_pixels() -> u64 {
    DEFAULT_MAX_PIXELS
}

fn is_default_max_pixels(n: &u64) -> bool {
    *n == DEFAULT_MAX_PIXELS
}

impl FolderSpec {
    fn pre(&self) -> Preprocess {
        let (size, resize, interpolation, resize_side) = (self.size, self.resize, self.interpolation, self.resize_side);
        Preprocess { size, resize, interpolation, resize_side, ..Default::default() }
    }
}

/// A file left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// What a listing left out: unusable files, and files reached twice (counted once).
#[derive(Default)]
struct Left {
    skipped: Vec<Skipped>,
    duplicates: usize,
}

/// One split folder: `<dir>/<class>/<files>`.
struct Listing {
    paths: Vec<PathBuf>,
    labels: Vec<i64>,
}

/// Opens one split of an image folder (see the module doc for the layouts).
pub fn open_folder(spec: &FolderSpec, split: Split, sink: &mut dyn EventSink) -> Result<Dataset> {
    if spec.size < 1 {
        return Err(Error::invalid("image size", "must be at least 1 pixel"));
    }
    let root = &spec.root;
    if !root.is_dir() {
        return Err(Error::data(root, "image folder not found (expected root/<class>/*.jpg or root/train/<class>/..)"));
    }
    let mut skipped = Left::default();
    let max_pixels = spec.max_pixels;
    let (classes, listing, val_from, role) = if root.join("train").is_dir() {
        let train_dir = root.join("train");
        let classes = class_dirs(&train_dir)?;
        let val_dir = VAL_DIRS.iter().map(|d| root.join(d)).find(|d| d.is_dir());
        match split {
            Split::Train => {
                let mut l = list(&train_dir, &classes, max_pixels, &mut skipped)?;
                let val_from = match &val_dir {
                    Some(v) => {
                        let val = list(v, &classes, max_pixels, &mut skipped)?;
                        let from = l.paths.len();
                        sink.info(&format!(
                            "validation set: the {} images of {} (given, so --val-split does not apply)",
                            val.paths.len(),
                            v.display()
                        ));
                        l.paths.extend(val.paths);
                        l.labels.extend(val.labels);
                        Some(from)
                    }
                    None => None,
                };
                (classes, l, val_from, "train")
            }
            Split::Test => {
                let test_dir = root.join("test");
                let dir = if test_dir.is_dir() {
                    test_dir
                } else if let Some(v) = val_dir {
                    sink.warn(&format!(
                        "no test folder in {}: {} stands in for the test split, so the test accuracy is measured \
                         on the images that chose the best epoch",
                        root.display(),
                        v.display()
                    ));
                    v
                } else {
                    return Err(Error::data(root, "has train/ but no test/, val/ or valid/ folder to evaluate on"));
                };
                (classes.clone(), list(&dir, &classes, max_pixels, &mut skipped)?, None, "test")
            }
        }
    } else {
        let classes = class_dirs(root)?;
        let all = list(root, &classes, max_pixels, &mut skipped)?;
        let held = held_out(&all.labels);
        let keep = |test: bool| {
            let (mut paths, mut labels) = (vec![], vec![]);
            for (i, (p, l)) in all.paths.iter().zip(&all.labels).enumerate() {
                if held[i] == test {
                    paths.push(p.clone());
                    labels.push(*l);
                }
            }
            Listing { paths, labels }
        };
        let test = split == Split::Test;
        if test {
            sink.info(&format!(
                "no train/ and test/ folders in {}: every 5th image of each class is the test split",
                root.display()
            ));
        }
        (classes, keep(test), None, if test { "held-out" } else { "train" })
    };
    report_skipped(root, &skipped, spec.strict, sink)?;
    check_classes(root, &classes, &listing.labels, split)?;
    let pre = spec.pre();
    let digest = digest_files(root, &listing.paths, &format!("{role} {pre:?} val_from={val_from:?}"))?;
    Ok(Dataset {
        name: format!("folder:{}", folder_name(root)),
        split,
        synthetic: false,
        classes,
        digest,
        val_from,
        source: Source::Files {
            paths: listing.paths,
            labels: listing.labels,
            pre,
            decoding: super::decode::Decoding::new(max_pixels, spec.strict),
        },
    })
}

/// The folder's own name, for labels: outputs never carry the machine's absolute path.
pub fn folder_name(root: &Path) -> String {
    let abs = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "images".into())
}

/// True for the images a flat folder holds out as its test split: every 5th of each class,
/// counted in sorted order, so adding a file to one class never moves another's.
fn held_out(labels: &[i64]) -> Vec<bool> {
    let mut seen = std::collections::HashMap::new();
    labels
        .iter()
        .map(|l| {
            let n = seen.entry(*l).or_insert(0usize);
            *n += 1;
            *n % 5 == 0
        })
        .collect()
}

/// A dataset of one class, or a class with no usable image, cannot train a classifier.
fn check_classes(root: &Path, classes: &[String], labels: &[i64], split: Split) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::data(root, format!("no usable {FORMATS} images in any class folder")));
    }
    if split == Split::Train {
        if classes.len() < 2 {
            let reason = format!("has one class folder ({}); a classifier needs at least two", classes[0]);
            return Err(Error::data(root, reason));
        }
        let empty: Vec<&str> =
            (0..classes.len()).filter(|c| !labels.contains(&(*c as i64))).map(|c| classes[c].as_str()).collect();
        if !empty.is_empty() {
            let reason = format!("class folder(s) with no usable image to train on: {}", empty.join(", "));
            return Err(Error::data(root, reason));
        }
    }
    Ok(())
}

/// Says which files were left out, every one named, in one warning; with `strict`,
/// refuses them. Files reached twice through links are a note.
fn report_skipped(root: &Path, left: &Left, strict: bool, sink: &mut dyn EventSink) -> Result<()> {
    if left.duplicates > 0 {
        sink.info(&format!(
            "{}: {} file(s) reached through more than one path (a link) are counted once",
            root.display(),
            left.duplicates
        ));
    }
    if left.skipped.is_empty() {
        return Ok(());
    }
    let what = unusable(root, &left.skipped);
    if strict {
        return Err(Error::data(root, format!("holds {what} (--strict)")));
    }
    sink.warn(&format!("{}: skipping {what}; --strict makes this an error", root.display()));
    Ok(())
}

/// "N file(s) that are not usable ... images: a.jpg (why); b.png (why)", paths relative
/// to `root`.
pub fn unusable(root: &Path, skipped: &[Skipped]) -> String {
    let names: Vec<String> = skipped
        .iter()
        .map(|s| format!("{} ({})", s.path.strip_prefix(root).unwrap_or(&s.path).display(), s.reason))
        .collect();
    format!("{} file(s) that are not usable {FORMATS} images: {}", skipped.len(), names.join("; "))
}

/// Sorted names of the visible sub-folders of `dir`; at least one.
fn class_dirs(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Skip hidden folders such as .ipynb_checkpoints or .git.
        if entry.path().is_dir() && !name.starts_with('.') {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(Error::data(dir, "no class sub-folders (expected <class>/*.jpg)"));
    }
    names.sort();
    Ok(names)
}

/// The usable images under `dir/<class>/`, at any depth, for each of `classes` (a class
/// folder may be missing outside the training split); a sub-folder that is not a class
/// is an error. Each class folder (and `dir`) is walked from its own name only, so a link
/// from one class into another, or up to `dir`, adds nothing.
fn list(dir: &Path, classes: &[String], max_pixels: u64, left: &mut Left) -> Result<Listing> {
    for name in class_dirs(dir)? {
        if !classes.contains(&name) {
            let reason = format!("class folder `{name}` is not among the training classes ({})", classes.join(", "));
            return Err(Error::data(dir, reason));
        }
    }
    let mut walker = listing::Walker::new();
    walker.claim(dir);
    for class in classes {
        walker.claim(&dir.join(class));
    }
    let (mut paths, mut labels) = (vec![], vec![]);
    for (label, class) in classes.iter().enumerate() {
        let cdir = dir.join(class);
        if !cdir.is_dir() {
            continue;
        }
        for path in walker.files(&cdir)? {
            match usable(&path, max_pixels) {
                Ok(()) => {
                    paths.push(path);
                    labels.push(label as i64);
                }
                Err(reason) => left.skipped.push(Skipped { path, reason }),
            }
        }
    }
    left.skipped.append(&mut walker.skipped);
    left.duplicates += walker.duplicates;
    Ok(Listing { paths, labels })
}

/// SHA-256 hex over `tag` (what shapes the pixels), then each file's path relative to
/// `root` and its bytes.
fn digest_files(root: &Path, paths: &[PathBuf], tag: &str) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(format!("{tag}\n").as_bytes());
    for path in paths {
        let rel = path.strip_prefix(root).unwrap_or(path);
        let rel: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        let mut file = std::fs::File::open(path).ctx(|| format!("opening {}", path.display()))?;
        let len = file.metadata().ctx(|| format!("reading {}", path.display()))?.len();
        // Path and length delimit each file, so different splits of bytes hash differently.
        hasher.update(format!("{}\n{len}\n", rel.join("/")).as_bytes());
        std::io::copy(&mut file, &mut hasher).ctx(|| format!("reading {}", path.display()))?;
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fifth_image_of_each_class_is_held_out() {
        let held = held_out(&[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(held, [false, false, false, false, true, false, false, false, false, false, true]);
    }
}
