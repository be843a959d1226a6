//! One image file: its header checked, decoded within fixed limits (a header may claim
//! any size), turned upright and RGB, and resized as the model's input.
use crate::data::resample;
use crate::error::{Error, IoContext, Result};
use crate::preprocess::{Preprocess, ResizeMode};
use std::path::Path;
use tch::{Kind, Tensor};

/// Whether `path` is a PNG or JPEG whose header reads; the reason when not.
pub fn usable(path: &Path) -> std::result::Result<(), String> {
    let len = std::fs::metadata(path).map_err(|e| format!("unreadable: {e}"))?.len();
    if len == 0 {
        return Err("empty file".into());
    }
    let reader = image::ImageReader::open(path).map_err(|e| format!("unreadable: {e}"))?;
    let reader = reader.with_guessed_format().map_err(|e| format!("unreadable: {e}"))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        Some(other) => return Err(format!("{other:?} is not supported")),
        None => return Err("not an image".into()),
    }
    reader.into_dimensions().map(|_| ()).map_err(|e| format!("unreadable header: {e}"))
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

/// Decodes an image file as upright 8-bit RGB: EXIF orientation applied; greyscale,
/// palette, 16-bit, alpha and CMYK all become RGB.
pub fn decode_image(path: &Path) -> Result<image::RgbImage> {
    use image::ImageDecoder;
    let bad = |e: image::ImageError| Error::data(path, format!("cannot decode image: {e}"));
    // A header may claim any size: it is checked against the file's length, and against
    // fixed limits, before the decoder allocates for it.
    let len = std::fs::metadata(path).ctx(|| format!("reading {}", path.display()))?.len();
    let mut decoder = reader(path)?.into_decoder().map_err(bad)?;
    let (w, h) = decoder.dimensions();
    let claimed = w as u64 * h as u64 * 4;
    if claimed > len.saturating_mul(MAX_EXPANSION).saturating_add(64 << 20) {
        let reason = format!("its header claims {w}x{h} pixels, more than a {len}-byte file can hold; is it damaged?");
        return Err(Error::data(path, reason));
    }
    // A missing or unreadable EXIF block means upright, as viewers treat it.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(bad)?;
    img.apply_orientation(orientation);
    // `into_`, not `to_`: an RGB image (most JPEGs) is handed over as it is; converting
    // it pixel by pixel cost a third as much as decoding it.
    Ok(img.into_rgb8())
}

/// [`decode_image`] as a tensor: `[3, H, W]` u8.
pub fn decode_rgb(path: &Path) -> Result<Tensor> {
    let rgb = decode_image(path)?;
    let (w, h) = rgb.dimensions();
    let hwc = Tensor::from_slice(rgb.as_raw()).view([h as i64, w as i64, 3]);
    Ok(hwc.permute([2, 0, 1]).contiguous())
}

/// Decodes `path` and brings it to `pre.size` x `pre.size` as `pre.resize` says, into
/// `out` (planar `[3, size, size]` f32 in 0..=255, not rounded back to bytes).
pub fn decode_sized_into(path: &Path, pre: &Preprocess, out: &mut [f32]) -> Result<()> {
    let img = decode_image(path)?;
    resample::resize_into(&img, pre, out);
    Ok(())
}

/// Decodes `path` with a RandomResizedCrop + flip decided by `u` (see
/// [`resample::random_resized_crop_into`]), into `out`.
pub fn decode_augmented_into(path: &Path, size: i64, u: &[f32], out: &mut [f32]) -> Result<()> {
    let img = decode_image(path)?;
    resample::random_resized_crop_into(&img, size, u, out);
    Ok(())
}

/// [`decode_sized_into`] as a tensor: `[3, size, size]` f32.
pub fn decode_sized(path: &Path, pre: &Preprocess) -> Result<Tensor> {
    let s = pre.size;
    let mut out = vec![0f32; (3 * s * s) as usize];
    decode_sized_into(path, pre, &mut out)?;
    Ok(Tensor::from_slice(&out).view([3, s, s]))
}

/// Decodes and squashes to `side` x `side` (bilinear), rounded to bytes: the fuzz
/// targets' entry. Returns `[3, side, side]` u8.
pub fn decode_resized(path: &Path, side: u32) -> Result<Tensor> {
    let pre = Preprocess { size: side as i64, resize: ResizeMode::Squash, ..Default::default() };
    Ok(decode_sized(path, &pre)?.round().clamp(0.0, 255.0).to_kind(Kind::Uint8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_keeps_pixels_at_native_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("px.png");
        let img = image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 7]));
        img.save(&p).unwrap();
        let t = decode_rgb(&p).unwrap();
        assert_eq!(t.size(), [3, 3, 4]);
        assert_eq!(t.int64_value(&[0, 1, 3]), 30); // R = x * 10 at y = 1, x = 3
        assert_eq!(t.int64_value(&[1, 2, 3]), 20); // G = y * 10
        assert_eq!(t.int64_value(&[2, 0, 0]), 7);
    }
}
