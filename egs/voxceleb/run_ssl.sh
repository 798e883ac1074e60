#!/usr/bin/env bash
# VoxCeleb recipe for systems on a pre-trained speech encoder (w2v-BERT 2.0, WavLM, ...): train on VoxCeleb2
# dev from the audio, in up to three training stages, then score the VoxCeleb1 O/E/H trial lists.
#   bash egs/voxceleb/run_ssl.sh --vox1-root /corpora/voxceleb1 --vox2-root /corpora/voxceleb2 \
#     --musan-root /corpora/musan --rirs-root /corpora/RIRS_NOISES [--stage N] [--stop-stage N]
# Default: w2v-BERT 2.0 + LoRA + Layer Adapter + MFA. For CA-MHFA on WavLM Base+ (no stage-2 config):
#   --config conf/wavlm_base_plus_ca_mhfa.yaml --ft-config "" --lm-config conf/wavlm_base_plus_ca_mhfa_lm.yaml \
#   --exp exp/wavlm_base_plus_ca_mhfa
# Training stages write $exp/s1, $exp/s2 and $exp/s3; embeddings, scores and results.md go in the last one.
set -euo pipefail
cd "$(dirname "$0")"

stage=1
stop_stage=8
nj=16                 # parallel jobs for data preparation and embedding extraction
vox1_root=/path/to/voxceleb1
vox2_root=/path/to/voxceleb2
musan_root=/path/to/musan
rirs_root=/path/to/RIRS_NOISES
vox2_wav_dir=         # if set, stage 1 converts VoxCeleb2 m4a to wav here instead of ffmpeg pipes
data=data
config=conf/w2vbert2_lora_adapter_mfa.yaml      # training stage 1 (frozen encoder, with or without LoRA)
ft_config=conf/w2vbert2_lora_adapter_mfa_ft.yaml   # training stage 2 (joint fine-tuning); "" to skip
lm_config=conf/w2vbert2_lora_adapter_mfa_lm.yaml   # training stage 3 (large-margin fine-tuning); "" to skip
prune_config=conf/w2vbert2_prune80.yaml   # stage 9: distillation-guided pruning of stage 2's model; "" skips 9-11
prune_distill_config=conf/w2vbert2_prune80_distill.yaml   # stage 10: further distillation of the pruned encoder
prune_opts=           # config overrides for stages 9-10 after --train-opts, e.g. "epochs=8"
exp=exp/w2vbert2_lora_adapter_mfa
nproc=4               # GPUs (torchrun processes) per node
num_avg=3             # epochs averaged after each training stage
train_opts=           # config overrides for every training stage, e.g. "data.batch_size=32"
qmf_utts=3000         # calibration set: utterances (each gives a short crop and a long one)
qmf_trials=30000      # calibration trials
top_n=300             # AS-norm top-N
train_set=vox2_dev    # training data dir, also the AS-norm cohort
voxblink2_root=       # VoxBlink2 audio as its cropper_audio.py cuts it: training adds it (the w2v-BERT 2.0 paper's
                      # VoxCeleb2 + VoxBlink2, in $data/${train_set}_voxblink2); cohort and QMF stay on $train_set
test_set=vox1         # data dir with the trial lists (data/$test_set/trials/*.kaldi)

. ./path.sh
. ./cmd.sh
help_message="Usage: $0 --vox1-root DIR --vox2-root DIR --musan-root DIR --rirs-root DIR [--stage N] [--stop-stage N] [--config YAML] [--ft-config YAML] [--lm-config YAML] [--prune-config YAML] [--prune-distill-config YAML] [--prune-opts OVERRIDES] [--exp DIR] [--voxblink2-root DIR]"
. utils/parse_options.sh

# The last training stage that runs: its averaged model makes the embeddings.
final=$exp/s1
if [ -n "$ft_config" ]; then final=$exp/s2; fi
if [ -n "$lm_config" ]; then final=$exp/s3; fi
train_dir=$train_set
if [ -n "$voxblink2_root" ]; then train_dir=${train_set}_voxblink2; fi
aug_opts="data.train_dir=$data/$train_dir data.musan.data_dir=$data/musan data.rir.data_dir=$data/rirs"

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "stage 1: data dirs -> $data/{vox1,vox1_test,vox2_dev,musan,rirs}"
  python local/prepare_voxceleb1.py $vox1_root $data
  python local/prepare_voxceleb2.py --nj $nj ${vox2_wav_dir:+--convert-to-wav $vox2_wav_dir} $vox2_root $data
  if [ -n "$voxblink2_root" ]; then
    python local/prepare_voxblink2.py --nj $nj $voxblink2_root $data
    python utils/combine_data.py $data/$train_dir $data/$train_set $data/voxblink2
  fi
  python local/prepare_musan.py $musan_root $data
  python local/prepare_rirs.py $rirs_root $data
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
    --top-n $top_n --train-set $train_set --test-set $test_set --vox1-root $vox1_root --vox2-root $vox2_root --musan-root $musan_root --rirs-root $rirs_root --voxblink2-root "$voxblink2_root" \
    --train-opts "$train_opts model.encoder.pretrained=$pruned_encoder"
fi

