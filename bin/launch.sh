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
# --dry-run true     print the command instead of running it
# Options end at the first non-option word (the stage) or at `--`.
set -euo pipefail
bindir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$bindir/log.sh"

nproc=""
num_nodes=1
node_rank=0
master_addr=""
master_port=""
rdzv_endpoint=""
rdzv_id=w2vtk
dry_run=false
help_message=$(sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//')
. "$bindir/parse_options.sh" || exit 1

[ $# -ge 1 ] || die "no w2vtk stage given (e.g. bin/launch.sh --nproc 2 pretrain ...)"
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
