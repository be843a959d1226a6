//! Backbones and their pretrained weights.
pub mod backbone;
pub mod folded;
pub mod pth;
pub mod resnet;
pub mod weights;

pub use backbone::{Backbone, WeightsInfo};
pub use resnet::{Arch, ResNet, Stages, Tap};
pub use weights::{fetch_weights, load_state_dict, load_tensors, load_weights, WeightsEntry, WeightsVariant};
