//! Which worker computes which shards: worker K of N, from `--shard K/N` or the
//! scheduler's environment.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

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
}
