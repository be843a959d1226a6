#!/usr/bin/env bash
# The tutorial notebooks (Rust, evcxr kernel).
#   scripts/notebooks.sh            Jupyter Lab on notebooks/ with the Rust kernel
#   scripts/notebooks.sh --execute  runs every notebook top to bottom, headless, on the quick
#                                   synthetic set-up (what CI does); any cell error fails.
#                                   Executed copies land in target/notebooks/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup-docs.sh --notebooks
vpy="$root/.tlab/venv/bin/python"
export JUPYTER_PATH="$root/.tlab/jupyter"
# evcxr builds in target/evcxr (notebooks/evcxr.toml): start it from our lock file so the
# notebooks compile the same dependency versions the tests do.
mkdir -p target/evcxr
cp Cargo.lock target/evcxr/Cargo.lock

if [ "${1:-}" != "--execute" ]; then
  "$vpy" -c "import jupyterlab" 2>/dev/null || "$vpy" -m pip install --quiet jupyterlab==4.4.10
  exec "$vpy" -m jupyterlab --notebook-dir="$root/notebooks"
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
  if ! "$vpy" -m nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1800 \
    --ExecutePreprocessor.kernel_name=rust --output-dir "$out" "$nb"; then
    echo "notebooks: $nb FAILED (the cell error is above)"
    exit 1
  fi
  echo "notebooks: $nb ran in $(( $(date +%s) - start )) s"
done
"$vpy" "$root/scripts/check_notebooks.py" "$out"
