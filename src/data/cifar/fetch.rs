//! CIFAR-10 into the cache: the official tarball, MD5-checked, unpacked so that a crash
//! never leaves a half dataset where readers look.
use super::{batch_files, cache_dir, TARBALL_DIR};
use crate::cache::Cache;
use crate::download::{Checksum, Downloader};
use crate::error::{Error, IoContext, Result};
use crate::events::EventSink;
use crate::fsutil::{ensure_dir, sync_parent, FileLock};
use crate::settings::Settings;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// The original, at the University of Toronto; `$TLAB_CIFAR10_URL` overrides it
/// ([`cifar10_url`]).
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// The tarball's name under the cache's `downloads/`.
pub const TARBALL: &str = "cifar-10-binary.tar.gz";
/// The CIFAR-10 URL: the mirror the settings name (`$TLAB_CIFAR10_URL`), else the
/// Toronto original.
pub fn cifar10_url(settings: &Settings) -> String {
    settings.cifar10_url.clone().unwrap_or_else(|| CIFAR10_URL.to_string())
}

/// Returns [`cache_dir`], downloading `url` (checked against `md5`) and unpacking
/// it first unless the folder is already complete.
pub fn fetch_cifar10(
    cache: &Cache,
    url: &str,
    md5: &str,
    downloader: &Downloader,
    sink: &mut dyn EventSink,
) -> Result<PathBuf> {
    let target = cache_dir(cache);
    if missing_batch_file(&target).is_none() {
        return Ok(target);
    }
    let tarball = cache.download(TARBALL);
    downloader.download(url, &tarball, &Checksum::Md5(md5.to_string()), sink)?;
    // Another fetch may be unpacking the same tarball: one at a time, and the second
    // finds the dataset complete.
    ensure_dir(&cache.datasets())?;
    let lock = cache.datasets().join(".cifar-10-unpack.lock");
    let _lock = FileLock::wait(&lock, &format!("unpacking {}", tarball.display()), sink)?;
    if missing_batch_file(&target).is_none() {
        return Ok(target);
    }
    sink.info(&format!("unpacking {} into {}", tarball.display(), target.display()));
    extract(&tarball, &cache.datasets(), &target)?;
    Ok(target)
}

/// [`fetch_cifar10`] from the configured mirror with the default downloader.
pub fn fetch_default(cache: &Cache, sink: &mut dyn EventSink) -> Result<PathBuf> {
    fetch_cifar10(cache, &cifar10_url(crate::settings::current()), CIFAR10_MD5, &Downloader::default(), sink)
}

fn missing_batch_file(dir: &Path) -> Option<&'static str> {
    batch_files().find(|f| !dir.join(f).is_file())
}

/// Unpacks into a temp folder in `datasets`, beside `target`, then renames.
fn extract(tarball: &Path, datasets: &Path, target: &Path) -> Result<()> {
    ensure_dir(datasets)?;
    let tmp = datasets.join(format!(".extract-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = unpack_and_move(tarball, &tmp, target);
    let _ = fs::remove_dir_all(&tmp);
    result
}

fn unpack_and_move(tarball: &Path, tmp: &Path, target: &Path) -> Result<()> {
    let file = File::open(tarball).ctx(|| format!("opening {}", tarball.display()))?;
    // `unpack` refuses entries that would land outside `tmp`.
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(tmp)
        .map_err(|e| Error::data(tarball, format!("cannot unpack: {e}")))?;
    let unpacked = tmp.join(TARBALL_DIR);
    if let Some(f) = missing_batch_file(&unpacked) {
        return Err(Error::data(tarball, format!("archive lacks {TARBALL_DIR}/{f}")));
    }
    if target.exists() {
        // An incomplete earlier copy (we only get here when a file is missing).
        fs::remove_dir_all(target).ctx(|| format!("removing incomplete {}", target.display()))?;
    }
    fs::rename(&unpacked, target).ctx(|| format!("moving {} into place", target.display()))?;
    sync_parent(target);
    Ok(())
}
