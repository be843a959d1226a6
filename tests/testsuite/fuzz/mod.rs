//! Fuzzing of every parser that reads files a user or another process hands us, with
//! proptest on the stable toolchain: the CIFAR-10 batch parser, the `.pth` and Keras `.h5`
//! readers, feature shards and manifests, resume checkpoints, `events.jsonl` tailing, image
//! decoding and exported models.
//!
//! Each target generates valid files (so the oracle knows what must come back), damages
//! them (flips, cuts, insertions, fields set to hostile values) or writes raw noise, and
//! checks that the parser returns the right thing or an error naming the file, never a
//! panic. `TLAB_FUZZ_CASES` sets the cases per target (default 160 here, e.g. 5000 on
//! demand) and `TLAB_FUZZ_SEED` the seed (default 1), so a failure reruns exactly.
//! Crashes found so far each have a regression test beside their target.
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::time::Instant;

mod cifar;
mod files;
mod h5;
mod image;
mod model;
mod pth;
mod tail;

/// Cases per target: `$TLAB_FUZZ_CASES`, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("TLAB_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("TLAB_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// Runs `test` on `cases(default)` values of `strategy`, seeded; a failure panics with the
/// shrunk input and the seed that finds it.
fn fuzz<S: Strategy>(name: &str, default: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let n = cases(default);
    let config = Config { cases: n, failure_persistence: None, max_shrink_iters: 2000, ..Config::default() };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed().to_le_bytes());
    seed_bytes[8..8 + name.len().min(24)].copy_from_slice(&name.as_bytes()[..name.len().min(24)]);
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let t0 = Instant::now();
    if let Err(e) = runner.run(&strategy, test) {
        panic!("fuzz target {name} (TLAB_FUZZ_SEED={}): {e}", seed());
    }
    println!("fuzz {name}: {n} cases, seed {}, no failure, {:.1} s", seed(), t0.elapsed().as_secs_f64());
}

/// Ways to damage a file's bytes; positions are taken modulo the length.
#[derive(Debug, Clone)]
enum Damage {
    Flip {
        at: usize,
        xor: u8,
    },
    Cut {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    /// Eight bytes overwritten: size and offset fields are often u32/u64.
    Word {
        at: usize,
        value: u64,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Damage::Flip { at, xor }),
        2 => any::<usize>().prop_map(|at| Damage::Cut { at }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
        1 => (any::<usize>(), 1..64usize).prop_map(|(at, len)| Damage::Delete { at, len }),
        2 => (any::<usize>(), prop_oneof![Just(u64::MAX), Just(1 << 40), Just(u32::MAX as u64), any::<u64>()])
            .prop_map(|(at, value)| Damage::Word { at, value }),
    ]
}

fn damaged(mut bytes: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        let len = bytes.len().max(1);
        match d {
            Damage::Flip { at, xor } => {
                if !bytes.is_empty() {
                    bytes[at % len] ^= xor;
                }
            }
            Damage::Cut { at } => bytes.truncate(at % len),
            Damage::Insert { at, bytes: b } => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Damage::Delete { at, len: n } => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Damage::Word { at, value } => {
                if bytes.len() >= 8 {
                    let at = at % (bytes.len() - 7);
                    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
                }
            }
        }
    }
    bytes
}

fn damages() -> impl Strategy<Value = Vec<Damage>> {
    proptest::collection::vec(damage(), 1..4)
}

/// An error that names `path`, or a test failure saying what it said instead.
fn names_path(err: &transfer_lab::Error, path: &std::path::Path) -> Result<(), TestCaseError> {
    let msg = err.to_string();
    if msg.contains(&path.display().to_string()) {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!("error does not name {}: {msg}", path.display())))
    }
}
