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
cargo build --locked --bin tlab --example capture_dashboard --example synthetic_photos
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

# Why it said that, and how sure it is (ch10): one calibrated linear probe on notebook 9's
# generated photos, its Grad-CAM heatmaps, a copy with one class cut to 8 training photos
# trained plainly and with balanced class weights, and the learning curve. Run from
# target/book/interpret with relative paths, so no output the book shows names this machine.
interp="$root/target/book/interpret"
rm -rf "$interp" && mkdir -p "$interp"
case "${1:-}" in
  --real) iw=(--weights v1 --no-fallback --size 224) ;;
  *) iw=(--weights random --no-fallback --size 64) ;;
esac
(
  cd "$interp"
  case "${TLAB_CACHE_DIR:-/}" in /*) ;; *) export TLAB_CACHE_DIR="$root/$TLAB_CACHE_DIR" ;; esac
  { read -r photos; read -r imbalanced; read -r small; } < <("$root/target/debug/examples/synthetic_photos" .)
  photos=${photos#./} imbalanced=${imbalanced#./}
  folder=(--dataset folder --arch resnet50 "${iw[@]}" --strategy linear-probe --runs-dir runs)
  "$tlab" run "${folder[@]}" --data "$photos" --calibrate --name interpret 2> run.log || { cat run.log; exit 1; }
  run=$(ls -d runs/*-interpret/)
  run=${run%/}
  grep -o "calibrated on .*" run.log > calibrate.txt
  # Two photos of each class, in the folder's order.
  pick=()
  for c in "$photos"/test/*/; do pick+=($(ls "$c"*.jpg | head -2)); done
  "$tlab" predict "$run" "${pick[@]}" --explain heatmaps > predict.txt 2> predict.log || { cat predict.log; exit 1; }
  "$tlab" predict "$run" "${pick[@]}" --explain heatmaps-class --class "$small" > /dev/null 2> predict-class.log ||
    { cat predict-class.log; exit 1; }
  # Each heatmap with its photo's folder (the truth), the class mapped and its probability.
  for h in heatmaps heatmaps-class; do
    awk -F, -v d="generated/interpret/$h" 'NR > 1 && $4 != "" {
      n = split($1, p, "/")
      printf "<figure style=\"display:inline-block;margin:4px\"><img src=\"%s/%s\" width=\"128\" style=\"image-rendering:pixelated\" alt=\"Grad-CAM\"><figcaption>in %s/<br>map of %s (%.0f%%)</figcaption></figure>\n", d, $4, p[n-1], $2, $3 * 100
    }' "$h/heatmaps.csv" > "$h.md"
  done
  "$tlab" run "${folder[@]}" --data "$imbalanced" --name imbalanced-none 2> imbalanced-none.log ||
    { cat imbalanced-none.log; exit 1; }
  "$tlab" run "${folder[@]}" --data "$imbalanced" --class-weight balanced --name imbalanced-balanced \
    2> imbalanced-balanced.log || { cat imbalanced-balanced.log; exit 1; }
  grep -o "WARNING: the classes are imbalanced.*" imbalanced-none.log > imbalance-warning.txt
  "$root/.tlab/venv/bin/python" - runs/*-imbalanced-none runs/*-imbalanced-balanced > imbalance.md <<'PY'
import json, pathlib, sys
print("| `--class-weight` | accuracy | balanced accuracy | macro-F1 |")
print("|---|---:|---:|---:|")
for d in map(pathlib.Path, sys.argv[1:]):
    s = json.loads((d / "summary.json").read_text())
    w = json.loads((d / "config.json").read_text())["config"]["head"]["class_weight"]
    print(f"| {w} | {s['test_accuracy']:.2%} | {s['balanced_accuracy']:.2%} | {s['macro_f1']:.3f} |")
PY
  "$tlab" curve "$run" --out curve > curve.txt 2> curve.log || { cat curve.log; exit 1; }
  "$tlab" report --out report "$run" 2> report.log || { cat report.log; exit 1; }
  echo "book: ran the interpretation chapter's runs, heatmaps and curve"
)

rm -rf "$gen.tmp" && mkdir -p "$gen.tmp/results" "$gen.tmp/probes" "$gen.tmp/backbones" "$gen.tmp/interpret"
(cd "$interp" && cp -r calibrate.txt predict.txt heatmaps heatmaps.md heatmaps-class heatmaps-class.md \
  imbalance-warning.txt imbalance.md curve curve.txt report "$gen.tmp/interpret/")
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
