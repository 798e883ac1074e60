#!/usr/bin/env python3
"""Sort every table of a data dir and keep only the utterances present in all of them
(Kaldi's fix_data_dir.sh); regenerates spk2utt.

  utils/fix_data_dir.py data/<set>

Rewrites data/<set>/{utt2spk,spk2utt,wav.scp,segments,feats.scp,utt2dur,...} in place,
after copying the originals to data/<set>/.backup/.
"""
import argparse
import logging

from sv.cli import run_main
from sv.data.data_dir import fix_data_dir


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="data directory")
    args = p.parse_args(argv)
    kept, removed = fix_data_dir(args.data)
    logging.info("%s: kept %d utterances, removed %d", args.data, kept, removed)


if __name__ == "__main__":
    run_main(main)
