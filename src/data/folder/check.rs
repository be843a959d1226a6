//! Whether JPEG and PNG data is whole, read from its structure without decoding: the
//! decoders fill a cut-off JPEG with grey without a word, and PIL refuses such a file
//! ("image file is truncated"), so we do too.

/// Why a JPEG is not whole: `None` when its markers run from SOI to EOI. Data after EOI
/// (a phone's trailer, a motion photo's video) is allowed.
pub fn jpeg_damage(b: &[u8]) -> Option<&'static str> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Some("not a JPEG stream");
    }
    let mut i = 2;
    while i + 1 < b.len() {
        if b[i] != 0xFF {
            // Entropy-coded data: no 0xFF in it but stuffing and restart markers.
            match b[i..].iter().position(|&x| x == 0xFF) {
                Some(n) => i += n,
                None => break,
            }
            continue;
        }
        match b[i + 1] {
            0xD9 => return None,
            // Fill byte, a stuffed 0xFF, a restart marker, TEM: no length follows.
            0xFF => i += 1,
            0x00 | 0x01 | 0xD0..=0xD7 => i += 2,
            _ => {
                if i + 3 >= b.len() {
                    break;
                }
                i += 2 + u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
            }
        }
    }
    Some("image file is truncated (no end-of-image marker)")
}

/// Why a PNG is not whole: `None` when its chunks run to IEND with every CRC right.
pub fn png_damage(b: &[u8]) -> Option<String> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    if !b.starts_with(&SIGNATURE) {
        return Some("not a PNG stream".into());
    }
    let mut i = SIGNATURE.len();
    while i + 8 <= b.len() {
        let len = u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes")) as usize;
        let kind = &b[i + 4..i + 8];
        let Some(end) = (i + 12).checked_add(len).filter(|&e| e <= b.len()) else { break };
        let mut crc = flate2::Crc::new();
        crc.update(&b[i + 4..i + 8 + len]);
        if crc.sum().to_be_bytes() != b[end - 4..end] {
            return Some(format!("damaged: chunk {} fails its CRC", String::from_utf8_lossy(kind)));
        }
        if kind == b"IEND" {
            return None;
        }
        i = end;
    }
    Some("image file is truncated (no IEND chunk)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(format: image::ImageFormat) -> Vec<u8> {
        let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 16, y as u8 * 16, 99]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn whole_jpeg_passes_cut_jpeg_does_not() {
        let b = encoded(image::ImageFormat::Jpeg);
        assert_eq!(jpeg_damage(&b), None);
        let mut trailer = b.clone();
        trailer.extend_from_slice(b"SEFT trailer \xFF\x00 bytes");
        assert_eq!(jpeg_damage(&trailer), None);
        for cut in [b.len() - 2, b.len() / 2, 3] {
            assert!(jpeg_damage(&b[..cut]).is_some(), "cut at {cut}");
        }
    }

    #[test]
    fn whole_png_passes_cut_or_flipped_png_does_not() {
        let b = encoded(image::ImageFormat::Png);
        assert_eq!(png_damage(&b), None);
        assert!(png_damage(&b[..b.len() - 1]).unwrap().contains("truncated"));
        assert!(png_damage(&b[..b.len() / 2]).unwrap().contains("truncated"));
        let mut flipped = b.clone();
        flipped[45] ^= 0x10;
        assert!(png_damage(&flipped).unwrap().contains("CRC"));
    }
}
