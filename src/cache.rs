//! The cache: everything fetched or computed once and reused by later runs. [`Cache`]
//! owns this tree; no other module joins its names.
//!
//! ```text
//! <root>/                          --cache-dir, $TLAB_CACHE_DIR or ~/.cache/transfer-lab
//! ├── downloads/                   raw downloads
//! │   ├── cifar-10-binary.tar.gz   (MD5-checked)
//! │   └── <file>.part              an interrupted download, resumed by the next run
//! ├── datasets/
//! │   └── cifar-10-batches-bin/    the tarball's folder, as is
//! │       ├── data_batch_{1..5}.bin, test_batch.bin
//! │       └── batches.meta.txt
//! ├── weights/
//! │   ├── <file>.pth               torchvision's name, e.g. resnet50-0676ba61.pth
//! │   └── <file>.pth.sha256        digest record: its full SHA-256, `sha256sum -c` format
//! └── features/
//!     └── <tag>-<split>-<id>/      one extraction; <id> hashes its `CacheKey`
//!         ├── manifest.json
//!         ├── shard-NNNNN.safetensors
//!         └── shard-NNNNN.done.json, .claim, part-K-of-N.json   see `shards`
//! ```
//!
//! The file names inside a folder belong to the code that writes them: `data::cifar`
//! (the batch files), `download` (`.part`, digest records), `features` (manifest, shards).
use crate::data::cifar::{self, fetch::CIFAR10_URL};
use crate::features::CacheKey;
use crate::models::weights::{WeightsEntry, DEFAULT_WEIGHTS_BASE_URL};
use std::path::{Path, PathBuf};

/// Environment variable that overrides the cache folder.
pub const CACHE_ENV: &str = "TLAB_CACHE_DIR";
/// Mirror overrides, for users behind proxies or without access to the origin.
pub const CIFAR10_URL_ENV: &str = "TLAB_CIFAR10_URL";
pub const WEIGHTS_BASE_URL_ENV: &str = "TLAB_WEIGHTS_BASE_URL";

/// The cache folder and the mirrors its files are fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root`; nothing is created until something is written.
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The user's cache: `explicit` (`--cache-dir`), else `$TLAB_CACHE_DIR`, else the
    /// platform cache dir (`~/.cache/transfer-lab` on Linux).
    pub fn locate(explicit: Option<&Path>) -> Cache {
        if let Some(p) = explicit {
            return Cache::new(p);
        }
        if let Some(p) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
            return Cache::new(p);
        }
        Cache::new(dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("transfer-lab"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root, for messages: `println!("cache: {}", cache.display())`.
    pub fn display(&self) -> std::path::Display<'_> {
        self.root.display()
    }

    /// `<root>/downloads`
    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// `<root>/downloads/<name>`
    pub fn download(&self, name: &str) -> PathBuf {
        self.downloads().join(name)
    }

    /// `<root>/datasets`
    pub fn datasets(&self) -> PathBuf {
        self.root.join("datasets")
    }

    /// `<root>/datasets/cifar-10-batches-bin`
    pub fn cifar10_dir(&self) -> PathBuf {
        self.datasets().join(cifar::TARBALL_DIR)
    }

    /// `<root>/weights`
    pub fn weights_dir(&self) -> PathBuf {
        self.root.join("weights")
    }

    /// `<root>/weights/<entry.file>`
    pub fn weights_file(&self, entry: &WeightsEntry) -> PathBuf {
        self.weights_dir().join(entry.file)
    }

    /// `<root>/features`
    pub fn features(&self) -> PathBuf {
        self.root.join("features")
    }

    /// `<root>/features/<tag>-<split>-<id>`: the tag (from the dataset name) and split
    /// make the folder recognisable; the key's hash makes it unique.
    pub fn features_dir(&self, key: &CacheKey) -> PathBuf {
        self.features().join(format!("{}-{}-{}", key.dataset_tag(), key.split, key.id()))
    }

    /// The CIFAR-10 URL: `$TLAB_CIFAR10_URL` when set, else the Toronto original.
    pub fn cifar10_url(&self) -> String {
        env_or(CIFAR10_URL_ENV, CIFAR10_URL)
    }

    /// The folder URL for torchvision weights, ending in `/`: `$TLAB_WEIGHTS_BASE_URL` or
    /// download.pytorch.org.
    pub fn weights_base_url(&self) -> String {
        let mut base = env_or(WEIGHTS_BASE_URL_ENV, DEFAULT_WEIGHTS_BASE_URL);
        if !base.ends_with('/') {
            base.push('/');
        }
        base
    }
}

/// Read at each call, so a mirror set after the cache was located still applies.
fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_drawn_tree() {
        let c = Cache::new("/c");
        assert_eq!(c.download("x.tgz"), Path::new("/c/downloads/x.tgz"));
        assert_eq!(c.cifar10_dir(), Path::new("/c/datasets/cifar-10-batches-bin"));
        let entry = WeightsEntry::find(crate::models::Arch::ResNet50, Default::default()).unwrap();
        assert_eq!(c.weights_file(entry), Path::new("/c/weights/resnet50-0676ba61.pth"));
        assert_eq!(Cache::locate(Some(Path::new("/x"))).root(), Path::new("/x"));
    }
}
