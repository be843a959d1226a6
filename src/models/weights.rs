//! The registry of pretrained weights, fetching them into the cache, and strict loading
//! of state dicts.
use super::arch::Arch;
use crate::cache::Cache;
use crate::download::{verify_recorded, Checksum, Downloader};
use crate::events::EventSink;
use crate::fsutil::ensure_dir;
use crate::preprocess::{Interpolation, Normalization};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Tensor};

/// Where torchvision publishes its checkpoints; `$TLAB_WEIGHTS_BASE_URL` overrides it
/// ([`weights_base_url`]).
pub const DEFAULT_WEIGHTS_BASE_URL: &str = "https://download.pytorch.org/models/";
/// The folder URL for torchvision weights, ending in `/`: the mirror the settings name
/// (`$TLAB_WEIGHTS_BASE_URL`), else download.pytorch.org.
pub fn weights_base_url(settings: &crate::settings::Settings) -> String {
    let mut base = settings.weights_base_url.clone().unwrap_or_else(|| DEFAULT_WEIGHTS_BASE_URL.to_string());
    if !base.ends_with('/') {
        base.push('/');
    }
    base
}

/// Which of an architecture's published weights: torchvision's `IMAGENET1K_V1` or `_V2`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum WeightsVariant {
    /// IMAGENET1K_V1: the original ImageNet weights
    #[default]
    #[value(name = "v1", alias = "IMAGENET1K_V1")]
    V1,
    /// IMAGENET1K_V2: torchvision's newer training recipe (not every depth has it)
    #[value(name = "v2", alias = "IMAGENET1K_V2")]
    V2,
}

crate::choice::choice!(WeightsVariant, "weights variant", ignore_case);

impl WeightsVariant {
    /// torchvision's enum name, as run records and labels write it.
    pub fn torchvision_name(self) -> &'static str {
        match self {
            WeightsVariant::V1 => "IMAGENET1K_V1",
            WeightsVariant::V2 => "IMAGENET1K_V2",
        }
    }
}

impl serde::Serialize for WeightsVariant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.torchvision_name())
    }
}

impl<'de> serde::Deserialize<'de> for WeightsVariant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a weights file is published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// download.pytorch.org (or `$TLAB_WEIGHTS_BASE_URL`) + the file name, whose 8 hex
    /// digits start the file's SHA-256 (torchvision's convention).
    Torchvision,
    /// A URL of its own, checked against its publisher's hash (Keras publishes MD5s); the
    /// SHA-256 is then recorded beside the cached file.
    Url { url: &'static str, md5: &'static str },
    /// A Hugging Face Hub repository's file at a pinned commit, kept in the Hub's own
    /// cache (`crate::hub`), where Python finds it too.
    Hub(&'static crate::hub::HubFile),
}

/// torchvision's `ImageClassification(crop_size, resize_size, interpolation)` plus the
/// normalisation: the evaluation transform the weights were measured with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalTransform {
    /// Shorter side after resizing.
    pub resize: i64,
    /// Centre crop side: the network's input size.
    pub crop: i64,
    pub interpolation: Interpolation,
    pub normalization: Normalization,
}

/// torchvision's transform for its ResNets: resize 256 bilinear, crop 224, ImageNet mean/std.
pub const TV_RESNET: EvalTransform = EvalTransform {
    resize: 256,
    crop: 224,
    interpolation: Interpolation::Bilinear,
    normalization: Normalization::Torchvision,
};

/// One downloadable checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightsEntry {
    pub arch: Arch,
    pub variant: WeightsVariant,
    /// The file's name, in the cache and at its source.
    pub file: &'static str,
    pub source: Source,
    pub eval: EvalTransform,
    /// ImageNet top-1 as published with the weights.
    pub imagenet_top1: f32,
    /// The file's size in MiB, as published (torchvision's `_file_size`).
    pub size_mib: f32,
}

impl WeightsEntry {
    /// The input mapping the weights were trained with.
    pub fn normalization(&self) -> Normalization {
        self.eval.normalization
    }
}

/// A torchvision checkpoint with `eval` as its transform.
pub(super) const fn tv(
    arch: Arch,
    variant: WeightsVariant,
    file: &'static str,
    top1: f32,
    size_mib: f32,
    eval: EvalTransform,
) -> WeightsEntry {
    WeightsEntry { arch, variant, file, source: Source::Torchvision, eval, imagenet_top1: top1, size_mib }
}

/// Every family's checkpoints, in `--arch` order.
pub fn registry() -> impl Iterator<Item = &'static WeightsEntry> {
    let mut all: Vec<&'static WeightsEntry> = Vec::new();
    for &arch in Arch::all() {
        all.extend(arch.spec().weights.iter().filter(|e| e.arch == arch));
    }
    all.into_iter()
}

/// The evaluation transform of the weights a run starts from: the registry entry of
/// `variant`, else the one whose file name `file` carries, else `arch`'s first entry
/// (random weights get the preprocessing its published weights use).
pub fn eval_transform_for(arch: Arch, variant: Option<WeightsVariant>, file: Option<&Path>) -> EvalTransform {
    let named =
        file.and_then(|p| p.file_name()?.to_str()).and_then(|n| registry().find(|e| e.arch == arch && e.file == n));
    variant
        .and_then(|v| WeightsEntry::find(arch, v).ok())
        .or(named)
        .or_else(|| registry().find(|e| e.arch == arch))
        .map_or_else(|| super::vit::eval_for(arch).unwrap_or(TV_RESNET), |e| e.eval)
}

/// Every entry as a markdown table (the README's, and `tlab fetch weights --list`).
pub fn registry_markdown() -> String {
    let mut s = String::from(
        "| --arch | --weights | file | ImageNet top-1 (published) | eval transform | size |\n|---|---|---|---|---|---|\n",
    );
    for e in registry() {
        let t = &e.eval;
        let (file, top1) = match e.source {
            // Self-supervised or image-text weights: their papers' linear probe.
            Source::Hub(f) if e.imagenet_top1.is_nan() => {
                (format!("`{}` @ `{}`", f.repo, &f.revision[..7]), "-".into())
            }
            Source::Hub(f) => {
                (format!("`{}` @ `{}`", f.repo, &f.revision[..7]), format!("{:.1}% (linear probe)", e.imagenet_top1))
            }
            _ => (format!("`{}`", e.file), format!("{:.1}%", e.imagenet_top1)),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | resize {} {}, crop {}, {} | {:.0} MiB |\n",
            e.arch.name(),
            e.variant.name(),
            file,
            top1,
            t.resize,
            t.interpolation.name(),
            t.crop,
            t.normalization.name(),
            e.size_mib
        ));
    }
    s
}

impl WeightsEntry {
    /// Looks up `arch` + `variant`; an error names the variants `arch` has.
    pub fn find(arch: Arch, variant: WeightsVariant) -> Result<&'static WeightsEntry> {
        registry().find(|e| e.arch == arch && e.variant == variant).ok_or_else(|| {
            let have: Vec<_> = registry().filter(|e| e.arch == arch).map(|e| e.variant.torchvision_name()).collect();
            if have.is_empty() {
                return Error::invalid(
                    "weights",
                    format!(
                        "{} has no download pinned here yet; pass --weights PATH to its published file{}",
                        arch.name(),
                        super::vit::hub_hint(arch).unwrap_or_default()
                    ),
                );
            }
            Error::invalid(
                "weights variant",
                format!("`{}` for {}; available: {}", variant.torchvision_name(), arch.name(), have.join(", ")),
            )
        })
    }

    /// The 8 hex digits from a torchvision file name: the start of its SHA-256. Empty
    /// for other sources (any SHA-256 starts with it).
    pub fn sha256_prefix(&self) -> &'static str {
        match self.source {
            Source::Torchvision => {
                let stem = self.file.trim_end_matches(".pth");
                &stem[stem.len() - 8..]
            }
            Source::Url { .. } | Source::Hub(_) => "",
        }
    }

    /// "resnet50 IMAGENET1K_V1": how run records and labels name these weights.
    pub fn label(&self) -> String {
        match self.source {
            Source::Torchvision => format!("{} {}", self.arch.name(), self.variant.torchvision_name()),
            Source::Url { .. } => format!("{} {}", self.arch.name(), self.file),
            Source::Hub(f) => format!("{} {}@{}", self.arch.name(), f.repo, &f.revision[..7]),
        }
    }

    /// The file under the folder URL `base` (torchvision's, or a mirror's).
    pub fn url(&self, base: &str) -> String {
        format!("{}/{}", base.trim_end_matches('/'), self.file)
    }

    /// Where `tlab fetch` downloads the file: a mirror the settings name
    /// (`$TLAB_WEIGHTS_BASE_URL`, holding every file under its own name), else its source.
    pub fn download_url(&self, settings: &crate::settings::Settings) -> String {
        match (&settings.weights_base_url, self.source) {
            // The Hub's mirror is `HF_ENDPOINT`, as for every Hub client.
            (_, Source::Hub(f)) => f.url(&crate::hub::endpoint(settings)),
            (None, Source::Url { url, .. }) => url.to_string(),
            _ => self.url(&weights_base_url(settings)),
        }
    }

    /// What a download is checked against.
    pub fn checksum(&self) -> Checksum {
        match self.source {
            Source::Torchvision => Checksum::Sha256Prefix(self.sha256_prefix().into()),
            Source::Url { md5, .. } => Checksum::Md5(md5.into()),
            Source::Hub(f) => Checksum::Sha256Prefix(f.sha256.unwrap_or_default().into()),
        }
    }

    /// Where the file is once fetched, if it is: the cache's `weights/`, or the Hub's
    /// snapshot folder for Hub files.
    pub fn cached_path(&self, cache: &Cache) -> Option<PathBuf> {
        match self.source {
            Source::Hub(f) => crate::hub::cached(f, crate::settings::current()),
            _ => Some(cache.weights_file(self.file)).filter(|p| p.is_file()),
        }
    }
}

/// Downloads (or verifies the cached copy of) `entry` into the cache's `weights/` folder.
pub fn fetch_weights(
    entry: &WeightsEntry,
    cache: &Cache,
    dl: &Downloader,
    sink: &mut dyn EventSink,
) -> Result<PathBuf> {
    if let Source::Hub(f) = entry.source {
        return crate::hub::fetch_hub_file(f, dl, sink);
    }
    ensure_dir(&cache.weights_dir())?;
    let dest = cache.weights_file(entry.file);
    if dest.exists() {
        verify_recorded(&dest, entry.sha256_prefix())?;
    } else {
        let url = entry.download_url(crate::settings::current());
        dl.download(&url, &dest, &entry.checksum(), sink)?;
        // The SHA-256 recorded beside the file checks every later use.
        verify_recorded(&dest, entry.sha256_prefix())?;
    }
    Ok(dest)
}

/// Reads every tensor of a state dict: `.safetensors`, or torch.save's `.pth`/`.pt`/`.bin`.
pub fn load_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let werr = |reason: String| Error::Weights { path: path.to_path_buf(), reason };
    if !path.is_file() {
        return Err(werr("file not found; fetch it with `tlab fetch weights` or pass --weights PATH".into()));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let res = match ext {
        "safetensors" => Tensor::read_safetensors(path),
        "pth" | "pt" | "bin" => return super::pth::read_pth(path),
        _ => return Err(werr(format!("unknown extension `.{ext}`; expected .safetensors, .pth, .pt or .bin"))),
    };
    res.map_err(|e| werr(format!("cannot be read ({e}); is it truncated or not a state dict?")))
}

/// What a strict load found, beyond the tensors it copied.
#[derive(Debug, Default, PartialEq)]
pub struct LoadReport {
    pub loaded: usize,
    /// Keys in the file that were allowed to go unused (e.g. `fc.*` for a headless net).
    pub ignored: Vec<String>,
}

/// Copies the tensors of `path` into `vs`, strictly: a missing, unexpected or mis-shaped
/// tensor is an error naming it, and then nothing is copied. `num_batches_tracked` is
/// ignored. Keys starting with one of `skip_prefixes` (e.g. `fc.` when the classifier is
/// replaced) are left out on both sides: neither loaded nor required.
pub fn load_weights(vs: &mut VarStore, path: &Path, skip_prefixes: &[&str]) -> Result<LoadReport> {
    load_tensors(vs, load_state_dict(path)?, path, skip_prefixes)
}

/// [`load_weights`] from tensors already read from `path` (named in errors).
pub fn load_tensors(
    vs: &mut VarStore,
    tensors: impl IntoIterator<Item = (String, Tensor)>,
    path: &Path,
    skip_prefixes: &[&str],
) -> Result<LoadReport> {
    let skipped = |k: &str| skip_prefixes.iter().any(|p| k.starts_with(p));
    let file: BTreeMap<String, Tensor> =
        tensors.into_iter().filter(|(k, _)| !k.ends_with("num_batches_tracked")).collect();
    let vars: std::collections::HashMap<String, Tensor> =
        vs.variables().into_iter().filter(|(k, _)| !skipped(k)).collect();
    let mut problems = Vec::new();
    let missing: BTreeSet<_> = vars.keys().filter(|k| !file.contains_key(*k)).collect();
    if !missing.is_empty() {
        problems.push(format!("missing {}", list(missing.iter())));
    }
    let (ignored, unexpected): (Vec<_>, Vec<_>) =
        file.keys().filter(|k| !vars.contains_key(*k)).partition(|k| skipped(k));
    if !unexpected.is_empty() {
        problems.push(format!("unexpected {}", list(unexpected.iter())));
    }
    let misshaped: Vec<String> = vars
        .iter()
        .filter_map(|(k, v)| {
            let src = file.get(k)?;
            (src.size() != v.size()).then(|| format!("{k} (file {:?}, model {:?})", src.size(), v.size()))
        })
        .collect();
    if !misshaped.is_empty() {
        problems.push(format!("mis-shaped {}", list(misshaped.iter())));
    }
    if !problems.is_empty() {
        return Err(Error::Weights { path: path.to_path_buf(), reason: problems.join("; ") });
    }
    tch::no_grad(|| -> Result<()> {
        for (k, v) in &vars {
            let src = &file[k];
            let mut dst = v.shallow_clone();
            dst.f_copy_(&src.to_device(v.device()).to_kind(v.kind()))
                .map_err(|e| Error::Weights { path: path.to_path_buf(), reason: format!("{k}: {e}") })?;
        }
        Ok(())
    })?;
    Ok(LoadReport { loaded: vars.len(), ignored: ignored.into_iter().cloned().collect() })
}

/// "3 tensors: a, b, c" (at most 8 named).
fn list<T: std::fmt::Display>(items: impl ExactSizeIterator<Item = T>) -> String {
    let n = items.len();
    let mut names: Vec<String> = items.take(8).map(|s| s.to_string()).collect();
    if n > 8 {
        names.push(format!("and {} more", n - 8));
    }
    format!("{n} tensor{}: {}", if n == 1 { "" } else { "s" }, names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_prefixes_and_lookup() {
        let e = WeightsEntry::find(Arch::ResNet50, WeightsVariant::V1).unwrap();
        assert_eq!(e.sha256_prefix(), "0676ba61");
        assert_eq!(
            WeightsEntry::find(Arch::ResNet50, "IMAGENET1K_V2".parse().unwrap()).unwrap().sha256_prefix(),
            "11ad3fa6"
        );
        assert_eq!(
            e.url("https://download.pytorch.org/models/"),
            "https://download.pytorch.org/models/resnet50-0676ba61.pth"
        );
        let err = WeightsEntry::find(Arch::ResNet18, WeightsVariant::V2).unwrap_err().to_string();
        assert!(err.contains("IMAGENET1K_V1"), "{err}");
    }
}
