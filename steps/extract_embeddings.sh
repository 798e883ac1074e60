#!/usr/bin/env bash
# Speaker embeddings (x-vectors) of a data dir with a trained model, in parallel jobs.
# Run from a recipe dir (egs/X) where utils/ and steps/ are links to the repo's.
#
# Reads:  <exp-dir>/models/<model-name> (its `config` builds the network), <exp-dir>/config.yaml, and
#         <data-dir>/{feats.scp,utt2spk}, or for a model trained on audio (data.mode: waveform in
#         config.yaml, e.g. on a pre-trained encoder) <data-dir>/{wav.scp,segments (if any),utt2spk}
# Writes: <exp-dir>/embeddings/<set>/xvector.JOB.{ark,scp} (one pair per job) and xvector.scp, sorted,
#         pointing into the per-job archives; logs in <exp-dir>/embeddings/<set>/log/
# where <set> is the data dir's basename. The jobs write xvector.JOB.new.{ark,scp}; these replace the
# previous run's archives and xvector.scp only once every utterance of utt2spk has an embedding, so a
# failed rerun leaves the previous embeddings as they were. Archives of job numbers above --nj (from a
# previous run with more jobs) are deleted then.
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
  --batch-frames <n>        # most padded frames (10 ms for audio) in a batch (default: $batch_frames)
  --max-frames <n>          # embed in chunks of at most n frames (10 ms for audio) and average them
                            # (default: whole utterances)
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
mode=features
if [ -f "$exp/config.yaml" ]; then mode=$(python utils/get_config.py --default features "$exp/config.yaml" data.mode); fi
# The jobs' input: parts of feats.scp, or of the audio (segments, else wav.scp) as make_fbank.sh splits it.
job_opts=
if [ "$mode" != waveform ]; then
  if [ ! -f "$data/feats.scp" ]; then
    echo "$0: no such file $data/feats.scp: make features first (steps/make_fbank.sh $data)" >&2
    exit 1
  fi
  units=$data/feats.scp
  part=$logdir/feats.JOB.scp
  input=$part
elif [ -f "$data/segments" ]; then
  [ -f "$data/wav.scp" ] || { echo "$0: no such file $data/wav.scp" >&2; exit 1; }
  units=$data/segments
  part=$logdir/segments.JOB
  job_opts="--segments $part"
  input=$data/wav.scp
else
  [ -f "$data/wav.scp" ] || { echo "$0: no such file $data/wav.scp" >&2; exit 1; }
  units=$data/wav.scp
  part=$logdir/wav.JOB.scp
  input=$part
fi
if ! [[ $nj =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: --nj must be a positive integer, got '$nj'" >&2
  exit 1
fi

mkdir -p "$logdir"
# A rerun must not touch the previous run's outputs until it has succeeded: the jobs write
# xvector.JOB.new.{ark,scp}, which replace xvector.JOB.{ark,scp} and xvector.scp only once every job
# succeeded and every utterance has an embedding. On a failure or Ctrl-C the .new files are removed on
# exit; were this shell killed outright, the next run removes them before it starts.
prefix=$out/xvector
cleanup() {
  python utils/job_archives.py clean "$prefix"
  rm -f "$out/.xvector.scp.tmp"
}
cleanup
trap cleanup EXIT

nutts=$(wc -l < "$units")
if [ "$nj" -gt "$nutts" ]; then
  echo "$0: only $nutts utterances in $units: using --nj $nutts"
  nj=$nutts
fi
parts=()
for n in $(seq "$nj"); do parts+=("${part//JOB/$n}"); done
python utils/split_scp.py "$units" "${parts[@]}"

opts="--batch-frames $batch_frames --device $device $job_opts"
if [ -n "$max_frames" ]; then opts="$opts --max-frames $max_frames"; fi

# $cmd and $opts are unquoted on purpose: they hold several words.
$cmd JOB=1:"$nj" "$logdir/extract.JOB.log" \
    python -m sv.bin.extract --model "$model" --source-table "$units" $opts \
      "$input" "$prefix.JOB.new.ark" "$prefix.JOB.new.scp"

# Everything is prepared under temporary names and checked before anything of the previous run changes.
python utils/job_archives.py merge "$prefix" "$nj" "$out/.xvector.scp.tmp"
missing=$(awk '{print $1}' "$data/utt2spk" | sort -u | comm -23 - <(awk '{print $1}' "$out/.xvector.scp.tmp"))
if [ -n "$missing" ]; then
  echo "$0: $(echo "$missing" | wc -l) of $(wc -l < "$data/utt2spk") utterances of $data/utt2spk have no" \
       "embedding, e.g. $(echo "$missing" | head -n 5 | tr '\n' ' ')- are they in $units?" >&2
  exit 1
fi

# The one step that is not atomic: from the first ark renamed until xvector.scp is moved, the previous
# xvector.scp may point into a new archive; both are renames, so the window is short. install also deletes
# the archives of job numbers above --nj that a previous run left.
python utils/job_archives.py install "$prefix" "$nj"
mv -f "$out/.xvector.scp.tmp" "$out/xvector.scp"

rm -f "${parts[@]}"
echo "$0: succeeded extracting embeddings for $name ($(wc -l < "$out/xvector.scp") utterances) into $out/xvector.scp"
