//! One extraction shared by several workers (Slurm array tasks, Kubernetes indexed pods,
//! processes on one box, two notebooks that happen to ask for the same features). The
//! cache folder of one key is the meeting point; this module owns its shared files:
//!
//! ```text
//! <cache>/features/<tag>-<split>-<id>/
//! ├── manifest.json              written once every shard is done (see below)
//! ├── shard-NNNNN.safetensors    rows [N * shard_size, (N + 1) * shard_size)
//! ├── shard-NNNNN.done.json      {key, rows, sha256}: the shard is whole (written after it)
//! ├── shard-NNNNN.claim          {host, pid, part}: a worker computes it; its mtime is the
//! │                              worker's heartbeat
//! ├── part-K-of-N.json           {key, shards, done}: what worker K of N was given
//! └── extraction.json            {key, split, images, shards, ...}: what the folder holds,
//!                                for watchers (`tlab dash FOLDER`) until the manifest is
//!                                written
//! ```
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
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long another host's claim may go without a heartbeat before it is taken over.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// Worker `k` of `n` (0-based), as `--shard K/N` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub k: usize,
    pub n: usize,
}

impl Default for Part {
    fn default() -> Self {
        Part { k: 0, n: 1 }
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl std::str::FromStr for Part {
    type Err = Error;
    /// `K/N` with `0 <= K < N`.
    fn from_str(s: &str) -> Result<Part> {
        let bad = |why: &str| Error::invalid("--shard", format!("`{s}`: {why}"));
        let (k, n) = s.split_once('/').ok_or_else(|| bad("expected K/N, worker K (from 0) of N"))?;
        let k: usize = k.trim().parse().map_err(|_| bad("K is not a number"))?;
        let n: usize = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        Part::new(k, n).map_err(|_| {
            bad(&format!("needs N >= 1 and 0 <= K < N (K counts from 0: the last of {n} is {})", n.saturating_sub(1)))
        })
    }
}

impl Part {
    pub fn new(k: usize, n: usize) -> Result<Part> {
        if n == 0 || k >= n {
            return Err(Error::invalid("part", format!("worker {k} of {n}: needs N >= 1 and 0 <= K < N")));
        }
        Ok(Part { k, n })
    }

    /// The part the scheduler's environment names: Slurm's array task (`SLURM_ARRAY_TASK_ID`
    /// minus `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`), or a Kubernetes Indexed
    /// Job's `JOB_COMPLETION_INDEX` of `shards` (`--shards N`). `None` outside both.
    /// With `--shards N`, a Slurm task ID is the part itself (K of N, arrays from 0): a
    /// failed part resubmitted alone (`--array=5`) is an array of one, whose own count and
    /// minimum would make it part 0 of 1.
    pub fn from_env(get: impl Fn(&str) -> Option<String>, shards: Option<usize>) -> Result<Option<Part>> {
        let num = |name: &str| -> Result<Option<usize>> {
            match get(name) {
                None => Ok(None),
                Some(v) => {
                    v.trim().parse().map(Some).map_err(|_| Error::invalid(name, format!("`{v}` is not a task number")))
                }
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            if let Some(n) = shards {
                return Part::new(id, n).map(Some).map_err(|_| {
                    Error::invalid(
                        "Slurm array task",
                        format!("task {id} is outside --shards {n}: parts are 0 to {}", n.max(1) - 1),
                    )
                });
            }
            let count = num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                Error::invalid("SLURM_ARRAY_TASK_COUNT", "unset while SLURM_ARRAY_TASK_ID is set; pass --shard K/N")
            })?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let k = id.checked_sub(min).ok_or_else(|| {
                Error::invalid("SLURM_ARRAY_TASK_ID", format!("{id} is below SLURM_ARRAY_TASK_MIN {min}"))
            })?;
            return Part::new(k, count).map(Some).map_err(|_| {
                Error::invalid(
                    "Slurm array task",
                    format!(
                        "task {id} (from {min}) is task {k} of {count}: outside the array; submit --array {min}-{}",
                        min + count.max(1) - 1
                    ),
                )
            });
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let n = shards.ok_or_else(|| {
                Error::invalid("JOB_COMPLETION_INDEX", "set, but --shards N (the Job's completions) is not given")
            })?;
            return Part::new(index, n).map(Some).map_err(|_| {
                Error::invalid("Indexed Job", format!("completion index {index} is outside --shards {n}"))
            });
        }
        Ok(None)
    }

    /// The shard indices of this part among `shards`: k, k + n, ... (none when k >= shards).
    pub fn shards(&self, shards: usize) -> Vec<usize> {
        (self.k..shards).step_by(self.n).collect()
    }
}

/// `shard-NNNNN.safetensors`.
pub fn shard_file(i: usize) -> String {
    format!("shard-{i:05}.safetensors")
}

fn done_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("shard-{i:05}.done.json"))
}

fn claim_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("shard-{i:05}.claim"))
}

fn part_path(dir: &Path, p: Part) -> PathBuf {
    dir.join(format!("part-{}-of-{}.json", p.k, p.n))
}

/// `shard-NNNNN.done.json`: a whole shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// The cache key's id: a record copied in from another extraction is refused.
    pub key: String,
    pub rows: usize,
    pub sha256: String,
}

/// Publishes shard `i` as whole (after its file was renamed into place).
pub fn mark_done(dir: &Path, i: usize, done: &Done) -> Result<()> {
    crate::fsutil::write_json_atomic(&done_path(dir, i), done)
}

/// The record of shard `i`, if it is done; a record of another key, or one whose shard
/// file is gone, is an error naming it.
pub fn done(dir: &Path, i: usize, key: &str) -> Result<Option<Done>> {
    let path = done_path(dir, i);
    if !path.exists() {
        return Ok(None);
    }
    let d: Done = crate::fsutil::read_json(&path)?;
    if d.key != key {
        let reason = format!("records shard {i} of extraction {}, not of this folder's {key}; delete it", d.key);
        return Err(Error::Cache { path, reason });
    }
    if !dir.join(shard_file(i)).is_file() {
        return Ok(None);
    }
    Ok(Some(d))
}

/// What a claim file says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimInfo {
    pub host: String,
    pub pid: u32,
    pub part: Part,
}

/// A held claim; removed when dropped (the shard is done or given up).
pub struct Claim {
    path: PathBuf,
}

impl Claim {
    /// Refreshes the heartbeat (the claim's mtime).
    pub fn beat(&self) {
        let _ = std::fs::File::options().append(true).open(&self.path).and_then(|f| f.set_modified(SystemTime::now()));
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Who holds shard `i`, when someone does.
pub enum Taken {
    Mine(Claim),
    Busy(ClaimInfo),
}

pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Takes shard `i` for `part`: an exclusive create, or the takeover of a stale claim (renamed
/// away first, so that of two workers taking it over one wins).
pub fn claim(dir: &Path, i: usize, part: Part) -> Result<Taken> {
    let path = claim_path(dir, i);
    let me = ClaimInfo { host: host(), pid: std::process::id(), part };
    for _ in 0..3 {
        match std::fs::File::options().write(true).create_new(true).open(&path) {
            Ok(f) => {
                use std::io::Write;
                let mut f = f;
                let text = serde_json::to_vec(&me).expect("claim serialises");
                f.write_all(&text).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                // Leftovers of an earlier holder of this shard are ours to clear now.
                remove_shard_temps(dir, i);
                return Ok(Taken::Mine(Claim { path }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let (info, age) = match read_claim(&path) {
                    Some(x) => x,
                    // Gone, or half-written by a holder that died in between: retry.
                    None => {
                        if claim_age(&path).is_some_and(|a| a > Duration::from_secs(5)) {
                            let _ = std::fs::remove_file(&path);
                        }
                        continue;
                    }
                };
                if !is_stale(&info, age) {
                    return Ok(Taken::Busy(info));
                }
                let grave = path.with_extension(format!("claim.stale-{}-{}", host(), std::process::id()));
                if std::fs::rename(&path, &grave).is_ok() {
                    let _ = std::fs::remove_file(&grave);
                }
            }
            Err(e) => return Err(Error::io(format!("claiming {}", path.display()), e)),
        }
    }
    match read_claim(&path) {
        Some((info, _)) => Ok(Taken::Busy(info)),
        None => Err(Error::Cache { path, reason: "the claim keeps changing hands; is a worker looping?".into() }),
    }
}

fn claim_age(path: &Path) -> Option<Duration> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(m).unwrap_or_default())
}

fn read_claim(path: &Path) -> Option<(ClaimInfo, Duration)> {
    let info = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some((info, claim_age(path)?))
}

fn stale_after() -> Duration {
    std::env::var("TLAB_CLAIM_STALE_S").ok().and_then(|v| v.parse().ok()).map_or(STALE_AFTER, Duration::from_secs)
}

/// A claim of a dead process on this host, or one silent for [`STALE_AFTER`] elsewhere.
fn is_stale(info: &ClaimInfo, age: Duration) -> bool {
    if info.host == host() {
        !crate::fsutil::pid_alive(info.pid as i32)
    } else {
        age > stale_after()
    }
}

/// Temp files of shard `i` (`shard-NNNNN.tmp<pid>.safetensors`): only its claim holder
/// writes them, so once the claim is ours, any left are a dead holder's.
fn remove_shard_temps(dir: &Path, i: usize) {
    let prefix = format!("shard-{i:05}.tmp");
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// `part-K-of-N.json`: what a worker was given and whether it finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    pub key: String,
    pub part: Part,
    pub shards: Vec<usize>,
    pub done: bool,
}

pub fn record_part(dir: &Path, rec: &PartRecord) -> Result<()> {
    crate::fsutil::write_json_atomic(&part_path(dir, rec.part), rec)
}

/// `extraction.json`: what a folder's extraction is, so that a watcher given only the
/// folder (`tlab dash FOLDER`) can say how far it is. Every worker writes the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extraction {
    pub key: String,
    pub dataset: String,
    pub split: String,
    pub arch: String,
    pub image_size: i64,
    pub images: usize,
    pub shard_size: usize,
    pub shards: usize,
}

pub const EXTRACTION: &str = "extraction.json";

impl Extraction {
    pub fn rows(&self, i: usize) -> usize {
        self.images.min((i + 1) * self.shard_size).saturating_sub(i * self.shard_size)
    }
}

pub fn record_extraction(dir: &Path, e: &Extraction) -> Result<()> {
    crate::fsutil::write_json_atomic(&dir.join(EXTRACTION), e)
}

pub fn read_extraction(dir: &Path) -> Result<Option<Extraction>> {
    let path = dir.join(EXTRACTION);
    if !path.exists() {
        return Ok(None);
    }
    crate::fsutil::read_json(&path).map(Some)
}

/// When each done shard was finished (its record's mtime), for rates: (shard, time).
pub fn done_times(dir: &Path, done: &[usize]) -> Vec<(usize, SystemTime)> {
    done.iter().filter_map(|&i| Some((i, std::fs::metadata(done_path(dir, i)).ok()?.modified().ok()?))).collect()
}

/// Rows per second over the last shards to finish, all workers together: `(rows, finished)`
/// of done shards. `None` until two have finished at different times.
pub fn recent_rate(mut done: Vec<(usize, SystemTime)>) -> Option<f64> {
    done.sort_by_key(|d| d.1);
    let recent = &done[done.len().saturating_sub(32)..];
    let (first, last) = (recent.first()?.1, recent.last()?.1);
    let secs = last.duration_since(first).ok()?.as_secs_f64();
    // The first shard's rows were computed before `first`: only the later ones count.
    let rows: usize = recent[1..].iter().map(|d| d.0).sum();
    (secs > 0.0).then(|| rows as f64 / secs)
}

/// The state of every shard, for `tlab extract --status` and the merge.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub shards: usize,
    pub done: Vec<usize>,
    /// (shard, holder, stale)
    pub claimed: Vec<(usize, ClaimInfo, bool)>,
    pub missing: Vec<usize>,
    pub parts: Vec<PartRecord>,
}

impl Status {
    pub fn read(dir: &Path, shards: usize, key: &str) -> Result<Status> {
        let (mut done_v, mut claimed, mut missing) = (vec![], vec![], vec![]);
        for i in 0..shards {
            if done(dir, i, key)?.is_some() {
                done_v.push(i);
            } else if let Some((info, age)) = read_claim(&claim_path(dir, i)) {
                let stale = is_stale(&info, age);
                claimed.push((i, info, stale));
            } else {
                missing.push(i);
            }
        }
        let mut parts = vec![];
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("part-") && name.ends_with(".json") {
                let rec: PartRecord = crate::fsutil::read_json(&e.path())?;
                if rec.key != key {
                    let reason = format!("written for extraction {}, not this folder's {key}; delete it", rec.key);
                    return Err(Error::Cache { path: e.path(), reason });
                }
                parts.push(rec);
            }
        }
        parts.sort_by_key(|p| (p.part.n, p.part.k));
        Ok(Status { shards, done: done_v, claimed, missing, parts })
    }

    pub fn complete(&self) -> bool {
        self.done.len() == self.shards
    }

    /// The shards not done, with the parts that own them, for errors: "2 (part 2/4), 6 (part 2/4)".
    pub fn describe_missing(&self, n: usize) -> String {
        let mut not_done: Vec<usize> = self.missing.iter().copied().chain(self.claimed.iter().map(|c| c.0)).collect();
        not_done.sort_unstable();
        let shown: Vec<String> = not_done.iter().take(12).map(|i| format!("{i} (part {}/{n})", i % n)).collect();
        let more = if not_done.len() > 12 { format!(" and {} more", not_done.len() - 12) } else { String::new() };
        format!("{} of {} shards are not done: {}{more}", not_done.len(), self.shards, shown.join(", "))
    }

    /// Removes what only workers need once the manifest is written: claims, records, parts.
    pub fn tidy(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if (name.starts_with("part-") && name.ends_with(".json")) || name == EXTRACTION {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_goes_to_exactly_one_part() {
        for shards in [0, 1, 2, 7, 16, 33] {
            for n in 1..=9 {
                let mut seen = vec![0; shards];
                for k in 0..n {
                    for i in Part::new(k, n).unwrap().shards(shards) {
                        seen[i] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "{shards} shards, {n} parts: {seen:?}");
            }
        }
        // More parts than shards: the extra parts have nothing to do.
        assert!(Part::new(5, 8).unwrap().shards(3).is_empty());
        assert_eq!(Part::default().shards(3), [0, 1, 2]);
    }

    #[test]
    fn bad_parts_and_environments_are_named() {
        assert_eq!("2/4".parse::<Part>().unwrap(), Part { k: 2, n: 4 });
        for bad in ["3/2", "0/0", "4/4", "x/2", "1", "-1/3"] {
            let e = bad.parse::<Part>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("--shard"), "{bad}: {e}");
        }
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let slurm =
            env(&[("SLURM_ARRAY_TASK_ID", "7"), ("SLURM_ARRAY_TASK_MIN", "5"), ("SLURM_ARRAY_TASK_COUNT", "4")]);
        assert_eq!(Part::from_env(slurm, None).unwrap(), Some(Part { k: 2, n: 4 }));
        // A part resubmitted alone: `--shards` says which part of how many.
        let rerun =
            env(&[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_MIN", "2"), ("SLURM_ARRAY_TASK_COUNT", "1")]);
        assert_eq!(Part::from_env(rerun, None).unwrap(), Some(Part { k: 0, n: 1 }));
        assert_eq!(Part::from_env(rerun, Some(4)).unwrap(), Some(Part { k: 2, n: 4 }));
        let e = Part::from_env(rerun, Some(2)).unwrap_err().to_string();
        assert!(e.contains("task 2") && e.contains("--shards 2"), "{e}");
        let five_of_four = env(&[("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_COUNT", "4")]);
        let e = Part::from_env(five_of_four, None).unwrap_err().to_string();
        assert!(e.contains("task 5") && e.contains("of 4"), "{e}");
        let k8s = env(&[("JOB_COMPLETION_INDEX", "3")]);
        assert_eq!(Part::from_env(k8s, Some(4)).unwrap(), Some(Part { k: 3, n: 4 }));
        assert!(Part::from_env(k8s, None).unwrap_err().to_string().contains("--shards"));
        assert!(Part::from_env(env(&[]), Some(4)).unwrap().is_none());
    }

    #[test]
    fn rates_count_the_shards_finished_after_the_first() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(recent_rate(vec![]), None);
        assert_eq!(recent_rate(vec![(64, at(0))]), None);
        assert_eq!(recent_rate(vec![(64, at(3)), (64, at(3))]), None);
        // Out of order, as records are read: 64 + 32 rows in 4 s after the first.
        assert_eq!(recent_rate(vec![(32, at(4)), (64, at(0)), (64, at(2))]), Some(24.0));
        let e = Extraction {
            key: "k".into(),
            dataset: "d".into(),
            split: "train".into(),
            arch: "resnet18".into(),
            image_size: 32,
            images: 200,
            shard_size: 64,
            shards: 4,
        };
        assert_eq!((0..4).map(|i| e.rows(i)).collect::<Vec<_>>(), [64, 64, 64, 8]);
    }

    #[test]
    fn claims_are_exclusive_and_a_dead_holders_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = Part::default();
        let Taken::Mine(c) = claim(dir.path(), 3, p).unwrap() else { panic!("free shard") };
        assert!(
            matches!(claim(dir.path(), 3, p).unwrap(), Taken::Busy(ClaimInfo { pid, .. }) if pid == std::process::id())
        );
        drop(c);
        assert!(matches!(claim(dir.path(), 3, p).unwrap(), Taken::Mine(_)));
        // A claim of a process that is gone: taken over, and its temp file cleared.
        let dead = ClaimInfo { host: host(), pid: 0x7fff_fff0, part: p };
        std::fs::write(claim_path(dir.path(), 4), serde_json::to_vec(&dead).unwrap()).unwrap();
        std::fs::write(dir.path().join("shard-00004.tmp123.safetensors"), b"half").unwrap();
        assert!(matches!(claim(dir.path(), 4, p).unwrap(), Taken::Mine(_)));
        assert!(!dir.path().join("shard-00004.tmp123.safetensors").exists());
        // Another host's claim is live until its heartbeat is old.
        let far = ClaimInfo { host: "elsewhere".into(), pid: 1, part: p };
        std::fs::write(claim_path(dir.path(), 5), serde_json::to_vec(&far).unwrap()).unwrap();
        assert!(matches!(claim(dir.path(), 5, p).unwrap(), Taken::Busy(_)));
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(5);
        std::fs::File::options().append(true).open(claim_path(dir.path(), 5)).unwrap().set_modified(old).unwrap();
        assert!(matches!(claim(dir.path(), 5, p).unwrap(), Taken::Mine(_)));
    }
}
