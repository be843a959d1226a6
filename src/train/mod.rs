//! Training: one loop ([`fit`]) and the steps it drives, the post's head on cached
//! features ([`head`]) and the image strategies ([`strategy`]).
pub mod adam;
pub mod fit;
pub mod head;
mod progress;
pub mod split;
pub mod strategy;

pub use adam::AdamOptimizer;
pub use fit::{fit, save_atomic, Adam, FitConfig, TrainLoop, TrainStep};
pub use head::{evaluate, train_head, EpochMetrics, Evaluation, Head, HeadConfig, TrainOutcome};
pub use split::{Split, ValSplit};
pub use strategy::{evaluate_images, train_on_images, BatchNorm, ImageModel, ImageTrainConfig, Strategy, Unfreeze};
