#!/usr/bin/env bash
# The tutorial notebooks (Rust, evcxr kernel).
#   scripts/notebooks.sh            Jupyter Lab on notebooks/ with the Rust kernel
#   scripts/notebooks.sh --execute  runs every notebook top to bottom, headless, on the quick
#                                   synthetic set-up (what CI does); any cell error fails.
#                                   Executed copies land in target/notebooks/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh --notebooks
vpy="$root/.tlab/venv/bin/python"
export JUPYTER_PATH="$root/.tlab/jupyter"
# evcxr builds in target/evcxr (notebooks/evcxr.toml): start it from our lock file so the
# notebooks compile the same dependency versions the tests do.
mkdir -p target/evcxr
cp Cargo.lock target/evcxr/Cargo.lock

# Compiles transfer-lab for the kernel before any notebook opens, through the kernel
# itself (a two-cell notebook: the `:dep` line and a `use`), so the build is exactly the
# one the notebooks' kernels do: notebooks/evcxr.toml adds the dependency as a kernel
# starts, so the first start waits for this build (minutes, once), later ones do not.
compile_for_kernel() {
  local warm="$root/notebooks/.compile.ipynb" t0=$SECONDS
  echo "notebooks: compiling transfer-lab for the Rust kernel (minutes the first time, seconds once built)"
  "$vpy" - "$warm" <<'PY'
import json, sys
cells = [':dep transfer-lab = { path = "..", default-features = false }', "use transfer_lab::notebook::Tutorial;"]
nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": c}
                for i, c in enumerate(cells)],
      "metadata": {"kernelspec": {"display_name": "Rust (transfer-lab)", "language": "rust", "name": "rust"}},
      "nbformat": 4, "nbformat_minor": 5}
json.dump(nb, open(sys.argv[1], "w"))
PY
  if ! "$vpy" -m nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1800 \
    --ExecutePreprocessor.startup_timeout=3600 \
    --ExecutePreprocessor.kernel_name=rust --output-dir "$root/target/notebooks" "$warm" >/dev/null 2>"$root/target/notebooks/compile.log"; then
    rm -f "$warm"
    cat "$root/target/notebooks/compile.log"
    echo "notebooks: compiling transfer-lab for the kernel FAILED (above)"
    exit 1
  fi
  rm -f "$warm"
  echo "notebooks: transfer-lab compiled for the kernel in $((SECONDS - t0)) s"
}
mkdir -p target/notebooks
compile_for_kernel

if [ "${1:-}" != "--execute" ]; then
  "$vpy" -c "import jupyterlab" 2>/dev/null || "$vpy" -m pip install --quiet jupyterlab==4.4.10
  # Jupyter refuses to run as root (containers, CI boxes) unless told.
  as_root=()
  [ "$(id -u)" != 0 ] || as_root=(--allow-root)
  exec "$vpy" -m jupyterlab --notebook-dir="$root/notebooks" "${as_root[@]}"
fi

# Quick, synthetic, and away from the user's cache: CI results are never CIFAR-10 results.
export TLAB_TUTORIAL=quick
export TLAB_CACHE_DIR="$root/target/tutorial/cache"
export TLAB_RUNS_DIR="$root/target/tutorial/runs"
out="$root/target/notebooks"
mkdir -p "$out"
for nb in notebooks/*.ipynb; do
  start=$(date +%s)
  rm -f "$out/$(basename "$nb")"
  # A kernel starts in about half a minute (see notebooks/evcxr.toml), more than the
  # default 60 s on a busy machine.
  if ! "$vpy" -m nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1800 \
    --ExecutePreprocessor.startup_timeout=600 \
    --ExecutePreprocessor.kernel_name=rust --output-dir "$out" "$nb"; then
    echo "notebooks: $nb FAILED (the cell error is above)"
    exit 1
  fi
  echo "notebooks: $nb ran in $(( $(date +%s) - start )) s"
done
"$vpy" "$root/scripts/check_notebooks.py" "$out"
