#!/usr/bin/env bash
# Speaker embeddings (x-vectors) of a data dir with a trained model, in parallel jobs.
# Run from a recipe dir (egs/X) where utils/ and steps/ are links to the repo's.
#
# Reads:  <exp-dir>/models/<model-name> (its `config` builds the network), <data-dir>/{feats.scp,utt2spk}
# Writes: <exp-dir>/embeddings/<set>/xvector.JOB.{ark,scp} (one pair per job) and xvector.scp, sorted,
#         pointing into the per-job archives; logs in <exp-dir>/embeddings/<set>/log/
# where <set> is the data dir's basename. xvector.scp appears only once every utterance of utt2spk
# has an embedding.
set -euo pipefail

# Begin configuration section.
nj=4
cmd=utils/run.pl
batch_frames=20000
max_frames=           # empty: embed whole utterances
model_name=avg_model.pt
device=auto
# End configuration section.

echo "$0 $*"  # the command line, for the log

if [ -f path.sh ]; then . ./path.sh; fi
help_message="Usage: $0 [options] <exp-dir> <data-dir>
 e.g.: $0 --nj 8 exp/ecapa_tdnn data/vox1_test
Options:
  --nj <n>                  # parallel jobs, at most one per utterance (default: $nj)
  --cmd <runner>            # job runner, e.g. 'utils/run.pl --max-jobs-run 4' (default: $cmd)
  --batch-frames <n>        # most padded frames in a batch (default: $batch_frames)
  --max-frames <n>          # embed in chunks of at most n frames and average them (default: whole utterances)
  --model-name <file>       # checkpoint in <exp-dir>/models (default: $model_name)
  --device <auto|cpu|cuda>  # where each job runs the model (default: $device)"
. utils/parse_options.sh

if [ $# -ne 2 ]; then
  printf "%s\n" "$help_message" >&2
  exit 1
fi

exp=$1
data=$2
export LC_ALL=C

# The scp files name the archives; an absolute path keeps them valid from any directory.
case $exp in /*) ;; *) exp=$PWD/$exp ;; esac
name=$(basename "$data")
model=$exp/models/$model_name
out=$exp/embeddings/$name
logdir=$out/log

[ -f "$model" ] || { echo "$0: no such model $model" >&2; exit 1; }
[ -f "$data/utt2spk" ] || { echo "$0: no such file $data/utt2spk" >&2; exit 1; }
if [ ! -f "$data/feats.scp" ]; then
  echo "$0: no such file $data/feats.scp: make features first (steps/make_fbank.sh $data)" >&2
  exit 1
fi
if ! [[ $nj =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: --nj must be a positive integer, got '$nj'" >&2
  exit 1
fi

mkdir -p "$logdir"
# Old embeddings must not outlive a failed run: the archives they point into are about to be rewritten.
rm -f "$out/xvector.scp"

nutts=$(wc -l < "$data/feats.scp")
if [ "$nj" -gt "$nutts" ]; then
  echo "$0: only $nutts utterances in $data/feats.scp: using --nj $nutts"
  nj=$nutts
fi
parts=()
for n in $(seq "$nj"); do parts+=("$logdir/feats.$n.scp"); done
python utils/split_scp.py "$data/feats.scp" "${parts[@]}"

opts="--batch-frames $batch_frames --device $device"
if [ -n "$max_frames" ]; then opts="$opts --max-frames $max_frames"; fi

# $cmd and $opts are unquoted on purpose: they hold several words.
$cmd JOB=1:"$nj" "$logdir/extract.JOB.log" \
    python -m sv.bin.extract --model "$model" $opts \
      "$logdir/feats.JOB.scp" "$out/xvector.JOB.ark" "$out/xvector.JOB.scp"

# Write under a temporary name, check, then rename: xvector.scp exists only when it is complete.
for n in $(seq "$nj"); do cat "$out/xvector.$n.scp"; done | sort -k1,1 > "$out/.xvector.scp.tmp"
missing=$(awk '{print $1}' "$data/utt2spk" | sort -u | comm -23 - <(awk '{print $1}' "$out/.xvector.scp.tmp"))
if [ -n "$missing" ]; then
  rm -f "$out/.xvector.scp.tmp"
  echo "$0: $(echo "$missing" | wc -l) of $(wc -l < "$data/utt2spk") utterances of $data/utt2spk have no" \
       "embedding, e.g. $(echo "$missing" | head -n 5 | tr '\n' ' ')- are they in $data/feats.scp?" >&2
  exit 1
fi
mv "$out/.xvector.scp.tmp" "$out/xvector.scp"

rm -f "${parts[@]}"
echo "$0: succeeded extracting embeddings for $name ($(wc -l < "$out/xvector.scp") utterances) into $out/xvector.scp"
