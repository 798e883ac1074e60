#!/usr/bin/env python3
"""Prepare the VoxCeleb2 dev set (m4a audio) as DATA_DIR/vox2_dev.

VOX2_DEV_ROOT holds dev/aac/idXXXXX/<video>/NNNNN.m4a, as the official vox2_dev_aac zip extracts; the
dev/ folder (holding aac/) or the aac/ folder itself may be given instead.

Writes DATA_DIR/vox2_dev: wav.scp utt2spk spk2utt, and utt2dur unless --no-utt2dur.
Utterance keys are idXXXXX/<video>/NNNNN.wav whichever way the audio is stored: the spelling of the
VoxCeleb1 keys and of WeSpeaker's vox2_dev, so a dir made from the m4a pipes and one made from converted
wavs have the same keys, and so has everything computed from them. The speaker is idXXXXX (VoxCeleb2's
ids do not overlap VoxCeleb1's, so the dirs can be combined).

wav.scp entries:
  default            a pipe that decodes the m4a when the audio is read, as Kaldi's make_voxceleb2.pl
                     writes it, with the output rate and channels explicit and -nostdin added so that
                     ffmpeg never reads the terminal from a data-loader process:
                       KEY ffmpeg -nostdin -v 8 -i /abs/PATH.m4a -f wav -acodec pcm_s16le -ar 16000 -ac 1 - |
                     utt2dur is then computed by running every pipe (--nj at a time): slow on the full set,
                     --no-utt2dur skips it.
  --convert-to-wav   first convert every m4a to WAV_DIR/idXXXXX/<video>/NNNNN.wav (16 kHz mono 16-bit PCM,
                     --nj ffmpeg processes at a time); files already converted are kept, so an interrupted
                     run resumes, and each file is written under a temporary name and renamed when complete.
                     wav.scp then lists those paths and utt2dur is read from their headers.
ffmpeg must be on PATH for --convert-to-wav and for utt2dur in the default mode (and, later, to read
the pipes).
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from sv.cli import run_main
from sv.data.table import DataError

from corpus_utils import (add_nj_argument, find_dir, parallel_map, raise_failures, read_durations, require_files,
                          scan_files, write_corpus_dir)

logger = logging.getLogger("prepare_voxceleb2")

LAYOUT = "VOX2_DEV_ROOT/dev/aac/idXXXXX/<video>/NNNNN.m4a"
WAV_OUTPUT = ["-f", "wav", "-acodec", "pcm_s16le", "-ar", "16000", "-ac", "1"]


def utt_key(m4a: Path) -> str:
    spk, video = m4a.parts[-3:-1]
    return f"{spk}/{video}/{m4a.stem}.wav"


def pipe_entry(m4a: Path) -> str:
    return " ".join(["ffmpeg", "-nostdin", "-v", "8", "-i", shlex.quote(str(m4a)), *WAV_OUTPUT, "-", "|"])


def require_ffmpeg(why: str) -> None:
    if shutil.which("ffmpeg") is None:
        raise DataError(f"ffmpeg is not on PATH: it is needed {why}")


def convert_one(m4a: Path, wav: Path) -> str | None:
    """Convert m4a to wav; the error text on failure, None on success."""
    wav.parent.mkdir(parents=True, exist_ok=True)
    tmp = wav.with_name(f".{wav.name}.tmp")  # hidden, so a scan of WAV_DIR never mistakes it for a result
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(m4a), *WAV_OUTPUT, str(tmp)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return f"{m4a}: ffmpeg failed ({proc.returncode}): {err[-1] if err else 'no message'}"
    os.replace(tmp, wav)
    return None


def convert_all(m4as: dict[str, Path], wav_dir: Path, nj: int) -> dict[str, str]:
    """wav.scp of the converted files, converting those not already in wav_dir."""
    targets = {key: wav_dir / key for key in m4as}
    todo = [key for key in sorted(m4as) if not targets[key].is_file()]
    logger.info("converting %d m4a files to %s (%d already converted)", len(todo), wav_dir, len(m4as) - len(todo))
    errors = parallel_map(lambda key: convert_one(m4as[key], targets[key]), todo, nj, "m4a -> wav")
    raise_failures([e for e in errors if e], len(todo), "conversion")
    return {key: str(path) for key, path in targets.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, metavar="VOX2_DEV_ROOT", help="folder holding dev/aac (or dev/, or aac/)")
    parser.add_argument("data", type=Path, metavar="DATA_DIR", help="vox2_dev is written here")
    parser.add_argument("--convert-to-wav", type=Path, metavar="WAV_DIR",
                        help="convert the m4a files to wav under WAV_DIR and list those (needs ffmpeg)")
    parser.add_argument("--no-utt2dur", action="store_true",
                        help="write no utt2dur (in the default mode, computing it decodes every m4a)")
    add_nj_argument(parser)
    args = parser.parse_args(argv)

    aac_dir = find_dir(args.root, ["dev/aac", "aac"], LAYOUT)
    # Before the scan, which takes minutes on the full set.
    if args.convert_to_wav is not None:
        require_ffmpeg("for --convert-to-wav")
    elif not args.no_utt2dur:
        require_ffmpeg("to compute utt2dur by decoding every m4a (pass --no-utt2dur to skip utt2dur), "
                       "and to read the wav.scp pipes later")
    elif shutil.which("ffmpeg") is None:
        logger.warning("ffmpeg is not on PATH: the wav.scp pipes will need it when the audio is read")

    files = scan_files(aac_dir, 3, [".m4a"], "scanning VoxCeleb2 speakers")
    require_files(files, aac_dir, LAYOUT)
    m4as = {utt_key(f): f for f in files}
    utt2spk = {key: key.split("/")[0] for key in m4as}
    if args.convert_to_wav is not None:
        wav_scp = convert_all(m4as, args.convert_to_wav.absolute(), args.nj)
    else:
        wav_scp = {key: pipe_entry(path) for key, path in m4as.items()}
    utt2dur = None if args.no_utt2dur else read_durations(wav_scp, args.nj)
    write_corpus_dir(args.data / "vox2_dev", wav_scp, utt2spk, utt2dur)


if __name__ == "__main__":
    run_main(main)
