#!/usr/bin/env bash
# Installs what the notebooks and the book need. Idempotent.
#   --notebooks  evcxr_jupyter 0.22.0 (cargo install --locked, into the tools folder), nbconvert +
#                nbclient (pip, into .tlab/venv), the `rust` kernelspec (.tlab/jupyter, with
#                libtorch on the kernel's LD_LIBRARY_PATH)
#   --book       mdbook 0.4.52 (cargo install --locked, into the tools folder)
#   --browser    Debian's chromium + playwright-core 1.65 (the book's browser check)
#   --tools-only with the above: only what is built or installed outside .tlab/venv (cargo
#                install, apt, npm), so it can run beside scripts/setup.sh (CI does)
#   --print-tools prints the tools folder and exits
# The tools folder is per user and machine, not per clone, so every clone and CI reuse one
# build: $TLAB_TOOLS_DIR, else $XDG_DATA_HOME/transfer-lab/tools (~/.local/share/...). Each
# tool lives in <name>-<version>/, rebuilt only when missing or when it no longer runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
home="$root/.tlab"
tools_root=${TLAB_TOOLS_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/transfer-lab/tools}
want_notebooks=0 want_book=0 want_browser=0 tools_only=0
for a in "$@"; do
  case $a in
    --notebooks) want_notebooks=1 ;;
    --book) want_book=1 ;;
    --browser) want_browser=1 ;;
    --tools-only) tools_only=1 ;;
    --print-tools) echo "$tools_root"; exit 0 ;;
    *) echo "setup-docs: unknown flag $a (use --notebooks, --book, --browser)" >&2; exit 2 ;;
  esac
done
[ $tools_only = 1 ] || "$root/scripts/setup.sh" >/dev/null

# Tools build at opt-level 1: minutes less CPU than release's 3 (evcxr_jupyter is mostly
# rust-analyzer), and what they do at run time (parse a cell, render a book) stays quick.
# Built into a temp folder renamed into place, so two clones building at once, or a build
# killed halfway, never leave a half-installed tool that looks whole.
install_tool() { # name version check-command [cargo install flags...]
  local name=$1 version=$2 check=$3 dir="$tools_root/$1-$2" t0=$SECONDS
  shift 3
  if [ -x "$dir/bin/$name" ] && "$dir/bin/$name" $check >/dev/null 2>&1; then
    return 0
  fi
  [ -e "$dir" ] && echo "setup-docs: $dir does not run; rebuilding it"
  echo "setup-docs: building $name $version into $dir (minutes, once per machine)"
  mkdir -p "$tools_root"
  local tmp
  tmp=$(mktemp -d "$tools_root/.$name-$version.XXXXXX")
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 cargo install --quiet --locked --root "$tmp" "$name" --version "$version" "$@"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  echo "setup-docs: built $name in $((SECONDS - t0)) s"
}
mdbook_dir="$tools_root/mdbook-0.4.52"
evcxr_dir="$tools_root/evcxr_jupyter-0.22.0"
[ $want_book = 1 ] && install_tool mdbook 0.4.52 --version --no-default-features
# evcxr_jupyter has no --version flag; --help runs it without starting a kernel.
[ $want_notebooks = 1 ] && install_tool evcxr_jupyter 0.22.0 --help
if [ $want_notebooks = 1 ] && [ $tools_only = 0 ]; then

vpy="$home/venv/bin/python"
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
echo "setup-docs: ready (tools in $tools_root)"
