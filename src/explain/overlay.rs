//! A Grad-CAM map drawn over its photo: resized bilinearly to the photo, scaled to 0..1
//! (pytorch-grad-cam's `scale_cam_image`), coloured with the jet ramp and blended half
//! and half with the photo (its `show_cam_on_image`).
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// The photo `[3, S, S]` f32 in 0..=255 with `map` `[h, w]` over it: `[3, S, S]` u8.
pub fn overlay(image: &Tensor, map: &Tensor) -> Tensor {
    let (s_h, s_w) = (image.size()[1], image.size()[2]);
    let (h, w) = (map.size()[0], map.size()[1]);
    let m = map.to_kind(Kind::Float).to_device(image.device()).view([1, 1, h, w]);
    let m = m.upsample_bilinear2d([s_h, s_w], false, None, None).view([s_h, s_w]);
    let (lo, hi) = (m.min().double_value(&[]), m.max().double_value(&[]));
    // A flat map (nothing moved the score) is drawn cold, not as noise.
    let v = if hi > lo { (m - lo) / (hi - lo) } else { m.zeros_like() };
    let ramp = |centre: f64| -> Tensor { (-(&v * 4.0 - centre).abs() + 1.5).clamp(0.0, 1.0) };
    let heat = Tensor::stack(&[ramp(3.0), ramp(2.0), ramp(1.0)], 0) * 255.0;
    (image.to_kind(Kind::Float) * 0.5 + heat * 0.5).round().clamp(0.0, 255.0).to_kind(Kind::Uint8)
}

/// [`overlay`] encoded as PNG.
pub fn heatmap_png(image: &Tensor, map: &Tensor) -> Result<Vec<u8>> {
    png(&overlay(image, map))
}

/// `[3, H, W]` u8 as PNG bytes.
pub fn png(chw: &Tensor) -> Result<Vec<u8>> {
    let (h, w) = (chw.size()[1] as u32, chw.size()[2] as u32);
    let hwc = Vec::<u8>::try_from(chw.permute([1, 2, 0]).contiguous().reshape([-1]))?;
    let mut out = std::io::Cursor::new(Vec::new());
    image::write_buffer_with_format(&mut out, &hwc, w, h, image::ExtendedColorType::Rgb8, image::ImageFormat::Png)
        .map_err(|e| Error::Chart { chart: "heatmap or thumbnail (PNG)".into(), reason: e.to_string() })?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hot_corner_is_red_and_the_cold_one_blue() {
        let image = Tensor::full([3, 32, 32], 128.0, (Kind::Float, tch::Device::Cpu));
        let map = Tensor::from_slice(&[0.0f32, 0.0, 0.0, 5.0]).view([2, 2]);
        let out = overlay(&image, &map);
        assert_eq!(out.size(), [3, 32, 32]);
        let px = |y: i64, x: i64| [0, 1, 2].map(|c| out.int64_value(&[c, y, x]));
        let (hot, cold) = (px(31, 31), px(0, 0));
        assert!(hot[0] > hot[2] + 50, "bottom right is hot: {hot:?}");
        assert!(cold[2] > cold[0] + 50, "top left is cold: {cold:?}");
        let png = heatmap_png(&image, &Tensor::zeros([2, 2], (Kind::Float, tch::Device::Cpu))).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
