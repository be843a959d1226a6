//! transfer-lab: transfer learning with pretrained ResNets, in Rust.
//!
//! The pipeline of the 2018 post, as library calls that read well in a notebook:
//! fetch data and weights, extract features into a cache, train a head, evaluate.
#[cfg(feature = "bench")]
pub mod bench;
pub mod cache;
pub mod calibration;
pub mod checkpoint;
pub(crate) mod choice;
pub mod classifier;
pub mod curve;
pub mod data;
pub mod device;
pub mod download;
pub(crate) mod error;
pub mod events;
pub mod explain;
pub mod features;
pub(crate) mod fsutil;
pub mod heap;
pub mod hub;
pub mod interrupt;
pub mod metrics;
pub mod models;
pub mod notebook;
pub mod preprocess;
pub mod probe;
pub mod report;
pub mod run;
pub mod rundir;
pub mod settings;
pub mod tables;
pub mod tensorfile;
pub mod train;
#[cfg(feature = "dashboard")]
pub mod tui;

pub use error::{Error, Result};
// Re-exported so notebooks need one `:dep` and get matching versions.
pub use polars;
pub use tch;

/// The libtorch release this build is pinned to (tch 0.24).
pub const LIBTORCH_VERSION: &str = "2.11.0";
