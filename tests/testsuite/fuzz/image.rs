//! Image decoding: PNGs (8/16-bit, grey, alpha, RGB) and JPEGs written here decode to
//! `[3, side, side]`; damaged ones, and headers that claim huge sizes, are refused with
//! an error naming the file, before anything is allocated for the claim.
use super::{damaged, damages, fuzz};
use image::{DynamicImage, ImageFormat};
use proptest::prelude::*;
use tch::Kind;
use transfer_lab::data::folder::decode_resized;

#[derive(Debug, Clone)]
struct Picture {
    w: u32,
    h: u32,
    color: u8,
    jpeg: bool,
    seed: u8,
}

fn pictures() -> impl Strategy<Value = Picture> {
    (1..40u32, 1..40u32, 0..6u8, any::<bool>(), any::<u8>()).prop_map(|(w, h, color, jpeg, seed)| Picture {
        w,
        h,
        color,
        jpeg,
        seed,
    })
}

fn encode(p: &Picture) -> Vec<u8> {
    let rgb = image::RgbImage::from_fn(p.w, p.h, |x, y| {
        image::Rgb([(x * 7 + p.seed as u32) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
    });
    let img = DynamicImage::ImageRgb8(rgb);
    // JPEG holds 8-bit grey or RGB only.
    let img = match (p.color % if p.jpeg { 2 } else { 6 }, p.jpeg) {
        (0, _) => img,
        (1, _) => DynamicImage::ImageLuma8(img.to_luma8()),
        (2, _) => DynamicImage::ImageRgba8(img.to_rgba8()),
        (3, _) => DynamicImage::ImageLumaA8(img.to_luma_alpha8()),
        (4, _) => DynamicImage::ImageRgb16(img.to_rgb16()),
        _ => DynamicImage::ImageLuma16(img.to_luma16()),
    };
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, if p.jpeg { ImageFormat::Jpeg } else { ImageFormat::Png }).unwrap();
    out.into_inner()
}

fn decode(bytes: &[u8], side: u32) -> (tempfile::TempDir, std::path::PathBuf, transfer_lab::Result<tch::Tensor>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photo.jpg");
    std::fs::write(&path, bytes).unwrap();
    let got = decode_resized(&path, side);
    (dir, path, got)
}

#[test]
fn pictures_decode_and_damaged_ones_are_refused() {
    fuzz("image", 200, (pictures(), 1..24u32, proptest::option::of(damages())), |(pic, side, dmg)| {
        let bytes = encode(&pic);
        let was_damaged = dmg.is_some();
        let bytes = match dmg {
            Some(d) => damaged(bytes, &d),
            None => bytes,
        };
        let (_dir, path, got) = decode(&bytes, side);
        match got {
            Ok(t) => prop_assert_eq!((t.size(), t.kind()), (vec![3, side as i64, side as i64], Kind::Uint8)),
            Err(e) => {
                prop_assert!(was_damaged, "a good picture was refused: {}", e);
                super::names_path(&e, &path)?;
            }
        }
        Ok(())
    });
}

#[test]
fn a_png_at_its_own_size_decodes_to_its_pixels() {
    let p = Picture { w: 9, h: 9, color: 0, jpeg: false, seed: 3 };
    let (_d, _p, t) = decode(&encode(&p), 9);
    let t = t.unwrap();
    assert_eq!(t.int64_value(&[0, 2, 4]), (4 * 7 + 3) as i64);
    assert_eq!(t.int64_value(&[1, 2, 4]), (2 * 5) as i64);
}

/// CRC-32 (IEEE) as PNG chunks use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A real PNG whose IHDR (checksum fixed) claims `w` x `h`.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut b = encode(&Picture { w: 4, h: 4, color: 0, jpeg: false, seed: 0 });
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn headers_that_claim_huge_images_are_refused_before_decoding() {
    // 9000 x 9000 is within the fixed limits: only the file's length refuses it.
    for (w, h) in [(100_000, 100_000), (16_000, 16_000), (9_000, 9_000)] {
        let (_d, path, got) = decode(&png_claiming(w, h), 8);
        let msg = got.err().unwrap_or_else(|| panic!("{w}x{h} decoded")).to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("claims {w}x{h} pixels, more than a")) || msg.contains("limit"), "{msg}");
    }
    assert!(decode(&png_claiming(4, 4), 8).2.is_ok(), "the checksum fix itself is right");
}
