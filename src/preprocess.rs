//! Upscaling and normalisation, batched on the device.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// How pixel values are mapped before the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// `(x/255 - mean) / std`, RGB, ImageNet mean/std: what torchvision's weights expect.
    Torchvision,
    /// Keras `preprocess_input` for ResNet50 ("caffe"): RGB->BGR, subtract
    /// 103.939/116.779/123.68, no scaling. What the post used with Keras' weights.
    #[value(alias = "caffe")]
    KerasCaffe,
    /// `(x/255 - mean) / std` with OpenAI CLIP's mean/std (its image preprocessor's).
    Clip,
}

crate::choice::choice!(Normalization, "normalisation");

const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];
const CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// Keras caffe means, in BGR order.
const CAFFE_MEAN_BGR: [f64; 3] = [103.939, 116.779, 123.68];

/// How an image that is not `size` x `size` becomes one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// torchvision's evaluation transform: the shorter side to `size` (antialiased, with
    /// the [`Interpolation`]), then the centre `size` x `size`. The aspect ratio is kept.
    #[default]
    Crop,
    /// Both sides to `size`: the aspect ratio is lost (the post's CIFAR upscaling, where
    /// images are square and both modes agree).
    Squash,
}

crate::choice::choice!(ResizeMode, "resize mode");

/// The resampling filter of a resize; both antialiased when shrinking, as torchvision's
/// `Resize` (PIL's and PyTorch's filters with `antialias=True`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Interpolation {
    /// Triangle filter: torchvision's ResNet, ConvNeXt and EfficientNet-V2 weights.
    #[default]
    Bilinear,
    /// Keys cubic (a = -0.5): EfficientNet B0-B3's weights (timm's recipe).
    Bicubic,
}

crate::choice::choice!(Interpolation, "interpolation");

/// Resize + normalisation for one model input size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Output side in pixels (the post: 200; ImageNet's usual: 224).
    pub size: i64,
    pub normalization: Normalization,
    /// Absent in runs from before it was a choice; square inputs make both modes agree.
    #[serde(default)]
    pub resize: ResizeMode,
    /// Absent in runs from before it was a choice: bilinear.
    #[serde(default)]
    pub interpolation: Interpolation,
    /// [`ResizeMode::Crop`]: the shorter side before the centre crop, as the weights'
    /// evaluation transform has it (torchvision's `Resize(256)` + `CenterCrop(224)`, scaled
    /// to `size`). `None`: `size`, the crop is the whole shorter side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_side: Option<i64>,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            size: 200,
            normalization: Normalization::Torchvision,
            resize: ResizeMode::Crop,
            interpolation: Interpolation::Bilinear,
            resize_side: None,
        }
    }
}

/// The shorter side that keeps the weights' resize/crop ratio at input `size` (timm's
/// `floor(size / crop_pct)`): 224 with 256/224 gives 256, 200 gives 228.
pub fn resize_side_for(size: i64, resize: i64, crop: i64) -> Option<i64> {
    (resize > crop).then(|| size * resize / crop)
}

/// The side lengths and crop offsets of [`ResizeMode::Crop`] for an `h` x `w` image:
/// `(resized_h, resized_w, top, left)`, computed as torchvision's `Resize(side)` and
/// `CenterCrop(size)` do (the longer side truncated, the offsets rounded half to even).
pub fn crop_geometry(h: i64, w: i64, side: i64, size: i64) -> (i64, i64, i64, i64) {
    let (rh, rw) = if h <= w {
        (side, ((side as f64) * (w as f64) / (h as f64)) as i64)
    } else {
        (((side as f64) * (h as f64) / (w as f64)) as i64, side)
    };
    let off = |long: i64| (((long - size) as f64) / 2.0).round_ties_even() as i64;
    (rh, rw, off(rh), off(rw))
}

impl Preprocess {
    /// The shorter side before a centre crop: `resize_side`, at least `size`.
    pub fn side(&self) -> i64 {
        self.resize_side.unwrap_or(self.size).max(self.size)
    }

    /// `[B, 3, h, w]` u8 (any device) -> `[B, 3, size, size]` f32 on `device`.
    /// Resized as [`Preprocess::resize`] says, except that bicubic results are clamped to
    /// 0..=255 after each pass (width, then height), as torchvision's resize of a uint8
    /// image keeps them (it also rounds; the fraction is kept here). The decoding threads'
    /// `tlab-resample` computes the same.
    pub fn apply(&self, images: &Tensor, device: Device) -> Result<Tensor> {
        let dims = images.size();
        if dims.len() != 4 || dims[1] != 3 {
            return Err(Error::invalid("image batch", format!("shape {dims:?}, expected [B, 3, H, W]")));
        }
        // Move u8 first: a quarter of the bytes of f32 cross the bus.
        let x = images.to_device(device).to_kind(Kind::Float);
        let x = self.resize_with(&x, dims[2], dims[3], true)?;
        Ok(self.normalise(&x))
    }

    /// `[B, 3, h, w]` f32 -> `[B, 3, size, size]` f32, as `self.resize` and
    /// `self.interpolation` say, with half-pixel centres (`align_corners=False`), as
    /// torchvision's `Resize(antialias=True)` runs on a float tensor (unclamped).
    /// Bilinear: antialiased when shrinking (a plain upsample when a squash enlarges).
    /// Bicubic: libtorch's `_upsample_bicubic2d_aa` whichever way the scale goes.
    pub fn resize(&self, x: &Tensor, h: i64, w: i64) -> Result<Tensor> {
        self.resize_with(x, h, w, false)
    }

    /// [`Preprocess::resize`]; `clamp`: bicubic one axis at a time, each pass clamped to
    /// 0..=255 (libtorch's kernel is separable, width first, and a pass along an axis whose
    /// size is kept is the identity, so unclamped this equals the one call).
    fn resize_with(&self, x: &Tensor, h: i64, w: i64, clamp: bool) -> Result<Tensor> {
        let s = self.size;
        if (h, w) == (s, s) {
            return Ok(x.shallow_clone());
        }
        let aa = |x: &Tensor, oh: i64, ow: i64| -> Result<Tensor> {
            let bicubic = |x: &Tensor, oh, ow| x.f_internal_upsample_bicubic2d_aa([oh, ow], false, None, None);
            Ok(match self.interpolation {
                Interpolation::Bilinear => x.f_internal_upsample_bilinear2d_aa([oh, ow], false, None, None)?,
                Interpolation::Bicubic if clamp => {
                    let (ih, iw) = (x.size()[2], x.size()[3]);
                    let t = if ow == iw { x.shallow_clone() } else { bicubic(x, ih, ow)?.f_clamp(0.0, 255.0)? };
                    if oh == ih {
                        t
                    } else {
                        bicubic(&t, oh, ow)?.f_clamp(0.0, 255.0)?
                    }
                }
                Interpolation::Bicubic => bicubic(x, oh, ow)?,
            })
        };
        // A square image is only scaled: both modes agree, as they did before crop existed
        // (unless the crop keeps less than the whole shorter side).
        let mode = if h == w && self.side() == s { ResizeMode::Squash } else { self.resize };
        let out = match mode {
            ResizeMode::Squash if s < h || s < w || self.interpolation == Interpolation::Bicubic => aa(x, s, s)?,
            ResizeMode::Squash => x.f_upsample_bilinear2d([s, s], false, None, None)?,
            ResizeMode::Crop => {
                let (rh, rw, top, left) = crop_geometry(h, w, self.side(), s);
                // torchvision resizes with antialias=True whichever way the scale goes.
                let r = if (rh, rw) == (h, w) { x.shallow_clone() } else { aa(x, rh, rw)? };
                r.f_narrow(2, top, s)?.f_narrow(3, left, s)?.contiguous()
            }
        };
        Ok(out)
    }

    /// `[B, 3, H, W]` f32 in 0..255 -> normalised, same shape.
    pub fn normalise(&self, x: &Tensor) -> Tensor {
        self.constants(x.device()).apply(x)
    }

    /// The normalisation's constants as tensors on `device`. Made before tracing, a trace
    /// keeps their values (one made during a trace would be recorded as empty storage).
    pub fn constants(&self, device: Device) -> NormConstants {
        let col = |v: [f64; 3]| Tensor::from_slice(&v).to_kind(Kind::Float).to_device(device).view([1, 3, 1, 1]);
        match self.normalization {
            Normalization::Torchvision | Normalization::Clip => {
                let (mean, std) = match self.normalization {
                    Normalization::Clip => (CLIP_MEAN, CLIP_STD),
                    _ => (IMAGENET_MEAN, IMAGENET_STD),
                };
                let scale = std.map(|s| 1.0 / (255.0 * s));
                let shift = [0, 1, 2].map(|c| mean[c] / std[c]);
                NormConstants { flip: false, scale: Some(col(scale)), shift: col(shift) }
            }
            Normalization::KerasCaffe => NormConstants { flip: true, scale: None, shift: col(CAFFE_MEAN_BGR) },
        }
    }
}

/// `x` (flipped RGB -> BGR if `flip`) `* scale - shift`, per channel.
pub struct NormConstants {
    flip: bool,
    scale: Option<Tensor>,
    shift: Tensor,
}

impl NormConstants {
    /// `[B, 3, H, W]` f32 in 0..255 -> normalised, same shape.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let x = if self.flip { x.flip([1]) } else { x.shallow_clone() };
        match &self.scale {
            Some(scale) => x * scale - &self.shift,
            None => x - &self.shift,
        }
    }
}
