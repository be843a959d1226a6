//! Why a model said what it said: Grad-CAM heatmaps over the photo.
//!
//! Library first: [`grad_cam`] on a network and a head ([`crate::models::cam`]),
//! `Classifier::explain` on decoded images, [`explain_files`] writing heatmap PNGs (what
//! `tlab predict --explain` calls), [`overlay`] drawing a map over its photo.
mod files;
mod overlay;

pub use crate::models::cam::{grad_cam, GradCam};
pub use files::{explain_files, Explained, INDEX_FILE};
pub use overlay::{heatmap_png, overlay, png};
