#!/usr/bin/env bash
# Mini recipe for the systems on an ASR-pretrained Conformer (asr-conformer-transfer-kd-adaptor.txt):
# egs/voxceleb/run_asr.sh's stages on the synthetic mini corpus, with a tiny random NeMo Conformer-CTC
# (tests/fixtures/nemo_conformer_ctc/tiny_conformer_ctc.nemo, saved by NeMo itself through
# local/make_nemo_fixture.py) in place of stt_en_conformer_ctc_{small,medium,large}.nemo.
#   bash egs/mini/run_asr.sh --strategy transfer|distill|adaptor [--stage N] [--stop-stage N] ...
# Each strategy trains its own exp dir ($exp_root/<strategy>); stages 0-1 are shared and run once.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=7
strategy=transfer     # transfer (ASR-initialised MFA-Conformer) | distill (ASR distillation) | adaptor
nj=2                  # parallel jobs for corpus generation and embedding extraction
seed=0                # corpus seed
num_speakers=40       # corpus size: speakers (10 of them are test speakers)
num_test_speakers=10
utts_per_video=5
corpus=corpus         # where stage 0 writes the synthetic corpus
data=data
nemo=../../tests/fixtures/nemo_conformer_ctc/tiny_conformer_ctc.nemo   # the NeMo checkpoint stage 0 imports
asr=exp/asr/tiny_conformer_ctc   # where stage 0 imports it
config=               # training config; default conf/asr_<strategy>.yaml
exp_root=exp          # the strategy trains $exp_root/asr_<strategy>, large-margin fine-tuning $exp_root/asr_<strategy>_lm
nproc=1               # training processes (torchrun --nproc-per-node; one per GPU)
num_avg=2             # epochs averaged after training
train_opts=           # config overrides for the training stages, e.g. "data.batch_size=16"
lm_epochs=1           # large-margin fine-tuning (stage 4): epochs; 0 skips the stage
lm_opts="data.crop=3.0"   # its crop (6 s in the paper) and any other overrides
qmf_utts=300          # calibration set: utterances (each gives a short crop and a long one)
qmf_trials=6000       # calibration trials
cohort_size=200       # AS-norm cohort: random training utterances (30,000 in the paper)
top_n=100             # AS-norm top-N (700 in the paper)
train_set=vox1_dev    # training data dir, also the AS-norm cohort
test_set=vox1_test    # data dir with the trial lists (data/$test_set/trials/*.kaldi)

. ./path.sh
. ./cmd.sh
help_message="Usage: $0 [--strategy transfer|distill|adaptor] [--stage N] [--stop-stage N] [--nj N] [--corpus DIR] [--data DIR] [--nemo FILE] [--asr DIR] [--config YAML] [--exp-root DIR] [--train-opts OVERRIDES] [--lm-epochs N] [--lm-opts OVERRIDES]"
. utils/parse_options.sh

case $strategy in transfer|distill|adaptor) ;; *) echo "$0: --strategy must be transfer, distill or adaptor" >&2; exit 1;; esac
config=${config:-conf/asr_$strategy.yaml}
exp=$exp_root/asr_$strategy
final=$exp
if [ "$lm_epochs" -gt 0 ]; then final=${exp}_lm; fi
# Every config names the imported model at exp/asr/tiny_conformer_ctc; --asr moves it.
case $strategy in
  transfer) asr_opt=model.pretrained=$asr ;;
  distill) asr_opt=teacher.model=$asr ;;
  adaptor) asr_opt=model.asr=$asr ;;
esac
aug_opts="data.train_dir=$data/$train_set data.musan.data_dir=$data/musan data.rir.data_dir=$data/rirs"
# The paper's back end: AS-norm over random training utterances, QMF with an SNR quality.
score_opts="--cohort-type utterance --cohort-size $cohort_size --top-n $top_n --nj $nj"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "stage 0: synthetic corpus -> $corpus; import $nemo -> $asr"
  python local/make_synthetic_corpus.py --seed $seed --num-speakers $num_speakers \
    --num-test-speakers $num_test_speakers --utts-per-video $utts_per_video --nj $nj $corpus
  python -m sv.bin.import_nemo --force $nemo $asr
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "stage 1: data dirs -> $data/{vox1,vox1_dev,vox1_test,musan,rirs}"
  python local/prepare_voxceleb1.py $corpus/voxceleb1 $data
  python local/prepare_musan.py $corpus/musan $data
  python local/prepare_rirs.py $corpus/RIRS_NOISES $data
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "stage 3: train ($strategy), $config -> $exp; average -> $exp/models/avg_model.pt"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $config $exp $aug_opts $asr_opt $train_opts
  python -m sv.bin.average_model $exp --num $num_avg
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ] && [ "$lm_epochs" -gt 0 ]; then
  # The trained model's own config with the paper's large-margin settings: longer crops, margin 0.5, no speed
  # perturbation, no auxiliary loss, nothing frozen, a low learning rate.
  echo "stage 4: large-margin fine-tuning of $exp -> $final"
  steps/train.sh --cmd "$cuda_cmd" --nproc-per-node $nproc $exp/config.yaml $final \
    init=$exp/models/avg_model.pt epochs=$lm_epochs teacher=null margin_scheduler=null head.margin=0.5 \
    data.speed_perturb.prob=0.0 +optim.freeze=[] optim.lr=5.0e-4 scheduler.warmup_epochs=0 $lm_opts
  python -m sv.bin.average_model $final --num 1
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "stage 5: embeddings -> $final/embeddings/{$train_set,$test_set}"
  for set in $train_set $test_set; do
    steps/extract_embeddings.sh --nj $nj --cmd "$train_cmd" $final $data/$set
  done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "stage 6: QMF calibration model (duration, SNR, magnitude, cohort) -> $final/qmf/qmf.yaml"
  python -m sv.bin.calibrate make-trials --num-utts $qmf_utts --num-trials $qmf_trials \
    $data/$train_set $data/${train_set}_qmf
  steps/extract_embeddings.sh --nj $nj --cmd "$train_cmd" $final $data/${train_set}_qmf
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
