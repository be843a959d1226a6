//! Checksums of files on disk, and the digest records that let a cached download be
//! checked against its full SHA-256 when only a prefix of it was ever published.
use crate::error::{Error, IoContext, Result};
use crate::fsutil::write_atomic;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub(super) const BUF_BYTES: usize = 1 << 20;

/// The expected digest of a download, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    Md5(String),
    Sha256(String),
    /// torchvision's convention: the 8 hex digits in a weights file name start its SHA-256.
    Sha256Prefix(String),
}

impl Checksum {
    pub(super) fn needs_md5(&self) -> bool {
        matches!(self, Checksum::Md5(_))
    }

    /// `Err((expected, actual))` when `d` does not match.
    pub(super) fn check(&self, d: &Digests) -> std::result::Result<(), (String, String)> {
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

pub(super) struct Digests {
    pub(super) sha256: String,
    pub(super) md5: Option<String>,
}

/// SHA-256 always (it names the file in events and records), MD5 when asked for.
pub(super) struct Hashes {
    sha256: Sha256,
    md5: Option<Md5>,
}

impl Hashes {
    pub(super) fn new(want_md5: bool) -> Self {
        Self { sha256: Sha256::new(), md5: want_md5.then(Md5::new) }
    }

    pub(super) fn wants_md5(&self) -> bool {
        self.md5.is_some()
    }

    pub(super) fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(m) = &mut self.md5 {
            m.update(bytes);
        }
    }

    /// Hashes everything `r` yields; returns the byte count.
    pub(super) fn absorb(&mut self, r: &mut impl Read) -> io::Result<u64> {
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

    pub(super) fn finish(self) -> Digests {
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

/// Checks a file already at its destination; returns its SHA-256.
pub(super) fn verify_existing(dest: &Path, checksum: &Checksum) -> Result<String> {
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
pub(super) fn write_record(path: &Path, sha256: &str) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    write_atomic(&record_path(path), format!("{sha256}  {name}\n").as_bytes())
}
