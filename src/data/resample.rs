//! The resizes the image transforms need, on decoded photos: torchvision's evaluation
//! transform (or a squash) and its RandomResizedCrop + flip. The arithmetic is
//! PyTorch's antialiased bilinear or bicubic, in the `tlab-resample` crate, so that
//! decoding threads never call into libtorch; with [`ResizeMode::Crop`] only the centre
//! crop's pixels are computed.
use crate::preprocess::{crop_geometry, Interpolation, Preprocess, ResizeMode};
use tlab_resample::{resize_rgb, Filter, Region, Target};

/// The crate's filter for `interpolation`. Bicubic results are clamped to 0..=255 after
/// each pass, as torchvision's resize of a decoded uint8 image is (which also rounds);
/// see `tlab_resample`'s documentation.
pub fn filter(interpolation: Interpolation) -> Filter {
    match interpolation {
        Interpolation::Bilinear => Filter::Bilinear,
        Interpolation::Bicubic => Filter::Bicubic,
    }
}

/// Resizes `img` to `pre.size` square as `pre.resize` and `pre.interpolation` say, into
/// `out`: planar `[3, size, size]` f32 in 0..=255.
pub fn resize_into(img: &image::RgbImage, pre: &Preprocess, out: &mut [f32]) {
    let s = pre.size as usize;
    let (w, h) = (img.width() as usize, img.height() as usize);
    // The full resized size, and where the kept window starts in it.
    let (full_h, full_w, top, left) = match pre.resize {
        ResizeMode::Crop if w != h || pre.side() != pre.size => {
            let (rh, rw, t, l) = crop_geometry(h as i64, w as i64, pre.side(), s as i64);
            (rh as usize, rw as usize, t as usize, l as usize)
        }
        _ => (s, s, 0, 0),
    };
    let region = Region { x: 0, y: 0, w, h };
    let target = Target { full_h, full_w, top, left, size: s, flip: false };
    resize_rgb(img.as_raw(), w, region, target, filter(pre.interpolation), out);
}

/// Uniform draws one RandomResizedCrop + flip takes: 10 tries of (area, log-ratio,
/// top, left), then the flip.
pub const AUGMENT_DRAWS: usize = 41;

/// torchvision's `RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3))` then
/// `RandomHorizontalFlip()`, with the randomness given as `u` (uniforms in 0..1), so that
/// the caller's seeded stream decides it and threads only compute. Into `out`, planar
/// `[3, size, size]` f32. Bilinear, `RandomResizedCrop`'s default, whatever the
/// evaluation transform's interpolation.
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
    let region = Region { x: x as usize, y: y as usize, w: cw as usize, h: ch as usize };
    let s = size as usize;
    let target = Target { full_h: s, full_w: s, top: 0, left: 0, size: s, flip: u[40] < 0.5 };
    resize_rgb(img.as_raw(), img.width() as usize, region, target, Filter::Bilinear, out);
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

    /// A `w` x `h` image with detail in every channel.
    fn pattern(w: u32, h: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7 + y * 3) as u8, (x * x + y) as u8, ((x ^ y) * 5) as u8])
        })
    }

    /// The weights' resize/crop ratio: the shorter side to `side`, then the centre
    /// `size` (torchvision's `Resize(256)` + `CenterCrop(224)`), squares included.
    #[test]
    fn crop_with_a_resize_side_matches_libtorch() {
        assert_eq!(crop_geometry(300, 400, 236, 224), (236, 314, 6, 45));
        assert_eq!(crate::preprocess::resize_side_for(224, 256, 224), Some(256));
        assert_eq!(crate::preprocess::resize_side_for(200, 256, 224), Some(228));
        assert_eq!(crate::preprocess::resize_side_for(384, 384, 384), None);
        for &(w, h, s, side) in &[(50u32, 37u32, 16i64, 19i64), (37, 50, 16, 18), (30, 30, 16, 20)] {
            let img = pattern(w, h);
            let pre = Preprocess { size: s, resize: ResizeMode::Crop, resize_side: Some(side), ..Default::default() };
            let mut out = vec![0f32; (3 * s * s) as usize];
            resize_into(&img, &pre, &mut out);
            let ours = Tensor::from_slice(&out).view([3, s, s]);
            let x = Tensor::from_slice(img.as_raw()).view([h as i64, w as i64, 3]).permute([2, 0, 1]);
            let x = x.to_kind(Kind::Float).unsqueeze(0);
            let (rh, rw, top, left) = crop_geometry(h as i64, w as i64, side, s);
            assert!(rh.min(rw) == side && top + s <= rh && left + s <= rw);
            let want = x.internal_upsample_bilinear2d_aa([rh, rw], false, None, None);
            let want = want.narrow(2, top, s).narrow(3, left, s).squeeze_dim(0);
            let diff = (&ours - &want).abs().max().double_value(&[]);
            assert!(diff < 1e-3, "{w}x{h} -> {side} -> {s}: max diff {diff}");
            // The tensor path crops alike.
            let t = pre.resize(&x, h as i64, w as i64).unwrap().squeeze_dim(0);
            assert!((&t - &want).abs().max().double_value(&[]) < 1e-3, "{w}x{h}: tensor path");
        }
    }

    #[test]
    fn matches_libtorch_antialiased_bilinear() {
        for &(w, h, s, mode) in &[
            (50u32, 37u32, 16i64, ResizeMode::Crop),
            (37, 50, 16, ResizeMode::Crop),
            (20, 13, 32, ResizeMode::Crop),
            (50, 37, 16, ResizeMode::Squash),
        ] {
            let img = pattern(w, h);
            let pre = Preprocess { size: s, resize: mode, ..Default::default() };
            let mut out = vec![0f32; (3 * s * s) as usize];
            resize_into(&img, &pre, &mut out);
            let ours = Tensor::from_slice(&out).view([3, s, s]);
            let x = Tensor::from_slice(img.as_raw()).view([h as i64, w as i64, 3]).permute([2, 0, 1]);
            let x = x.to_kind(Kind::Float).unsqueeze(0);
            let (rh, rw, top, left) = match mode {
                ResizeMode::Crop => crop_geometry(h as i64, w as i64, s, s),
                ResizeMode::Squash => (s, s, 0, 0),
            };
            let want = x.internal_upsample_bilinear2d_aa([rh, rw], false, None, None);
            let want = want.narrow(2, top, s).narrow(3, left, s).squeeze_dim(0);
            let diff = (ours - want).abs().max().double_value(&[]);
            assert!(diff < 1e-3, "{w}x{h} -> {s} {mode:?}: max diff {diff}");
        }
    }

    /// Bicubic: libtorch's antialiased kernel, each pass clamped to 0..=255 as the crate
    /// does (width first, as libtorch's separable kernel).
    #[test]
    fn bicubic_matches_libtorch_clamped_per_pass() {
        for &(w, h, s, mode) in &[
            (50u32, 37u32, 16i64, ResizeMode::Crop),
            (37, 50, 16, ResizeMode::Crop),
            (20, 13, 32, ResizeMode::Crop),
            (50, 37, 16, ResizeMode::Squash),
        ] {
            let img = pattern(w, h);
            let pre = Preprocess { size: s, resize: mode, interpolation: Interpolation::Bicubic, ..Default::default() };
            let mut out = vec![0f32; (3 * s * s) as usize];
            resize_into(&img, &pre, &mut out);
            let ours = Tensor::from_slice(&out).view([3, s, s]);
            let x = Tensor::from_slice(img.as_raw()).view([h as i64, w as i64, 3]).permute([2, 0, 1]);
            let x = x.to_kind(Kind::Double).unsqueeze(0);
            let (rh, rw, top, left) = match mode {
                ResizeMode::Crop => crop_geometry(h as i64, w as i64, s, s),
                ResizeMode::Squash => (s, s, 0, 0),
            };
            let pass =
                |t: &Tensor, oh, ow| t.internal_upsample_bicubic2d_aa([oh, ow], false, None, None).clamp(0.0, 255.0);
            let want = pass(&pass(&x, h as i64, rw), rh, rw);
            let want = want.narrow(2, top, s).narrow(3, left, s).squeeze_dim(0).to_kind(Kind::Float);
            let diff = (ours - want).abs().max().double_value(&[]);
            assert!(diff < 1e-3, "{w}x{h} -> {s} {mode:?}: max diff {diff}");
        }
    }

    /// The decoding threads and the tensor path (`Preprocess::apply` on a u8 batch) agree.
    #[test]
    fn decoded_and_tensor_paths_agree_for_both_filters() {
        let img = image::RgbImage::from_fn(50, 37, |x, y| {
            let edge = if (x / 3 + y / 4) % 2 == 0 { 0 } else { 255 };
            image::Rgb([edge, (x * 7 + y * 3) as u8, ((x ^ y) * 5) as u8])
        });
        let x = Tensor::from_slice(img.as_raw()).view([37, 50, 3]).permute([2, 0, 1]).unsqueeze(0);
        for interpolation in [Interpolation::Bilinear, Interpolation::Bicubic] {
            for (size, resize) in [(16, ResizeMode::Crop), (80, ResizeMode::Crop), (24, ResizeMode::Squash)] {
                let pre = Preprocess { size, resize, interpolation, ..Default::default() };
                let mut out = vec![0f32; (3 * size * size) as usize];
                resize_into(&img, &pre, &mut out);
                let ours = pre.normalise(&Tensor::from_slice(&out).view([1, 3, size, size]));
                let want = pre.apply(&x, tch::Device::Cpu).unwrap();
                let diff = (ours - want).abs().max().double_value(&[]);
                assert!(diff < 1e-4, "{interpolation:?} {resize:?} {size}: {diff}");
            }
        }
    }
}
