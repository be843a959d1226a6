#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the whole test suite. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/setup.sh --test
# Tests that run models take a lock per test binary; 2 intra-op threads each.
export TLAB_TEST_THREADS=${TLAB_TEST_THREADS:-2}
mkdir -p target
set +e
# --nocapture: tests print their figures (errors vs PyTorch, RSS, accuracy).
cargo test --locked --all-targets --no-fail-fast -- --nocapture 2>&1 | tee target/test.log
status=${PIPESTATUS[0]}
set -e
echo "tests finished in $(( $(date +%s) - start )) s with status $status"
exit "$status"
