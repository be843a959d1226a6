#!/usr/bin/env bash
# Python side of `tlab bench`: a git-ignored venv .tlab/bench-venv holding TensorFlow
# (tensorflow-cpu, pinned) that also sees .tlab/venv's torch + torchvision through a .pth
# file, so the 2.6 GB torch wheel is not installed twice and the test venv is not touched.
# Idempotent; `tlab bench` calls it. Needs scripts/setup.sh --test to have run first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base="$root/.tlab/venv"
venv="$root/.tlab/bench-venv"
tf_version=${TLAB_BENCH_TF:-2.21.0}
[ -x "$base/bin/python" ] || { echo "bench setup: $base missing: run scripts/setup.sh --test" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
  # The same interpreter as the torch venv, so its site-packages are importable.
  "$base/bin/python" -c "import sys; print(sys.base_prefix)" >/dev/null
  "$(readlink -f "$base/bin/python")" -m venv "$venv"
fi
vpy="$venv/bin/python"
if ! "$vpy" -c "import tensorflow as tf, sys; sys.exit(0 if tf.__version__ == '$tf_version' else 1)" 2>/dev/null; then
  echo "bench setup: installing tensorflow-cpu==$tf_version into $venv" >&2
  "$vpy" -m pip install --quiet --disable-pip-version-check "tensorflow-cpu==$tf_version" >&2
fi
site=$("$vpy" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
base_site=$("$base/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# Appended after the bench venv's own packages: its numpy (TensorFlow's pick) wins.
echo "$base_site" > "$site/tlab-torch.pth"
"$vpy" -c "import torch, torchvision, tensorflow" 2>/dev/null || { echo "bench setup: imports failed" >&2; exit 1; }
echo "$vpy"
