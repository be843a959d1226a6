//! PyTorch's antialiased bilinear resampling (`interpolate(..., antialias=True)`, which
//! torchvision's `Resize` runs), in plain Rust so that decoding threads never call into
//! libtorch. Separable: a horizontal pass over the source rows, then a vertical one, each
//! output pixel a normalised triangle-filter average whose support widens with the
//! downscale factor (as PIL's). With [`ResizeMode::Crop`] only the centre crop's pixels
//! are computed.
use crate::preprocess::{crop_geometry, Preprocess, ResizeMode};

/// One output pixel's source window along an axis: first index and normalised weights.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Taps of outputs `first..first + count` when `in_len` is resized to `out_len`,
/// computed as PyTorch's `_compute_index_ranges_weights` for bilinear antialias.
fn taps(in_len: usize, out_len: usize, first: usize, count: usize) -> Vec<Taps> {
    let scale = in_len as f64 / out_len as f64;
    let (support, invscale) = if scale >= 1.0 { (scale, 1.0 / scale) } else { (1.0, 1.0) };
    (first..first + count)
        .map(|i| {
            let center = scale * (i as f64 + 0.5);
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_len as i64) as usize;
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| {
                    let x = (j as f64 - center + 0.5) * invscale;
                    (1.0 - x.abs()).max(0.0)
                })
                .collect();
            let total: f64 = w.iter().sum();
            if total > 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            Taps { start: lo, weights: w.into_iter().map(|v| v as f32).collect() }
        })
        .collect()
}

/// Resizes `img` to `pre.size` square as `pre.resize` says, into `out`: planar
/// `[3, size, size]` f32 in 0..=255.
pub fn resize_into(img: &image::RgbImage, pre: &Preprocess, out: &mut [f32]) {
    let s = pre.size as usize;
    let (w, h) = (img.width() as usize, img.height() as usize);
    // The full resized size, and where the kept window starts in it.
    let (rh, rw, top, left) = match pre.resize {
        ResizeMode::Crop if w != h => {
            let (rh, rw, t, l) = crop_geometry(h as i64, w as i64, s as i64);
            (rh as usize, rw as usize, t as usize, l as usize)
        }
        _ => (s, s, 0, 0),
    };
    let xs = taps(w, rw, left, s);
    let ys = taps(h, rh, top, s);
    let px = img.as_raw();
    // Horizontal pass over only the source rows some output row reads.
    let (y0, y1) = (ys[0].start, ys.iter().map(|t| t.start + t.weights.len()).max().unwrap_or(0));
    let rows = y1 - y0;
    let mut tmp = vec![0f32; 3 * rows * s];
    for y in y0..y1 {
        let row = &px[y * w * 3..(y + 1) * w * 3];
        for (ox, t) in xs.iter().enumerate() {
            let mut acc = [0f32; 3];
            for (k, wt) in t.weights.iter().enumerate() {
                let p = &row[(t.start + k) * 3..(t.start + k) * 3 + 3];
                acc[0] += wt * p[0] as f32;
                acc[1] += wt * p[1] as f32;
                acc[2] += wt * p[2] as f32;
            }
            for c in 0..3 {
                tmp[(c * rows + (y - y0)) * s + ox] = acc[c];
            }
        }
    }
    // Vertical pass.
    for c in 0..3 {
        let plane = &tmp[c * rows * s..(c + 1) * rows * s];
        let dst = &mut out[c * s * s..(c + 1) * s * s];
        for (oy, t) in ys.iter().enumerate() {
            let drow = &mut dst[oy * s..(oy + 1) * s];
            drow.fill(0.0);
            for (k, wt) in t.weights.iter().enumerate() {
                let src = &plane[(t.start + k - y0) * s..(t.start + k - y0 + 1) * s];
                for (d, v) in drow.iter_mut().zip(src) {
                    *d += wt * v;
                }
            }
        }
    }
}

/// Uniform draws one RandomResizedCrop + flip takes: 10 tries of (area, log-ratio,
/// top, left), then the flip.
pub const AUGMENT_DRAWS: usize = 41;

/// torchvision's `RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3))` then
/// `RandomHorizontalFlip()`, with the randomness given as `u` (uniforms in 0..1), so that
/// the caller's seeded stream decides it and threads only compute. Into `out`, planar
/// `[3, size, size]` f32.
pub fn random_resized_crop_into(img: &image::RgbImage, size: i64, u: &[f32], out: &mut [f32]) {
    let (w, h) = (img.width() as f64, img.height() as f64);
    let area = w * h;
    let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    let mut boxed = None;
    for t in 0..10 {
        let d = &u[t * 4..t * 4 + 4];
        let target = area * (0.08 + (1.0 - 0.08) * d[0] as f64);
        let ratio = (lo + (hi - lo) * d[1] as f64).exp();
        let (cw, ch) = ((target * ratio).sqrt().round(), (target / ratio).sqrt().round());
        if cw > 0.0 && cw <= w && ch > 0.0 && ch <= h {
            let top = ((h - ch + 1.0) * d[2] as f64).floor().min(h - ch);
            let left = ((w - cw + 1.0) * d[3] as f64).floor().min(w - cw);
            boxed = Some((left as u32, top as u32, cw as u32, ch as u32));
            break;
        }
    }
    // torchvision's fallback: the largest centre crop within the ratio range.
    let (x, y, cw, ch) = boxed.unwrap_or_else(|| {
        let r = w / h;
        let (cw, ch) = if r < 3.0 / 4.0 {
            (w, (w / (3.0 / 4.0)).round())
        } else if r > 4.0 / 3.0 {
            ((h * 4.0 / 3.0).round(), h)
        } else {
            (w, h)
        };
        (((w - cw) / 2.0) as u32, ((h - ch) / 2.0) as u32, cw as u32, ch as u32)
    });
    let mut crop = image::imageops::crop_imm(img, x, y, cw, ch).to_image();
    if u[40] < 0.5 {
        image::imageops::flip_horizontal_in_place(&mut crop);
    }
    let pre = Preprocess { size, resize: ResizeMode::Squash, ..Default::default() };
    resize_into(&crop, &pre, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    /// The same numbers as libtorch's own kernel, on odd sizes both ways.
    #[test]
    fn random_resized_crops_stay_inside_and_follow_their_draws() {
        let img = image::RgbImage::from_fn(50, 30, |x, _| image::Rgb([x as u8 * 5, 0, 0]));
        let mut out = vec![0f32; 3 * 8 * 8];
        // The whole image (area 1, ratio 50/30 is outside 3/4..4/3 so every try may fail,
        // then the fallback): values stay within the image's range.
        let u = [0.99f32; AUGMENT_DRAWS];
        random_resized_crop_into(&img, 8, &u, &mut out);
        assert!(out.iter().all(|v| (0.0..=245.0 + 1e-3).contains(v)));
        // The flip draw mirrors the result.
        let mut u = [0.3f32; AUGMENT_DRAWS];
        u[40] = 0.9;
        let mut kept = vec![0f32; 3 * 8 * 8];
        random_resized_crop_into(&img, 8, &u, &mut kept);
        u[40] = 0.1;
        random_resized_crop_into(&img, 8, &u, &mut out);
        assert!(kept[0] < kept[7], "red grows with x");
        assert!((out[0] - kept[7]).abs() < 1e-3 && (out[7] - kept[0]).abs() < 1e-3, "mirrored");
    }

    #[test]
    fn matches_libtorch_antialiased_bilinear() {
        for &(w, h, s, mode) in &[
            (50u32, 37u32, 16i64, ResizeMode::Crop),
            (37, 50, 16, ResizeMode::Crop),
            (20, 13, 32, ResizeMode::Crop),
            (50, 37, 16, ResizeMode::Squash),
        ] {
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 7 + y * 3) as u8, (x * x + y) as u8, ((x ^ y) * 5) as u8])
            });
            let pre = Preprocess { size: s, resize: mode, ..Default::default() };
            let mut out = vec![0f32; (3 * s * s) as usize];
            resize_into(&img, &pre, &mut out);
            let ours = Tensor::from_slice(&out).view([3, s, s]);
            let x = Tensor::from_slice(img.as_raw()).view([h as i64, w as i64, 3]).permute([2, 0, 1]);
            let x = x.to_kind(Kind::Float).unsqueeze(0);
            let (rh, rw, top, left) = match mode {
                ResizeMode::Crop => crop_geometry(h as i64, w as i64, s),
                ResizeMode::Squash => (s, s, 0, 0),
            };
            let want = x.internal_upsample_bilinear2d_aa([rh, rw], false, None, None);
            let want = want.narrow(2, top, s).narrow(3, left, s).squeeze_dim(0);
            let diff = (ours - want).abs().max().double_value(&[]);
            assert!(diff < 1e-3, "{w}x{h} -> {s} {mode:?}: max diff {diff}");
        }
    }
}
