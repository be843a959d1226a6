#!/usr/bin/env bash
# A single-node Slurm cluster in one folder, for the test suite (tests/testsuite/slurm.rs)
# and for trying deploy/slurm/ by hand:
#   scripts/slurm-cluster.sh start DIR   installs slurm-wlm and munge (Debian, as root) if
#                                        missing, writes DIR/slurm.conf and starts munged,
#                                        slurmctld and slurmd; prints `export SLURM_CONF=...`
#   scripts/slurm-cluster.sh stop DIR    stops them by the PIDs in DIR (whatever state)
# Everything the daemons write (state, spool, logs, pid files, the munge key and socket)
# stays in DIR; the node has this machine's CPUs and memory. Nothing under /etc is used.
set -euo pipefail
cmd=${1:?usage: slurm-cluster.sh start|stop DIR}
dir=${2:?usage: slurm-cluster.sh start|stop DIR}

stop() {
  local rc=0 f pid
  # slurmd first, so it does not report a lost controller; munged last (both use it).
  for f in slurmd slurmctld munged; do
    [ -f "$dir/$f.pid" ] || continue
    pid=$(cat "$dir/$f.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" || rc=1
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        echo "slurm-cluster: $f (pid $pid) ignored SIGTERM for 5 s; killing it" >&2
        kill -9 "$pid" || true
      fi
    fi
    rm -f "$dir/$f.pid"
  done
  return $rc
}

if [ "$cmd" = stop ]; then
  stop
  exit
fi
[ "$cmd" = start ] || { echo "slurm-cluster: unknown command '$cmd' (start or stop)" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "slurm-cluster: slurm-wlm and munge are missing and installing them needs root" >&2; exit 1; }
  echo "slurm-cluster: installing slurm-wlm and munge (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends slurm-wlm munge >"$dir.apt.log" 2>&1 ||
    { apt-get update -q >>"$dir.apt.log" 2>&1 && apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$dir.apt.log" 2>&1; } ||
    { cat "$dir.apt.log" >&2; echo "slurm-cluster: installing slurm-wlm and munge failed" >&2; exit 1; }
fi

mkdir -p "$dir"/{state,spool,log}
dir=$(cd "$dir" && pwd)
# munged refuses a key others can read; the socket's folder must be searchable.
chmod 711 "$dir"
[ -f "$dir/munge.key" ] || { mungekey --create --keyfile="$dir/munge.key" 2>/dev/null || head -c 1024 /dev/urandom >"$dir/munge.key"; }
chmod 400 "$dir/munge.key"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
node=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm-cluster.sh: one node, this machine, everything under $dir.
ClusterName=tlab-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# Short timers: a test waits on them.
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$dir/slurm.conf

fail() {
  echo "slurm-cluster: $1; logs in $dir/log" >&2
  tail -n 20 "$dir"/log/*.log >&2 || true
  stop || true
  exit 1
}
munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" --pid-file="$dir/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed" || fail "munged did not start"
slurmctld -f "$dir/slurm.conf" || fail "slurmctld did not start"
slurmd -f "$dir/slurm.conf" || fail "slurmd did not start"
deadline=$(( $(date +%s) + 30 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  state=$(timeout 5 sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
  case $state in idle*) break ;; esac
  sleep 0.2
done
case $state in idle*) ;; *) fail "the node is '${state:-unreachable}', not idle, after 30 s" ;; esac
echo "slurm-cluster: up in $dir (node $node, $cpus CPUs, $mem MiB)" >&2
echo "export SLURM_CONF=$dir/slurm.conf"
