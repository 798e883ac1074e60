#!/usr/bin/env bash
# Mini recipe: a synthetic corpus in the VoxCeleb1, MUSAN and RIRS_NOISES layouts, run through
# the same stages as egs/voxceleb: data dirs, fbank, training, averaging, embeddings, QMF calibration,
# scoring (cosine, AS-norm, QMF) and large-margin fine-tuning. Takes about ten minutes on 2 CPU cores.
#   bash egs/mini/run.sh [--stage N] [--stop-stage N] [--nj N] ...
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=8
nj=2                  # parallel jobs for feature extraction
seed=0                # corpus seed
num_speakers=40       # corpus size: speakers (10 of them are test speakers)
num_test_speakers=10
utts_per_video=5
corpus=corpus         # where stage 0 writes the synthetic corpus
data=data             # Kaldi data dirs
fbank_dir=fbank       # feature archives
fbank_config=conf/fbank.yaml
config=conf/ecapa_tdnn_small.yaml   # training config
exp=exp/ecapa_tdnn_small            # experiment dir
nproc=1               # training processes (torchrun --nproc-per-node; one per GPU)
train_opts=           # config overrides for both training stages, e.g. "epochs=4 data.batch_size=16"
num_avg=3             # epochs averaged into avg_model.pt
lm_config=conf/ecapa_tdnn_small_lm.yaml   # large-margin fine-tuning (stage 8)
qmf_utts=300          # calibration set: utterances (each gives a short crop and a long one)
qmf_trials=6000       # calibration trials

. ./path.sh
. ./cmd.sh
help_message="Usage: $0 [--stage N] [--stop-stage N] [--nj N] [--corpus DIR] [--data DIR] [--fbank-dir DIR] [--config YAML] [--exp DIR]"
. utils/parse_options.sh

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "stage 0: synthetic corpus -> $corpus"
  python local/make_synthetic_corpus.py --seed $seed --num-speakers $num_speakers \
    --num-test-speakers $num_test_speakers --utts-per-video $utts_per_video --nj $nj $corpus
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "stage 1: data dirs -> $data/{vox1,vox1_dev,vox1_test,musan,rirs}"
  python local/prepare_voxceleb1.py $corpus/voxceleb1 $data
  python local/prepare_musan.py $corpus/musan $data
  python local/prepare_rirs.py $corpus/RIRS_NOISES $data
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "stage 2: fbank -> $data/{vox1_dev,vox1_test}/feats.scp"
  for set in vox1_dev vox1_test; do
    steps/make_fbank.sh --nj $nj --cmd "$train_cmd" --fbank-config $fbank_config \
      $data/$set $data/$set/log $fbank_dir
  done
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "stage 3: train $config -> $exp"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $config $exp data.train_dir=$data/vox1_dev $train_opts
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "stage 4: average the last $num_avg epochs -> $exp/models/avg_model.pt"
  python -m sv.bin.average_model $exp --num $num_avg
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "stage 5: embeddings -> $exp/embeddings/{vox1_dev,vox1_test}"
  for set in vox1_dev vox1_test; do
    steps/extract_embeddings.sh --nj $nj --cmd "$train_cmd" $exp $data/$set
  done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "stage 6: QMF calibration model -> $exp/qmf/qmf.yaml"
  python -m sv.bin.calibrate make-trials --num-utts $qmf_utts --num-trials $qmf_trials \
    $data/vox1_dev $data/vox1_dev_qmf
  steps/make_fbank.sh --nj $nj --cmd "$train_cmd" --fbank-config $fbank_config \
    $data/vox1_dev_qmf $data/vox1_dev_qmf/log $fbank_dir
  steps/extract_embeddings.sh --nj $nj --cmd "$train_cmd" $exp $data/vox1_dev_qmf
  steps/score.sh --cohort-data $data/vox1_dev --results-md none $exp $data/vox1_dev_qmf
  python -m sv.bin.calibrate train --scores $exp/scores/qmf.asnorm.score \
    --utt2dur $data/vox1_dev_qmf/utt2dur --emb-scp $exp/embeddings/vox1_dev_qmf/xvector.scp \
    --out $exp/qmf/qmf.yaml
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "stage 7: score vox1_test trials (cosine, AS-norm, QMF) -> $exp/results.md"
  steps/score.sh --cohort-data $data/vox1_dev --qmf-model $exp/qmf/qmf.yaml $exp $data/vox1_test
  cat $exp/results.md
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  lm_exp=${exp}_lm
  echo "stage 8: large-margin fine-tuning $lm_config -> $lm_exp, then embeddings and scores again"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $lm_config $lm_exp \
    data.train_dir=$data/vox1_dev init=$exp/models/avg_model.pt $train_opts
  python -m sv.bin.average_model $lm_exp --num 1
  for set in vox1_dev vox1_test; do
    steps/extract_embeddings.sh --nj $nj --cmd "$train_cmd" $lm_exp $data/$set
  done
  steps/score.sh --cohort-data $data/vox1_dev $lm_exp $data/vox1_test
  cat $lm_exp/results.md
fi
