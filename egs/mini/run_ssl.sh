#!/usr/bin/env bash
# Mini recipe for systems on a pre-trained speech encoder: egs/voxceleb/run_ssl.sh's stages on the synthetic
# mini corpus, with a tiny random WavLM (saved by stage 0 with save_pretrained and loaded with
# from_pretrained, as a real one from the hub) in place of w2v-BERT 2.0. Training stage 1: frozen encoder
# with LoRA and Layer Adapter + MFA; 2: joint fine-tuning after merging LoRA; 3: large-margin fine-tuning.
# Then embeddings from the audio, QMF, and scoring. A few minutes on 2 CPU cores.
#   bash egs/mini/run_ssl.sh [--stage N] [--stop-stage N] ...
# Stages 0-1 make the same corpus and data dirs as run.sh's.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=8
nj=2                  # parallel jobs for corpus generation and embedding extraction
seed=0                # corpus seed
num_speakers=40       # corpus size: speakers (10 of them are test speakers)
num_test_speakers=10
utts_per_video=5
corpus=corpus         # where stage 0 writes the synthetic corpus
data=data
pretrained=exp/tiny_wavlm   # where stage 0 saves the stand-in pre-trained encoder
config=conf/ssl_lora_adapter_mfa.yaml    # training stage 1 (frozen encoder, with or without LoRA)
ft_config=conf/ssl_adapter_mfa_ft.yaml   # training stage 2 (joint fine-tuning); "" to skip
lm_config=conf/ssl_adapter_mfa_lm.yaml   # training stage 3 (large-margin fine-tuning); "" to skip
prune_config=conf/ssl_prune.yaml   # stage 9: distillation-guided pruning of stage 2's model; "" skips 9-11
prune_distill_config=conf/ssl_prune_distill.yaml   # stage 10: further distillation of the pruned encoder
prune_opts=           # config overrides for stages 9-10 after --train-opts, e.g. "epochs=8"
exp=exp/ssl_lora_adapter_mfa
nproc=1               # training processes (torchrun --nproc-per-node; one per GPU)
num_avg=2             # epochs averaged after each training stage
train_opts=           # config overrides for every training stage, e.g. "data.batch_size=16"
qmf_utts=300          # calibration set: utterances (each gives a short crop and a long one)
qmf_trials=6000       # calibration trials
top_n=300             # AS-norm top-N (clamped to the cohort's 30 speakers)
train_set=vox1_dev    # training data dir, also the AS-norm cohort
test_set=vox1_test    # data dir with the trial lists (data/$test_set/trials/*.kaldi)

. ./path.sh
. ./cmd.sh
help_message="Usage: $0 [--stage N] [--stop-stage N] [--nj N] [--corpus DIR] [--data DIR] [--pretrained DIR] [--config YAML] [--ft-config YAML] [--lm-config YAML] [--prune-config YAML] [--prune-distill-config YAML] [--prune-opts OVERRIDES] [--exp DIR] [--train-opts OVERRIDES]"
. utils/parse_options.sh

# The last training stage that runs: its averaged model makes the embeddings.
final=$exp/s1
if [ -n "$ft_config" ]; then final=$exp/s2; fi
if [ -n "$lm_config" ]; then final=$exp/s3; fi
aug_opts="data.train_dir=$data/$train_set data.musan.data_dir=$data/musan data.rir.data_dir=$data/rirs"
aug_opts="$aug_opts model.encoder.pretrained=$pretrained"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "stage 0: synthetic corpus -> $corpus, tiny random WavLM -> $pretrained"
  python local/make_synthetic_corpus.py --seed $seed --num-speakers $num_speakers \
    --num-test-speakers $num_test_speakers --utts-per-video $utts_per_video --nj $nj $corpus
  python local/make_tiny_ssl_model.py --type wavlm $pretrained
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "stage 1: data dirs -> $data/{vox1,vox1_dev,vox1_test,musan,rirs}"
  python local/prepare_voxceleb1.py $corpus/voxceleb1 $data
  python local/prepare_musan.py $corpus/musan $data
  python local/prepare_rirs.py $corpus/RIRS_NOISES $data
fi

# Stage 2 of run.sh (fbank) has no counterpart: these models read the audio.

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "stage 3: training stage 1, $config -> $exp/s1; average, merge LoRA -> $exp/s1/models/avg_model.pt"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $config $exp/s1 $aug_opts $train_opts
  python -m sv.bin.average_model $exp/s1 --num $num_avg
  python -m sv.bin.merge_lora --allow-no-lora $exp/s1/models/avg_model.pt $exp/s1/models/avg_model.pt
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ] && [ -n "$ft_config" ]; then
  echo "stage 4: training stage 2 (joint fine-tuning), $ft_config -> $exp/s2"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $ft_config $exp/s2 $aug_opts $train_opts \
    init=$exp/s1/models/avg_model.pt
  python -m sv.bin.average_model $exp/s2 --num $num_avg
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ] && [ -n "$lm_config" ]; then
  prev=$exp/s1
  if [ -n "$ft_config" ]; then prev=$exp/s2; fi
  echo "stage 5: training stage 3 (large-margin fine-tuning), $lm_config -> $exp/s3"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $lm_config $exp/s3 $aug_opts $train_opts \
    init=$prev/models/avg_model.pt
  python -m sv.bin.average_model $exp/s3 --num 1
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "stage 6: embeddings -> $final/embeddings/{$train_set,$test_set}"
  for set in $train_set $test_set; do
    steps/extract_embeddings.sh --nj $nj --cmd "$cuda_cmd" $final $data/$set
  done
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "stage 7: QMF calibration model -> $final/qmf/qmf.yaml"
  python -m sv.bin.calibrate make-trials --num-utts $qmf_utts --num-trials $qmf_trials \
    $data/$train_set $data/${train_set}_qmf
  steps/extract_embeddings.sh --nj $nj --cmd "$cuda_cmd" $final $data/${train_set}_qmf
  steps/score.sh --cohort-data $data/$train_set --top-n $top_n --results-md none $final $data/${train_set}_qmf
  python -m sv.bin.calibrate train --scores $final/scores/qmf.asnorm.score \
    --utt2dur $data/${train_set}_qmf/utt2dur --emb-scp $final/embeddings/${train_set}_qmf/xvector.scp \
    --out $final/qmf/qmf.yaml
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  echo "stage 8: score the $test_set trial lists (cosine, AS-norm, QMF) -> $final/results.md"
  steps/score.sh --cohort-data $data/$train_set --top-n $top_n --qmf-model $final/qmf/qmf.yaml $final $data/$test_set
  cat $final/results.md
fi

# Stages 9-11: the w2v-BERT 2.0 paper's pruning (section 3.4), after joint fine-tuning (stage 4); not run by
# default (--stop-stage 11). The teacher of both distillations is stage 2's averaged model, unpruned and frozen.
pruned_encoder=$(realpath -m $exp/prune_distill/encoder)
if [ $stage -le 9 ] && [ $stop_stage -ge 9 ] && [ -n "$prune_config" ]; then
  echo "stage 9: pruning with distillation, $prune_config -> $exp/prune; pruned encoder -> $exp/prune/encoder"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $prune_config $exp/prune $aug_opts $train_opts \
    init=$exp/s2/models/avg_model.pt teacher.model=$exp/s2/models/avg_model.pt $prune_opts
  python -m sv.bin.average_model $exp/prune --num $num_avg
  python -m sv.bin.prune_encoder $exp/prune/models/avg_model.pt $exp/prune/encoder $exp/prune/models/pruned_model.pt
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ] && [ -n "$prune_config" ]; then
  echo "stage 10: further distillation of the pruned student, $prune_distill_config -> $exp/prune_distill"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $prune_distill_config $exp/prune_distill $aug_opts \
    $train_opts init=$exp/prune/models/pruned_model.pt teacher.model=$exp/s2/models/avg_model.pt \
    model.encoder.pretrained=$(realpath -m $exp/prune/encoder) $prune_opts
  python -m sv.bin.average_model $exp/prune_distill --num $num_avg
  python -m sv.bin.prune_encoder $exp/prune_distill/models/avg_model.pt $pruned_encoder \
    $exp/prune_distill/models/pruned_model.pt
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ] && [ -n "$prune_config" ]; then
  echo "stage 11: the speaker stages again (3-8) on the pruned encoder $pruned_encoder -> ${exp}_pruned"
  bash ./$(basename "$0") --stage 3 --stop-stage 8 --exp ${exp}_pruned --data $data --nj $nj --nproc $nproc --num-avg $num_avg \
    --config $config --ft-config "$ft_config" --lm-config "$lm_config" --qmf-utts $qmf_utts --qmf-trials $qmf_trials \
    --top-n $top_n --train-set $train_set --test-set $test_set --corpus $corpus --pretrained $pretrained \
    --train-opts "$train_opts model.encoder.pretrained=$pruned_encoder"
fi

