//! The cache: everything fetched or computed once and reused by later runs. [`Cache`]
//! owns this tree down to its leaves; the names of the leaves belong to the code that
//! writes them, which passes them in.
//!
//! ```text
//! <root>/                     --cache-dir, $TLAB_CACHE_DIR or ~/.cache/transfer-lab
//! ├── downloads/<file>        raw downloads (`download`: `.part` files, digest records)
//! ├── datasets/<name>/        unpacked datasets (`data::cifar`: the tarball's folder, as is)
//! ├── weights/<file>          checkpoints under their published names (`models::weights`)
//! └── features/<leaf>/        one extraction each (`features::FeatureDir` draws its tree)
//! ```
use std::path::{Path, PathBuf};

/// The cache folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root`; nothing is created until something is written.
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The user's cache: `chosen` (`--cache-dir`, else `$TLAB_CACHE_DIR` as the caller
    /// read it), else the platform cache dir (`~/.cache/transfer-lab` on Linux).
    pub fn locate(chosen: Option<&Path>) -> Cache {
        match chosen {
            Some(p) => Cache::new(p),
            None => Cache::new(dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("transfer-lab")),
        }
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

    /// `<root>/downloads/<file>`
    pub fn download(&self, file: &str) -> PathBuf {
        self.downloads().join(file)
    }

    /// `<root>/datasets`
    pub fn datasets(&self) -> PathBuf {
        self.root.join("datasets")
    }

    /// `<root>/datasets/<name>`
    pub fn dataset_dir(&self, name: &str) -> PathBuf {
        self.datasets().join(name)
    }

    /// `<root>/weights`
    pub fn weights_dir(&self) -> PathBuf {
        self.root.join("weights")
    }

    /// `<root>/weights/<file>`
    pub fn weights_file(&self, file: &str) -> PathBuf {
        self.weights_dir().join(file)
    }

    /// `<root>/features`
    pub fn features(&self) -> PathBuf {
        self.root.join("features")
    }

    /// `<root>/features/<leaf>`: one extraction's folder.
    pub fn features_dir(&self, leaf: &str) -> PathBuf {
        self.features().join(leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_drawn_tree() {
        let c = Cache::new("/c");
        assert_eq!(c.download("x.tgz"), Path::new("/c/downloads/x.tgz"));
        assert_eq!(c.dataset_dir("cifar-10-batches-bin"), Path::new("/c/datasets/cifar-10-batches-bin"));
        assert_eq!(c.weights_file("resnet50-0676ba61.pth"), Path::new("/c/weights/resnet50-0676ba61.pth"));
        assert_eq!(c.features_dir("data-train-0123"), Path::new("/c/features/data-train-0123"));
        assert_eq!(Cache::locate(Some(Path::new("/x"))).root(), Path::new("/x"));
    }
}
