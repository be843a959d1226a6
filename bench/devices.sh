#!/usr/bin/env bash
# `tlab extract --devices cpu,cpu` (two worker processes, 1 thread each) against one process
# with 2 threads, on the same generated set (synthetic, 384 images in shards of 32),
# ResNet50 at 200 px with random weights, alternating rounds, wall time of the whole
# command (start-up, model loading and the merge included). Prints each round, the median
# ratio, and how far the two caches' features are apart: they are byte-identical only at
# the same intra-op thread count (libtorch splits its sums differently across threads).
#   bench/devices.sh [ROUNDS] [IMAGES]
set -euo pipefail
rounds=${1:-3}
images=${2:-384}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build -q --bin tlab
tlab="$root/target/debug/tlab"
work="$root/target/bench-devices"
mkdir -p "$work"
rm -f "$work/diffs"
args=(extract --dataset synthetic --synthetic-train "$images" --synthetic-test 8 --arch resnet50 --weights random
  --size 200 --split train --shard-size 32)
one() { "$tlab" --threads 2 --cache-dir "$1" "${args[@]}" --device cpu; }
two() { "$tlab" --threads 1 --cache-dir "$1" "${args[@]}" --devices cpu,cpu; }
declare -a r1 r2
for r in $(seq "$rounds"); do
  for way in one two; do
    rm -rf "$work/$way"
    t0=$(date +%s.%N)
    "$way" "$work/$way" >/dev/null 2>"$work/$way.log" || { cat "$work/$way.log"; exit 1; }
    t=$(python3 -c "import sys; print(f'{$(date +%s.%N) - $t0:.2f}')")
    rate=$(python3 -c "print(f'{$images / $t:.2f}')")
    echo "round $r, $way: $t s, $rate images/s"
    if [ "$way" = one ]; then r1+=("$rate"); else r2+=("$rate"); fi
  done
  "$root/.tlab/venv/bin/python" - "$work" <<'PY' | tee -a "$work/diffs"
import glob, sys
from safetensors.torch import load_file
a = sorted(glob.glob(f"{sys.argv[1]}/one/features/*/shard-*.safetensors"))
b = sorted(glob.glob(f"{sys.argv[1]}/two/features/*/shard-*.safetensors"))
assert len(a) == len(b) > 1, (a, b)
d = max((load_file(x)["features"].double() - load_file(y)["features"].double()).abs().max().item() for x, y in zip(a, b))
assert all((load_file(x)["labels"] == load_file(y)["labels"]).all() for x, y in zip(a, b))
print(f"  {len(a)} shards; labels equal; max |features one - two| = {d:.2e}")
PY
done
python3 - "${r1[*]}" "${r2[*]}" <<'PY'
import statistics, sys
one = statistics.median(map(float, sys.argv[1].split()))
two = statistics.median(map(float, sys.argv[2].split()))
print(f"median: one process x 2 threads {one:.2f} images/s; --devices cpu,cpu (1 thread each) {two:.2f} images/s; "
      f"ratio {two / one:.2f}x")
PY
