//! The Hugging Face Hub cache, as huggingface_hub lays it out (`file_download.py`), so a
//! file either tool downloaded is the other's too:
//!
//! ```text
//! $HF_HUB_CACHE/                      (else $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub,
//! │                                    ~/.cache/huggingface/hub)
//! ├── .locks/models--ORG--NAME/<sha256>.lock
//! └── models--ORG--NAME/
//!     ├── blobs/<sha256>              the file (an LFS file's blob is named by its SHA-256)
//!     ├── blobs/<sha256>.incomplete   our partial download, resumed by the next fetch
//!     ├── refs/<branch>               only for branch or tag revisions: ours are commits
//!     └── snapshots/<commit>/<file> -> ../../blobs/<sha256>   (relative symlink)
//! ```
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{ensure_dir, sync_parent};
use crate::settings::Settings;
use std::path::{Path, PathBuf};

/// One Hub cache folder; every path in it is a method.
#[derive(Debug, Clone, PartialEq)]
pub struct HubCache {
    root: PathBuf,
}

impl HubCache {
    pub fn new(root: impl Into<PathBuf>) -> HubCache {
        HubCache { root: root.into() }
    }

    /// huggingface_hub's rules (`constants.py`): `HF_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`; a leading `~`
    /// is the home folder (as Python's `expanduser`; `$VAR`s inside are not expanded).
    pub fn from_settings(s: &Settings) -> Result<HubCache> {
        let home = || {
            s.home.clone().ok_or_else(|| {
                Error::invalid("Hugging Face cache", "HOME is not set; set HF_HOME or HF_HUB_CACHE instead")
            })
        };
        let expand = |p: &PathBuf| -> Result<PathBuf> {
            match p.strip_prefix("~") {
                Ok(rest) => Ok(home()?.join(rest)),
                Err(_) => Ok(p.clone()),
            }
        };
        let root = match (&s.hf_hub_cache, &s.hf_home, &s.xdg_cache_home) {
            (Some(cache), _, _) => expand(cache)?,
            (None, Some(hf_home), _) => expand(hf_home)?.join("hub"),
            (None, None, Some(xdg)) => expand(xdg)?.join("huggingface/hub"),
            (None, None, None) => home()?.join(".cache/huggingface/hub"),
        };
        Ok(HubCache::new(root))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models--ORG--NAME` for the repository `ORG/NAME`.
    pub fn repo_folder_name(repo: &str) -> String {
        format!("models--{}", repo.replace('/', "--"))
    }

    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join(Self::repo_folder_name(repo))
    }

    pub fn blob(&self, repo: &str, sha256: &str) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(sha256)
    }

    /// The partial download of a blob (huggingface_hub's name; ours is resumed, its own
    /// downloads use a process-unique name beside it).
    pub fn incomplete(&self, repo: &str, sha256: &str) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(format!("{sha256}.incomplete"))
    }

    /// Where `file` of `revision` is found: the path readers (Python's too) open.
    pub fn snapshot(&self, repo: &str, revision: &str, file: &str) -> PathBuf {
        self.repo_dir(repo).join("snapshots").join(revision).join(file)
    }

    /// The lock two processes (huggingface_hub's as well) fetching one blob take in turn.
    pub fn lock(&self, repo: &str, sha256: &str) -> PathBuf {
        self.root.join(".locks").join(Self::repo_folder_name(repo)).join(format!("{sha256}.lock"))
    }

    /// Points the snapshot entry of `file` at its blob with a relative symlink, atomically:
    /// a reader sees no entry or the whole one (a symlink under a temporary name, renamed).
    pub fn link_snapshot(&self, repo: &str, revision: &str, file: &str, sha256: &str) -> Result<PathBuf> {
        let entry = self.snapshot(repo, revision, file);
        let dir = entry.parent().expect("a snapshot entry has a folder");
        ensure_dir(dir)?;
        // snapshots/REV/a/b.bin -> ../../../blobs/SHA: one `..` per folder below the repo.
        let depth = 2 + file.matches('/').count();
        let target = PathBuf::from("../".repeat(depth)).join("blobs").join(sha256);
        let name = entry.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).ctx(|| format!("linking {} to its blob", tmp.display()))?;
        std::fs::rename(&tmp, &entry).ctx(|| format!("renaming {} into place", tmp.display()))?;
        sync_parent(&entry);
        Ok(entry)
    }

    /// The blob a snapshot entry links to, by name; `None` when the entry is a plain file
    /// (a cache written where symlinks are not supported).
    pub fn linked_blob_name(entry: &Path) -> Option<String> {
        let target = std::fs::read_link(entry).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        Settings::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn the_cache_root_follows_huggingface_hubs_order() {
        let root = |vars: &[(&str, &str)]| HubCache::from_settings(&settings(vars)).unwrap().root;
        let all = [("HF_HUB_CACHE", "/c"), ("HF_HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/u")];
        assert_eq!(root(&all), PathBuf::from("/c"));
        assert_eq!(root(&all[1..]), PathBuf::from("/h/hub"));
        assert_eq!(root(&all[2..]), PathBuf::from("/x/huggingface/hub"));
        assert_eq!(root(&all[3..]), PathBuf::from("/u/.cache/huggingface/hub"));
        assert_eq!(root(&[("HF_HOME", "~/hf"), ("HOME", "/u")]), PathBuf::from("/u/hf/hub"));
        assert_eq!(root(&[("HUGGINGFACE_HUB_CACHE", "/legacy"), ("HF_HOME", "/h")]), PathBuf::from("/legacy"));
        assert!(HubCache::from_settings(&settings(&[])).unwrap_err().to_string().contains("HF_HOME"));
    }

    #[test]
    fn paths_and_the_relative_link() {
        let dir = tempfile::tempdir().unwrap();
        let c = HubCache::new(dir.path());
        let (repo, rev, sha) = ("org/name", "a".repeat(40), "b".repeat(64));
        assert_eq!(c.blob(repo, &sha), dir.path().join(format!("models--org--name/blobs/{sha}")));
        assert_eq!(c.lock(repo, &sha), dir.path().join(format!(".locks/models--org--name/{sha}.lock")));
        std::fs::create_dir_all(c.blob(repo, &sha).parent().unwrap()).unwrap();
        std::fs::write(c.blob(repo, &sha), b"x").unwrap();
        for file in ["model.safetensors", "onnx/model.onnx"] {
            let entry = c.link_snapshot(repo, &rev, file, &sha).unwrap();
            assert_eq!(entry, c.snapshot(repo, &rev, file));
            assert_eq!(std::fs::read(&entry).unwrap(), b"x", "{file}");
            assert_eq!(HubCache::linked_blob_name(&entry), Some(sha.clone()));
        }
        let link = std::fs::read_link(c.snapshot(repo, &rev, "model.safetensors")).unwrap();
        assert_eq!(link, PathBuf::from(format!("../../blobs/{sha}")));
        let names: Vec<_> = std::fs::read_dir(c.snapshot(repo, &rev, "x").parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    }
}
