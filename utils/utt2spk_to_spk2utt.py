#!/usr/bin/env python3
"""utt2spk -> spk2utt (Kaldi's utt2spk_to_spk2utt.pl). Reads a file, or stdin when none is given.

  utils/utt2spk_to_spk2utt.py [UTT2SPK] > SPK2UTT
"""
import argparse
import sys

from sv.cli import run_main
from sv.data.data_dir import utt2spk_to_spk2utt
from sv.data.table import read_scp


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("utt2spk", nargs="?", default="/dev/stdin")
    args = p.parse_args(argv)
    for spk, utts in sorted(utt2spk_to_spk2utt(read_scp(args.utt2spk)).items()):
        sys.stdout.write(f"{spk} {' '.join(utts)}\n")


if __name__ == "__main__":
    run_main(main)
