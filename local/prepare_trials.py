#!/usr/bin/env python3
"""Convert an official speaker-verification trial list to a Kaldi trials file.

Input: the VoxCeleb list format (veri_test.txt, veri_test2.txt, list_test_all2.txt, ...), one trial a line,
label first, 1 = same speaker:
    1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav
Output OUT, one trial a line, in the input order:
    id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav target
With --data DIR, every enroll and test key must be an utterance of DIR/utt2spk; the first that is not
is an error naming LIST:line. Nothing is written when the list is malformed.

local/prepare_voxceleb1.py and local/prepare_cnceleb.py use the functions here for their own lists.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Container, NamedTuple, Sequence

from sv.cli import run_main
from sv.data.table import DataError, iter_lines, read_scp, where, write_lines

logger = logging.getLogger("prepare_trials")

LABELS = {"1": True, "0": False}


class Trial(NamedTuple):
    lineno: int  # in the source list, for error messages
    enroll: str
    test: str
    target: bool


def read_trial_list(path: str | os.PathLike, label_first: bool = True) -> list[Trial]:
    """Trials of a `label enroll test` list (VoxCeleb) or, with label_first=False, `enroll test label` (CN-Celeb)."""
    expected = "'label enroll test'" if label_first else "'enroll test label'"
    trials: list[Trial] = []
    for lineno, line in iter_lines(path):
        fields = line.split()
        if len(fields) != 3:
            raise DataError(f"{where(path, lineno)}: expected {expected}, got {line!r}")
        label, enroll, test = fields if label_first else (fields[2], fields[0], fields[1])
        if label not in LABELS:
            raise DataError(f"{where(path, lineno)}: label must be 1 (target) or 0 (nontarget), got {label!r}")
        trials.append(Trial(lineno, enroll, test, LABELS[label]))
    if not trials:
        raise DataError(f"{path}: no trials")
    return trials


def check_trial_keys(trials: Sequence[Trial], path: str | os.PathLike, enroll_keys: Container[str],
                     test_keys: Container[str], ref: str) -> None:
    """Raise a DataError at the first trial whose enroll or test key is unknown; `ref` names where keys come from."""
    for t in trials:
        for side, key, keys in (("enroll", t.enroll, enroll_keys), ("test", t.test, test_keys)):
            if key not in keys:
                raise DataError(f"{where(path, t.lineno)}: {side} key {key!r} is not in {ref}")


def write_kaldi_trials(path: str | os.PathLike, trials: Sequence[Trial]) -> None:
    write_lines(path, (f"{t.enroll} {t.test} {'target' if t.target else 'nontarget'}" for t in trials))
    n_target = sum(t.target for t in trials)
    logger.info("wrote %s: %d trials (%d target, %d nontarget)", path, len(trials), n_target, len(trials) - n_target)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("list", type=Path, metavar="LIST", help="official trial list (label enroll test)")
    parser.add_argument("out", type=Path, metavar="OUT",
                        help="Kaldi trials file to write (enroll test target|nontarget)")
    parser.add_argument("--data", type=Path, metavar="DIR", help="data dir whose utt2spk must hold every key")
    args = parser.parse_args(argv)

    trials = read_trial_list(args.list)
    if args.data is not None:
        utts = read_scp(args.data / "utt2spk")
        check_trial_keys(trials, args.list, utts, utts, str(args.data / "utt2spk"))
    write_kaldi_trials(args.out, trials)


if __name__ == "__main__":
    run_main(main)
