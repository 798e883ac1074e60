#!/usr/bin/env bash
# CN-Celeb recipe: train on CN-Celeb1 dev + CN-Celeb2, evaluate on CN-Celeb1 eval (CNC-Eval-Core).
#   bash egs/cnceleb/run.sh --cnceleb1-root /corpora/CN-Celeb_flac --cnceleb2-root /corpora/CN-Celeb2_flac \
#     --musan-root /corpora/musan --rirs-root /corpora/RIRS_NOISES [--stage N] [--stop-stage N]
set -euo pipefail
cd "$(dirname "$0")"

stage=1
stop_stage=4
nj=16
cnceleb1_root=/path/to/CN-Celeb_flac
cnceleb2_root=/path/to/CN-Celeb2_flac
musan_root=/path/to/musan
rirs_root=/path/to/RIRS_NOISES
data=data
fbank_dir=fbank
fbank_config=conf/fbank.yaml
config=conf/ecapa_tdnn_c512.yaml    # training config (conf/*.yaml)
exp=exp/ecapa_tdnn_c512
nproc=4               # GPUs (torchrun processes) per node
num_avg=10            # epochs averaged into avg_model.pt

. ./path.sh
. ./cmd.sh
help_message="Usage: $0 --cnceleb1-root DIR --cnceleb2-root DIR --musan-root DIR --rirs-root DIR [--stage N] [--stop-stage N]"
. utils/parse_options.sh

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "stage 1: data dirs -> $data/{cnceleb_train,cnceleb1_eval,musan,rirs}"
  python local/prepare_cnceleb.py $cnceleb1_root $cnceleb2_root $data
  python local/prepare_musan.py $musan_root $data
  python local/prepare_rirs.py $rirs_root $data
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "stage 2: fbank -> $data/{cnceleb_train,cnceleb1_eval}/feats.scp"
  for set in cnceleb_train cnceleb1_eval; do
    steps/make_fbank.sh --nj $nj --cmd "$train_cmd" --fbank-config $fbank_config \
      $data/$set $data/$set/log $fbank_dir
  done
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "stage 3: train $config -> $exp"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $config $exp \
    data.train_dir=$data/cnceleb_train data.musan.data_dir=$data/musan data.rir.data_dir=$data/rirs
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "stage 4: average the last $num_avg epochs -> $exp/models/avg_model.pt"
  python -m sv.bin.average_model $exp --num $num_avg
fi
