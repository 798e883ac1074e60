#!/usr/bin/env python3
"""Prepare VoxBlink2 (audio cut with the official scripts) as DATA_DIR/voxblink2, a training set.

VoxBlink2 (Lin et al., Interspeech 2024; github.com/VoxBlink2/ScriptsForVoxBlink2) is released as annotations
only, no audio: data/spk2videos (`id000000 VIDEO1 VIDEO2 ...`, YouTube ids), meta/idNNNNNN/<video>/NNNNN.txt
(the face-track frames of each utterance), speaker tags, Whisper transcripts and the open-set identification
protocols. Its speaker-verification results are measured on VoxCeleb1 (data/test_vox); it ships no
verification trial list of its own, so only a training set is prepared here. The audio is made by the user:
  downloader.py --mode audio --base_dir BASE_DIR        the first 60 s of each video, BASE_DIR/idNNNNNN/<video>.wav
                                                        (16 kHz wav: yt-dlp with ffmpeg -ar 16000)
  cropper_audio.py --save_dir SAVE_DIR --audio_root BASE_DIR --timestamp_path meta
                                                        each utterance cut from it (ffmpeg -c copy), as
                                                        SAVE_DIR/idNNNNNN/<video>/NNNNN.wav
cropper_video.py --save_dir_audio SAVE_DIR writes the same layout (16 kHz 16-bit PCM) from the videos.

VOXBLINK2_ROOT is that SAVE_DIR, or a folder holding it as audio/ or wav/: the first of ROOT/audio, ROOT/wav
and ROOT that holds a speaker folder is used (cropper_audio.py also makes an empty SAVE_DIR/audio, which is
thus passed over). Assumed, and checked: speaker folders are named id + 6 digits (id000000), and every
.wav three levels down is an utterance; a .wav three levels down in a folder not named so, or a name with
whitespace, is an error naming the file. Other files are ignored, among them the 60 s downloads
(idNNNNNN/<video>.wav) if BASE_DIR and SAVE_DIR are one folder; a tree holding only those is an error saying
that cropper_audio.py has not run. Videos that YouTube no longer serves are simply absent.
Not checked: the sample rate (the readers resample) and the channels (the first is used); the downloader
does not force mono.

Writes DATA_DIR/voxblink2: wav.scp (absolute paths) utt2spk spk2utt, and utt2dur (from the wav headers)
unless --no-utt2dur. The speaker is PREFIX + idNNNNNN (vb2-id000000 by default) and the utterance key
vb2-id000000/<video>/NNNNN.wav, spelled like the VoxCeleb keys (idXXXXX/<video>/NNNNN.wav), which it can
never equal: the prefix keeps the two corpora's keys and speakers apart (and sorts the key after its
speaker, as Kaldi wants), so utils/combine_data.py can merge voxblink2 with vox2_dev. --spk-prefix ''
keeps the bare ids (VoxBlink2's six digits still differ from VoxCeleb's five).

--spk2videos FILE keeps only the speakers and videos that FILE lists: the released data/spk2videos, or
a subset of it to train on fewer speakers. A malformed line (not `idNNNNNN VIDEO...`, a speaker listed
twice) is an error naming FILE:line; listed videos without audio are counted in the log.
Every input is checked before anything is written.
"""
from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from sv.cli import run_main
from sv.data.table import DataError, iter_lines, where

from corpus_utils import (MAX_REPORTED, add_nj_argument, read_durations, require_files, scan_files, unique_table,
                          write_corpus_dir)

logger = logging.getLogger("prepare_voxblink2")

LAYOUT = "VOXBLINK2_ROOT/idNNNNNN/<video>/NNNNN.wav, as cropper_audio.py writes it"
SPEAKER = re.compile(r"id[0-9]{6}")
DEFAULT_PREFIX = "vb2-"


def is_speaker(name: str) -> bool:
    return SPEAKER.fullmatch(name) is not None


def audio_root(root: Path) -> Path:
    """The first of root/audio, root/wav, root that holds a speaker folder, as an absolute path."""
    if not root.is_dir():
        raise DataError(f"{root}: no such directory (expected {LAYOUT})")
    for top in (root / "audio", root / "wav", root):
        if top.is_dir() and any(p.is_dir() and is_speaker(p.name) for p in top.iterdir()):
            return top.absolute()
    raise DataError(f"{root}: no speaker folder idNNNNNN here, nor in its audio/ or wav/ (expected {LAYOUT})")


def check_layout(files: list[Path], top: Path) -> None:
    """Every file is in a speaker folder and has a name that a table can hold."""
    bad = [f"{f}: not in a speaker folder idNNNNNN" for f in files if not is_speaker(f.parts[-3])]
    bad += [f"{f}: whitespace in the name" for f in files if any(c.isspace() for c in "/".join(f.parts[-3:]))]
    if bad:
        more = f"\n  ... and {len(bad) - MAX_REPORTED} more" if len(bad) > MAX_REPORTED else ""
        raise DataError(f"{top}: {len(bad)} audio files outside the layout {LAYOUT}:\n  "
                        + "\n  ".join(bad[:MAX_REPORTED]) + more)


def require_cropped(files: list[Path], top: Path) -> None:
    """No utterances: say so, and say it differently for a tree of uncropped downloads."""
    if not files and any(top.glob("id*/*.wav")):
        raise DataError(f"{top}: only idNNNNNN/<video>.wav files here, the downloads that cropper_audio.py "
                        f"cuts into utterances (expected {LAYOUT})")
    require_files(files, top, LAYOUT)


def read_spk2videos(path: Path) -> dict[str, set[str]]:
    """speaker -> its videos, from lines `idNNNNNN VIDEO1 VIDEO2 ...`."""
    table: dict[str, set[str]] = {}
    for lineno, line in iter_lines(path):
        spk, *videos = line.split()
        if not is_speaker(spk) or not videos:
            raise DataError(f"{where(path, lineno)}: expected 'idNNNNNN VIDEO1 VIDEO2 ...', got {line!r}")
        if spk in table:
            raise DataError(f"{where(path, lineno)}: speaker {spk!r} is listed twice")
        table[spk] = set(videos)
    if not table:
        raise DataError(f"{path}: no speakers")
    return table


def keep_listed(files: list[Path], spk2videos: dict[str, set[str]], path: Path) -> list[Path]:
    kept = [f for f in files if f.parts[-2] in spk2videos.get(f.parts[-3], ())]
    found = {(f.parts[-3], f.parts[-2]) for f in kept}
    listed = sum(len(videos) for videos in spk2videos.values())
    logger.info("%s: kept %d of %d utterances; %d of %d listed videos have audio (%d of %d speakers)",
                path, len(kept), len(files), len(found), listed, len({spk for spk, _ in found}), len(spk2videos))
    return kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, metavar="VOXBLINK2_ROOT",
                        help="cropper_audio.py's --save_dir (idNNNNNN/<video>/NNNNN.wav), or a folder holding it "
                             "as audio/ or wav/")
    parser.add_argument("data", type=Path, metavar="DATA_DIR", help="voxblink2 is written here")
    parser.add_argument("--spk2videos", type=Path, metavar="FILE",
                        help="keep only the speakers and videos of FILE (the released data/spk2videos or a subset)")
    parser.add_argument("--spk-prefix", default=DEFAULT_PREFIX, metavar="PREFIX",
                        help="put before every speaker id and utterance key (default: %(default)s)")
    parser.add_argument("--no-utt2dur", action="store_true", help="write no utt2dur (skips reading every header)")
    add_nj_argument(parser)
    args = parser.parse_args(argv)

    if any(c.isspace() or c == "/" for c in args.spk_prefix):
        raise DataError(f"--spk-prefix {args.spk_prefix!r}: no whitespace or '/' allowed")
    top = audio_root(args.root)
    spk2videos = read_spk2videos(args.spk2videos) if args.spk2videos is not None else None

    files = scan_files(top, 3, [".wav"], "scanning VoxBlink2 speakers")
    check_layout(files, top)
    require_cropped(files, top)
    if spk2videos is not None:
        files = keep_listed(files, spk2videos, args.spk2videos)
        require_files(files, top, f"{LAYOUT}, of the speakers and videos of {args.spk2videos}")

    wav_scp = unique_table(((f"{args.spk_prefix}{f.parts[-3]}/{f.parts[-2]}/{f.stem}.wav", str(f)) for f in files),
                           "utterance")
    utt2spk = {key: key.split("/")[0] for key in wav_scp}
    utt2dur = None if args.no_utt2dur else read_durations(wav_scp, args.nj)
    write_corpus_dir(args.data / "voxblink2", wav_scp, utt2spk, utt2dur)


if __name__ == "__main__":
    run_main(main)
