//! Training heads on cached features, and evaluating them.
pub mod head;
pub mod strategy;

pub use head::{evaluate, train_head, EpochMetrics, Evaluation, Head, HeadConfig, TrainOutcome, ValSplit};
pub use strategy::{evaluate_images, train_on_images, ImageModel, ImageTrainConfig, Strategy, Unfreeze};
