//! The one checkpoint protocol of every resumable loop (the training loop, the logreg
//! sweep). A loop's progress travels as JSON in the metadata of its last checkpoint
//! (`{head,model}-last.safetensors`) beside the tensors it needs, so one rename replaces
//! both and a kill leaves the old checkpoint or the new one. Resuming reads it back,
//! checks that it is this job's (the same settings, sample count and data) and otherwise
//! starts over, naming what differs. Every stop points at one command: [`resume_hint`].
use crate::events::EventSink;
use crate::rundir::{RunDir, Weights};
use crate::{Error, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

/// A loop's last checkpoint in a run directory: the file, and the metadata key its
/// progress is stored under.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint<'a> {
    pub dir: &'a RunDir,
    pub weights: Weights,
    /// e.g. `tlab.train_state`: a checkpoint of another loop has none, or another.
    pub key: &'static str,
}

/// A checkpoint read back: its tensors, and the progress when it holds this loop's.
pub struct Loaded<S> {
    pub state: Option<S>,
    pub tensors: HashMap<String, Tensor>,
    pub path: PathBuf,
}

/// What identifies one job's progress: its settings, sample count and data fingerprint.
/// `None` (a state saved before that was recorded) matches anything.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a, C> {
    pub settings: Option<&'a C>,
    pub samples: Option<i64>,
    pub data: Option<&'a str>,
}

impl Checkpoint<'_> {
    pub fn path(&self) -> PathBuf {
        self.dir.last(self.weights)
    }

    /// `tensors` and `state` into the checkpoint, by one rename (temp file, then rename).
    pub fn save<S: Serialize>(&self, state: &S, tensors: &[(String, Tensor)]) -> Result<()> {
        let path = self.path();
        let json = serde_json::to_string(state)
            .map_err(|source| Error::Json { context: path.display().to_string(), source })?;
        crate::tensorfile::write(&path, tensors, &HashMap::from([(self.key.to_string(), json)]))
    }

    /// The checkpoint, if there is one; first removes the temp files a killed writer left.
    pub fn load<S: DeserializeOwned>(&self) -> Result<Option<Loaded<S>>> {
        crate::fsutil::remove_stale_temps(self.dir.path());
        let path = self.path();
        if !path.exists() {
            return Ok(None);
        }
        let (tensors, meta) = crate::tensorfile::read(&path)?;
        let state = match meta.get(self.key) {
            Some(json) => Some(
                serde_json::from_str(json)
                    .map_err(|source| Error::Json { context: path.display().to_string(), source })?,
            ),
            None => None,
        };
        Ok(Some(Loaded { state, tensors, path }))
    }

    /// Whether `saved` is the progress of `now`'s job. When it is not, says so on `sink`,
    /// naming what differs, and that `job` (e.g. "training") starts over.
    pub fn same_job<C: PartialEq + Serialize>(
        &self,
        saved: Identity<C>,
        now: Identity<C>,
        job: &str,
        sink: &mut dyn EventSink,
    ) -> bool {
        let differs = differences(saved, now);
        if !differs.is_empty() {
            sink.warn(&format!(
                "{} belongs to other settings or data; {job} starts over (they differ in {})",
                self.path().display(),
                differs.join(", ")
            ));
        }
        differs.is_empty()
    }
}

impl<S> Loaded<S> {
    /// Removes and returns tensor `name`, naming the checkpoint when it is missing.
    pub fn take(&mut self, name: &str) -> Result<Tensor> {
        self.tensors.remove(name).ok_or_else(|| Error::Checkpoint {
            path: self.path.clone(),
            source: tch::TchError::FileFormat(format!("{name} is missing")),
        })
    }

    /// Copies the checkpoint's tensors into the same-named variables of `vs`, naming any
    /// that is missing or mis-shaped.
    pub fn restore(&self, vs: &mut nn::VarStore) -> Result<()> {
        let path = &self.path;
        tch::no_grad(|| {
            for (name, mut var) in vs.variables() {
                let src =
                    self.tensors.get(&name).filter(|t| t.size() == var.size()).ok_or_else(|| Error::Checkpoint {
                        path: path.clone(),
                        source: tch::TchError::FileFormat(format!("{name} is missing or has the wrong shape")),
                    })?;
                var.f_copy_(src).map_err(|source| Error::Checkpoint { path: path.clone(), source })?;
            }
            Ok(())
        })
    }
}

/// The settings (by field of their JSON), `samples` and `data` that differ between a
/// saved job and this one; empty when it is the same job.
pub fn differences<C: PartialEq + Serialize>(saved: Identity<C>, now: Identity<C>) -> Vec<String> {
    let mut out = vec![];
    if let (Some(a), Some(b)) = (saved.settings, now.settings) {
        if a != b {
            out.extend(differing_fields(a, b));
            if out.is_empty() {
                out.push("settings".into());
            }
        }
    }
    if let (Some(a), Some(b)) = (saved.samples, now.samples) {
        if a != b {
            out.push(format!("sample count ({a} then, {b} now)"));
        }
    }
    if saved.data.zip(now.data).is_some_and(|(a, b)| a != b) {
        out.push("data".into());
    }
    out
}

/// The top-level fields whose JSON differs, in name order.
fn differing_fields<C: Serialize>(a: &C, b: &C) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return vec![];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).map(|k| k.to_string()).collect()
}

/// What a stopped job kept, and the command that continues it: "`<what>` saved `<at>`;
/// resume with ...", or the command alone when `at` is empty.
pub fn resume_hint(dir: &RunDir, what: &str, at: &str) -> String {
    let at = if at.is_empty() { String::new() } else { format!("{what} saved {at}; ") };
    // A probe's folder sits inside the run directory that `--resume` takes.
    let run = if dir.path().ends_with(crate::rundir::PROBE) { dir.path().parent() } else { Some(dir.path()) };
    format!("{at}resume with `tlab train --resume {}`", run.unwrap_or(dir.path()).display())
}

/// Saves a var store through a temp file, so the previous checkpoint stays whole on a crash.
pub fn save_atomic(vs: &nn::VarStore, path: &Path) -> Result<()> {
    crate::fsutil::write_via_temp(path, |tmp| {
        vs.save(tmp).map_err(|source| Error::Checkpoint { path: path.to_path_buf(), source })
    })
}

/// Loads a checkpoint into a var store, naming the file on failure.
pub fn load(vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    vs.load(path).map_err(|source| Error::Checkpoint { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(PartialEq, Serialize)]
    struct Settings {
        lr: f64,
        epochs: u32,
    }

    #[test]
    fn what_differs_is_named_and_unrecorded_parts_match_anything() {
        let (a, b) = (Settings { lr: 0.1, epochs: 3 }, Settings { lr: 0.2, epochs: 3 });
        let id = |s, n, d| Identity { settings: Some(s), samples: n, data: d };
        assert!(differences(id(&a, Some(10), Some("x")), id(&a, Some(10), Some("x"))).is_empty());
        assert_eq!(differences(id(&a, Some(10), Some("x")), id(&b, Some(10), Some("x"))), ["lr"]);
        assert_eq!(
            differences(id(&a, Some(10), Some("x")), id(&a, Some(12), Some("y"))),
            ["sample count (10 then, 12 now)", "data"]
        );
        let old = Identity::<Settings> { settings: None, samples: None, data: None };
        assert!(differences(old, id(&b, Some(12), Some("y"))).is_empty());
    }

    #[test]
    fn the_hint_names_the_run_a_probe_belongs_to() {
        let run = RunDir::at("/runs/r");
        assert_eq!(resume_hint(&run, "sweep", ""), "resume with `tlab train --resume /runs/r`");
        assert_eq!(
            resume_hint(&run.probe(), "checkpoint", "after epoch 2"),
            "checkpoint saved after epoch 2; resume with `tlab train --resume /runs/r`"
        );
    }
}
