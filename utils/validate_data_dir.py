#!/usr/bin/env python3
"""Check a Kaldi data dir: tables sorted (C locale), keys unique, and wav.scp, utt2spk, spk2utt,
segments, feats.scp, utt2dur and utt2num_frames agreeing with one another.

  utils/validate_data_dir.py [--check-audio] data/<set>

Reads: data/<set>/{utt2spk,spk2utt,wav.scp,segments,feats.scp,utt2dur,utt2num_frames}.
Writes nothing. Exits 1 listing each problem as file:line. --check-audio also opens every recording: it reads
every wav.scp entry, and so runs the commands of entries that end in `|` (Kaldi pipes); check such a wav.scp's
commands before you use it.
"""
import argparse
import logging

from sv.cli import run_main
from sv.data.data_dir import validate_data_dir


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check-audio", action="store_true", help="open every wav.scp entry (slow); runs the commands of pipe entries (`cmd ... |`)")
    p.add_argument("--no-feats", action="store_true", help="do not check feats.scp and utt2num_frames")
    p.add_argument("data", help="data directory")
    args = p.parse_args(argv)
    validate_data_dir(args.data, check_audio=args.check_audio, no_feats=args.no_feats)
    logging.info("%s: valid", args.data)


if __name__ == "__main__":
    run_main(main)
