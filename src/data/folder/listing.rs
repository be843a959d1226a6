//! The one listing of the files under a folder, shared by training, evaluation and
//! `predict`: recursive (every file under a class folder, at any depth, as torchvision's
//! `ImageFolder` lists them), symbolic links followed, each real folder walked once (so a
//! link loop ends) and each real file listed once, hidden entries (`.DS_Store`,
//! `.ipynb_checkpoints`, `._*`) ignored, and the order the byte order of the paths
//! relative to the folder walked, the same on every machine.
use super::Skipped;
use crate::error::{IoContext, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What identifies a real file or folder whatever path reaches it.
#[cfg(unix)]
type Id = (u64, u64);
#[cfg(not(unix))]
type Id = PathBuf;

#[cfg(unix)]
fn id(_path: &Path, meta: &std::fs::Metadata) -> Option<Id> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn id(path: &Path, _meta: &std::fs::Metadata) -> Option<Id> {
    std::fs::canonicalize(path).ok()
}

/// Walks folders, remembering every real folder and file it has met: a folder or file
/// reached a second time (a loop, or a second link to it) is passed over.
#[derive(Default)]
pub struct Walker {
    dirs: HashSet<Id>,
    files: HashSet<Id>,
    /// Files passed over because another path already listed them.
    pub duplicates: usize,
    /// Entries that are not usable files: broken links, unreadable entries, sockets.
    pub skipped: Vec<Skipped>,
}

impl Walker {
    pub fn new() -> Walker {
        Walker::default()
    }

    /// Marks `dir` as walked without walking it: a link into it from elsewhere is passed
    /// over (a class folder linked from another class, the root linked from below).
    pub fn claim(&mut self, dir: &Path) {
        if let Some(i) = std::fs::metadata(dir).ok().and_then(|m| id(dir, &m)) {
            self.dirs.insert(i);
        }
    }

    /// The files under `dir` (which may already be claimed), sorted by their path
    /// relative to `dir`, byte-wise.
    pub fn files(&mut self, dir: &Path) -> Result<Vec<PathBuf>> {
        self.claim(dir);
        let mut out = Vec::new();
        self.walk(dir, &mut out)?;
        out.sort_by_key(|p| rel_bytes(dir, p));
        Ok(out)
    }

    fn walk(&mut self, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            if !entry.file_name().to_string_lossy().starts_with('.') {
                entries.push(entry.path());
            }
        }
        // Sorted, so which of two links to one file is listed does not depend on the
        // file system's order.
        entries.sort_by_key(|p| rel_bytes(dir, p));
        for path in entries {
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
                    let reason = if link { format!("broken link: {e}") } else { format!("unreadable: {e}") };
                    self.skipped.push(Skipped { path, reason });
                    continue;
                }
            };
            let Some(key) = id(&path, &meta) else {
                self.skipped.push(Skipped { path, reason: "unreadable: no real path".into() });
                continue;
            };
            if meta.is_dir() {
                if self.dirs.insert(key) {
                    if let Err(e) = self.walk(&path, out) {
                        self.skipped.push(Skipped { path, reason: format!("unreadable folder: {e}") });
                    }
                }
            } else if !meta.is_file() {
                self.skipped.push(Skipped { path, reason: "not a regular file".into() });
            } else if self.files.insert(key) {
                out.push(path);
            } else {
                self.duplicates += 1;
            }
        }
        Ok(())
    }
}

/// `path` relative to `root`, as bytes: the sort key.
fn rel_bytes(root: &Path, path: &Path) -> Vec<u8> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.as_os_str().as_encoded_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, p.to_string_lossy().as_bytes()).unwrap();
    }

    fn names(root: &Path, files: &[PathBuf]) -> Vec<String> {
        files.iter().map(|f| f.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/")).collect()
    }

    #[test]
    fn nested_files_sorted_byte_wise_hidden_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in ["b.jpg", "a/z.jpg", "a/sub/deep.jpg", "B.jpg", ".DS_Store", ".hidden/x.jpg", "a/._x.jpg"] {
            touch(&r.join(f));
        }
        let files = Walker::new().files(r).unwrap();
        assert_eq!(names(r, &files), ["B.jpg", "a/sub/deep.jpg", "a/z.jpg", "b.jpg"]);
    }

    #[cfg(unix)]
    #[test]
    fn loops_end_links_count_once_broken_links_are_named() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        touch(&r.join("bees/one.jpg"));
        touch(&r.join("ants/two.jpg"));
        symlink("..", r.join("bees/loop")).unwrap();
        std::fs::create_dir(r.join("ants/deep")).unwrap();
        symlink("../..", r.join("ants/deep/up")).unwrap();
        symlink("one.jpg", r.join("bees/again.jpg")).unwrap();
        symlink("gone.jpg", r.join("bees/broken.jpg")).unwrap();
        let mut w = Walker::new();
        let files = w.files(r).unwrap();
        assert_eq!(names(r, &files), ["ants/two.jpg", "bees/again.jpg"]);
        assert_eq!(w.duplicates, 1);
        assert_eq!(w.skipped.len(), 1);
        assert!(w.skipped[0].reason.starts_with("broken link"), "{:?}", w.skipped);
        // A claimed folder is not entered through a link from another one.
        let mut w = Walker::new();
        w.claim(&r.join("ants"));
        let bees = w.files(&r.join("bees")).unwrap();
        assert_eq!(names(r, &bees), ["bees/again.jpg"]);
    }
}
