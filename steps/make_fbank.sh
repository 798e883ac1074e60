#!/usr/bin/env bash
# Log mel filterbank features for a data dir, in parallel jobs (Kaldi's steps/make_fbank.sh).
# Run from a recipe dir (egs/X) where utils/ and steps/ are links to the repo's.
#
# Reads:  <data-dir>/{wav.scp,segments (if any),utt2spk}, the fbank config (YAML)
# Writes: <fbank-dir>/raw_fbank_<name>.JOB.{ark,scp}, <data-dir>/{feats.scp,utt2num_frames},
#         <data-dir>/conf/fbank.yaml (the config used), logs <log-dir>/make_fbank_<name>.JOB.log
# where <name> is the data dir's basename. The jobs write raw_fbank_<name>.JOB.new.{ark,scp}; these
# replace the previous run's archives, feats.scp, utt2num_frames and conf/fbank.yaml only once every
# utterance has features, so a failed rerun leaves the previous outputs as they were. Archives of job
# numbers above --nj (from a previous run with more jobs) are deleted then.
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

# A rerun must not touch the previous run's outputs until it has succeeded: the jobs write
# raw_fbank_<name>.JOB.new.{ark,scp}, which replace raw_fbank_<name>.JOB.{ark,scp} and feats.scp only
# once every job succeeded and every utterance has features. On a failure or Ctrl-C the .new files are
# removed on exit; were this shell killed outright, the next run removes them before it starts.
prefix=$fbankdir/raw_fbank_$name
# Archives are named after the data dir's basename: two data dirs of one name (a/test, b/test) must not share
# an fbank dir, or they would overwrite (and clean up) each other's archives. The owner file says whose they are.
data_abs=$(cd "$data" && pwd)
if [ -f "$prefix.owner" ] && [ "$(cat "$prefix.owner")" != "$data_abs" ]; then
  echo "$0: $fbankdir already holds the archives raw_fbank_$name.* of $(cat "$prefix.owner"); give $data another fbank dir (the third argument)" >&2
  exit 1
fi
echo "$data_abs" > "$prefix.owner"
cleanup() {
  python utils/job_archives.py clean "$prefix"
  rm -f "$data/.feats.scp.tmp" "$data/.utt2num_frames.tmp" "$data/conf/.fbank.yaml.tmp"
}
cleanup
trap cleanup EXIT

# The previous feats.scp and utt2num_frames stay until replaced and may disagree with an edited data dir.
python utils/validate_data_dir.py --no-feats "$data"

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
    python -m sv.bin.compute_fbank --config "$fbank_config" --source-table "$units" $job_opts \
      "$wav" "$prefix.JOB.new.ark" "$prefix.JOB.new.scp"

# Everything is prepared under temporary names and checked before anything of the previous run changes.
python utils/job_archives.py merge "$prefix" "$nj" "$data/.feats.scp.tmp"
missing=$(awk '{print $1}' "$data/utt2spk" | comm -23 - <(awk '{print $1}' "$data/.feats.scp.tmp"))
if [ -n "$missing" ]; then
  echo "$0: $(echo "$missing" | wc -l) of $(wc -l < "$data/utt2spk") utterances of $data/utt2spk have no" \
       "features, e.g. $(echo "$missing" | head -n 5 | tr '\n' ' ')- see $logdir/make_fbank_$name.*.log" >&2
  exit 1
fi
if $write_utt2num_frames; then
  for n in $(seq "$nj"); do cat "$logdir/utt2num_frames.$n"; done | sort -k1,1 > "$data/.utt2num_frames.tmp"
fi
mkdir -p "$data/conf"
cp "$fbank_config" "$data/conf/.fbank.yaml.tmp"

# The one step that is not atomic: from the first ark renamed until feats.scp is moved, the previous
# feats.scp may point into a new archive; both are renames, so the window is short. install also deletes
# the archives of job numbers above --nj that a previous run left.
python utils/job_archives.py install "$prefix" "$nj"
mv -f "$data/.feats.scp.tmp" "$data/feats.scp"
if $write_utt2num_frames; then mv -f "$data/.utt2num_frames.tmp" "$data/utt2num_frames"; fi
# Later stages read how the features were made from here.
mv -f "$data/conf/.fbank.yaml.tmp" "$data/conf/fbank.yaml"

for n in $(seq "$nj"); do rm -f "${part//JOB/$n}" "$logdir/utt2num_frames.$n"; done
echo "$0: succeeded creating filterbank features for $name ($(wc -l < "$data/feats.scp") utterances)"
