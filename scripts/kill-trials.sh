#!/usr/bin/env bash
# Kill trials on demand: `tlab run` (linear probe, logreg sweep), `tlab train` (fine-tune)
# and `tlab extract` killed with SIGKILL at N seeded random moments each, resumed, and
# compared byte for byte with an uninterrupted run (tests/testsuite/kill.rs; CI runs 3).
# Usage: scripts/kill-trials.sh [N=20] [SEED=1]   -> "kill trials, <kind>: N of N identical"
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test > /dev/null
export TLAB_KILL_TRIALS=${1:-20} TLAB_KILL_SEED=${2:-1} TLAB_TEST_THREADS=${TLAB_TEST_THREADS:-2}
cargo test --locked --test testsuite -- kill:: --nocapture 2>&1 | tee target/kill-trials.log | grep -E "^(kill trials|.* trial [0-9]+:)|panicked|test result"
exit "${PIPESTATUS[0]}"
