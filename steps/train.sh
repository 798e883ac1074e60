#!/usr/bin/env bash
# Train a speaker-embedding network with torchrun (DDP: gloo on CPU, nccl on GPU).
#
#   steps/train.sh [options] <config.yaml> <exp-dir> [key.path=value ...]
#
# Reads:  the config and the data dirs it names.
# Writes: <exp-dir>/{config.yaml,train.log,models/model_<epoch>.pt}, and the job's combined output
#         (every rank) in <exp-dir>/log/torchrun.log. A rerun continues from the latest checkpoint.
#
# Under SLURM (--cmd utils/slurm.pl ..., or run.pl inside a multi-node sbatch allocation) the job
# runs `srun torchrun` in the allocation: one torchrun per node (--nnodes nodes are requested from
# slurm.pl; --gpu, when $cmd has it, becomes --nproc-per-node), c10d rendezvous on the allocation's
# first node (scontrol show hostnames $SLURM_JOB_NODELIST), --node-rank/--rdzv-endpoint unused.
set -euo pipefail

cmd=utils/run.pl
nproc_per_node=1      # processes (GPUs) per node
nnodes=1
node_rank=0
rdzv_endpoint=        # host:port of the rendezvous; empty: a single standalone node
rdzv_id=sv
resume=true

echo "$0 $*"
if [ -f path.sh ]; then . ./path.sh; fi
help_message="Usage: $0 [options] <config.yaml> <exp-dir> [key.path=value ...]
Options:
  --cmd <runner>            # job runner for the training job (default: $cmd); slurm.pl: srun torchrun
  --nproc-per-node <n>      # processes per node, one per GPU (default: $nproc_per_node)
  --nnodes <n>              # nodes (default: $nnodes)
  --node-rank <n>           # this node's rank, with --rdzv-endpoint (default: $node_rank)
  --rdzv-endpoint <h:p>     # rendezvous host:port for several nodes (default: standalone)
  --resume <bool>           # continue from the latest checkpoint (default: $resume)"
. utils/parse_options.sh
for opt in nproc-per-node:$nproc_per_node nnodes:$nnodes; do
  case ${opt#*:} in
    ''|*[!0-9]*|0) echo "$0: --${opt%%:*} must be a whole number >= 1, got '${opt#*:}'" >&2; exit 1 ;;
  esac
done
case $node_rank in ''|*[!0-9]*) echo "$0: --node-rank must be a whole number >= 0, got '$node_rank'" >&2; exit 1 ;; esac

if [ $# -lt 2 ]; then
  printf "%s\n" "$help_message" >&2
  exit 1
fi
config=$1
exp_dir=$2
shift 2
[ -f "$config" ] || { echo "$0: no such config $config" >&2; exit 1; }

$resume || set -- --no-resume "$@"
mkdir -p "$exp_dir/log"

slurm=false
case "$cmd" in
  *slurm.pl*) slurm=true
    if [ "$nnodes" -gt 1 ]; then cmd="$cmd --nodes $nnodes"; fi
    case "$cmd" in *--gpu*) cmd="$cmd --gpu $nproc_per_node" ;; esac ;;  # the last --gpu wins
  *) if [ -n "${SLURM_JOB_ID:-}" ] && [ "${SLURM_NNODES:-1}" -gt 1 ]; then slurm=true; fi ;;
esac

# On failure say why, from the workers' own output: torchrun's ChildFailedError report says nothing of the cause.
failed() {
  local log=$exp_dir/log/torchrun.log why
  why=$(grep -h -E ' ERROR \[' "$log" 2>/dev/null | grep -v 'torch\.distributed' | tail -n 1 | sed 's/.* ERROR \[[^]]*\] //')
  [ -n "$why" ] || why=$(grep -h -E '^[A-Za-z_.]*(Error|Exception): ' "$log" 2>/dev/null | grep -v ChildFailedError | tail -n 1)
  echo "$0: training failed${why:+: $why}" >&2
  echo "$0: see $log (every rank's output) and $exp_dir/train.log" >&2
  exit 1
}

if $slurm; then
  # Runs in the allocation, so the SLURM variables are expanded there, not here.
  train_args=$(printf ' %q' -m sv.bin.train --config "$config" --exp-dir "$exp_dir" "$@")
  launch='head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
port=$((29500 + SLURM_JOB_ID % 1000))
echo "train.sh: srun torchrun on $SLURM_NNODES node(s) ($SLURM_JOB_NODELIST), rendezvous $head:$port"
exec srun --nodes=$SLURM_NNODES --ntasks=$SLURM_NNODES --ntasks-per-node=1 --kill-on-bad-exit=1 \
  torchrun --nnodes $SLURM_NNODES --nproc-per-node '"$nproc_per_node"' \
  --rdzv-backend c10d --rdzv-endpoint $head:$port --rdzv-id $SLURM_JOB_ID'"$train_args"
  # $cmd is unquoted on purpose: it holds several words.
  $cmd "$exp_dir/log/torchrun.log" bash -c "$launch" || failed
else
  if [ -z "$rdzv_endpoint" ]; then
    [ "$nnodes" -eq 1 ] || { echo "$0: --nnodes $nnodes needs --rdzv-endpoint" >&2; exit 1; }
    launch="--standalone --nproc-per-node $nproc_per_node"
  else
    launch="--nnodes $nnodes --node-rank $node_rank --nproc-per-node $nproc_per_node
            --rdzv-backend c10d --rdzv-endpoint $rdzv_endpoint --rdzv-id $rdzv_id"
  fi
  # $cmd and $launch are unquoted on purpose: they hold several words.
  $cmd "$exp_dir/log/torchrun.log" \
    torchrun $launch -m sv.bin.train --config "$config" --exp-dir "$exp_dir" "$@" || failed
fi
echo "$0: trained $exp_dir (models in $exp_dir/models, log in $exp_dir/train.log)"
