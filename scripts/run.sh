#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the main job: the post's pipeline end to end.
# Offline, it says so and uses the synthetic dataset and/or seeded random weights.
# Extra arguments go to `tlab run` (see `cargo run -- run --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --locked -- run "$@"
