#!/usr/bin/env python3
"""Copy part of a data dir (Kaldi's subset_data_dir.sh).

  utils/subset_data_dir.py [--utt-list F] [--spk-list F] [--per-spk N] [--first N] SRC DEST

Selections combine: lists first, then --per-spk (each speaker's first N utterances in sorted
order), then --first (the first N utterances overall).
Reads SRC/{utt2spk,wav.scp,segments,feats.scp,...}; writes the same tables plus spk2utt to DEST.
"""
import argparse
import logging

from sv.cli import run_main
from sv.data.data_dir import subset_data_dir
from sv.data.table import read_list


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utt-list", help="file whose first field on each line is an utterance to keep")
    p.add_argument("--spk-list", help="file whose first field on each line is a speaker to keep")
    p.add_argument("--per-spk", type=int, help="keep at most N utterances per speaker")
    p.add_argument("--first", type=int, help="keep the first N utterances")
    p.add_argument("src")
    p.add_argument("dest")
    args = p.parse_args(argv)
    n = subset_data_dir(args.src, args.dest,
                        utt_list=read_list(args.utt_list) if args.utt_list else None,
                        spk_list=read_list(args.spk_list) if args.spk_list else None,
                        per_spk=args.per_spk, first=args.first)
    logging.info("%s: wrote %d utterances", args.dest, n)


if __name__ == "__main__":
    run_main(main)
