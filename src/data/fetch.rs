//! Downloads that survive flaky networks: resume with `Range`, retries, checksums, and a
//! `.part` file that only becomes the real file once its digest matches.
//! Also fetches and unpacks CIFAR-10 into the cache.
use crate::error::{Error, IoContext, Result};
use crate::events::{EventSink, RunEvent};
use crate::fsutil::{ensure_dir, write_atomic};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// The folder inside the CIFAR-10 tarball, kept as is under `<cache>/datasets/`.
pub const CIFAR10_DIR: &str = "cifar-10-batches-bin";
/// The files a complete CIFAR-10 folder holds.
pub const CIFAR10_FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];
pub const DEFAULT_WEIGHTS_BASE_URL: &str = "https://download.pytorch.org/models/";
/// Mirror overrides, for users behind proxies or without access to the origin.
pub const CIFAR10_URL_ENV: &str = "TLAB_CIFAR10_URL";
pub const WEIGHTS_BASE_URL_ENV: &str = "TLAB_WEIGHTS_BASE_URL";

const BUF_BYTES: usize = 1 << 20;
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
const OFFLINE_ADVICE: &str = "the network may be unavailable (offline, firewall or proxy); \
    pass local files instead with --data PATH (CIFAR-10) or --weights PATH, \
    or set TLAB_CIFAR10_URL / TLAB_WEIGHTS_BASE_URL to a reachable mirror";

/// The expected digest of a download, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    Md5(String),
    Sha256(String),
    /// torchvision's convention: the 8 hex digits in a weights file name start its SHA-256.
    Sha256Prefix(String),
}

impl Checksum {
    fn needs_md5(&self) -> bool {
        matches!(self, Checksum::Md5(_))
    }

    /// `Err((expected, actual))` when `d` does not match.
    fn check(&self, d: &Digests) -> std::result::Result<(), (String, String)> {
        let (expected, actual, ok) = match self {
            Checksum::Md5(e) => {
                let a = d.md5.clone().unwrap_or_default();
                (e, a.clone(), a.eq_ignore_ascii_case(e))
            }
            Checksum::Sha256(e) => (e, d.sha256.clone(), d.sha256.eq_ignore_ascii_case(e)),
            Checksum::Sha256Prefix(p) => (p, d.sha256.clone(), starts_with_hex(&d.sha256, p)),
        };
        if ok {
            Ok(())
        } else {
            Err((expected.to_lowercase(), actual))
        }
    }
}

fn starts_with_hex(full: &str, prefix: &str) -> bool {
    full.len() >= prefix.len() && full[..prefix.len()].eq_ignore_ascii_case(prefix)
}

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

/// Why one attempt failed, and so what to do next.
enum Failure {
    /// The connection dropped or timed out: try again from the bytes on disk.
    Retry(String),
    /// 416: the part on disk does not fit the file on the server (it changed).
    RangeNotSatisfiable,
    Fatal(Error),
}

impl Downloader {
    /// Downloads `url` to `dest` and returns its full SHA-256 (hex). An existing `dest` is
    /// verified instead of downloaded. A partial `<dest>.part` from an earlier run is resumed.
    pub fn download(&self, url: &str, dest: &Path, checksum: &Checksum, sink: &mut dyn EventSink) -> Result<String> {
        if dest.exists() {
            sink.info(&format!("using {} (already downloaded)", dest.display()));
            return verify_existing(dest, checksum);
        }
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            ensure_dir(dir)?;
        }
        let part = part_path(dest);
        let digests = self.fetch_part(url, &part, checksum.needs_md5(), sink).inspect_err(|_| {
            // An empty part (e.g. after a 404) only clutters the cache; a non-empty one resumes.
            if fs::metadata(&part).is_ok_and(|m| m.len() == 0) {
                let _ = fs::remove_file(&part);
            }
        })?;
        if let Err((expected, actual)) = checksum.check(&digests) {
            // A bad file is never used, and a resume must not build on it.
            let _ = fs::remove_file(&part);
            let advice = "The download was removed; run the fetch again, or pass a verified \
                local file with --data PATH / --weights PATH."
                .to_string();
            return Err(Error::Checksum { path: dest.to_path_buf(), expected, actual, advice });
        }
        fs::rename(&part, dest).ctx(|| format!("renaming {} into place", part.display()))?;
        sync_parent(dest);
        if matches!(checksum, Checksum::Sha256Prefix(_)) {
            write_record(dest, &digests.sha256)?;
        }
        let path = dest.display().to_string();
        let sha256 = digests.sha256;
        sink.emit(&RunEvent::DownloadFinished { url: url.into(), path, sha256: sha256.clone() });
        Ok(sha256)
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
                }
                Err(Failure::Retry(reason)) => return Err(gave_up(url, part, &reason, failures + 1)),
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
    }
}

/// One HTTP request: resumes from the bytes in `part`, appends the body, fsyncs.
fn attempt(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    want_md5: bool,
    sink: &mut dyn EventSink,
) -> std::result::Result<Digests, Failure> {
    let mut pf = PartFile::open(part, want_md5).map_err(Failure::Fatal)?;
    let resp = request(agent, url, pf.len)?;
    if resp.status() == 206 {
        check_content_range(&resp, pf.len, url)?;
    } else if pf.len > 0 {
        // The server ignored Range and sends the whole file.
        pf.restart().map_err(Failure::Fatal)?;
    }
    let start = pf.len;
    let total = expected_total(&resp, start);
    sink.emit(&RunEvent::DownloadStarted { url: url.into(), total_bytes: total, resumed_from_bytes: start });
    stream_body(resp.into_reader(), &mut pf, url, total, sink)?;
    check_total(pf.len, total, url)?;
    pf.file.sync_all().ctx(|| format!("syncing {}", part.display())).map_err(Failure::Fatal)?;
    Ok(pf.hashes.finish())
}

fn request(agent: &ureq::Agent, url: &str, offset: u64) -> std::result::Result<ureq::Response, Failure> {
    // identity: a transparently decompressed body would break byte offsets.
    let mut req = agent.get(url).set("Accept-Encoding", "identity");
    if offset > 0 {
        req = req.set("Range", &format!("bytes={offset}-"));
    }
    match req.call() {
        Ok(resp) => Ok(resp),
        Err(ureq::Error::Status(416, _)) => Err(Failure::RangeNotSatisfiable),
        Err(ureq::Error::Status(code, resp)) => {
            let reason = format!("server answered HTTP {code} {}", resp.status_text());
            if code >= 500 {
                Err(Failure::Retry(reason))
            } else {
                Err(Failure::Fatal(download_error(url, format!("{reason}; check the URL or mirror"))))
            }
        }
        Err(ureq::Error::Transport(t)) => Err(transport_failure(url, &t)),
    }
}

fn transport_failure(url: &str, t: &ureq::Transport) -> Failure {
    // ureq's message already says what the kind would (e.g. "Connect error").
    let mut reason = t.message().map_or_else(|| t.kind().to_string(), str::to_string);
    if let Some(src) = std::error::Error::source(t) {
        reason = format!("{reason}: {src}");
    }
    match t.kind() {
        ureq::ErrorKind::Io => Failure::Retry(reason),
        ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::ProxyConnect => {
            Failure::Fatal(download_error(url, format!("{reason}; {OFFLINE_ADVICE}")))
        }
        _ => Failure::Fatal(download_error(url, reason)),
    }
}

/// A 206 must start where our part ends, or appending would corrupt the file.
fn check_content_range(resp: &ureq::Response, offset: u64, url: &str) -> std::result::Result<(), Failure> {
    match resp.header("content-range").and_then(parse_content_range) {
        Some((start, _)) if start != offset => Err(Failure::Fatal(download_error(
            url,
            format!("asked to resume at byte {offset} but the server sent from byte {start}"),
        ))),
        _ => Ok(()),
    }
}

/// `bytes START-END/TOTAL` -> (START, Some(TOTAL)); TOTAL may be `*`.
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

/// The full file's size, when the response tells it.
fn expected_total(resp: &ureq::Response, start: u64) -> Option<u64> {
    let from_range = resp.header("content-range").and_then(parse_content_range).and_then(|r| r.1);
    let length = resp.header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    from_range.or(length.map(|l| l + start))
}

fn stream_body(
    mut body: impl Read,
    pf: &mut PartFile,
    url: &str,
    total: Option<u64>,
    sink: &mut dyn EventSink,
) -> std::result::Result<(), Failure> {
    let mut buf = vec![0u8; BUF_BYTES];
    let mut last = Instant::now();
    let progress = |done| RunEvent::DownloadProgressed { url: url.into(), done_bytes: done, total_bytes: total };
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Retry(format!("transfer broke off at byte {}: {e}", pf.len))),
        };
        pf.append(&buf[..n]).map_err(Failure::Fatal)?;
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            sink.emit(&progress(pf.len));
        }
    }
    sink.emit(&progress(pf.len));
    Ok(())
}

fn check_total(done: u64, total: Option<u64>, url: &str) -> std::result::Result<(), Failure> {
    match total {
        Some(t) if done < t => {
            Err(Failure::Retry(format!("truncated transfer: connection closed after {done} of {t} bytes")))
        }
        Some(t) if done > t => {
            Err(Failure::Fatal(download_error(url, format!("server sent {done} bytes but announced {t}"))))
        }
        _ => Ok(()),
    }
}

fn download_error(url: &str, reason: impl Into<String>) -> Error {
    Error::Download { url: url.into(), reason: reason.into() }
}

fn gave_up(url: &str, part: &Path, reason: &str, attempts: u32) -> Error {
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
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// The partial download on disk, with the running digests of its bytes.
struct PartFile {
    path: PathBuf,
    file: File,
    hashes: Hashes,
    len: u64,
}

impl PartFile {
    /// Opens or creates `path`; existing bytes are hashed so the digest covers the whole file.
    fn open(path: &Path, want_md5: bool) -> Result<Self> {
        let ctx = || format!("opening {}", path.display());
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).ctx(ctx)?;
        let mut hashes = Hashes::new(want_md5);
        let len = hashes.absorb(&mut file).ctx(ctx)?;
        Ok(Self { path: path.to_path_buf(), file, hashes, len })
    }

    fn restart(&mut self) -> Result<()> {
        let want_md5 = self.hashes.md5.is_some();
        (self.file.set_len(0).and_then(|_| self.file.seek(SeekFrom::Start(0))))
            .ctx(|| format!("truncating {}", self.path.display()))?;
        self.hashes = Hashes::new(want_md5);
        self.len = 0;
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).ctx(|| format!("writing {}", self.path.display()))?;
        self.hashes.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }
}

struct Digests {
    sha256: String,
    md5: Option<String>,
}

/// SHA-256 always (it names the file in events and records), MD5 when asked for.
struct Hashes {
    sha256: Sha256,
    md5: Option<Md5>,
}

impl Hashes {
    fn new(want_md5: bool) -> Self {
        Self { sha256: Sha256::new(), md5: want_md5.then(Md5::new) }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(m) = &mut self.md5 {
            m.update(bytes);
        }
    }

    /// Hashes everything `r` yields; returns the byte count.
    fn absorb(&mut self, r: &mut impl Read) -> io::Result<u64> {
        let mut buf = vec![0u8; BUF_BYTES];
        let mut n_total = 0;
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(n_total),
                Ok(n) => {
                    self.update(&buf[..n]);
                    n_total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn finish(self) -> Digests {
        Digests { sha256: hex::encode(self.sha256.finalize()), md5: self.md5.map(|m| hex::encode(m.finalize())) }
    }
}

fn hash_file(path: &Path, want_md5: bool) -> Result<Digests> {
    let mut file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut hashes = Hashes::new(want_md5);
    hashes.absorb(&mut file).ctx(|| format!("reading {}", path.display()))?;
    Ok(hashes.finish())
}

/// SHA-256 of a file, lower-case hex, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    Ok(hash_file(path, false)?.sha256)
}

/// MD5 of a file, lower-case hex, streamed.
pub fn md5_file(path: &Path) -> Result<String> {
    Ok(hash_file(path, true)?.md5.unwrap_or_default())
}

fn verify_existing(dest: &Path, checksum: &Checksum) -> Result<String> {
    if let Checksum::Sha256Prefix(prefix) = checksum {
        return verify_recorded(dest, prefix);
    }
    let digests = hash_file(dest, checksum.needs_md5())?;
    checksum.check(&digests).map_err(|(expected, actual)| corrupt(dest, expected, actual))?;
    Ok(digests.sha256)
}

/// Where the full SHA-256 of a downloaded weights file is recorded: `<file>.sha256`.
pub fn record_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

/// Checks `path` against its recorded full SHA-256 (or, with no record yet, against the
/// torchvision `prefix`, then records it). Returns the SHA-256.
pub fn verify_recorded(path: &Path, prefix: &str) -> Result<String> {
    let actual = sha256_file(path)?;
    if !starts_with_hex(&actual, prefix) {
        return Err(corrupt(path, prefix.to_lowercase(), actual));
    }
    match read_record(path)? {
        Some(expected) if !expected.eq_ignore_ascii_case(&actual) => Err(corrupt(path, expected, actual)),
        Some(_) => Ok(actual),
        None => {
            write_record(path, &actual)?;
            Ok(actual)
        }
    }
}

fn corrupt(path: &Path, expected: String, actual: String) -> Error {
    let advice = format!(
        "The cached file is corrupt or was changed: delete {} (and {}) and fetch it again, \
         or pass a verified local file with --data PATH / --weights PATH.",
        path.display(),
        record_path(path).display()
    );
    Error::Checksum { path: path.to_path_buf(), expected, actual, advice }
}

fn read_record(path: &Path) -> Result<Option<String>> {
    let record = record_path(path);
    match fs::read_to_string(&record) {
        Ok(text) => Ok(Some(text.split_whitespace().next().unwrap_or_default().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", record.display()), e)),
    }
}

/// `sha256sum` format, so `sha256sum -c <file>.sha256` works in that folder.
fn write_record(path: &Path, sha256: &str) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    write_atomic(&record_path(path), format!("{sha256}  {name}\n").as_bytes())
}

/// Makes a rename durable; best effort, since not every filesystem allows it.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

/// The CIFAR-10 URL: `$TLAB_CIFAR10_URL` when set, else the Toronto original.
pub fn cifar10_url() -> String {
    env_or(CIFAR10_URL_ENV, CIFAR10_URL)
}

/// The folder URL for torchvision weights, ending in `/`: `$TLAB_WEIGHTS_BASE_URL` or
/// download.pytorch.org.
pub fn weights_base_url() -> String {
    let mut base = env_or(WEIGHTS_BASE_URL_ENV, DEFAULT_WEIGHTS_BASE_URL);
    if !base.ends_with('/') {
        base.push('/');
    }
    base
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_string())
}

/// Returns `<cache_root>/datasets/cifar-10-batches-bin`, downloading (MD5-checked) and
/// unpacking the tarball first unless the folder is already complete.
pub fn fetch_cifar10(
    cache_root: &Path,
    url: &str,
    md5: &str,
    downloader: &Downloader,
    sink: &mut dyn EventSink,
) -> Result<PathBuf> {
    let datasets = cache_root.join("datasets");
    let target = datasets.join(CIFAR10_DIR);
    if missing_cifar10_file(&target).is_none() {
        return Ok(target);
    }
    let tarball = cache_root.join("downloads").join("cifar-10-binary.tar.gz");
    downloader.download(url, &tarball, &Checksum::Md5(md5.to_string()), sink)?;
    sink.info(&format!("unpacking {} into {}", tarball.display(), target.display()));
    extract_cifar10(&tarball, &datasets)?;
    Ok(target)
}

fn missing_cifar10_file(dir: &Path) -> Option<&'static str> {
    CIFAR10_FILES.into_iter().find(|f| !dir.join(f).is_file())
}

/// Unpacks into a temp folder beside the target, then renames: a crash never leaves a
/// half-extracted dataset where readers look.
fn extract_cifar10(tarball: &Path, datasets: &Path) -> Result<()> {
    ensure_dir(datasets)?;
    let tmp = datasets.join(format!(".extract-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = unpack_and_move(tarball, &tmp, &datasets.join(CIFAR10_DIR));
    let _ = fs::remove_dir_all(&tmp);
    result
}

fn unpack_and_move(tarball: &Path, tmp: &Path, target: &Path) -> Result<()> {
    let file = File::open(tarball).ctx(|| format!("opening {}", tarball.display()))?;
    // `unpack` refuses entries that would land outside `tmp`.
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(tmp)
        .map_err(|e| Error::data(tarball, format!("cannot unpack: {e}")))?;
    let unpacked = tmp.join(CIFAR10_DIR);
    if let Some(f) = missing_cifar10_file(&unpacked) {
        return Err(Error::data(tarball, format!("archive lacks {CIFAR10_DIR}/{f}")));
    }
    if target.exists() {
        // An incomplete earlier copy (we only get here when a file is missing).
        fs::remove_dir_all(target).ctx(|| format!("removing incomplete {}", target.display()))?;
    }
    fs::rename(&unpacked, target).ctx(|| format!("moving {} into place", target.display()))?;
    sync_parent(target);
    Ok(())
}
