#!/usr/bin/env bash
# Builds the book into book/build, with results from real runs.
#   scripts/book.sh          quick runs on SYNTHETIC data with random weights (labelled as such)
#   scripts/book.sh --real   the post's settings on CIFAR-10 with ImageNet weights (GPU advised)
# BOOK_BROWSER=1 also opens the built book in headless Chromium and checks its images.
# Steps: the runs (`tlab run`, one per strategy), `tlab report` into
# book/src/generated/results, a real capture of `tlab dash`, `mdbook build`, and a check
# that every internal link and image of the built book resolves.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ "${BOOK_BROWSER:-0}" = 1 ]; then scripts/setup.sh --book --browser; else scripts/setup.sh --book; fi
export PATH="$("$root/scripts/setup.sh" --print-tools)/mdbook-0.4.52/bin:$PATH"
cargo build --locked --bin tlab --example capture_dashboard
tlab="$root/target/debug/tlab"
gen="$root/book/src/generated"
runs="$root/target/book/runs"
rm -rf "$runs" && mkdir -p "$runs"

if [ "${1:-}" = "--real" ]; then
  # The post's own network: Keras' ResNet50 (v1) with Keras' ImageNet weights.
  data=(--dataset cifar10 --weights v1 --no-fallback)
  image=()
else
  # The notebooks' quick set-up and cache (their ResNet-50 features are reused by the
  # families' runs below).
  # Relative to the repository (the working directory here), so that no event, log line
  # or chart the book shows carries this machine's path.
  export TLAB_CACHE_DIR="${TLAB_CACHE_DIR:-target/tutorial/cache}"
  data=(--dataset synthetic --synthetic-train 320 --synthetic-test 160 --weights random --no-fallback)
  image=(--size 64 --image-epochs 1)
fi
common=("${data[@]}" --arch keras-resnet50)
for s in linear-probe earlier-layer fine-tune pretrained-init scratch; do
  extra=()
  case $s in fine-tune|pretrained-init|scratch) extra=("${image[@]}") ;; esac
  "$tlab" run "${common[@]}" "${extra[@]}" --strategy "$s" --name "$s" --runs-dir "$runs" 2> "$runs/$s.log" ||
    { cat "$runs/$s.log"; exit 1; }
  echo "book: ran $s"
done

# The post's head, logreg and k-NN on the same features of the hard synthetic set (its
# classes overlap, so the three differ), by a small net: seconds, whatever the mode.
probes="$root/target/book/probes"
rm -rf "$probes" && mkdir -p "$probes"
hard=(--dataset synthetic --synthetic-difficulty hard --synthetic-train 2000 --synthetic-test 500 --weights random
  --arch resnet18 --size 64 --no-fallback)
for s in linear-probe logreg knn; do
  "$tlab" run "${hard[@]}" --strategy "$s" --name "hard-$s" --runs-dir "$probes" 2> "$probes/$s.log" ||
    { cat "$probes/$s.log"; exit 1; }
  echo "book: ran $s on the hard synthetic set"
done

# One architecture of each family, the logreg probe on each one's features (quick: 64 px;
# a ViT's side must be a multiple of its patch: quick, 28, its smallest grid of 2x2 patches;
# real, 224).
families="$root/target/book/families"
rm -rf "$families" && mkdir -p "$families"
for a in resnet50 keras-resnet50 convnext-tiny efficientnet-b0 dinov2-vits14; do
  case "${1:-}:$a" in
    --real:dinov2-*) fam=("${data[@]}" --size 224) ;;
    --real:*) fam=("${data[@]}") ;;
    *:dinov2-*) fam=("${data[@]}" --size 28) ;;
    *) fam=("${data[@]}" --size 64) ;;
  esac
  "$tlab" run "${fam[@]}" --arch "$a" --strategy logreg --name "$a" --runs-dir "$families" 2> "$families/$a.log" ||
    { cat "$families/$a.log"; exit 1; }
  echo "book: ran logreg on $a"
done

rm -rf "$gen.tmp" && mkdir -p "$gen.tmp/results" "$gen.tmp/probes" "$gen.tmp/backbones"
"$tlab" report --out "$gen.tmp/results" "$runs"/*/
"$tlab" report --out "$gen.tmp/probes" "$probes"/*/
"$tlab" report --out "$gen.tmp/backbones" "$families"/*/
# From target/book, with the run's relative path: the book shows no path of this machine.
probe=$(cd "$runs" && ls -d *linear-probe*/ | head -1)
(cd "$root/target/book" &&
  cargo run --quiet --locked --example capture_dashboard -- "$tlab" "runs/${probe%/}" "$gen.tmp/dashboard.txt" 100x32)
rm -rf "$gen" && mv "$gen.tmp" "$gen"

rm -rf book/build
# mdbook logs a failed include or a missing file and still exits 0: treat any as fatal.
mdbook build book 2>&1 | tee target/book/mdbook.log
if grep -E "\[(ERROR|WARN)" target/book/mdbook.log; then echo "book: mdbook reported problems"; exit 1; fi
.tlab/venv/bin/python scripts/check_book.py book/build
if [ "${BOOK_BROWSER:-0}" = 1 ]; then
  node scripts/book_browser.mjs book/build target/book/screenshot.png
fi
