#!/usr/bin/env bash
# Log mel filterbank features for a data dir, in parallel jobs (Kaldi's steps/make_fbank.sh).
# Run from a recipe dir (egs/X) where utils/ and steps/ are links to the repo's.
#
# Reads:  <data-dir>/{wav.scp,segments (if any),utt2spk}, the fbank config (YAML)
# Writes: <fbank-dir>/raw_fbank_<name>.JOB.{ark,scp}, <data-dir>/{feats.scp,utt2num_frames},
#         <data-dir>/conf/fbank.yaml (the config used), logs <log-dir>/make_fbank_<name>.JOB.log
# where <name> is the data dir's basename. feats.scp appears only once every utterance has features;
# a previous feats.scp and utt2num_frames are moved to <data-dir>/.backup first.
set -euo pipefail

# Begin configuration section.
nj=4
cmd=utils/run.pl
fbank_config=conf/fbank.yaml
write_utt2num_frames=true
# End configuration section.

echo "$0 $*"  # the command line, for the log

if [ -f path.sh ]; then . ./path.sh; fi
help_message="Usage: $0 [options] <data-dir> [<log-dir> [<fbank-dir>]]
 e.g.: $0 --nj 8 data/train data/train/log fbank
Options:
  --nj <n>                        # parallel jobs, at most one per utterance (default: $nj)
  --cmd <runner>                  # job runner, e.g. 'utils/run.pl --max-jobs-run 4' (default: $cmd)
  --fbank-config <yaml>           # torchaudio.compliance.kaldi.fbank options (default: $fbank_config)
  --write-utt2num-frames <bool>   # also write <data-dir>/utt2num_frames (default: $write_utt2num_frames)
<log-dir> defaults to <data-dir>/log, <fbank-dir> (where the archives go) to fbank."
. utils/parse_options.sh

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
  printf "%s\n" "$help_message" >&2
  exit 1
fi

data=$1
logdir=${2:-$data/log}
fbankdir=${3:-fbank}
export LC_ALL=C

# The scp files name the archives; an absolute path keeps them valid from any directory.
case $fbankdir in /*) ;; *) fbankdir=$PWD/$fbankdir ;; esac
name=$(basename "$data")

for f in "$data/wav.scp" "$fbank_config"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
if ! [[ $nj =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: --nj must be a positive integer, got '$nj'" >&2
  exit 1
fi

mkdir -p "$fbankdir" "$logdir"
# Old features must not outlive a failed run: the archives they point into are about to be rewritten.
for f in feats.scp utt2num_frames; do
  if [ -f "$data/$f" ]; then
    mkdir -p "$data/.backup"
    echo "$0: moving $data/$f to $data/.backup"
    mv "$data/$f" "$data/.backup/"
  fi
done

python utils/validate_data_dir.py "$data"

if [ -f "$data/segments" ]; then
  echo "$0: segments file exists: using that."
  units=$data/segments
  part=$logdir/segments.JOB
  job_opts="--segments $part"
  wav=$data/wav.scp
else
  echo "$0: no segments file: wav.scp is indexed by utterance."
  units=$data/wav.scp
  part=$logdir/wav_$name.JOB.scp
  job_opts=
  wav=$part
fi

nunits=$(wc -l < "$units")
if [ "$nj" -gt "$nunits" ]; then
  echo "$0: only $nunits utterances in $units: using --nj $nunits"
  nj=$nunits
fi
parts=()
for n in $(seq "$nj"); do parts+=("${part//JOB/$n}"); done
python utils/split_scp.py "$units" "${parts[@]}"

if $write_utt2num_frames; then
  job_opts="$job_opts --utt2num-frames $logdir/utt2num_frames.JOB"
fi

# $cmd and $job_opts are unquoted on purpose: they hold several words.
$cmd JOB=1:"$nj" "$logdir/make_fbank_$name.JOB.log" \
    python -m sv.bin.compute_fbank --config "$fbank_config" $job_opts \
      "$wav" "$fbankdir/raw_fbank_$name.JOB.ark" "$fbankdir/raw_fbank_$name.JOB.scp"

# Write under temporary names, check, then rename: feats.scp exists only when it is complete.
for n in $(seq "$nj"); do cat "$fbankdir/raw_fbank_$name.$n.scp"; done | sort -k1,1 > "$data/.feats.scp.tmp"
missing=$(awk '{print $1}' "$data/utt2spk" | comm -23 - <(awk '{print $1}' "$data/.feats.scp.tmp"))
if [ -n "$missing" ]; then
  rm -f "$data/.feats.scp.tmp"
  echo "$0: $(echo "$missing" | wc -l) of $(wc -l < "$data/utt2spk") utterances of $data/utt2spk have no" \
       "features, e.g. $(echo "$missing" | head -n 5 | tr '\n' ' ')- see $logdir/make_fbank_$name.*.log" >&2
  exit 1
fi
if $write_utt2num_frames; then
  for n in $(seq "$nj"); do cat "$logdir/utt2num_frames.$n"; done | sort -k1,1 > "$data/.utt2num_frames.tmp"
  mv "$data/.utt2num_frames.tmp" "$data/utt2num_frames"
fi
mv "$data/.feats.scp.tmp" "$data/feats.scp"

# Later stages read how the features were made from here.
mkdir -p "$data/conf"
cp "$fbank_config" "$data/conf/fbank.yaml"

for n in $(seq "$nj"); do rm -f "${part//JOB/$n}" "$logdir/utt2num_frames.$n"; done
echo "$0: succeeded creating filterbank features for $name ($(wc -l < "$data/feats.scp") utterances)"
