#!/usr/bin/env bash
# Train a speaker-embedding network with torchrun (DDP: gloo on CPU, nccl on GPU).
#
#   steps/train.sh [options] <config.yaml> <exp-dir> [key.path=value ...]
#
# Reads:  the config and the data dirs it names.
# Writes: <exp-dir>/{config.yaml,train.log,models/model_<epoch>.pt}, and the job's combined output
#         (every rank) in <exp-dir>/log/torchrun.log. A rerun continues from the latest checkpoint.
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
  --cmd <runner>            # job runner for the training job (default: $cmd)
  --nproc-per-node <n>      # processes per node, one per GPU (default: $nproc_per_node)
  --nnodes <n>              # nodes (default: $nnodes)
  --node-rank <n>           # this node's rank, with --rdzv-endpoint (default: $node_rank)
  --rdzv-endpoint <h:p>     # rendezvous host:port for several nodes (default: standalone)
  --resume <bool>           # continue from the latest checkpoint (default: $resume)"
. utils/parse_options.sh

if [ $# -lt 2 ]; then
  printf "%s\n" "$help_message" >&2
  exit 1
fi
config=$1
exp_dir=$2
shift 2
[ -f "$config" ] || { echo "$0: no such config $config" >&2; exit 1; }

if [ -z "$rdzv_endpoint" ]; then
  [ "$nnodes" -eq 1 ] || { echo "$0: --nnodes $nnodes needs --rdzv-endpoint" >&2; exit 1; }
  launch="--standalone --nproc-per-node $nproc_per_node"
else
  launch="--nnodes $nnodes --node-rank $node_rank --nproc-per-node $nproc_per_node
          --rdzv-backend c10d --rdzv-endpoint $rdzv_endpoint --rdzv-id $rdzv_id"
fi
$resume || set -- --no-resume "$@"

mkdir -p "$exp_dir/log"
# $cmd and $launch are unquoted on purpose: they hold several words.
$cmd "$exp_dir/log/torchrun.log" \
  torchrun $launch -m sv.bin.train --config "$config" --exp-dir "$exp_dir" "$@"
echo "$0: trained $exp_dir (models in $exp_dir/models, log in $exp_dir/train.log)"
