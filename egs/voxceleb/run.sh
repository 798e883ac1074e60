#!/usr/bin/env bash
# VoxCeleb recipe: train on VoxCeleb2 dev, evaluate on the VoxCeleb1 O/E/H trial lists.
#   bash egs/voxceleb/run.sh --vox1-root /corpora/voxceleb1 --vox2-root /corpora/voxceleb2 \
#     --musan-root /corpora/musan --rirs-root /corpora/RIRS_NOISES [--stage N] [--stop-stage N]
set -euo pipefail
cd "$(dirname "$0")"

stage=1
stop_stage=8
nj=16                 # parallel jobs for feature extraction
vox1_root=/path/to/voxceleb1        # holds wav/idXXXXX/<video>/NNNNN.wav and the trial lists
vox2_root=/path/to/voxceleb2        # holds dev/aac/idXXXXX/<video>/NNNNN.m4a
musan_root=/path/to/musan
rirs_root=/path/to/RIRS_NOISES
vox2_wav_dir=         # if set, stage 1 converts VoxCeleb2 m4a to wav here instead of ffmpeg pipes
data=data
fbank_dir=fbank
fbank_config=conf/fbank.yaml
config=conf/ecapa_tdnn_c512.yaml    # training config (conf/*.yaml)
exp=exp/ecapa_tdnn_c512
nproc=4               # GPUs (torchrun processes) per node
train_opts=           # config overrides for both training stages, e.g. "epochs=4 data.batch_size=16"
num_avg=10            # epochs averaged into avg_model.pt
lm_config=conf/ecapa_tdnn_c512_lm.yaml   # large-margin fine-tuning (stage 8)
qmf_utts=3000         # calibration set: utterances (each gives a short crop and a long one)
qmf_trials=30000      # calibration trials
top_n=300             # AS-norm top-N

. ./path.sh
. ./cmd.sh
help_message="Usage: $0 --vox1-root DIR --vox2-root DIR --musan-root DIR --rirs-root DIR [--stage N] [--stop-stage N]"
. utils/parse_options.sh

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "stage 1: data dirs -> $data/{vox1,vox1_test,vox2_dev,musan,rirs}"
  python local/prepare_voxceleb1.py $vox1_root $data
  python local/prepare_voxceleb2.py --nj $nj ${vox2_wav_dir:+--convert-to-wav $vox2_wav_dir} $vox2_root $data
  python local/prepare_musan.py $musan_root $data
  python local/prepare_rirs.py $rirs_root $data
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "stage 2: fbank -> $data/{vox2_dev,vox1}/feats.scp"
  for set in vox2_dev vox1; do
    steps/make_fbank.sh --nj $nj --cmd "$train_cmd" --fbank-config $fbank_config \
      $data/$set $data/$set/log $fbank_dir
  done
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "stage 3: train $config -> $exp"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $config $exp \
    data.train_dir=$data/vox2_dev data.musan.data_dir=$data/musan data.rir.data_dir=$data/rirs $train_opts
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "stage 4: average the last $num_avg epochs -> $exp/models/avg_model.pt"
  python -m sv.bin.average_model $exp --num $num_avg
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "stage 5: embeddings -> $exp/embeddings/{vox2_dev,vox1}"
  for set in vox2_dev vox1; do
    steps/extract_embeddings.sh --nj $nj --cmd "$train_cmd" $exp $data/$set
  done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "stage 6: QMF calibration model -> $exp/qmf/qmf.yaml"
  python -m sv.bin.calibrate make-trials --num-utts $qmf_utts --num-trials $qmf_trials \
    $data/vox2_dev $data/vox2_dev_qmf
  steps/make_fbank.sh --nj $nj --cmd "$train_cmd" --fbank-config $fbank_config \
    $data/vox2_dev_qmf $data/vox2_dev_qmf/log $fbank_dir
  steps/extract_embeddings.sh --nj $nj --cmd "$train_cmd" $exp $data/vox2_dev_qmf
  steps/score.sh --cohort-data $data/vox2_dev --top-n $top_n --results-md none $exp $data/vox2_dev_qmf
  python -m sv.bin.calibrate train --scores $exp/scores/qmf.asnorm.score \
    --utt2dur $data/vox2_dev_qmf/utt2dur --emb-scp $exp/embeddings/vox2_dev_qmf/xvector.scp \
    --out $exp/qmf/qmf.yaml
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "stage 7: score the vox1 trial lists (cosine, AS-norm, QMF) -> $exp/results.md"
  steps/score.sh --cohort-data $data/vox2_dev --top-n $top_n --qmf-model $exp/qmf/qmf.yaml $exp $data/vox1
  cat $exp/results.md
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  lm_exp=${exp}_lm
  echo "stage 8: large-margin fine-tuning $lm_config -> $lm_exp, then embeddings and scores again"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $lm_config $lm_exp \
    data.train_dir=$data/vox2_dev data.musan.data_dir=$data/musan data.rir.data_dir=$data/rirs \
    init=$exp/models/avg_model.pt $train_opts
  python -m sv.bin.average_model $lm_exp --num 2
  for set in vox2_dev vox1; do
    steps/extract_embeddings.sh --nj $nj --cmd "$train_cmd" $lm_exp $data/$set
  done
  steps/score.sh --cohort-data $data/vox2_dev --top-n $top_n $lm_exp $data/vox1
  cat $lm_exp/results.md
fi
