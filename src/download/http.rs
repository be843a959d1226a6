//! One HTTP attempt: a `Range` request from the bytes already in the `.part` file, the
//! server's answer checked (status, `Content-Range`, length), the body appended and hashed.
use super::digest::{Digests, Hashes, BUF_BYTES};
use crate::error::{Error, IoContext, Result};
use crate::events::{EventSink, RunEvent};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROGRESS_EVERY: Duration = Duration::from_millis(200);
const OFFLINE_ADVICE: &str = "the network may be unavailable (offline, firewall or proxy); \
    pass local files instead with --data PATH (CIFAR-10) or --weights PATH, \
    or set TLAB_CIFAR10_URL / TLAB_WEIGHTS_BASE_URL to a reachable mirror";

/// Why one attempt failed, and so what to do next.
pub(super) enum Failure {
    /// The connection dropped or timed out: try again from the bytes on disk.
    Retry(String),
    /// 416: the part on disk does not fit the file on the server (it changed).
    RangeNotSatisfiable,
    Fatal(Error),
}

/// One HTTP request: resumes from the bytes in `part`, appends the body, fsyncs.
pub(super) fn attempt(
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
        crate::interrupt::check(|| {
            let _ = pf.file.sync_all();
            format!(
                "the partial download {} ({} bytes) is kept; run the same command again to resume",
                pf.path.display(),
                pf.len
            )
        })
        .map_err(Failure::Fatal)?;
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

pub(super) fn download_error(url: &str, reason: impl Into<String>) -> Error {
    Error::Download { url: url.into(), reason: reason.into() }
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
        let want_md5 = self.hashes.wants_md5();
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
