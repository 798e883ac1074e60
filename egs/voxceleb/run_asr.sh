#!/usr/bin/env bash
# VoxCeleb recipe for the three ways of using an ASR-pretrained Conformer of asr-conformer-transfer-kd-adaptor.txt:
# train on VoxCeleb2 dev from the audio, score the VoxCeleb1 O/E/H trial lists with the paper's back end
# (AS-norm over 30,000 random training utterances, top 700; QMF with duration, SNR, magnitude and cohort qualities).
#   bash egs/voxceleb/run_asr.sh --nemo /models/stt_en_conformer_ctc_large.nemo --strategy transfer \
#     --vox1-root /corpora/voxceleb1 --vox2-root /corpora/voxceleb2 --musan-root /corpora/musan \
#     --rirs-root /corpora/RIRS_NOISES [--stage N] [--stop-stage N]
# Strategies and their default configs (any conf/asr_transfer_*, asr_distill_*, adaptor_* with --config):
#   transfer  conf/asr_transfer_<size>.yaml  MFA-Conformer initialised from the ASR encoder (Table II)
#   distill   conf/asr_distill_half_<size>.yaml  student MFA-Conformer + CTC distillation from the ASR model (Table III)
#   adaptor   conf/adaptor_<size>_v3.yaml     speaker adaptor on the frozen ASR model (Tables IV-VII)
# where <size> is small|medium|large from the checkpoint's name. Stage 8 (not run by default) is the layer probe
# of Fig. 3. Training writes $exp, large-margin fine-tuning ${exp}_lm; embeddings, scores and results.md go in
# the last one.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=7
strategy=transfer     # transfer | distill | adaptor
nemo=/path/to/stt_en_conformer_ctc_large.nemo   # NeMo checkpoint (stage 0 imports it; see README for downloads)
asr=                  # imported model dir; default exp/asr/<checkpoint name>
config=               # training config; default by strategy and size (above)
exp=                  # default exp/asr_<strategy>_<size>
nj=16                 # parallel jobs for data preparation, SNR estimation and embedding extraction
vox1_root=/path/to/voxceleb1
vox2_root=/path/to/voxceleb2
musan_root=/path/to/musan
rirs_root=/path/to/RIRS_NOISES
vox2_wav_dir=         # if set, stage 1 converts VoxCeleb2 m4a to wav here instead of ffmpeg pipes
data=data
nproc=4               # GPUs (torchrun processes) per node
num_avg=3             # epochs averaged after training
train_opts=           # config overrides for the training stages, e.g. "data.batch_size=64"
lm_epochs=5           # large-margin fine-tuning (stage 4): epochs; 0 skips the stage
lm_opts=              # more overrides for it (beyond 6 s crops, margin 0.5, no speed perturbation)
qmf_utts=3000         # calibration set: utterances (each gives a short crop and a long one)
qmf_trials=30000      # calibration trials (the paper's 30,000)
cohort_size=30000     # AS-norm cohort: random training utterances (the paper's 30,000)
top_n=700             # AS-norm top-N (the paper's 700)
probe_epochs=5        # stage 8: layer probe training epochs
probe_device=cuda     # stage 8: where the probe runs (cpu | cuda)
train_set=vox2_dev    # training data dir, also the AS-norm cohort
test_set=vox1         # data dir with the trial lists (data/$test_set/trials/*.kaldi)

. ./path.sh
. ./cmd.sh
help_message="Usage: $0 --nemo FILE --strategy transfer|distill|adaptor --vox1-root DIR --vox2-root DIR --musan-root DIR --rirs-root DIR [--stage N] [--stop-stage N] [--config YAML] [--exp DIR] [--asr DIR] [--train-opts OVERRIDES] [--lm-epochs N] [--lm-opts OVERRIDES]"
. utils/parse_options.sh

name=$(basename "$nemo" .nemo)
asr=${asr:-exp/asr/$name}
case $name in *small*) size=small ;; *medium*) size=medium ;; *large*) size=large ;; *) size= ;; esac
case $strategy in
  transfer) default_config=conf/asr_transfer_$size.yaml; asr_opt=model.pretrained=$asr ;;
  distill) default_config=conf/asr_distill_half_$size.yaml; asr_opt=teacher.model=$asr ;;
  adaptor) default_config=conf/adaptor_${size}_v3.yaml; asr_opt=model.asr=$asr ;;
  *) echo "$0: --strategy must be transfer, distill or adaptor" >&2; exit 1 ;;
esac
if [ -z "$config" ] && [ -z "$size" ]; then
  echo "$0: cannot tell small/medium/large from $nemo; give --config" >&2; exit 1
fi
config=${config:-$default_config}
exp=${exp:-exp/asr_${strategy}_$size}
final=$exp
if [ "$lm_epochs" -gt 0 ]; then final=${exp}_lm; fi
aug_opts="data.train_dir=$data/$train_set data.musan.data_dir=$data/musan data.rir.data_dir=$data/rirs"
score_opts="--cohort-type utterance --cohort-size $cohort_size --top-n $top_n --nj $nj"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "stage 0: import $nemo -> $asr"
  python -m sv.bin.import_nemo --force $nemo $asr
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "stage 1: data dirs -> $data/{vox1,vox1_test,vox2_dev,musan,rirs}"
  python local/prepare_voxceleb1.py $vox1_root $data
  python local/prepare_voxceleb2.py --nj $nj ${vox2_wav_dir:+--convert-to-wav $vox2_wav_dir} $vox2_root $data
  python local/prepare_musan.py $musan_root $data
  python local/prepare_rirs.py $rirs_root $data
fi

# Stage 2 of run.sh (fbank) has no counterpart: these models compute the ASR model's features from the audio.

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "stage 3: train ($strategy), $config -> $exp; average -> $exp/models/avg_model.pt"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $config $exp $aug_opts $asr_opt $train_opts
  python -m sv.bin.average_model $exp --num $num_avg
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ] && [ "$lm_epochs" -gt 0 ]; then
  # The trained model's own config with the paper's large-margin settings (section IV-D): 6 s crops, margin 0.5,
  # no speed perturbation; and no auxiliary loss, nothing frozen, a low learning rate.
  echo "stage 4: large-margin fine-tuning of $exp -> $final"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $exp/config.yaml $final \
    init=$exp/models/avg_model.pt epochs=$lm_epochs teacher=null margin_scheduler=null head.margin=0.5 \
    data.crop=6.0 data.speed_perturb.prob=0.0 +optim.freeze=[] optim.lr=1.0e-4 scheduler.warmup_epochs=0 \
    data.batch_size=32 $lm_opts
  python -m sv.bin.average_model $final --num 1
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "stage 5: embeddings -> $final/embeddings/{$train_set,$test_set}"
  for set in $train_set $test_set; do
    steps/extract_embeddings.sh --nj $nj --cmd "$cuda_cmd" $final $data/$set
  done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "stage 6: QMF calibration model (duration, SNR, magnitude, cohort) -> $final/qmf/qmf.yaml"
  python -m sv.bin.calibrate make-trials --num-utts $qmf_utts --num-trials $qmf_trials \
    $data/$train_set $data/${train_set}_qmf
  steps/extract_embeddings.sh --nj $nj --cmd "$cuda_cmd" $final $data/${train_set}_qmf
  steps/score.sh --cohort-data $data/$train_set $score_opts --results-md none $final $data/${train_set}_qmf
  python -m sv.bin.compute_snr --num-workers $nj $data/${train_set}_qmf
  python -m sv.bin.calibrate train --scores $final/scores/qmf.asnorm.score \
    --utt2dur $data/${train_set}_qmf/utt2dur --utt2snr $data/${train_set}_qmf/utt2snr \
    --emb-scp $final/embeddings/${train_set}_qmf/xvector.scp --out $final/qmf/qmf.yaml
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "stage 7: score the $test_set trial lists (cosine, AS-norm, QMF) -> $final/results.md"
  steps/score.sh --cohort-data $data/$train_set $score_opts --qmf-model $final/qmf/qmf.yaml $final $data/$test_set
  cat $final/results.md
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  echo "stage 8: layer probe of $asr on $data/vox1_dev (Fig. 3) -> exp/probe_$name"
  $cuda_cmd exp/probe_$name/log/probe.log python -m sv.bin.probe_layers --asr $asr --data $data/vox1_dev \
    --out-dir exp/probe_$name \
    --epochs $probe_epochs --num-workers $nj --device $probe_device
fi
