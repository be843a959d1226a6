//! Training heads on cached features, and evaluating them.
pub mod head;

pub use head::{evaluate, train_head, EpochMetrics, Evaluation, Head, HeadConfig, TrainOutcome, ValSplit};
