"""Cosine scoring of a Kaldi trial list.

  python -m sv.bin.score --trials T --emb-scp E [--enroll-scp E2] [--mean-scp M] --out S

Reads:  T, trials `enroll test [target|nontarget]`;
        E, test-side embeddings (xvector.scp; also the enroll side unless --enroll-scp);
        E2, enroll-side embeddings, e.g. per-speaker means from sv.bin.speaker_mean (CN-Celeb);
        M, an embedding set (e.g. the training set) whose mean is subtracted from both sides.
Writes: S, `enroll test score label` per trial in trial order; label is `-` where T has none.
Embeddings are mean-subtracted (with --mean-scp) and length-normalised, so score = cosine similarity.
"""
from __future__ import annotations

import argparse
import logging
import time

from sv.cli import run_main
from sv.data.table import write_lines
from sv.score.cosine import cosine_scores, key_rows, read_trials, score_lines
from sv.score.embeddings import load_trial_sides

log = logging.getLogger("sv.bin.score")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sv.bin.score", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", required=True, help="input: trial list `enroll test [target|nontarget]`")
    p.add_argument("--emb-scp", required=True, help="input: test-side (and default enroll-side) embeddings scp")
    p.add_argument("--enroll-scp", help="input: enroll-side embeddings scp (default: --emb-scp)")
    p.add_argument("--mean-scp", help="input: embeddings whose mean is subtracted before length-normalising")
    p.add_argument("--out", required=True, help="output: score file `enroll test score label`")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    trials = read_trials(args.trials)
    enroll, test = load_trial_sides(args.emb_scp, args.enroll_scp, args.mean_scp)
    scores = cosine_scores(enroll.matrix, test.matrix, key_rows(trials.enroll, enroll, trials),
                           key_rows(trials.test, test, trials))
    write_lines(args.out, score_lines(trials, scores))
    log.info("scored %d trials of %s into %s in %.1f s", len(scores), args.trials, args.out,
             time.perf_counter() - t0)


if __name__ == "__main__":
    run_main(main)
