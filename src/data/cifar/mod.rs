//! CIFAR-10, binary version: `data_batch_{1..5}.bin` and `test_batch.bin`, each a run of
//! 3073-byte records (one label byte, then 1024 R, 1024 G and 1024 B bytes of a 32x32
//! image, row-major), plus `batches.meta.txt` with the ten class names.
//!
//! Parsing is pure Rust and yields one tensor per file; [`fetch`] downloads and unpacks
//! the official tarball. The file names below are the only copy of them.
pub mod fetch;

use super::{Dataset, Source, Split};
use crate::cache::Cache;
use crate::error::{Error, IoContext, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Bytes per record: one label byte and a 3x32x32 image.
pub const RECORD_BYTES: usize = 1 + PIXEL_BYTES;
/// Bytes of one image (3 channels of 32x32).
pub const PIXEL_BYTES: usize = 3 * 32 * 32;
/// Number of classes; labels are `0..CLASSES`.
pub const CLASSES: usize = 10;
/// The training files, in the order they are concatenated.
pub const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
/// The test file.
pub const TEST_FILE: &str = "test_batch.bin";
/// The class-name file.
pub const META_FILE: &str = "batches.meta.txt";
/// The folder the official tarball unpacks into, kept as is under the cache's `datasets/`.
pub const TARBALL_DIR: &str = "cifar-10-batches-bin";
/// Class names used when `batches.meta.txt` is absent.
pub const STANDARD_CLASSES: [&str; CLASSES] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
/// Class names with this prefix mark generated data (see `synthetic::write_synthetic_cifar`).
pub const SYNTHETIC_PREFIX: &str = "synthetic-";

/// `<cache>/datasets/cifar-10-batches-bin`: where [`fetch`] unpacks the tarball.
pub fn cache_dir(cache: &Cache) -> PathBuf {
    cache.dataset_dir(TARBALL_DIR)
}

/// Parses one batch file's bytes. Returns images `[N, 3, 32, 32]` u8 and labels `[N]` i64.
///
/// `path` only names the file in errors.
pub fn parse_batch(bytes: &[u8], path: &Path) -> Result<(Tensor, Tensor)> {
    check_length(bytes.len(), path)?;
    let n = bytes.len() / RECORD_BYTES;
    let mut pixels = Vec::with_capacity(n * PIXEL_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0];
        if label as usize >= CLASSES {
            let reason = format!("record {i} has label {label}; labels must be 0..=9");
            return Err(Error::data(path, reason));
        }
        labels.push(label as i64);
        pixels.extend_from_slice(&record[1..]);
    }
    let images = Tensor::from_slice(&pixels).view([n as i64, 3, 32, 32]);
    Ok((images, Tensor::from_slice(&labels)))
}

/// A batch file must hold a whole, non-zero number of records.
fn check_length(len: usize, path: &Path) -> Result<()> {
    if len == 0 {
        return Err(Error::data(path, "file is empty; expected CIFAR-10 records"));
    }
    if len % RECORD_BYTES != 0 {
        let reason = format!(
            "length {len} bytes is not a multiple of the {RECORD_BYTES}-byte record size \
             ({} whole records and {} bytes over); the file looks truncated",
            len / RECORD_BYTES,
            len % RECORD_BYTES
        );
        return Err(Error::data(path, reason));
    }
    Ok(())
}

/// Reads and parses one batch file. Returns images `[N, 3, 32, 32]` u8 and labels `[N]` i64.
pub fn read_batch_file(path: &Path) -> Result<(Tensor, Tensor)> {
    parse_batch(&read_existing(path)?, path)
}

/// Reads the class names, one per line, blank lines ignored; there must be exactly ten.
pub fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).ctx(|| format!("reading {}", path.display()))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() != CLASSES {
        let reason = format!("expected {CLASSES} class names, one per line; found {}", names.len());
        return Err(Error::data(path, reason));
    }
    Ok(names)
}

/// Loads one split of CIFAR-10 from `dir` (or from `dir/cifar-10-batches-bin`).
///
/// Train is the five data batches concatenated in order (50,000 images), test is
/// `test_batch.bin`. Images `[N, 3, 32, 32]` u8, labels `[N]` i64. The digest is
/// SHA-256 over the split's file bytes in order.
pub fn load_cifar10(dir: &Path, split: Split) -> Result<Dataset> {
    let dir = resolve_dir(dir);
    let files: Vec<PathBuf> = split_files(split).iter().map(|f| dir.join(f)).collect();
    let mut hasher = Sha256::new();
    let mut images = Vec::with_capacity(files.len());
    let mut labels = Vec::with_capacity(files.len());
    for path in &files {
        let bytes = read_existing(path)?;
        hasher.update(&bytes);
        let (x, y) = parse_batch(&bytes, path)?;
        images.push(x);
        labels.push(y);
    }
    let classes = load_classes(&dir)?;
    // Our own generated exports carry "synthetic-" class names: keep them labelled as such.
    let synthetic = classes.iter().all(|c| c.starts_with(SYNTHETIC_PREFIX));
    Ok(Dataset {
        name: "cifar10".to_string(),
        split,
        synthetic,
        classes,
        digest: hex::encode(hasher.finalize()),
        val_from: None,
        source: Source::Memory { images: Tensor::cat(&images, 0), labels: Tensor::cat(&labels, 0) },
    })
}

/// The files that make up `split`, in order.
pub fn split_files(split: Split) -> &'static [&'static str] {
    match split {
        Split::Train => &TRAIN_FILES,
        Split::Test => std::slice::from_ref(&TEST_FILE),
    }
}

/// Every batch file a complete folder holds: the training files, then the test file.
pub fn batch_files() -> impl Iterator<Item = &'static str> {
    TRAIN_FILES.into_iter().chain([TEST_FILE])
}

/// Accepts both the folder holding the batches and the folder the tarball was unpacked in.
fn resolve_dir(dir: &Path) -> PathBuf {
    let inner = dir.join(TARBALL_DIR);
    if !dir.join(TEST_FILE).exists() && inner.is_dir() {
        inner
    } else {
        dir.to_path_buf()
    }
}

/// Class names from `batches.meta.txt` when present, else the standard ten.
fn load_classes(dir: &Path) -> Result<Vec<String>> {
    let meta = dir.join(META_FILE);
    if meta.exists() {
        read_class_names(&meta)
    } else {
        Ok(STANDARD_CLASSES.iter().map(|s| s.to_string()).collect())
    }
}

/// Reads a file that must exist; a missing one gets advice on how to obtain the data.
fn read_existing(path: &Path) -> Result<Vec<u8>> {
    if !path.exists() {
        let reason = "file not found; run `tlab fetch cifar10` to download CIFAR-10, \
                      or pass `--data PATH` pointing at the folder with the .bin files";
        return Err(Error::data(path, reason));
    }
    std::fs::read(path).ctx(|| format!("reading {}", path.display()))
}

/// Writes `labels.len()` records in CIFAR-10 binary layout, atomically.
///
/// `images` is `[N, 3, 32, 32]` u8 flattened (N * 3072 bytes), `labels` one byte each.
pub fn write_batch_file(path: &Path, images: &[u8], labels: &[u8]) -> Result<()> {
    if images.len() != labels.len() * PIXEL_BYTES {
        let reason = format!(
            "cannot write: {} labels need {} image bytes, got {}",
            labels.len(),
            labels.len() * PIXEL_BYTES,
            images.len()
        );
        return Err(Error::data(path, reason));
    }
    if let Some(bad) = labels.iter().find(|&&l| l as usize >= CLASSES) {
        return Err(Error::data(path, format!("cannot write label {bad}; labels must be 0..=9")));
    }
    let mut bytes = Vec::with_capacity(labels.len() * RECORD_BYTES);
    for (label, image) in labels.iter().zip(images.chunks_exact(PIXEL_BYTES)) {
        bytes.push(*label);
        bytes.extend_from_slice(image);
    }
    crate::fsutil::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![fill; RECORD_BYTES];
        r[0] = label;
        r
    }

    #[test]
    fn parses_records_into_one_tensor() {
        let bytes = [record(3, 7), record(9, 200)].concat();
        let (x, y) = parse_batch(&bytes, Path::new("b.bin")).unwrap();
        assert_eq!(x.size(), [2, 3, 32, 32]);
        assert_eq!(x.kind(), tch::Kind::Uint8);
        assert_eq!(x.int64_value(&[1, 2, 31, 31]), 200);
        assert_eq!(Vec::<i64>::try_from(&y).unwrap(), [3, 9]);
    }

    #[test]
    fn rejects_partial_records() {
        let bytes = [record(1, 0), vec![0; 10]].concat();
        let err = parse_batch(&bytes, Path::new("short.bin")).unwrap_err().to_string();
        assert!(err.contains("short.bin") && err.contains("truncated"), "{err}");
        assert!(err.contains(&bytes.len().to_string()) && err.contains("3073"), "{err}");
    }

    #[test]
    fn rejects_bad_label_naming_record() {
        let bytes = [record(0, 0), record(10, 0)].concat();
        let err = parse_batch(&bytes, Path::new("x.bin")).unwrap_err().to_string();
        assert!(err.contains("record 1") && err.contains("label 10"), "{err}");
    }

    #[test]
    fn rejects_empty() {
        let err = parse_batch(&[], Path::new("e.bin")).unwrap_err().to_string();
        assert!(err.contains("e.bin") && err.contains("empty"), "{err}");
    }

    #[test]
    fn write_checks_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.bin");
        assert!(write_batch_file(&p, &[0; 100], &[1]).is_err());
        assert!(write_batch_file(&p, &[0; PIXEL_BYTES], &[10]).is_err());
        assert!(!p.exists());
    }
}
