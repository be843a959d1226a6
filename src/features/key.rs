//! The cache key: everything that changes the features. Its hash names the folder, so a
//! change of any of them is a new folder, never a misread one.
use crate::models::folded::Precision;
use crate::models::{Arch, Pool, Tap};

fn mean() -> Pool {
    Pool::Mean
}
fn is_mean(p: &Pool) -> bool {
    *p == Pool::Mean
}
use crate::preprocess::Normalization;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped when the cache layout changes, so old caches are not misread.
pub const CACHE_FORMAT: u32 = 1;

/// Everything that changes the features; its hash names the cache folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    pub format: u32,
    pub dataset: String,
    pub split: String,
    pub dataset_digest: String,
    pub images: usize,
    pub weights_digest: String,
    pub arch: Arch,
    pub image_size: i64,
    pub normalization: Normalization,
    pub tap: Tap,
    /// Absent for the mean, so keys (and cache folders) made before ViTs are unchanged.
    #[serde(default = "mean", skip_serializing_if = "is_mean")]
    pub pool: Pool,
    /// Serialises as "fp32" / "bf16" / "fp16": fp32 keys (and cache folders) are the
    /// same as before precision was a choice.
    pub precision: Precision,
}

impl CacheKey {
    /// 16 hex digits of the SHA-256 of the key's JSON.
    pub fn id(&self) -> String {
        let json = serde_json::to_vec(self).expect("key serialises");
        hex::encode(Sha256::digest(&json))[..16].to_string()
    }

    /// The dataset name made safe for a folder name (see [`super::FeatureDir::of`]).
    pub(super) fn dataset_tag(&self) -> String {
        let tag: String = self.dataset.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        tag.chars().take(24).collect()
    }
}
