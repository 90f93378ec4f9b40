#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for llem's SLURM tests and for developers.
#
#   scripts/slurm_local.sh up       install slurm-wlm + munge from Debian if missing (root), start munged,
#                                   slurmctld and slurmd for one node sized to this machine, wait for `idle`
#   scripts/slurm_local.sh down     stop what `up` started (pid files under $LLEM_SLURM_DIR)
#   scripts/slurm_local.sh status   exit 0 when the node answers `idle`/`mixed`/`allocated`, else 1
#
# No systemd, no cgroups, no accounting database: job states come from `scontrol`. Where no working
# `sacct` exists, `up` installs scripts/sacct_scontrol.py as /usr/local/bin/sacct (removed by `down`),
# which answers submitit's `sacct` query from `scontrol -o show job` (states kept for MinJobAge, 300 s).
# Recipe and measurements: ../shared/notes/slurm.md.
set -euo pipefail

STATE="${LLEM_SLURM_DIR:-/var/lib/llem-slurm}"   # state, spool, logs, pid files
CONF=/etc/slurm/slurm.conf
SACCT_SHIM=/usr/local/bin/sacct
HERE="$(cd "$(dirname "$0")" && pwd)"
PARTITION="${LLEM_SLURM_PARTITION:-debug}"
UP_WAIT_S=30

say() { echo "slurm_local: $*" >&2; }

node_state() { timeout 5 sinfo -h -p "$PARTITION" -o %T 2>/dev/null | head -n1; }

status() {
  command -v sinfo >/dev/null || { say "not installed"; return 1; }
  local s
  s="$(node_state || true)"
  case "$s" in
    idle | mixed | allocated | completing) echo "up: partition $PARTITION, node $s"; return 0 ;;
    *) say "not up (node state: '${s:-no answer}')"; return 1 ;;
  esac
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null; then
    return 0
  fi
  [ "$(id -u)" = 0 ] || { say "slurm-wlm is not installed and this is not root: install slurm-wlm and munge"; exit 2; }
  command -v apt-get >/dev/null || { say "no apt-get: install slurm-wlm and munge by hand"; exit 2; }
  say "installing slurmctld slurmd slurm-client munge (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || { /usr/sbin/mungekey --create 2>/dev/null || \
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$STATE/munged.pid"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
  say "munged did not start"; exit 1
}

write_conf() {
  local host node cpus mem_mb
  host="$(hostname -s)"
  node="$(slurmd -C | head -n1)"                       # NodeName=... CPUs=... RealMemory=...
  cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")"
  mem_mb="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")"
  mem_mb=$((mem_mb * 9 / 10))                          # leave the OS some room
  node="$(sed -e "s/RealMemory=[0-9]*/RealMemory=$mem_mb/" <<<"$node")"
  mkdir -p /etc/slurm "$STATE"/{state,spool,log}
  cat >"$CONF" <<EOF
# written by llem's scripts/slurm_local.sh: one node, one partition, no cgroups, no accounting
ClusterName=llem
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem_mb / cpus))
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
KillWait=10
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

sacct_works() { timeout 5 sacct -n -X -j 1 >/dev/null 2>&1; }

up() {
  mkdir -p "$STATE"
  if status >/dev/null 2>&1; then status; return 0; fi
  install_packages
  start_munge
  write_conf
  /usr/sbin/slurmctld
  /usr/sbin/slurmd
  if ! sacct_works && [ ! -e "$SACCT_SHIM" ]; then
    install -m 755 "$HERE/sacct_scontrol.py" "$SACCT_SHIM"
    echo "$SACCT_SHIM" > "$STATE/sacct.installed"
  fi
  for _ in $(seq $((UP_WAIT_S * 10))); do
    if status >/dev/null 2>&1; then status; return 0; fi
    sleep 0.1
  done
  say "the node did not become idle in ${UP_WAIT_S} s; see $STATE/log/"; exit 1
}

stop_pid() {   # stop_pid <pid file>: TERM, then KILL after 10 s
  local f="$1" pid
  [ -s "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$f"
}

down() {
  timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
  stop_pid "$STATE/slurmd.pid"
  stop_pid "$STATE/slurmctld.pid"
  stop_pid "$STATE/munged.pid"
  if [ -s "$STATE/sacct.installed" ]; then rm -f "$(cat "$STATE/sacct.installed")" "$STATE/sacct.installed"; fi
  say "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
