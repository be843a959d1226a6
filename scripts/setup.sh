#!/usr/bin/env bash
# The one set-up script: installs what transfer-lab needs. Idempotent.
#   scripts/setup.sh              libtorch 2.11.0 (the PyPI wheel torch==2.11.0) into .tlab/
#   scripts/setup.sh --test       plus torchvision 0.26.0, scikit-learn 1.9.1, keras 3.15.1
#                                 with h5py 3.16.0, and grad-cam 1.5.7, used by the parity tests
#   scripts/setup.sh --notebooks  plus evcxr_jupyter 0.22.0 (built once per machine),
#                                 nbconvert + nbclient, and the `rust` kernelspec (.tlab/jupyter,
#                                 with libtorch on the kernel's LD_LIBRARY_PATH)
#   scripts/setup.sh --book       plus mdbook 0.4.52 (built once per machine)
#   scripts/setup.sh --browser    plus Debian's chromium and playwright-core 1.65 (the book's
#                                 browser check)
#   --tools-only  with the above: only the tools built or installed outside .tlab/venv
#                 (cargo install, apt, npm), so it can run beside a plain set-up (CI does)
#   --print-tools prints the tools folder and exits
#   --check-tools says of each tool whether it is ready, missing or broken (exit 1 unless all
#                 are ready), and builds nothing
# An existing LIBTORCH in the environment is honoured and nothing is installed for it.
# Tools live per user and machine, not per clone, so every clone and CI reuse one build:
# $TLAB_TOOLS_DIR, else $XDG_DATA_HOME/transfer-lab/tools (~/.local/share/...), each in
# <name>-<version>/, rebuilt only when missing or when it no longer runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
home="$root/.tlab"
venv="$home/venv"
tools_root=${TLAB_TOOLS_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/transfer-lab/tools}
want_test=0 want_notebooks=0 want_book=0 want_browser=0 tools_only=0 check_only=0
for a in "$@"; do
  case $a in
    --test) want_test=1 ;;
    --notebooks) want_notebooks=1 ;;
    --book) want_book=1 ;;
    --browser) want_browser=1 ;;
    --tools-only) tools_only=1 ;;
    --print-tools) echo "$tools_root"; exit 0 ;;
    --check-tools) check_only=1 ;;
    *) echo "setup: unknown flag $a (use --test, --notebooks, --book, --browser, --tools-only, --print-tools)" >&2; exit 2 ;;
  esac
done
mkdir -p "$home"

# mdbook builds at opt-level 1 (rendering a book stays quick). evcxr_jupyter builds at 3:
# its rust-analyzer reads the notebooks' whole dependency graph at every kernel start,
# 31 -> 25 s per start here (8 min to build once per machine).
# Built into a temp folder renamed into place, so two clones building at once, or a build
# killed halfway, never leave a half-installed tool that looks whole.
# A tool is trusted only if it runs and says it is the pinned version: mdbook prints it;
# evcxr_jupyter has no --version, so its `--help` must run and a stamp written after its
# build must match. Prints why not, returns 1.
tool_opt() { case $1 in evcxr_jupyter) echo 3 ;; *) echo 1 ;; esac; }
tool_ready() { # name version
  local name=$1 version=$2 dir="$tools_root/$1-$2" bin="$tools_root/$1-$2/bin/$1" out
  if [ ! -e "$bin" ]; then echo "missing"; return 1; fi
  case $name in
    mdbook) out=$("$bin" --version 2>/dev/null) || { echo "broken: $bin does not run"; return 1; }
            [ "$out" = "mdbook v$version" ] || { echo "broken: $bin says '$out', not mdbook v$version"; return 1; } ;;
    *) "$bin" --help >/dev/null 2>&1 || { echo "broken: $bin does not run"; return 1; }
       local want have
       want="$version opt-level=$(tool_opt "$name")"
       have=$(cat "$dir/version" 2>/dev/null) || { echo "unstamped: $dir/version is missing, not '$want'"; return 1; }
       [ "$have" = "$want" ] || { echo "stale: $dir/version says '$have', not '$want'"; return 1; } ;;
  esac
  echo "ready"
}
if [ $check_only = 1 ]; then
  status=0
  for t in mdbook:0.4.52 evcxr_jupyter:0.22.0; do
    why=$(tool_ready "${t%%:*}" "${t##*:}") || status=1
    echo "setup: ${t%%:*} ${t##*:} in $tools_root/${t%%:*}-${t##*:}: $why"
  done
  exit $status
fi
install_tool() { # name version [cargo install flags...]
  local name=$1 version=$2 dir="$tools_root/$1-$2" t0=$SECONDS why
  shift 2
  if why=$(tool_ready "$name" "$version"); then
    return 0
  fi
  [ "$why" != missing ] && echo "setup: $name $version $why; rebuilding it"
  echo "setup: building $name $version into $dir (minutes, once per machine)"
  mkdir -p "$tools_root"
  local tmp
  tmp=$(mktemp -d "$tools_root/.$name-$version.XXXXXX")
  CARGO_PROFILE_RELEASE_OPT_LEVEL=$(tool_opt "$name") cargo install --quiet --locked --root "$tmp" "$name" --version "$version" "$@"
  echo "$version opt-level=$(tool_opt "$name")" > "$tmp/version"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  echo "setup: built $name in $((SECONDS - t0)) s"
}
evcxr_dir="$tools_root/evcxr_jupyter-0.22.0"
[ $want_book = 1 ] && install_tool mdbook 0.4.52 --no-default-features
[ $want_notebooks = 1 ] && install_tool evcxr_jupyter 0.22.0

if [ $want_browser = 1 ]; then
  if ! command -v chromium >/dev/null; then
    echo "setup: installing Debian's chromium"
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
    $sudo_ apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q chromium >/dev/null
  fi
  if [ ! -f "$home/node/node_modules/playwright-core/package.json" ]; then
    mkdir -p "$home/node"
    (cd "$home/node" && npm install --no-audit --no-fund --silent playwright-core@1.65.1)
  fi
fi
[ $tools_only = 1 ] && { echo "setup: tools ready in $tools_root"; exit 0; }

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
  # The convex probes' parity tests (tests/testsuite/probes.rs).
  have sklearn 1.9.1 || "$vpy" -m pip install --quiet --disable-pip-version-check scikit-learn==1.9.1
  # Keras' ResNet50 and its .h5 weights (tests/testsuite/parity_keras.rs), on the torch
  # backend: no TensorFlow.
  { KERAS_BACKEND=torch have keras 3.15.1 && have h5py 3.16.0; } || "$vpy" -m pip install --quiet --disable-pip-version-check \
    keras==3.15.1 h5py==3.16.0
  # The ViTs' parity tests (tests/testsuite/parity_vit.rs) and the Hub cache shared with
  # Python (tests/testsuite/hub.rs): transformers brings huggingface_hub.
  { have transformers 5.25.0 && have huggingface_hub 2.4.0; } || "$vpy" -m pip install --quiet \
    --disable-pip-version-check transformers==5.25.0 huggingface_hub==2.4.0
fi
if [ $want_test = 1 ]; then
  # pytorch-grad-cam, the Grad-CAM reference (tests/testsuite/explain.rs); its module has
  # no __version__, so the installed distribution's is asked.
  "$vpy" -c "import importlib.metadata as m, sys; sys.exit(m.version('grad-cam') != '1.5.7')" 2>/dev/null ||
    "$vpy" -m pip install --quiet --disable-pip-version-check grad-cam==1.5.7
fi
if [ -z "${LIBTORCH:-}" ]; then
  site=$("$vpy" -c "import torch, os; print(os.path.dirname(torch.__file__))")
  ln -sfn "$site" "$home/libtorch"
  echo "setup: libtorch at $home/libtorch -> $site"
fi

if [ $want_notebooks = 1 ]; then
  "$vpy" -c "import nbconvert, nbclient" 2>/dev/null ||
    "$vpy" -m pip install --quiet --disable-pip-version-check nbconvert==7.16.6 nbclient==0.10.2 jupyter_client==8.6.3
  # evcxr's own kernelspec (its version.txt stops the kernel from "updating" it at start),
  # installed under .tlab/jupyter, then given libtorch's lib folder: the kernel dlopens
  # each cell's code, which links libtorch.
  spec="$home/jupyter/kernels/rust"
  JUPYTER_PATH="$home/jupyter" "$evcxr_dir/bin/evcxr_jupyter" --install >/dev/null
  "$vpy" - "$spec/kernel.json" "$(cd "$home/libtorch" && pwd -P)" <<'PY'
import json, os, sys
path, libtorch = sys.argv[1], sys.argv[2]
spec = json.load(open(path))
spec["display_name"] = "Rust (transfer-lab)"
spec["env"] = {"LD_LIBRARY_PATH": os.path.join(libtorch, "lib"), "LIBTORCH": libtorch}
with open(path + ".tmp", "w") as f:
    json.dump(spec, f, indent=2)
os.replace(path + ".tmp", path)
PY
fi
