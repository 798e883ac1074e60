#!/usr/bin/env python3
"""spk2utt -> utt2spk (Kaldi's spk2utt_to_utt2spk.pl). Reads a file, or stdin when none is given.

  utils/spk2utt_to_utt2spk.py [SPK2UTT] > UTT2SPK
"""
import argparse
import sys

from sv.cli import run_main
from sv.data.data_dir import spk2utt_to_utt2spk
from sv.data.table import read_spk2utt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spk2utt", nargs="?", default="/dev/stdin")
    args = p.parse_args(argv)
    for utt, spk in sorted(spk2utt_to_utt2spk(read_spk2utt(args.spk2utt)).items()):
        sys.stdout.write(f"{utt} {spk}\n")


if __name__ == "__main__":
    run_main(main)
