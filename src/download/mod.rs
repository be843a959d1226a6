//! Downloads that survive flaky networks: resume with `Range`, retries, checksums, and a
//! `.part` file that only becomes the real file once its digest matches.
//!
//! Knows nothing of what it fetches: CIFAR-10 (`data::cifar::fetch`) and the weights
//! (`models::weights`) name their URLs and checksums, and [`crate::cache::Cache`] where
//! the files go.
mod digest;
mod http;

pub use digest::{md5_file, record_path, sha256_file, verify_recorded, Checksum};

use crate::error::{IoContext, Result};
use crate::events::{EventSink, RunEvent};
use crate::fsutil::{ensure_dir, sync_parent, FileLock};
use digest::{verify_existing, write_record, Digests};
use http::{attempt, download_error, Failure};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// HTTP downloader with resume and retries.
#[derive(Debug, Clone)]
pub struct Downloader {
    pub connect_timeout: Duration,
    /// Longest wait for any single read; a stalled server fails after this.
    pub read_timeout: Duration,
    /// Extra attempts after a dropped or timed-out transfer; each resumes where it stopped.
    pub retries: u32,
}

impl Default for Downloader {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(15), read_timeout: Duration::from_secs(30), retries: 3 }
    }
}

impl Downloader {
    /// Downloads `url` to `dest` and returns its full SHA-256 (hex). An existing `dest` is
    /// verified instead of downloaded. A partial `<dest>.part` from an earlier run is resumed.
    ///
    /// Two processes fetching the same file (two notebooks, two terminals) take turns: the
    /// second waits for the first, then verifies the file it left.
    pub fn download(&self, url: &str, dest: &Path, checksum: &Checksum, sink: &mut dyn EventSink) -> Result<String> {
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            ensure_dir(dir)?;
        }
        let _lock = FileLock::wait(&with_suffix(dest, ".lock"), &format!("downloading {}", dest.display()), sink)?;
        if dest.exists() {
            sink.info(&format!("using {} (already downloaded)", dest.display()));
            return verify_existing(dest, checksum);
        }
        self.download_via(url, dest, &part_path(dest), checksum, sink)
    }

    /// [`download`](Self::download)'s transfer without its lock or its check for `dest`:
    /// for a caller that owns a layout of its own (the Hugging Face cache names its partial
    /// file `<blob>.incomplete` and its lock under `.locks/`) and holds its lock. `part`
    /// must be in `dest`'s folder, so the final rename is atomic.
    pub fn download_via(
        &self,
        url: &str,
        dest: &Path,
        part: &Path,
        checksum: &Checksum,
        sink: &mut dyn EventSink,
    ) -> Result<String> {
        let digests = self.fetch_part(url, part, checksum.needs_md5(), sink).inspect_err(|_| {
            // An empty part (e.g. after a 404) only clutters the cache; a non-empty one resumes.
            if fs::metadata(part).is_ok_and(|m| m.len() == 0) {
                let _ = fs::remove_file(part);
            }
        })?;
        if let Err((expected, actual)) = checksum.check(&digests) {
            // A bad file is never used, and a resume must not build on it.
            let _ = fs::remove_file(part);
            let advice = "The download was removed; run the fetch again, or pass a verified \
                local file with --data PATH / --weights PATH."
                .to_string();
            return Err(crate::Error::Checksum { path: dest.to_path_buf(), expected, actual, advice });
        }
        fs::rename(part, dest).ctx(|| format!("renaming {} into place", part.display()))?;
        sync_parent(dest);
        if matches!(checksum, Checksum::Sha256Prefix(_)) {
            write_record(dest, &digests.sha256)?;
        }
        let path = dest.display().to_string();
        let sha256 = digests.sha256;
        sink.emit(&RunEvent::DownloadFinished { url: url.into(), path, sha256: sha256.clone() });
        Ok(sha256)
    }

    /// HEAD `url` without following redirects; returns the values of the headers `names`.
    /// (The Hub answers a file's URL with a redirect that carries the file's SHA-256.)
    pub fn head(&self, url: &str, names: &[&str]) -> Result<Vec<Option<String>>> {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(self.connect_timeout)
            .timeout_read(self.read_timeout)
            .redirects(0)
            .build();
        match agent.head(url).set("Accept-Encoding", "identity").call() {
            Ok(resp) => Ok(names.iter().map(|n| resp.header(n).map(str::to_string)).collect()),
            Err(ureq::Error::Status(code, resp)) => {
                Err(download_error(url, format!("server answered HTTP {code} {}", resp.status_text())))
            }
            Err(ureq::Error::Transport(t)) => Err(download_error(url, t.to_string())),
        }
    }

    fn agent(&self) -> ureq::Agent {
        ureq::AgentBuilder::new().timeout_connect(self.connect_timeout).timeout_read(self.read_timeout).build()
    }

    /// Fills `part` completely, retrying dropped transfers; returns its digests.
    fn fetch_part(&self, url: &str, part: &Path, want_md5: bool, sink: &mut dyn EventSink) -> Result<Digests> {
        let agent = self.agent();
        let (mut failures, mut restarted) = (0, false);
        loop {
            match attempt(&agent, url, part, want_md5, sink) {
                Ok(d) => return Ok(d),
                Err(Failure::RangeNotSatisfiable) if !restarted => {
                    restarted = true;
                    sink.warn(&format!("{url}: server refused to resume; starting over"));
                    fs::remove_file(part).ctx(|| format!("removing {}", part.display()))?;
                }
                Err(Failure::RangeNotSatisfiable) => {
                    return Err(download_error(url, "server refused the byte range (HTTP 416)"));
                }
                Err(Failure::Retry(reason)) if failures < self.retries => {
                    failures += 1;
                    sink.warn(&format!("{url}: {reason}; retry {failures}/{}", self.retries));
                    std::thread::sleep(Duration::from_millis(250 * u64::from(failures.min(8))));
                    crate::interrupt::check(|| format!("{} is kept for the next run to resume", part.display()))?;
                }
                Err(Failure::Retry(reason)) => return Err(gave_up(url, part, &reason, failures + 1)),
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
    }
}

fn gave_up(url: &str, part: &Path, reason: &str, attempts: u32) -> crate::Error {
    let kept = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let resume = if kept > 0 {
        format!("; {kept} bytes kept in {} for the next run to resume", part.display())
    } else {
        String::new()
    };
    download_error(url, format!("{reason} (gave up after {attempts} attempts{resume})"))
}

/// `<dest>.part`, in the same folder so the final rename is atomic.
pub fn part_path(dest: &Path) -> PathBuf {
    with_suffix(dest, ".part")
}

fn with_suffix(dest: &Path, suffix: &str) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dest.with_file_name(name)
}
