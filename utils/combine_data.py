#!/usr/bin/env python3
"""Concatenate data dirs (Kaldi's combine_data.sh). A key in two sources is an error.

  utils/combine_data.py DEST SRC1 SRC2 ...

Reads each SRC's tables; writes to DEST every table that all sources have, plus spk2utt.
"""
import argparse
import logging

from sv.cli import run_main
from sv.data.data_dir import combine_data_dirs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dest")
    p.add_argument("srcs", nargs="+")
    args = p.parse_args(argv)
    n = combine_data_dirs(args.dest, args.srcs)
    logging.info("%s: combined %d utterances from %d dirs", args.dest, n, len(args.srcs))


if __name__ == "__main__":
    run_main(main)
