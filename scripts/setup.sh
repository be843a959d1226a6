#!/usr/bin/env bash
# Installs what transfer-lab needs into .tlab/ (git-ignored). Idempotent.
#   scripts/setup.sh          libtorch 2.11.0 (from the PyPI wheel torch==2.11.0)
#   scripts/setup.sh --test   plus torchvision 0.26.0, used by the parity tests
# An existing LIBTORCH in the environment is honoured and nothing is installed for it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
home="$root/.tlab"
venv="$home/venv"
want_test=0
[ "${1:-}" = "--test" ] && want_test=1
mkdir -p "$home"

py=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"

have() { "$vpy" -c "import $1, sys; sys.exit(0 if $1.__version__.startswith('$2') else 1)" 2>/dev/null; }

if [ -n "${LIBTORCH:-}" ]; then
  echo "setup: using LIBTORCH=$LIBTORCH from the environment"
elif ! have torch 2.11.0; then
  echo "setup: installing torch==2.11.0 into $venv (about 2.6 GB)"
  "$vpy" -m pip install --quiet --disable-pip-version-check torch==2.11.0
fi
if [ $want_test = 1 ]; then
  have torchvision 0.26.0 || "$vpy" -m pip install --quiet --disable-pip-version-check \
    torchvision==0.26.0 torch==2.11.0 safetensors numpy
fi
if [ -z "${LIBTORCH:-}" ]; then
  site=$("$vpy" -c "import torch, os; print(os.path.dirname(torch.__file__))")
  ln -sfn "$site" "$home/libtorch"
  echo "setup: libtorch at $home/libtorch -> $site"
fi
