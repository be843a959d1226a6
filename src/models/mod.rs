//! Backbones and their pretrained weights.
pub mod arch;
pub mod backbone;
pub mod cam;
pub mod convnext;
pub mod efficientnet;
pub mod family;
pub mod folded;
pub mod keras;
pub mod pth;
pub mod resnet;
pub mod vit;
pub mod weights;

pub use arch::{Arch, ArchSpec, Family};
pub use backbone::{load_backbone_weights, Backbone, WeightsInfo};
pub use cam::{grad_cam, grad_cam_on_map, grad_cam_tokens, GradCam};
pub use efficientnet::{EfficientNet, FoldedEfficientNet};
pub use family::{Inference, Network, Pool, Tap, TokenNet};
pub use folded::Precision;
pub use resnet::{ResNet, Stages};
pub use vit::Vit;
pub use weights::{
    eval_transform_for, fetch_weights, load_state_dict, load_tensors, load_weights, registry, WeightsEntry,
    WeightsVariant,
};
