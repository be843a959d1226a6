//! One extraction shared by several workers (Slurm array tasks, Kubernetes indexed pods,
//! processes on one box, two notebooks that happen to ask for the same features). The
//! cache folder of one key is the meeting point; this module reads and writes the files
//! its workers share there (claims, done records, part records and `extraction.json`) and
//! reads them together as a [`Status`]. Their names and the folder's tree are
//! [`FeatureDir`](super::FeatureDir)'s.
//!
//! Only operations that hold on shared filesystems (NFS included) are relied on:
//! exclusive create (`O_CREAT | O_EXCL`) to take a claim, rename to publish a whole file
//! (shards, records, the manifest) and to take over a stale claim, and mtimes for
//! heartbeats. No `flock`: over NFS it is advisory at best and absent at worst.
//!
//! Shard boundaries are the one-process extraction's, and a shard's bytes depend only on
//! its rows, so any split of the work gives the same files. Worker K of N owns shards
//! K, K + N, K + 2N, ... A claim is stale when its holder is gone: on this host, its pid
//! no longer runs; on another host, its heartbeat is older than [`STALE_AFTER`]
//! (`$TLAB_CLAIM_STALE_S`). The manifest is written by whichever worker sees every shard
//! done after finishing its own, or by `tlab extract --merge`; every writer writes the
//! same bytes, so a race between two of them is harmless.
mod claim;
mod part;
mod records;
mod status;

pub use super::dir::shard_file;
pub(super) use claim::remove_temp_files;
pub use claim::{claim, host, Claim, ClaimInfo, Taken, STALE_AFTER};
pub use part::Part;
pub use records::{
    done, done_times, mark_done, read_extraction, recent_rate, record_extraction, record_part, Done, Extraction,
    PartRecord,
};
pub use status::Status;
