//! Claims: a worker takes a shard by creating its claim file exclusively, keeps it alive
//! by touching it, and a claim whose holder is gone is taken over.
use super::Part;
use crate::features::FeatureDir;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long another host's claim may go without a heartbeat before it is taken over.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

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
        .or_else(|| crate::settings::current().hostname.clone())
        .unwrap_or_else(|| "localhost".into())
}

/// Takes shard `i` for `part`: an exclusive create, or the takeover of a stale claim (renamed
/// away first, so that of two workers taking it over one wins).
pub fn claim(dir: &Path, i: usize, part: Part) -> Result<Taken> {
    let dir = FeatureDir::new(dir);
    let path = dir.claim(i);
    let me = ClaimInfo { host: host(), pid: std::process::id(), part };
    for _ in 0..3 {
        match std::fs::File::options().write(true).create_new(true).open(&path) {
            Ok(f) => {
                use std::io::Write;
                let mut f = f;
                let text = serde_json::to_vec(&me).expect("claim serialises");
                f.write_all(&text).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                // Leftovers of an earlier holder of this shard are ours to clear now.
                remove_shard_temps(&dir, i);
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
                let grave = dir.stale_claim(i, &host(), std::process::id());
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

pub(super) fn read_claim(path: &Path) -> Option<(ClaimInfo, Duration)> {
    let info = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some((info, claim_age(path)?))
}

fn stale_after() -> Duration {
    crate::settings::current().claim_stale_s.map_or(STALE_AFTER, Duration::from_secs)
}

/// A claim of a dead process on this host, or one silent for [`STALE_AFTER`] elsewhere.
pub(super) fn is_stale(info: &ClaimInfo, age: Duration) -> bool {
    if info.host == host() {
        !crate::fsutil::pid_alive(info.pid as i32)
    } else {
        age > stale_after()
    }
}

/// Temp files of shard `i` (`shard-NNNNN.tmp<pid>.safetensors`): only its claim holder
/// writes them, so once the claim is ours, any left are a dead holder's.
fn remove_shard_temps(dir: &FeatureDir, i: usize) {
    for (name, path) in dir.entries() {
        if FeatureDir::is_shard_temp(&name, i) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Leftovers of a killed writer on this host; never part of the cache. Shard data is left
/// to the claims (a shard's temp file is cleared by whoever claims the shard next): on a
/// shared filesystem, another host's live writer has a pid this host does not know. The
/// small records are written and renamed in microseconds, so their temps are not at risk.
pub(in crate::features) fn remove_temp_files(dir: &FeatureDir) {
    for (name, path) in dir.entries() {
        if name.contains(".tmp") && !FeatureDir::is_shard_data(&name) {
            crate::fsutil::remove_stale_temp(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        std::fs::write(FeatureDir::new(dir.path()).claim(4), serde_json::to_vec(&dead).unwrap()).unwrap();
        std::fs::write(dir.path().join("shard-00004.tmp123.safetensors"), b"half").unwrap();
        assert!(matches!(claim(dir.path(), 4, p).unwrap(), Taken::Mine(_)));
        assert!(!dir.path().join("shard-00004.tmp123.safetensors").exists());
        // Another host's claim is live until its heartbeat is old.
        let far = ClaimInfo { host: "elsewhere".into(), pid: 1, part: p };
        std::fs::write(FeatureDir::new(dir.path()).claim(5), serde_json::to_vec(&far).unwrap()).unwrap();
        assert!(matches!(claim(dir.path(), 5, p).unwrap(), Taken::Busy(_)));
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(5);
        std::fs::File::options()
            .append(true)
            .open(FeatureDir::new(dir.path()).claim(5))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(matches!(claim(dir.path(), 5, p).unwrap(), Taken::Mine(_)));
    }
}
