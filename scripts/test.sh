#!/usr/bin/env bash
# Sets everything up (idempotent) and runs every check: the test suite, the notebooks
# (executed headless with the evcxr kernel) and the book (built, links and images
# checked, opened in headless Chromium). `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
mkdir -p target
# The notebook and book tools build beside libtorch's install and the crate's build:
# linking is single-threaded and pip waits on the network, so the second core has room.
scripts/setup.sh --notebooks --book --browser --tools-only > target/setup-tools.log 2>&1 &
tools_pid=$!
scripts/setup.sh --test
# Tests that run models take a lock per test binary; 2 intra-op threads each.
export TLAB_TEST_THREADS=${TLAB_TEST_THREADS:-2}
step() { # name command...: runs one step, records its time and status, carries on
  local name=$1 t0 rc
  shift
  t0=$(date +%s)
  set +e
  "$@"
  rc=$?
  set -e
  summary+=("$(printf '%-10s %s in %d s' "$name" "$([ $rc = 0 ] && echo ok || echo "FAILED ($rc)")" $(( $(date +%s) - t0 )))")
  [ $rc = 0 ] || status=1
}
summary=()
status=0
# --nocapture: tests print their figures (errors vs PyTorch, RSS, accuracy).
# --timings: where the build's time went, in target/cargo-timings/cargo-timing.html.
tests() {
  cargo test --locked --all-targets --no-fail-fast --timings -- --nocapture 2>&1 | tee target/test.log
  return "${PIPESTATUS[0]}"
}
step tests tests
step tools wait "$tools_pid"
if [ $status = 0 ]; then grep "setup: built" target/setup-tools.log || true; else cat target/setup-tools.log; fi
step notebooks scripts/notebooks.sh --execute
step book env BOOK_BROWSER=1 scripts/book.sh
# `tlab bench` is a cargo feature no test builds; built last, so the steps above keep
# their binaries (86 s in CI: without dev-dependencies a few crates' features differ).
step bench cargo build --locked --features bench --bin tlab
printf '%s\n' "${summary[@]}"
echo "all checks finished in $(( $(date +%s) - start )) s with status $status"
exit "$status"
