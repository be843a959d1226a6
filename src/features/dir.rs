//! One feature folder: an extraction's shards, the records its workers share, and its
//! manifest. [`FeatureDir`] owns this tree; no other module joins these names.
//!
//! ```text
//! <cache>/features/<tag>-<split>-<id>/   one extraction; <id> hashes its `CacheKey`
//! ├── manifest.json              written once every shard is done: the folder is complete
//! ├── shard-NNNNN.safetensors    rows [N * shard_size, (N + 1) * shard_size)
//! ├── shard-NNNNN.done.json      {key, rows, sha256}: the shard is whole (written after it)
//! ├── shard-NNNNN.claim          {host, pid, part}: a worker computes it; its mtime is the
//! │                              worker's heartbeat
//! ├── part-K-of-N.json           {key, shards, done}: what worker K of N was given
//! └── extraction.json            {key, split, images, shards, ...}: what the folder holds,
//!                                for watchers (`tlab dash FOLDER`) until the manifest is
//!                                written
//! ```
//!
//! In passing: a file being written is `<stem>.tmp<pid>.<ext>` beside it (see
//! `fsutil::temp_path`), and a stale claim being taken over is renamed to
//! `shard-NNNNN.claim.stale-<host>-<pid>`. Once the manifest is written, the part records
//! and `extraction.json` are removed; claims go when their shard is done.
use super::shards::Part;
use super::CacheKey;
use crate::cache::Cache;
use std::path::{Path, PathBuf};

/// `shard-NNNNN.safetensors`: shard `i`'s file, as the manifest lists it.
pub fn shard_file(i: usize) -> String {
    format!("{}.safetensors", shard_stem(i))
}

fn shard_stem(i: usize) -> String {
    format!("shard-{i:05}")
}

/// A feature folder and the path of every file in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureDir {
    root: PathBuf,
}

impl FeatureDir {
    /// The manifest: the list of shards, written last.
    pub const MANIFEST: &str = "manifest.json";
    /// What the folder's extraction is, for watchers.
    pub const EXTRACTION: &str = "extraction.json";

    /// The folder at `root`; nothing is created.
    pub fn new(root: impl Into<PathBuf>) -> FeatureDir {
        FeatureDir { root: root.into() }
    }

    /// `<cache>/features/<tag>-<split>-<id>`, the folder of `key`'s features: the tag (from
    /// the dataset name) and split make it recognisable; the key's hash makes it unique.
    pub fn of(cache: &Cache, key: &CacheKey) -> FeatureDir {
        FeatureDir::new(cache.features_dir(&format!("{}-{}-{}", key.dataset_tag(), key.split, key.id())))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn into_root(self) -> PathBuf {
        self.root
    }

    /// `manifest.json`
    pub fn manifest(&self) -> PathBuf {
        self.root.join(Self::MANIFEST)
    }

    /// `extraction.json`
    pub fn extraction(&self) -> PathBuf {
        self.root.join(Self::EXTRACTION)
    }

    /// `shard-NNNNN.safetensors`
    pub fn shard(&self, i: usize) -> PathBuf {
        self.root.join(shard_file(i))
    }

    /// A file the manifest lists by name (the loader checks that it is a plain name).
    pub fn listed(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    /// `shard-NNNNN.done.json`
    pub fn done(&self, i: usize) -> PathBuf {
        self.root.join(format!("{}.done.json", shard_stem(i)))
    }

    /// `shard-NNNNN.claim`
    pub fn claim(&self, i: usize) -> PathBuf {
        self.root.join(format!("{}.claim", shard_stem(i)))
    }

    /// `shard-NNNNN.claim.stale-<host>-<pid>`: where a stale claim goes to be removed.
    pub fn stale_claim(&self, i: usize, host: &str, pid: u32) -> PathBuf {
        self.root.join(format!("{}.claim.stale-{host}-{pid}", shard_stem(i)))
    }

    /// `part-K-of-N.json`
    pub fn part(&self, p: Part) -> PathBuf {
        self.root.join(format!("part-{}-of-{}.json", p.k, p.n))
    }

    /// Whether `name` is a part record (`part-K-of-N.json`).
    pub fn is_part_record(name: &str) -> bool {
        name.starts_with("part-") && name.ends_with(".json")
    }

    /// Whether `name` is a shard's data or its temp (`shard-NNNNN[.tmp<pid>].safetensors`).
    pub fn is_shard_data(name: &str) -> bool {
        name.starts_with("shard-") && name.ends_with(".safetensors")
    }

    /// Whether `name` is a temp of shard `i`'s data (`shard-NNNNN.tmp<pid>.safetensors`).
    pub fn is_shard_temp(name: &str, i: usize) -> bool {
        name.starts_with(&format!("{}.tmp", shard_stem(i)))
    }

    /// The files in the folder, by name.
    pub fn entries(&self) -> impl Iterator<Item = (String, PathBuf)> {
        std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().to_string(), e.path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_drawn_tree() {
        let d = FeatureDir::new("/f");
        assert_eq!(d.manifest(), Path::new("/f/manifest.json"));
        assert_eq!(d.extraction(), Path::new("/f/extraction.json"));
        assert_eq!(d.shard(7), Path::new("/f/shard-00007.safetensors"));
        assert_eq!(d.done(7), Path::new("/f/shard-00007.done.json"));
        assert_eq!(d.claim(7), Path::new("/f/shard-00007.claim"));
        assert_eq!(d.stale_claim(7, "h", 9), Path::new("/f/shard-00007.claim.stale-h-9"));
        assert_eq!(d.part(Part { k: 1, n: 4 }), Path::new("/f/part-1-of-4.json"));
        assert!(FeatureDir::is_part_record("part-1-of-4.json") && !FeatureDir::is_part_record(FeatureDir::EXTRACTION));
        let temp = crate::fsutil::temp_path(&d.shard(7));
        let temp = temp.file_name().unwrap().to_str().unwrap();
        assert!(FeatureDir::is_shard_temp(temp, 7) && !FeatureDir::is_shard_temp(temp, 8));
        assert!(FeatureDir::is_shard_data(temp) && FeatureDir::is_shard_data(&shard_file(7)));
    }
}
