#!/usr/bin/env bash
# Submits a sharded extraction: an array of N parts, then a merge job that runs once
# every part has succeeded and writes the manifest (or names the shards still missing).
#   TLAB_CACHE_DIR=/shared/tlab-cache deploy/slurm/submit.sh 16            # 16 GPU parts
#   TLAB_DEVICE=cpu TLAB_CPUS_PER_TASK=8 TLAB_CACHE_DIR=/shared/c deploy/slurm/submit.sh 4   # CPU parts
# Extra sbatch options (partition, account, time) go in SBATCH_* variables, which sbatch
# reads itself: SBATCH_PARTITION=gpu SBATCH_ACCOUNT=lab SBATCH_TIMELIMIT=04:00:00 ...
set -euo pipefail
n=${1:?usage: submit.sh N (the number of parts)}
here=$(cd "$(dirname "$0")" && pwd)
: "${TLAB_CACHE_DIR:?set TLAB_CACHE_DIR to a cache folder on storage every node sees}"
TLAB_PARTS=$n
export TLAB_CACHE_DIR TLAB_EXTRACT_ARGS TLAB_DEVICE TLAB TLAB_PARTS
gpu=()
[ "${TLAB_DEVICE:-cuda}" = cpu ] || gpu=(--gpus-per-task=1)
# Cores per task (extract.sbatch asks for 4): decoding threads and, on CPU, the forward pass.
[ -z "${TLAB_CPUS_PER_TASK:-}" ] || gpu+=(--cpus-per-task="$TLAB_CPUS_PER_TASK")
jid=$(sbatch --parsable --array="0-$((n - 1))" "${gpu[@]}" --export=ALL "$here/extract.sbatch")
echo "parts: job array $jid (0-$((n - 1)))"
tlab=${TLAB:-tlab}
merge=$(sbatch --parsable --dependency="afterok:$jid" --job-name=tlab-merge --export=ALL \
  --output="tlab-merge-%j.out" \
  --wrap "$tlab --cache-dir '$TLAB_CACHE_DIR' extract ${TLAB_EXTRACT_ARGS:---dataset cifar10 --arch resnet50 --size 200} --merge --shards $n")
echo "merge: job $merge (after every part succeeds)"
echo "rerun a failed part K: TLAB_PARTS=$n sbatch --array=K ${gpu[*]} $here/extract.sbatch"
