#!/usr/bin/env bash
# Installs what the notebooks and the book need into .tlab/ (git-ignored). Idempotent.
#   --notebooks  evcxr_jupyter 0.22.0 (cargo install --locked, into .tlab/tools), nbconvert +
#                nbclient (pip, into .tlab/venv), the `rust` kernelspec (.tlab/jupyter, with
#                libtorch on the kernel's LD_LIBRARY_PATH)
#   --book       mdbook 0.4.52 (cargo install --locked, into .tlab/tools)
#   --browser    Debian's chromium + playwright-core 1.65 (the book's browser check)
#   --tools-only with the above: only what is built or installed outside .tlab/venv (cargo
#                install, apt, npm), so it can run beside scripts/setup.sh (CI does)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
home="$root/.tlab"
tools="$home/tools"
want_notebooks=0 want_book=0 want_browser=0 tools_only=0
for a in "$@"; do
  case $a in
    --notebooks) want_notebooks=1 ;;
    --book) want_book=1 ;;
    --browser) want_browser=1 ;;
    --tools-only) tools_only=1 ;;
    *) echo "setup-docs: unknown flag $a (use --notebooks, --book, --browser)" >&2; exit 2 ;;
  esac
done
[ $tools_only = 1 ] || "$root/scripts/setup.sh" >/dev/null

# Tools build at opt-level 1: minutes less CPU than release's 3 (evcxr_jupyter is mostly
# rust-analyzer), and what they do at run time (parse a cell, render a book) stays quick.
lean_install() { # crate [cargo install flags...]
  local t0=$SECONDS
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 cargo install --quiet --locked --root "$tools" "$@"
  echo "setup-docs: built $1 in $((SECONDS - t0)) s"
}
install_crate() { # name version [cargo install flags...]
  local name=$1 version=$2
  shift 2
  if [ "$("$tools/bin/$name" --version 2>/dev/null | awk '{print $NF}')" != "v$version" ] &&
     [ "$("$tools/bin/$name" --version 2>/dev/null | awk '{print $NF}')" != "$version" ]; then
    echo "setup-docs: building $name $version (a few minutes, once)"
    lean_install "$name" --version "$version" "$@"
  fi
}
[ $want_book = 1 ] && install_crate mdbook 0.4.52 --no-default-features
if [ $want_notebooks = 1 ]; then
# evcxr_jupyter has no --version flag; its binary's presence and a version stamp decide.
if [ "$(cat "$tools/evcxr_jupyter.version" 2>/dev/null)" != 0.22.0 ] || [ ! -x "$tools/bin/evcxr_jupyter" ]; then
  echo "setup-docs: building evcxr_jupyter 0.22.0 (about 10 CPU-minutes, once)"
  lean_install evcxr_jupyter --version 0.22.0
  echo 0.22.0 > "$tools/evcxr_jupyter.version"
fi
fi
if [ $want_notebooks = 1 ] && [ $tools_only = 0 ]; then

vpy="$home/venv/bin/python"
"$vpy" -c "import nbconvert, nbclient" 2>/dev/null ||
  "$vpy" -m pip install --quiet --disable-pip-version-check nbconvert==7.16.6 nbclient==0.10.2 jupyter_client==8.6.3

# evcxr's own kernelspec (its version.txt stops the kernel from "updating" it at start),
# installed under .tlab/jupyter, then given libtorch's lib folder: the kernel dlopens
# each cell's code, which links libtorch.
spec="$home/jupyter/kernels/rust"
JUPYTER_PATH="$home/jupyter" "$tools/bin/evcxr_jupyter" --install >/dev/null
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

if [ $want_browser = 1 ]; then
  if ! command -v chromium >/dev/null; then
    echo "setup-docs: installing Debian's chromium"
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
    $sudo_ apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q chromium >/dev/null
  fi
  if [ ! -f "$home/node/node_modules/playwright-core/package.json" ]; then
    mkdir -p "$home/node"
    (cd "$home/node" && npm install --no-audit --no-fund --silent playwright-core@1.65.1)
  fi
fi
echo "setup-docs: ready (tools in $tools)"
