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
}

crate::choice::choice!(Normalization, "normalisation");

const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];
/// Keras caffe means, in BGR order.
const CAFFE_MEAN_BGR: [f64; 3] = [103.939, 116.779, 123.68];

/// Resize + normalisation for one model input size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Output side in pixels (the post: 200; ImageNet's usual: 224).
    pub size: i64,
    pub normalization: Normalization,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess { size: 200, normalization: Normalization::Torchvision }
    }
}

impl Preprocess {
    /// `[B, 3, h, w]` u8 (any device) -> `[B, 3, size, size]` f32 on `device`.
    /// Bilinear (half-pixel centres, as torchvision and `tf.image.resize`); antialiased
    /// when shrinking, as torchvision's `Resize` does.
    pub fn apply(&self, images: &Tensor, device: Device) -> Result<Tensor> {
        let dims = images.size();
        if dims.len() != 4 || dims[1] != 3 {
            return Err(Error::invalid("image batch", format!("shape {dims:?}, expected [B, 3, H, W]")));
        }
        // Move u8 first: a quarter of the bytes of f32 cross the bus.
        let x = images.to_device(device).to_kind(Kind::Float);
        let x = self.resize(&x, dims[2], dims[3])?;
        Ok(self.normalise(&x))
    }

    fn resize(&self, x: &Tensor, h: i64, w: i64) -> Result<Tensor> {
        let s = self.size;
        if (h, w) == (s, s) {
            return Ok(x.shallow_clone());
        }
        let out = if s < h || s < w {
            x.f_internal_upsample_bilinear2d_aa([s, s], false, None, None)?
        } else {
            x.f_upsample_bilinear2d([s, s], false, None, None)?
        };
        Ok(out)
    }

    /// `[B, 3, H, W]` f32 in 0..255 -> normalised, same shape.
    pub fn normalise(&self, x: &Tensor) -> Tensor {
        let dev = x.device();
        let col = |v: [f64; 3]| Tensor::from_slice(&v).to_kind(Kind::Float).to_device(dev).view([1, 3, 1, 1]);
        match self.normalization {
            Normalization::Torchvision => {
                let scale = IMAGENET_STD.map(|s| 1.0 / (255.0 * s));
                let shift = [0, 1, 2].map(|c| IMAGENET_MEAN[c] / IMAGENET_STD[c]);
                x * col(scale) - col(shift)
            }
            Normalization::KerasCaffe => x.flip([1]) - col(CAFFE_MEAN_BGR),
        }
    }
}
