#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the whole test suite. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/setup.sh --test
# Tests that run models take a lock per test binary; 2 intra-op threads each.
export TLAB_TEST_THREADS=${TLAB_TEST_THREADS:-2}
cargo test --locked --all-targets -- --nocapture 2>&1 | tee target/test.log | grep -E "^(test |running|test result)|images/s|peak RSS|rel err|RSS|ratio" || true
status=${PIPESTATUS[0]}
echo "tests finished in $(( $(date +%s) - start )) s with status $status"
exit "$status"
