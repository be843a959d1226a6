//! The environment, read in one place. `tlab`'s main reads it once and hands it to the
//! library ([`install`]); a notebook's [`Tutorial::detect`](crate::notebook::Tutorial)
//! does the same. Library code asks [`current`], never the environment. A library user
//! who installs nothing gets the environment as it was at the first ask.
use std::path::PathBuf;
use std::sync::OnceLock;

/// Every variable transfer-lab reads (the heap's are process policy: `heap`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// `TLAB_CACHE_DIR`: the cache folder, unless `--cache-dir` says.
    pub cache_dir: Option<PathBuf>,
    /// `TLAB_CIFAR10_URL`: a CIFAR-10 mirror, for users behind proxies or without access
    /// to the origin.
    pub cifar10_url: Option<String>,
    /// `TLAB_WEIGHTS_BASE_URL`: a mirror of torchvision's weights folder.
    pub weights_base_url: Option<String>,
    /// `TLAB_DECODE_THREADS`: image decoding threads (default: the machine's cores).
    pub decode_threads: Option<usize>,
    /// `TLAB_CLAIM_STALE_S`: seconds after which another host's silent claim is stale.
    pub claim_stale_s: Option<u64>,
    /// `HOSTNAME`, when the kernel does not say (claims name their host).
    pub hostname: Option<String>,
    /// `TLAB_TUTORIAL`: `quick` or `full` for the notebooks.
    pub tutorial: Option<String>,
    /// `TLAB_RUNS_DIR`: the notebooks' run directories.
    pub runs_dir: Option<PathBuf>,
    /// `EVCXR_IS_RUNTIME`: set by evcxr in the process that runs notebook cells.
    pub in_evcxr: bool,
    /// `HF_HUB_CACHE` (or the legacy `HUGGINGFACE_HUB_CACHE`): the Hugging Face Hub cache.
    pub hf_hub_cache: Option<PathBuf>,
    /// `HF_HOME`: the Hub cache is `$HF_HOME/hub` unless `HF_HUB_CACHE` says.
    pub hf_home: Option<PathBuf>,
    /// `XDG_CACHE_HOME`: `$XDG_CACHE_HOME/huggingface` when `HF_HOME` is unset.
    pub xdg_cache_home: Option<PathBuf>,
    /// `HOME`: `~/.cache/huggingface/hub` is the Hub cache's last resort.
    pub home: Option<PathBuf>,
    /// `HF_ENDPOINT`: a Hub mirror instead of https://huggingface.co.
    pub hf_endpoint: Option<String>,
    /// `HF_HUB_OFFLINE` (else `TRANSFORMERS_OFFLINE`) is 1/ON/YES/TRUE: no Hub requests.
    pub hf_hub_offline: bool,
}

pub const CACHE_DIR: &str = "TLAB_CACHE_DIR";
pub const CIFAR10_URL: &str = "TLAB_CIFAR10_URL";
pub const WEIGHTS_BASE_URL: &str = "TLAB_WEIGHTS_BASE_URL";
pub const DECODE_THREADS: &str = "TLAB_DECODE_THREADS";
pub const CLAIM_STALE_S: &str = "TLAB_CLAIM_STALE_S";
pub const TUTORIAL: &str = "TLAB_TUTORIAL";
pub const RUNS_DIR: &str = "TLAB_RUNS_DIR";
pub const HF_HUB_CACHE: &str = "HF_HUB_CACHE";
pub const HF_HOME: &str = "HF_HOME";
pub const HF_ENDPOINT: &str = "HF_ENDPOINT";
pub const HF_HUB_OFFLINE: &str = "HF_HUB_OFFLINE";

impl Settings {
    pub fn from_env() -> Settings {
        Settings::from_vars(|k| std::env::var(k).ok())
    }

    /// From any source of variables (tests pass a map). Blank values count as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Settings {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        Settings {
            cache_dir: get(CACHE_DIR).map(PathBuf::from),
            cifar10_url: get(CIFAR10_URL),
            weights_base_url: get(WEIGHTS_BASE_URL),
            decode_threads: get(DECODE_THREADS).and_then(|v| v.parse().ok()).filter(|&n| n >= 1),
            claim_stale_s: get(CLAIM_STALE_S).and_then(|v| v.parse().ok()),
            hostname: get("HOSTNAME"),
            tutorial: get(TUTORIAL),
            runs_dir: get(RUNS_DIR).map(PathBuf::from),
            in_evcxr: var("EVCXR_IS_RUNTIME").is_some(),
            hf_hub_cache: get(HF_HUB_CACHE).or_else(|| get("HUGGINGFACE_HUB_CACHE")).map(PathBuf::from),
            hf_home: get(HF_HOME).map(PathBuf::from),
            xdg_cache_home: get("XDG_CACHE_HOME").map(PathBuf::from),
            home: get("HOME").map(PathBuf::from),
            hf_endpoint: get(HF_ENDPOINT),
            // huggingface_hub's `_is_true(HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)`.
            hf_hub_offline: get(HF_HUB_OFFLINE)
                .or_else(|| get("TRANSFORMERS_OFFLINE"))
                .is_some_and(|v| ["1", "ON", "YES", "TRUE"].contains(&v.to_uppercase().as_str())),
        }
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Hands the library its settings, once, before it asks (later calls are ignored:
/// settings do not change under a running job).
pub fn install(settings: Settings) {
    let _ = SETTINGS.set(settings);
}

/// The installed settings; the environment now when none were installed.
pub fn current() -> &'static Settings {
    SETTINGS.get_or_init(Settings::from_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_read_and_blank_ones_ignored() {
        let vars = [(CACHE_DIR, "/c"), (CIFAR10_URL, " "), (DECODE_THREADS, "0"), (CLAIM_STALE_S, "30")];
        let s = Settings::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()));
        assert_eq!(s.cache_dir, Some(PathBuf::from("/c")));
        assert_eq!((s.cifar10_url, s.decode_threads, s.claim_stale_s), (None, None, Some(30)));
        assert!(!s.in_evcxr);
    }

    #[test]
    fn hub_offline_takes_huggingface_hubs_truthy_values() {
        let offline = |vars: &[(&str, &str)]| {
            Settings::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).hf_hub_offline
        };
        assert!(offline(&[(HF_HUB_OFFLINE, "1")]) && offline(&[(HF_HUB_OFFLINE, "yes")]));
        assert!(offline(&[("TRANSFORMERS_OFFLINE", "True")]));
        assert!(!offline(&[(HF_HUB_OFFLINE, "0"), ("TRANSFORMERS_OFFLINE", "1")]), "HF_HUB_OFFLINE decides when set");
        assert!(!offline(&[]) && !offline(&[(HF_HUB_OFFLINE, "offline")]));
    }
}
