//! The user's own images: `root/<class>/*.png|jpg|jpeg`, one sub-folder per class.
//!
//! Only the file list is read up front; pixels are decoded per batch, so a folder can
//! be far larger than memory.
use super::{Dataset, Source, Split};
use crate::error::{Error, IoContext, Result};
use image::imageops::FilterType;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Lists one split of an image folder; images are decoded lazily at `side` x `side`.
///
/// Classes are the sorted sub-folder names of `root`, files are sorted within a class,
/// and labels are class indices. The digest is SHA-256 over `side` and each file's
/// relative path and bytes, in order.
pub fn load_image_folder(root: &Path, split: Split, side: u32) -> Result<Dataset> {
    if side == 0 {
        return Err(Error::invalid("image side", "must be at least 1 pixel"));
    }
    if !root.is_dir() {
        return Err(Error::data(root, "image folder not found (expected root/<class>/*.png|jpg)"));
    }
    let classes = class_dirs(root)?;
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let files = image_files(&root.join(class))?;
        labels.extend(std::iter::repeat_n(label as i64, files.len()));
        paths.extend(files);
    }
    if paths.is_empty() {
        let reason = "no .png/.jpg/.jpeg images in any class folder (expected root/<class>/*.png)";
        return Err(Error::data(root, reason));
    }
    Ok(Dataset {
        name: format!("folder:{}", root.display()),
        split,
        synthetic: false,
        classes,
        digest: digest_files(root, &paths, side)?,
        source: Source::Files { paths, labels, side },
    })
}

/// Sorted names of the visible sub-folders of `root`; at least one.
fn class_dirs(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root).ctx(|| format!("listing {}", root.display()))? {
        let entry = entry.ctx(|| format!("listing {}", root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Skip hidden folders such as .ipynb_checkpoints or .git.
        if entry.path().is_dir() && !name.starts_with('.') {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(Error::data(root, "no class sub-folders (expected root/<class>/*.png|jpg)"));
    }
    names.sort();
    Ok(names)
}

/// Sorted image files directly inside `dir`.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let path = entry.ctx(|| format!("listing {}", dir.display()))?.path();
        if path.is_file() && is_image(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// True for a .png/.jpg/.jpeg extension, in any case.
pub fn is_image(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    IMAGE_EXTENSIONS.iter().any(|x| ext.eq_ignore_ascii_case(x))
}

/// SHA-256 hex over `side`, then each file's path relative to `root` and its bytes.
fn digest_files(root: &Path, paths: &[PathBuf], side: u32) -> Result<String> {
    let mut hasher = Sha256::new();
    // The side changes every pixel, so it belongs in a cache key.
    hasher.update(format!("side={side}\n").as_bytes());
    for path in paths {
        let rel = path.strip_prefix(root).unwrap_or(path);
        let rel: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        let mut file = std::fs::File::open(path).ctx(|| format!("opening {}", path.display()))?;
        let len = file.metadata().ctx(|| format!("reading {}", path.display()))?.len();
        // Path and length delimit each file, so different splits of bytes hash differently.
        hasher.update(format!("{}\n{len}\n", rel.join("/")).as_bytes());
        std::io::copy(&mut file, &mut hasher).ctx(|| format!("reading {}", path.display()))?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Larger photos than any camera makes are refused, not decoded.
pub const MAX_SIDE: u32 = 1 << 14;
/// What one decode may allocate.
pub const MAX_DECODE_BYTES: u64 = 1 << 30;
/// Decoded bytes per file byte beyond which a header cannot be honest: deflate (PNG)
/// expands at most ~1032x, and a JPEG spends at least a few bits per 8x8 block.
const MAX_EXPANSION: u64 = 2048;

fn reader(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    let reader = image::ImageReader::open(path).ctx(|| format!("opening {}", path.display()))?;
    // Trust the bytes over the extension: a PNG saved as .jpg still loads.
    let mut reader = reader.with_guessed_format().ctx(|| format!("reading {}", path.display()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    Ok(reader)
}

/// Decodes an image file as RGB and resizes it (bilinear) to `side` x `side`.
/// Returns `[3, side, side]` u8.
pub fn decode_resized(path: &Path, side: u32) -> Result<Tensor> {
    let bad = |e: image::ImageError| Error::data(path, format!("cannot decode image: {e}"));
    // A header may claim any size: it is checked against the file's length, and against
    // fixed limits, before the decoder allocates for it.
    let len = std::fs::metadata(path).ctx(|| format!("reading {}", path.display()))?.len();
    let (w, h) = reader(path)?.into_dimensions().map_err(bad)?;
    let claimed = w as u64 * h as u64 * 4;
    if claimed > len.saturating_mul(MAX_EXPANSION).saturating_add(64 << 20) {
        let reason = format!("its header claims {w}x{h} pixels, more than a {len}-byte file can hold; is it damaged?");
        return Err(Error::data(path, reason));
    }
    let img = reader(path)?.decode().map_err(bad)?.to_rgb8();
    let img = if img.dimensions() == (side, side) {
        img
    } else {
        image::imageops::resize(&img, side, side, FilterType::Triangle)
    };
    Ok(Tensor::from_slice(&hwc_to_chw(img.as_raw(), side as usize)).view([3, side as i64, side as i64]))
}

/// Interleaved RGB `[side, side, 3]` -> planar `[3, side, side]`.
fn hwc_to_chw(hwc: &[u8], side: usize) -> Vec<u8> {
    let plane = side * side;
    let mut chw = vec![0u8; 3 * plane];
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        chw[i] = px[0];
        chw[plane + i] = px[1];
        chw[2 * plane + i] = px[2];
    }
    chw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_check_ignores_case() {
        assert!(is_image(Path::new("a/B.JPG")));
        assert!(is_image(Path::new("c.Jpeg")));
        assert!(is_image(Path::new("d.png")));
        assert!(!is_image(Path::new("e.gif")));
        assert!(!is_image(Path::new("png")));
    }

    #[test]
    fn planar_layout() {
        assert_eq!(hwc_to_chw(&[1, 2, 3], 1), [1, 2, 3]);
        let hwc = [10, 20, 30, 11, 21, 31, 12, 22, 32, 13, 23, 33];
        assert_eq!(hwc_to_chw(&hwc, 2), [10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33]);
    }

    #[test]
    fn decode_keeps_pixels_at_native_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("px.png");
        let img = image::RgbImage::from_fn(4, 4, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 7]));
        img.save(&p).unwrap();
        let t = decode_resized(&p, 4).unwrap();
        assert_eq!(t.size(), [3, 4, 4]);
        assert_eq!(t.int64_value(&[0, 1, 3]), 30); // R = x * 10 at y = 1, x = 3
        assert_eq!(t.int64_value(&[1, 1, 3]), 10); // G = y * 10
        assert_eq!(t.int64_value(&[2, 0, 0]), 7);
    }

    #[test]
    fn zero_side_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_image_folder(dir.path(), Split::Train, 0).is_err());
    }
}
