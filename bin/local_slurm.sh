#!/usr/bin/env bash
# A one-machine Slurm (Debian's slurm-wlm) for trying `--cmd slurm` and for the cluster tests.
#
#   bash bin/local_slurm.sh start    install (apt, as root) and start munge, slurmctld and slurmd
#   bash bin/local_slurm.sh status   the daemons and `sinfo`
#   bash bin/local_slurm.sh jobs     one line "JOBID STATE" per job it ran (array tasks as ID_TASK)
#   bash bin/local_slurm.sh stop     stop the daemons (the job log is kept)
#
# The node is this machine (its short hostname), all its CPUs, one partition `local`. Accounting
# is Slurm's job-completion log (JobCompType=jobcomp/filetxt, $W2VTK_SLURM_DIR/jobcomp.log), which
# `jobs` reads; no slurmdbd. Processes are tracked with proctrack/linuxproc, so it runs in a
# container without cgroups. Settings live under W2VTK_SLURM_DIR (default /var/lib/w2vtk-slurm),
# the config in /etc/slurm/slurm.conf, where Debian's clients look for it.
set -euo pipefail
bindir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$bindir/log.sh"

state=${W2VTK_SLURM_DIR:-/var/lib/w2vtk-slurm}
conf=/etc/slurm/slurm.conf
node=$(hostname -s)

usage() { echo "usage: bash bin/local_slurm.sh start|stop|status|jobs" >&2; exit 1; }
[ $# -eq 1 ] || usage

running() { pgrep -x "$1" >/dev/null 2>&1; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null && return 0
  [ "$(id -u)" -eq 0 ] || die "Slurm is not installed and installing it needs root: as root, \
apt-get install slurm-wlm munge (or run this script as root)"
  log "installing slurm-wlm and munge from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null; } \
    || die "apt-get could not install slurm-wlm and munge"
}

write_conf() {
  local cpus mem
  if [ -f "$conf" ] && ! head -n 1 "$conf" | grep -q "written by w2vtk"; then
    die "$conf exists and was not written by bin/local_slurm.sh: this machine has a Slurm of its own"
  fi
  # GNU nproc prints $OMP_NUM_THREADS when it is set: count the cores
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  mkdir -p "$state"/{ctld,slurmd} /etc/slurm
  cat > "$conf.tmp" <<EOF
# written by w2vtk bin/local_slurm.sh: a one-node Slurm on $node
ClusterName=w2vtk-local
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/slurmd
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$state/jobcomp.log
MinJobAge=600
KillWait=5
InactiveLimit=0
OverTimeLimit=0
DefMemPerCPU=$((mem / cpus))
NodeName=$node CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  mv "$conf.tmp" "$conf"
}

start() {
  install_packages
  if running slurmctld && running slurmd; then
    log "Slurm is already running on $node"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "starting the daemons needs root"
  write_conf
  if ! running munged || [ ! -S /run/munge/munge.socket.2 ]; then
    pkill -x munged 2>/dev/null && sleep 1 || true
    [ -s /etc/munge/munge.key ] || { mungekey --create --force >/dev/null 2>&1 || \
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged || die "munged did not start"
  fi
  running slurmctld || slurmctld || die "slurmctld did not start (see $state/slurmctld.log)"
  running slurmd || slurmd || die "slurmd did not start (see $state/slurmd.log)"
  local i
  for i in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      log "Slurm is up on $node ($(nproc) CPUs, partition local)"
      return 0
    fi
    [ "$i" -ne 10 ] || scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
    sleep 1
  done
  die "the node did not become idle within 60 s: $(sinfo -h -o '%T %E' 2>&1 | head -1) (see $state/slurmd.log)"
}

stop() {
  # the jobs first (a stalled one would outlive its slurmd), then the daemons this script started
  # (by their pid files), TERM and then KILL after 10 s (a slurmd that lost munge retries for minutes)
  if running slurmctld; then
    squeue -h -o '%i' 2>/dev/null | xargs -r scancel 2>/dev/null || true
  fi
  local d pid i
  for d in slurmd slurmctld munged; do
    case $d in
      munged) pid=$(cat /run/munge/munged.pid 2>/dev/null || true) ;;
      *) pid=$(cat "$state/$d.pid" 2>/dev/null || true) ;;
    esac
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; sleep 0.5; fi
  done
  log "Slurm stopped"
}

status() {
  local d ok=0
  for d in munged slurmctld slurmd; do
    if running "$d"; then echo "$d: running"; else echo "$d: stopped"; ok=1; fi
  done
  [ $ok -ne 0 ] || sinfo
  return $ok
}

jobs() {
  # jobcomp/filetxt: one line per finished job, "JobId=N ... JobState=S ..." (array tasks carry
  # ArrayJobId / ArrayTaskId); jobs still queued or running come from squeue
  local log=$state/jobcomp.log
  if [ -f "$log" ]; then
    awk '{
      id = ""; st = ""; aj = ""; at = ""
      for (i = 1; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "JobId") id = kv[2]
        else if (kv[1] == "JobState") st = kv[2]
        else if (kv[1] == "ArrayJobId") aj = kv[2]
        else if (kv[1] == "ArrayTaskId") at = kv[2]
      }
      if (aj != "" && aj != "0" && at != "" && at != "4294967294") id = aj "_" at
      if (id != "") print id, st
    }' "$log"
  fi
  if running slurmctld; then
    squeue -h -o '%i %T' 2>/dev/null || true
  fi
}

case "$1" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  jobs) jobs ;;
  *) usage ;;
esac
