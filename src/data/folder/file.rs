//! One image file: checked whole before it is listed (a header may claim any size, a
//! file may be cut off), decoded within the pixel limit, turned upright and RGB, and
//! resized as the model's input.
use super::check::{jpeg_damage, png_damage};
use crate::data::resample;
use crate::error::{Error, IoContext, Result};
use crate::preprocess::{Preprocess, ResizeMode};
use image::ImageFormat;
use std::io::Cursor;
use std::path::Path;
use tch::{Kind, Tensor};

/// The formats decoded: those torchvision's `ImageFolder` reads (.jpg .jpeg .png .ppm
/// .pgm .bmp .tif .tiff .webp). Anything else is named and skipped.
pub const FORMATS: &str = "JPEG, PNG, BMP, TIFF, WebP or PNM";

/// Pixels (width x height) a header may claim before the file is refused unread:
/// the limit beyond which PIL refuses to open an image (twice its `MAX_IMAGE_PIXELS`
/// of 89,478,485), so what torchvision's `ImageFolder` loads, we load. Decoded as 8-bit
/// RGBA it is 716 MB; `--max-image-pixels` raises or lowers it.
pub const DEFAULT_MAX_PIXELS: u64 = 2 * 89_478_485;

/// Decoded bytes per file byte beyond which a header cannot be honest: deflate (PNG)
/// expands at most ~1032x, and a JPEG spends at least a few bits per 8x8 block.
const MAX_EXPANSION: u64 = 2048;

/// Whether `path` is an image we can use, read whole: a supported format, a header within
/// `max_pixels`, and data that is not cut off or damaged (JPEG and PNG by their
/// structure, the rarer formats by decoding them). The reason when not.
pub fn usable(path: &Path, max_pixels: u64) -> std::result::Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    let format = sound(&bytes, max_pixels)?;
    match format {
        ImageFormat::Jpeg => jpeg_damage(&bytes).map_or(Ok(()), |d| Err(d.into())),
        ImageFormat::Png => png_damage(&bytes).map_or(Ok(()), Err),
        _ => decode_bytes(&bytes, max_pixels).map(|_| ()),
    }
}

/// The format of `bytes`, once its header reads and claims no more than `max_pixels`,
/// nor more than the file can hold; the reason when not.
fn sound(bytes: &[u8], max_pixels: u64) -> std::result::Result<ImageFormat, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Bmp | ImageFormat::Tiff)) => f,
        Some(f @ (ImageFormat::WebP | ImageFormat::Pnm)) => f,
        Some(other) => return Err(format!("{other:?} is not supported")),
        None => return Err("not an image".into()),
    };
    let (w, h) = reader.into_dimensions().map_err(|e| format!("unreadable header: {e}"))?;
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels {
        return Err(format!("{w}x{h} is {pixels} pixels, over the limit of {max_pixels} (--max-image-pixels)"));
    }
    let len = bytes.len() as u64;
    if pixels * 4 > len.saturating_mul(MAX_EXPANSION).saturating_add(64 << 20) {
        return Err(format!("its header claims {w}x{h} pixels, more than a {len}-byte file can hold; is it damaged?"));
    }
    Ok(format)
}

/// Decodes checked bytes as upright 8-bit RGB; the decoder may allocate only what
/// `max_pixels` of 16-bit RGBA need.
fn decode_bytes(bytes: &[u8], max_pixels: u64) -> std::result::Result<image::RgbImage, String> {
    use image::ImageDecoder;
    let format = sound(bytes, max_pixels)?;
    if format == ImageFormat::Jpeg {
        if let Some(d) = jpeg_damage(bytes) {
            return Err(d.into());
        }
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(64 << 20));
    reader.limits(limits);
    let bad = |e: image::ImageError| format!("cannot decode image: {e}");
    let mut decoder = reader.into_decoder().map_err(bad)?;
    // A missing or unreadable EXIF block means upright, as viewers treat it.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(bad)?;
    img.apply_orientation(orientation);
    // `into_`, not `to_`: an RGB image (most JPEGs) is handed over as it is; converting
    // it pixel by pixel cost a third as much as decoding it.
    Ok(img.into_rgb8())
}

/// Decodes an image file as upright 8-bit RGB: EXIF orientation applied; greyscale,
/// palette, 16-bit, alpha and CMYK all become RGB. A header over `max_pixels`, or
/// claiming more than the file holds, is refused before anything is allocated for it; a
/// cut-off JPEG is refused, not filled with grey.
pub fn decode_image(path: &Path, max_pixels: u64) -> Result<image::RgbImage> {
    let bytes = std::fs::read(path).ctx(|| format!("reading {}", path.display()))?;
    decode_bytes(&bytes, max_pixels).map_err(|reason| Error::data(path, reason))
}

/// [`decode_image`] within [`DEFAULT_MAX_PIXELS`], as a tensor: `[3, H, W]` u8.
pub fn decode_rgb(path: &Path) -> Result<Tensor> {
    let rgb = decode_image(path, DEFAULT_MAX_PIXELS)?;
    let (w, h) = rgb.dimensions();
    let hwc = Tensor::from_slice(rgb.as_raw()).view([h as i64, w as i64, 3]);
    Ok(hwc.permute([2, 0, 1]).contiguous())
}

/// Decodes `path` and brings it to `pre.size` x `pre.size` as `pre.resize` says, into
/// `out` (planar `[3, size, size]` f32 in 0..=255, not rounded back to bytes).
pub fn decode_sized_into(path: &Path, pre: &Preprocess, max_pixels: u64, out: &mut [f32]) -> Result<()> {
    let img = decode_image(path, max_pixels)?;
    resample::resize_into(&img, pre, out);
    Ok(())
}

/// Decodes `path` with a RandomResizedCrop + flip decided by `u` (see
/// [`resample::random_resized_crop_into`]), into `out`.
pub fn decode_augmented_into(path: &Path, size: i64, max_pixels: u64, u: &[f32], out: &mut [f32]) -> Result<()> {
    let img = decode_image(path, max_pixels)?;
    resample::random_resized_crop_into(&img, size, u, out);
    Ok(())
}

/// [`decode_sized_into`] as a tensor: `[3, size, size]` f32.
pub fn decode_sized(path: &Path, pre: &Preprocess, max_pixels: u64) -> Result<Tensor> {
    let s = pre.size;
    let mut out = vec![0f32; (3 * s * s) as usize];
    decode_sized_into(path, pre, max_pixels, &mut out)?;
    Ok(Tensor::from_slice(&out).view([3, s, s]))
}

/// Decodes and squashes to `side` x `side` (bilinear), rounded to bytes: the fuzz
/// targets' entry, within [`DEFAULT_MAX_PIXELS`]. Returns `[3, side, side]` u8.
pub fn decode_resized(path: &Path, side: u32) -> Result<Tensor> {
    let pre = Preprocess { size: side as i64, resize: ResizeMode::Squash, ..Default::default() };
    Ok(decode_sized(path, &pre, DEFAULT_MAX_PIXELS)?.round().clamp(0.0, 255.0).to_kind(Kind::Uint8))
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

    /// A 16x16 PNG whose header is made to claim `w` x `h`, its CRC made right again.
    fn claims(w: u32, h: u32) -> Vec<u8> {
        let mut b = std::io::Cursor::new(Vec::new());
        image::RgbImage::new(16, 16).write_to(&mut b, ImageFormat::Png).unwrap();
        let mut b = b.into_inner();
        b[16..20].copy_from_slice(&w.to_be_bytes());
        b[20..24].copy_from_slice(&h.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&b[12..29]);
        b[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        b
    }

    #[test]
    fn a_header_over_the_pixel_limit_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bomb.png");
        std::fs::write(&p, claims(50_000, 50_000)).unwrap();
        let why = usable(&p, DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(why.contains("50000x50000 is 2500000000 pixels, over the limit"), "{why}");
        assert!(decode_image(&p, DEFAULT_MAX_PIXELS).unwrap_err().to_string().contains("over the limit"));
        // Within the limit, a header claiming far more than 100 bytes hold is refused too.
        std::fs::write(&p, claims(8_000, 8_000)).unwrap();
        assert!(usable(&p, DEFAULT_MAX_PIXELS).unwrap_err().contains("more than a"));
        // The limit is the caller's: a 16x16 image is refused under a limit of 255.
        std::fs::write(&p, claims(16, 16)).unwrap();
        assert_eq!(usable(&p, 256), Ok(()));
        assert!(usable(&p, 255).unwrap_err().contains("over the limit of 255"));
    }
}
