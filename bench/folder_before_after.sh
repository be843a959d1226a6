#!/usr/bin/env bash
# `tlab extract --dataset folder` of an earlier commit against this checkout's, on the same
# generated photos (192 + 8 JPEGs of 500x375 in train/ and test/), ResNet50 at 224 px with
# random weights, 2 threads, alternating rounds; each rate is the extraction's own (from
# its events, start-up excluded). The earlier commit is built in its own worktree and
# target folder (minutes the first time).
#   bench/folder_before_after.sh b3d91e2 [ROUNDS]
set -euo pipefail
rev=${1:?usage: folder_before_after.sh REV [ROUNDS]}
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work="$root/target/before-after"
old="$work/src-$rev"
mkdir -p "$work"
if [ ! -d "$old" ]; then
  git worktree add --detach "$old" "$rev"
fi
ln -sfn "$root/.tlab" "$old/.tlab"
(cd "$old" && CARGO_TARGET_DIR="$work/target-$rev" cargo build --bin tlab)
cargo build --bin tlab
photos="$work/photos"
rm -rf "$photos"
"$root/.tlab/venv/bin/python" - "$photos" <<'PY'
import os, sys
import numpy as np
from PIL import Image
out = sys.argv[1]
rng = np.random.default_rng(0)
y, x = np.mgrid[0:375, 0:500]
for split, n in [("train", 192), ("test", 8)]:
    for i in range(n):
        d = os.path.join(out, split, "a" if i % 2 == 0 else "b")
        os.makedirs(d, exist_ok=True)
        t = rng.integers(0, 41, (375, 500))
        img = np.stack([(x // 2 + t) % 256, (y // 2 + t) % 256, ((x + y) // 4 + t) % 256], -1).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(d, f"{i:05}.jpg"), quality=90)
PY
run() { # label round binary
  local ev="$work/$1-$2.jsonl" cache="$work/cache-$1"
  rm -rf "$cache" "$ev"
  "$3" --threads 2 --cache-dir "$cache" extract --dataset folder --data "$photos" --arch resnet50 \
    --weights random --size 224 --split train --events "$ev" >/dev/null 2>&1
  python3 - "$ev" "$1" "$2" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("kind") == "extraction_finished":
        print(f"{sys.argv[2]} round {sys.argv[3]}: {e['total_images'] / (e['elapsed_ms'] / 1e3):.2f} images/s")
PY
}
for r in $(seq 1 "$rounds"); do
  run "before-$rev" "$r" "$work/target-$rev/debug/tlab"
  run after "$r" "$root/target/debug/tlab"
done
