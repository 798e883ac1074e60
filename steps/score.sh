#!/usr/bin/env bash
# Score trial lists with cosine similarity, AS-norm and (given a model) QMF calibration, and append
# EER / minDCF tables to the experiment's results.md.
#
#   steps/score.sh [options] --cohort-data data/<train> <exp-dir> <eval-data-dir> [<trials.kaldi> ...]
#
# Reads:  <exp-dir>/embeddings/<eval>/xvector.scp and <exp-dir>/embeddings/<train>/xvector.scp
#         (steps/extract_embeddings.sh), <eval-data-dir>/trials/*.kaldi (all of them when no trials are
#         given), <eval-data-dir>/enroll.map (CN-Celeb: enroll models), utt2dur (QMF), utt2snr (QMF
#         models with the snr quality; computed with sv.bin.compute_snr from wav.scp when missing).
# Writes: <exp-dir>/embeddings/<train>/cohort/spk_xvector.{ark,scp}  AS-norm cohort (speaker means), or with
#         --cohort-type utterance <exp-dir>/embeddings/<train>/cohort_utt<size>_seed<seed>/{xvector.{ark,scp},utt_list}
#         <eval-data-dir>/utt2snr  when the QMF model uses SNR and it is missing
#         <exp-dir>/embeddings/<eval>/enroll/{spk_xvector.{ark,scp},utt2dur[,utt2snr]}  with enroll.map only
#         <exp-dir>/scores/<trials>.score, .asnorm.score, .qmf.score   `enroll test score label ...`
#         rows in <results-md> (default <exp-dir>/results.md): one table per trial list
set -euo pipefail

cohort_data=          # training data dir: mean embedding and AS-norm cohort (required)
top_n=300             # AS-norm top-N
cohort_type=speaker   # AS-norm cohort: speaker (mean embedding per training speaker) or utterance
cohort_size=30000     # utterance cohort: training utterances drawn at random (all if fewer)
cohort_seed=0         # utterance cohort: seed of the draw
snr=auto              # QMF SNR quality: auto (when the QMF model uses it), true, false
nj=4                  # processes estimating <eval-data-dir>/utt2snr when it is needed and missing
qmf_model=            # QMF model (sv.bin.calibrate train); empty: no calibration
results_md=           # default <exp-dir>/results.md; "none" writes no table

echo "$0 $*"
if [ -f path.sh ]; then . ./path.sh; fi
help_message="Usage: $0 [options] --cohort-data <train-data-dir> <exp-dir> <eval-data-dir> [<trials.kaldi> ...]
Options:
  --cohort-data <dir>   # training set: its embedding mean is subtracted, its speakers (or utterances) form the cohort
  --top-n <n>           # AS-norm top-N (default: $top_n)
  --cohort-type <type>  # speaker: training speakers' mean embeddings; utterance: random training
                        # utterances (default: $cohort_type)
  --cohort-size <n>     # utterance cohort size (default: $cohort_size)
  --cohort-seed <n>     # utterance cohort seed (default: $cohort_seed)
  --snr <auto|true|false>  # pass utt2snr to QMF: auto when the model uses the snr quality (default: $snr)
  --nj <n>              # processes for sv.bin.compute_snr when utt2snr is missing (default: $nj)
  --qmf-model <yaml>    # apply QMF calibration to the AS-norm scores
  --results-md <file>   # results table (default: <exp-dir>/results.md; 'none' for no table)"
. utils/parse_options.sh

if [ $# -lt 2 ] || [ -z "$cohort_data" ]; then
  printf "%s\n" "$help_message" >&2
  exit 1
fi
exp=$1
eval_data=$2
shift 2
eval_set=$(basename "$eval_data")
train_set=$(basename "$cohort_data")
emb=$exp/embeddings/$eval_set/xvector.scp
train_emb=$exp/embeddings/$train_set/xvector.scp
results_md=${results_md:-$exp/results.md}
if [ $# -gt 0 ]; then trials=("$@"); else trials=("$eval_data"/trials/*.kaldi); fi
for f in "$emb" "$train_emb" "$cohort_data/spk2utt" "${trials[@]}" ${qmf_model:+"$qmf_model"}; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
case $snr in
  auto) use_snr=false
        if [ -n "$qmf_model" ] && grep -qx -- '- snr_min' "$qmf_model"; then use_snr=true; fi ;;
  true|false) use_snr=$snr ;;
  *) echo "$0: --snr must be auto, true or false, got '$snr'" >&2; exit 1 ;;
esac
[ -n "$qmf_model" ] || use_snr=false

case $cohort_type in
  speaker)
    cohort=$exp/embeddings/$train_set/cohort
    python -m sv.bin.speaker_mean --spk2utt "$cohort_data/spk2utt" --emb-scp "$train_emb" \
      --mean-scp "$train_emb" --out-dir "$cohort"
    cohort_scp=$cohort/spk_xvector.scp ;;
  utterance)
    cohort=$exp/embeddings/$train_set/cohort_utt${cohort_size}_seed${cohort_seed}
    python -m sv.bin.make_cohort --emb-scp "$train_emb" --size "$cohort_size" --seed "$cohort_seed" \
      --mean-scp "$train_emb" --out-dir "$cohort"
    cohort_scp=$cohort/xvector.scp ;;
  *) echo "$0: --cohort-type must be speaker or utterance, got '$cohort_type'" >&2; exit 1 ;;
esac

snr_opts=()
if $use_snr; then
  [ -f "$eval_data/utt2snr" ] || python -m sv.bin.compute_snr --num-workers "$nj" "$eval_data"
  snr_opts=(--utt2snr "$eval_data/utt2snr")
fi

enroll_opts=()
durations=("$eval_data/utt2dur")
embeddings=("$emb")
if [ -f "$eval_data/enroll.map" ]; then
  # CN-Celeb: each enroll model is the mean of its utterances; its duration is their sum.
  enroll=$exp/embeddings/$eval_set/enroll
  python -m sv.bin.speaker_mean --spk2utt "$eval_data/enroll.map" --emb-scp "$emb" --out-dir "$enroll"
  awk 'NR==FNR {dur[$1]=$2; next} {s=0; for (i=2; i<=NF; i++) s+=dur[$i]; print $1, s}' \
    "$eval_data/utt2dur" "$eval_data/enroll.map" > "$enroll/utt2dur.tmp"
  mv "$enroll/utt2dur.tmp" "$enroll/utt2dur"
  if $use_snr; then
    # An enroll model's SNR: its utterances' estimates (dB), weighted by their durations (plain mean
    # if they have none).
    awk -v map="$eval_data/enroll.map" -v snr_file="$eval_data/utt2snr" '
      FILENAME == ARGV[1] {dur[$1] = $2; next}
      FILENAME == ARGV[2] {snr[$1] = $2; next}
      {s = 0; w = 0; m = 0
       for (i = 2; i <= NF; i++) {
         if (!($i in snr)) {printf "%s:%d: utterance %s of %s has no entry in %s\n", map, FNR, $i, $1, snr_file > "/dev/stderr"; exit 1}
         s += dur[$i] * snr[$i]; w += dur[$i]; m += snr[$i] / (NF - 1)}
       printf "%s %.2f\n", $1, (w > 0 ? s / w : m)}' \
      "$eval_data/utt2dur" "$eval_data/utt2snr" "$eval_data/enroll.map" > "$enroll/utt2snr.tmp"
    mv "$enroll/utt2snr.tmp" "$enroll/utt2snr"
    snr_opts+=("$enroll/utt2snr")
  fi
  enroll_opts=(--enroll-scp "$enroll/spk_xvector.scp")
  durations+=("$enroll/utt2dur")
  embeddings+=("$enroll/spk_xvector.scp")
fi

mkdir -p "$exp/scores"
for t in "${trials[@]}"; do
  name=$(basename "$t" .kaldi)
  out=$exp/scores/$name
  python -m sv.bin.score --trials "$t" --emb-scp "$emb" "${enroll_opts[@]}" --mean-scp "$train_emb" \
    --out "$out.score"
  python -m sv.bin.score_norm --method asnorm --top-n "$top_n" --cohort-scp "$cohort_scp" \
    --emb-scp "$emb" "${enroll_opts[@]}" --mean-scp "$train_emb" --scores "$out.score" --out "$out.asnorm.score"
  systems=(cosine:"$out.score" asnorm:"$out.asnorm.score")
  if [ -n "$qmf_model" ]; then
    python -m sv.bin.calibrate apply --model "$qmf_model" --scores "$out.asnorm.score" \
      --utt2dur "${durations[@]}" --emb-scp "${embeddings[@]}" "${snr_opts[@]}" --out "$out.qmf.score"
    systems+=(qmf:"$out.qmf.score")
  fi
  if [ "$results_md" != none ]; then
    for s in "${systems[@]}"; do
      python -m sv.bin.compute_metrics --results-md "$results_md" --title "$name" --system "${s%%:*}" "${s#*:}"
    done
  fi
done
echo "$0: scored ${#trials[@]} trial list(s) into $exp/scores"
