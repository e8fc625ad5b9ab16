#!/usr/bin/env bash
# Run one w2vtk stage on N processes: plain `w2vtk` for one process, torchrun for several.
#
#   bin/launch.sh [options] STAGE [STAGE ARGS...]
#   bin/launch.sh --nproc 2 pretrain --conf conf/tiny.yaml --data data/train --exp exp/w2v
#   bin/launch.sh --num-nodes 2 --node-rank 0 --master-addr node1 --master-port 29500 train-am ...
#
# --nproc N          processes on this node (default: the visible GPUs, torch.cuda.device_count(),
#                    which respects CUDA_VISIBLE_DEVICES; 1 without CUDA). Each process drives one
#                    GPU with NCCL when CUDA is visible, otherwise they are CPU processes with gloo
#                    (w2vtk.dist chooses the backend). Batch sizes in w2vtk configs are per process.
# --num-nodes M      nodes in the job (default 1: `torchrun --standalone --nproc-per-node=N`)
# --node-rank R      this node's rank, with --master-addr HOST --master-port PORT (static rendezvous)
# --rdzv-endpoint HOST:PORT   instead: c10d rendezvous (with --rdzv-id JOB, default w2vtk)
# --cmd slurm        run it as one Slurm job (sbatch --wait): srun starts one launch.sh per node,
#                    which starts torchrun with a c10d rendezvous on the job's first node
# --cmd-opts STR     extra sbatch options, words split on spaces (e.g. "--partition gpu --time 600");
#                    the job asks for --nodes M --ntasks-per-node 1 and --cpus-per-task N before them
# --log-dir DIR      --cmd slurm: logs STAGE.<task>.log (default: EXP/log of the stage's --exp, else log)
# --dry-run true     print the command instead of running it
# Options end at the first non-option word (the stage) or at `--`.
set -euo pipefail
bindir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$bindir/log.sh"

# slurm_job STAGE ARGS: the stage as one Slurm job of --num-nodes tasks (one per node), each task
# this script again with a c10d rendezvous on the first node; fails naming the log of a job that did
# not complete (FAILED, CANCELLED, TIMEOUT, NODE_FAIL ...).
slurm_job() {
  command -v sbatch >/dev/null || die "--cmd slurm: sbatch is not on PATH (bin/local_slurm.sh start gives a local Slurm)"
  local stage=$1 prev="" a
  if [ -z "$log_dir" ]; then
    for a in "$@"; do
      [ "$prev" != "--exp" ] || log_dir=$a/log
      prev=$a
    done
    [ -n "$log_dir" ] || log_dir=log
  fi
  mkdir -p "$log_dir/q"
  log_dir=$(cd "$log_dir" && pwd)
  local script=$log_dir/q/$stage.sh
  local -a inner=(--num-nodes "$num_nodes")
  [ -z "$nproc" ] || inner+=(--nproc "$nproc")
  {
    echo '#!/usr/bin/env bash'
    echo '# written by w2vtk bin/launch.sh --cmd slurm: one task per node, torchrun c10d rendezvous on the first'
    echo 'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)'
    echo 'port=$((20000 + SLURM_JOB_ID % 20000))'
    # Slurm 22.05's srun no longer takes sbatch's --cpus-per-task by itself
    printf 'exec srun --kill-on-bad-exit=1 ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK} -o %q bash %q %s--rdzv-endpoint "$head:$port" --rdzv-id "$SLURM_JOB_ID" "$@"\n' \
      "$log_dir/$stage.%t.log" "$bindir/launch.sh" "$(printf '%q ' "${inner[@]}")"
  } > "$script.tmp"
  mv "$script.tmp" "$script"
  local -a opts sb
  read -r -a opts <<< "$cmd_opts"
  sb=(sbatch --wait --parsable --job-name="$stage" --nodes="$num_nodes" --ntasks-per-node=1
      --cpus-per-task="${nproc:-1}" --export=ALL --chdir="$PWD" -o "$log_dir/$stage.sbatch.log" "${opts[@]}"
      "$script" "$@")
  if [ "$dry_run" = true ]; then
    printf '%q ' "${sb[@]}"
    echo
    return 0
  fi
  log "${sb[*]}"
  # sbatch in the background: its job id is known as soon as the job is submitted, so an interrupt
  # (Ctrl-C, TERM) cancels the job instead of leaving it to run on
  local idfile=$log_dir/q/$stage.jobid id="" rc=0 state="" i
  rm -f "$idfile"
  "${sb[@]}" > "$idfile" &
  local pid=$!
  trap 'id=$(cut -d";" -f1 "$idfile" 2>/dev/null); [ -z "$id" ] || scancel "$id"; kill $pid 2>/dev/null; \
    die "interrupted: cancelled slurm job ${id:-(not yet submitted)}"' INT TERM
  wait $pid || rc=$?
  trap - INT TERM
  id=$(cut -d";" -f1 "$idfile" 2>/dev/null || true)
  [ -n "$id" ] || die "sbatch refused the job (see above)"
  # sbatch --wait may return while the job is still COMPLETING: read its state until it is final
  for i in $(seq 1 120); do
    state=$(scontrol -o show job "$id" 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p' | head -n 1 || true)
    [ -n "$state" ] || state=$(sacct -X -n -P -j "$id" -o State 2>/dev/null | head -n 1 | cut -d' ' -f1 || true)
    case "$state" in
      PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED|REQUEUED) sleep 0.5 ;;
      *) break ;;
    esac
  done
  if [ $rc -ne 0 ] || { [ -n "$state" ] && [ "$state" != COMPLETED ]; }; then
    die "slurm job $id ($stage) ended ${state:-with exit code $rc}: see $log_dir/$stage.0.log and $log_dir/$stage.sbatch.log"
  fi
  log "slurm job $id ($stage) COMPLETED; logs $log_dir/$stage.<task>.log"
}

nproc=""
num_nodes=1
node_rank=0
master_addr=""
master_port=""
rdzv_endpoint=""
rdzv_id=w2vtk
cmd=local
cmd_opts=""
log_dir=""
dry_run=false
help_message=$(sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//')
. "$bindir/parse_options.sh" || exit 1

[ $# -ge 1 ] || die "no w2vtk stage given (e.g. bin/launch.sh --nproc 2 pretrain ...)"
case "$cmd" in
  local) [ -z "$cmd_opts" ] || die "--cmd-opts is for --cmd slurm" ;;
  slurm) slurm_job "$@"; exit $? ;;
  *) die "--cmd $cmd: expected local or slurm" ;;
esac
[ "$num_nodes" -ge 1 ] || die "--num-nodes must be >= 1"
if [ "$num_nodes" -gt 1 ] && [ -z "$rdzv_endpoint" ]; then
  [ -n "$master_addr" ] && [ -n "$master_port" ] \
    || die "--num-nodes $num_nodes needs --master-addr HOST --master-port PORT (or --rdzv-endpoint HOST:PORT)"
  [ "$node_rank" -lt "$num_nodes" ] || die "--node-rank $node_rank must be below --num-nodes $num_nodes"
fi
if [ -z "$nproc" ]; then
  nproc=$(python -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null) \
    || die "cannot import torch to count GPUs; give --nproc N"
  [ "$nproc" -ge 1 ] || nproc=1
fi
[[ "$nproc" =~ ^[0-9]+$ ]] && [ "$nproc" -ge 1 ] || die "--nproc must be a positive integer, not '$nproc'"

if [ "$nproc" -eq 1 ] && [ "$num_nodes" -eq 1 ]; then
  cmd=(w2vtk "$@")
else
  if command -v torchrun >/dev/null; then
    cmd=(torchrun)
  else
    cmd=(python -m torch.distributed.run)
  fi
  if [ "$num_nodes" -eq 1 ]; then
    cmd+=(--standalone --nnodes=1)
  elif [ -n "$rdzv_endpoint" ]; then
    cmd+=(--nnodes="$num_nodes" --rdzv-backend=c10d --rdzv-endpoint="$rdzv_endpoint" --rdzv-id="$rdzv_id")
  else
    cmd+=(--nnodes="$num_nodes" --node-rank="$node_rank" --master-addr="$master_addr" --master-port="$master_port")
  fi
  cmd+=(--nproc-per-node="$nproc" -m w2vtk "$@")
fi

if [ "$dry_run" = true ]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
log "${cmd[*]}"
exec "${cmd[@]}"
