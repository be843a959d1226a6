//! Where downloads, datasets, weights and features are kept.
use std::path::{Path, PathBuf};

/// Environment variable that overrides the cache folder.
pub const CACHE_ENV: &str = "TLAB_CACHE_DIR";

/// The cache root: `explicit` (`--cache-dir`), else `$TLAB_CACHE_DIR`, else the platform
/// cache dir (`~/.cache/transfer-lab` on Linux).
pub fn cache_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("transfer-lab")
}
