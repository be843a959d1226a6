//! Files from the Hugging Face Hub: a repository's file at a pinned commit, SHA-256
//! checked, kept in the Hub's own cache ([`HubCache`]) so Python and we share downloads.
//!
//! Built on our [`Downloader`] rather than the `hf-hub` crate (0.5): it checks no SHA-256,
//! ignores `HF_HUB_OFFLINE`, `HF_HUB_CACHE` and `XDG_CACHE_HOME`, and brings ureq 3 beside
//! our ureq 2. Ours resumes, retries, locks and checks as every other download does.
mod known;
mod layout;

pub use known::*;
pub use layout::HubCache;

use crate::download::{Checksum, Downloader};
use crate::error::{Error, Result};
use crate::events::EventSink;
use crate::fsutil::FileLock;
use crate::settings::Settings;
use std::path::{Path, PathBuf};

/// https://huggingface.co, unless `HF_ENDPOINT` names a mirror.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// One file of a Hub repository at a pinned commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubFile {
    /// `ORG/NAME`, e.g. `facebook/dinov2-small`.
    pub repo: &'static str,
    /// The commit: 40 lower-case hex digits (a branch could move under a pinned hash).
    pub revision: &'static str,
    /// The path in the repository, e.g. `model.safetensors`.
    pub file: &'static str,
    /// The file's SHA-256 (for an LFS file, its blob name and the Hub's `X-Linked-Etag`);
    /// `None`: the Hub's `X-Linked-Etag` is trusted, and the download checked against it.
    pub sha256: Option<&'static str>,
    pub size_bytes: Option<u64>,
    /// The model card's license tag, e.g. `apache-2.0`.
    pub license: &'static str,
}

impl HubFile {
    /// `{endpoint}/{repo}/resolve/{revision}/{file}`: the Hub redirects it to its CDN.
    pub fn url(&self, endpoint: &str) -> String {
        format!("{}/{}/resolve/{}/{}", endpoint.trim_end_matches('/'), self.repo, self.revision, self.file)
    }

    /// "facebook/dinov2-small model.safetensors": how messages name it.
    pub fn label(&self) -> String {
        format!("{} {}", self.repo, self.file)
    }

    /// The line shown when the file is fetched: its license and where to read it.
    pub fn license_line(&self) -> String {
        format!("{}: license {}, {DEFAULT_ENDPOINT}/{}", self.label(), self.license, self.repo)
    }
}

/// The Hub to ask: `HF_ENDPOINT`, else huggingface.co.
pub fn endpoint(s: &Settings) -> String {
    s.hf_endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT).trim_end_matches('/').to_string()
}

/// The file's snapshot entry, when the Hub cache holds it (ours or Python's download).
pub fn cached(f: &HubFile, s: &Settings) -> Option<PathBuf> {
    let entry = HubCache::from_settings(s).ok()?.snapshot(f.repo, f.revision, f.file);
    entry.is_file().then_some(entry)
}

/// [`fetch_hub_file_with`] the settings of this process.
pub fn fetch_hub_file(f: &HubFile, dl: &Downloader, sink: &mut dyn EventSink) -> Result<PathBuf> {
    fetch_hub_file_with(f, crate::settings::current(), dl, sink)
}

/// The path of `f` in the Hub cache: the snapshot entry when present (no request), else
/// downloaded (unless offline) into `blobs/<sha256>` through `<sha256>.incomplete`, which
/// the next fetch resumes, then linked from `snapshots/<revision>/<file>`. A download
/// that fails its SHA-256 is removed: nothing half-written is left where readers look.
pub fn fetch_hub_file_with(f: &HubFile, s: &Settings, dl: &Downloader, sink: &mut dyn EventSink) -> Result<PathBuf> {
    check_pinned(f)?;
    let cache = HubCache::from_settings(s)?;
    let entry = cache.snapshot(f.repo, f.revision, f.file);
    if entry.exists() {
        verify_entry(f, &entry)?;
        sink.info(&format!("using {} (in the Hugging Face cache)", entry.display()));
        sink.info(&f.license_line());
        return Ok(entry);
    }
    if s.hf_hub_offline {
        return Err(offline_error(f, &entry));
    }
    let url = f.url(&endpoint(s));
    let sha256 = match f.sha256 {
        Some(sha) => sha.to_lowercase(),
        None => linked_sha256(f, &url, dl)?,
    };
    let lock = cache.lock(f.repo, &sha256);
    crate::fsutil::ensure_dir(lock.parent().expect("a lock has a folder"))?;
    let _lock = FileLock::wait(&lock, &format!("downloading {}", f.label()), sink)?;
    let blob = cache.blob(f.repo, &sha256);
    if !blob.exists() {
        crate::fsutil::ensure_dir(blob.parent().expect("a blob has a folder"))?;
        let part = cache.incomplete(f.repo, &sha256);
        dl.download_via(&url, &blob, &part, &Checksum::Sha256(sha256.clone()), sink)
            .map_err(|e| e.in_context(format!("fetching {} at {}", f.label(), f.revision)))?;
    }
    check_size(f, &blob)?;
    let entry = cache.link_snapshot(f.repo, f.revision, f.file, &sha256)?;
    sink.info(&f.license_line());
    Ok(entry)
}

fn check_pinned(f: &HubFile) -> Result<()> {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex(f.revision, 40) {
        return Err(Error::invalid(
            format!("revision of {}", f.label()),
            format!("`{}` is not a 40-hex commit; pin the commit, not a branch", f.revision),
        ));
    }
    match f.sha256 {
        Some(sha) if !hex(&sha.to_lowercase(), 64) => {
            Err(Error::invalid(format!("SHA-256 of {}", f.label()), format!("`{sha}` is not 64 hex digits")))
        }
        _ => Ok(()),
    }
}

/// A cached entry is checked by its blob's name (an LFS blob is named by its SHA-256) and
/// its size, not rehashed: every blob we write was hashed on arrival, and rehashing a
/// 1.2 GB file at each use costs seconds. A plain file (no symlink) is hashed.
fn verify_entry(f: &HubFile, entry: &Path) -> Result<()> {
    let advice = format!(
        "The Hugging Face cache holds another file for this revision: delete {} (and the blob it \
         links to) and fetch it again.",
        entry.display()
    );
    if let Some(sha) = f.sha256 {
        let actual = match HubCache::linked_blob_name(entry) {
            Some(name) => name,
            None => crate::download::sha256_file(entry)?,
        };
        if !actual.eq_ignore_ascii_case(sha) {
            return Err(Error::Checksum { path: entry.to_path_buf(), expected: sha.to_lowercase(), actual, advice });
        }
    }
    check_size(f, entry)
}

/// A truncated or other file has another size than the one published.
fn check_size(f: &HubFile, path: &Path) -> Result<()> {
    let Some(size) = f.size_bytes else { return Ok(()) };
    let len = std::fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?.len();
    if len == size {
        return Ok(());
    }
    Err(Error::Weights {
        path: path.to_path_buf(),
        reason: format!("{len} bytes, but {} at {} has {size}; delete it and fetch again", f.label(), f.revision),
    })
}

/// The SHA-256 the Hub sends for an LFS file: `X-Linked-Etag` on its redirect (`ETag`
/// when it answers directly), as huggingface_hub reads it.
fn linked_sha256(f: &HubFile, url: &str, dl: &Downloader) -> Result<String> {
    let headers = dl.head(url, &["x-linked-etag", "etag"])?;
    let etag = headers.into_iter().flatten().next().unwrap_or_default();
    // huggingface_hub's `_normalize_etag`: `W/"abc"` and `"abc"` are `abc`.
    let etag = etag.trim().trim_start_matches("W/").trim_matches('"').to_lowercase();
    if etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(etag)
    } else {
        Err(Error::Download {
            url: url.into(),
            reason: format!(
                "the Hub sent no SHA-256 for {} (ETag `{etag}`): not an LFS file? pin its sha256",
                f.label()
            ),
        })
    }
}

fn offline_error(f: &HubFile, entry: &Path) -> Error {
    Error::HubOffline {
        what: format!("{} at revision {}", f.label(), f.revision),
        path: entry.to_path_buf(),
        advice: format!(
            "fetch it once online (`tlab fetch weights` for its --arch), or with Python: \
             `hf download {} {} --revision {}`",
            f.repo, f.file, f.revision
        ),
    }
}
