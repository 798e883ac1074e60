#!/usr/bin/env python3
"""Prepare MUSAN as one data dir for additive-noise augmentation.

MUSAN_ROOT is the musan/ folder (holding noise/, music/ and speech/, each with <subset>/*.wav, as
musan.tar.gz extracts) or the folder holding musan/.

Writes DATA_DIR/musan: wav.scp (absolute paths) utt2spk spk2utt utt2dur.
The key of a file is its name without extension (noise-free-sound-0000, music-fma-0000,
speech-librivox-0000; MUSAN names are unique across the corpus, and a clash is an error), and its
"speaker" is its type (noise, music or speech), so that spk2utt lists the files of each type and the
augmenter can pick a type, then a file. --types restricts which types are included.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sv.cli import run_main

from corpus_utils import (add_nj_argument, find_dir, read_durations, require_files, scan_files, unique_table,
                          write_corpus_dir)

LAYOUT = "MUSAN_ROOT/{noise,music,speech}/<subset>/*.wav"
TYPES = ("noise", "music", "speech")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, metavar="MUSAN_ROOT", help="the musan/ folder, or the folder holding it")
    parser.add_argument("data", type=Path, metavar="DATA_DIR", help="musan is written here")
    parser.add_argument("--types", nargs="+", choices=TYPES, default=list(TYPES),
                        help="types to include (default: all)")
    add_nj_argument(parser)
    args = parser.parse_args(argv)

    musan_dir = find_dir(args.root, ["musan"], LAYOUT)
    files_by_type: dict[str, list[Path]] = {}
    for kind in dict.fromkeys(args.types):
        files = scan_files(musan_dir / kind, 2, [".wav"], f"scanning musan/{kind}")
        require_files(files, musan_dir / kind, LAYOUT)
        files_by_type[kind] = files
    wav_scp = unique_table(((f.stem, str(f)) for files in files_by_type.values() for f in files), "MUSAN file name")
    utt2spk = {f.stem: kind for kind, files in files_by_type.items() for f in files}
    write_corpus_dir(args.data / "musan", wav_scp, utt2spk, read_durations(wav_scp, args.nj))


if __name__ == "__main__":
    run_main(main)
