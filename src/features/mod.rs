//! Streaming feature extraction into a sharded, resumable cache folder.
//!
//! Batches are decoded, upscaled and normalised on the fly (never the whole upscaled set
//! in memory), run through the frozen backbone, and written as safetensors shards of
//! `shard_size` rows plus a manifest. Each shard is written atomically and then recorded
//! as done, so a run killed at any point resumes from its complete shards; the manifest
//! is written once, when every shard is done. Shards start on batch boundaries and are
//! fixed by the data alone, so a resumed run, or any number of workers sharing the
//! extraction ([`shards`]), writes the same files as one uninterrupted process.
//!
//! - `key`: [`CacheKey`], everything that changes the features; its hash names the folder.
//! - `dir`: [`FeatureDir`], the folder's one owner: its tree, drawn there, and every name.
//! - `extract`, `plan`, `worker`: the extraction, its plan, the forward pass.
//! - [`shards`]: one extraction shared among workers: parts, claims, records, status.
//! - `load`: [`load_features`], a finished folder checked against its manifest.
mod dir;
mod extract;
mod key;
mod load;
mod plan;
pub mod shards;
mod worker;

pub use crate::models::folded::Precision;
pub use dir::FeatureDir;
pub use extract::{
    extract_features, extract_part, extract_to_cache, merge_parts, part_status, peak_rss_bytes, ExtractConfig,
};
pub use key::{CacheKey, CACHE_FORMAT};
pub use load::{load_features, FeatureSet, Manifest, ShardInfo, SkippedRow};
