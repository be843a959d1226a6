//! One error type for the library; messages name the file, tensor or flag at fault.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error("checksum mismatch for {path}: expected {expected}, got {actual}. {advice}")]
    Checksum { path: PathBuf, expected: String, actual: String, advice: String },
    /// `HF_HUB_OFFLINE` is set and a Hugging Face Hub file is not in the Hub cache.
    #[error("{what} is not in the Hugging Face cache (looked for {path}) and HF_HUB_OFFLINE is set; {advice}")]
    HubOffline { what: String, path: PathBuf, advice: String },
    #[error("bad data in {path}: {reason}")]
    Data { path: PathBuf, reason: String },
    #[error("weights {path}: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("feature cache {path}: {reason}")]
    Cache { path: PathBuf, reason: String },
    #[error("table {path}: {reason}")]
    Table { path: PathBuf, reason: String },
    /// A chart that could not be drawn or encoded; `chart` names it (or its file).
    #[error("chart {chart}: {reason}")]
    Chart { chart: String, reason: String },
    #[error("checkpoint {path}: {source}")]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },
    #[error("training stopped: {0}")]
    Training(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// `tlab bench`: a Python peer (PyTorch or Keras) failed or answered nonsense.
    #[error("{framework} peer: {reason}")]
    Peer { framework: String, reason: String },
    #[error("bench set-up: {0}")]
    BenchSetup(String),
    /// What was being done when `source` happened.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
    /// A signal stopped the work cleanly; `kept` says what is saved and how to resume.
    #[error("interrupted by {by}; {kept}")]
    Interrupted { by: String, kept: String },
    #[error("json {context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid { what: what.into(), reason: reason.into() }
    }
    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data { path: path.into(), reason: reason.into() }
    }
    /// This error, saying what was being done.
    pub fn in_context(self, context: impl Into<String>) -> Self {
        Error::Context { context: context.into(), source: Box::new(self) }
    }
}

/// `io::Result` -> our `Result`, naming what was being done.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
