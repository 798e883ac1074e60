"""Score normalisation with a cohort: AS-norm (adaptive, top-N) or S-norm (whole cohort).

  python -m sv.bin.score_norm --method asnorm|snorm [--top-n 300] --cohort-scp C --emb-scp E
                              [--enroll-scp E2] [--mean-scp M] --scores S --out S2

Reads:  S, raw scores `enroll test score [label] [...]` from sv.bin.score (columns past the label are
           not kept);
        C, the cohort: per-speaker mean embeddings of the training set (sv.bin.speaker_mean --mean-scp)
           or a random draw of its utterances (sv.bin.make_cohort --mean-scp), the training mean
           subtracted first; used as they are apart from length-normalising;
        E, test-side embeddings (also the enroll side unless --enroll-scp); E2, enroll-side embeddings;
        M, the embedding set whose mean is subtracted from enroll and test embeddings (as for sv.bin.score).
Writes: S2, one line per line of S, in S's order, with columns
          enroll test norm_score label mean_topn_enroll mean_topn_test
        norm_score = ½[(s−μ_e)/σ_e + (s−μ_t)/σ_t], where μ and σ are the mean and population std of a
        side's top-N cohort scores (all cohort scores for snorm); the last two columns are μ_e and μ_t,
        quality measures for QMF calibration (sv.bin.calibrate). label is `-` where S has none.
"""
from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from sv.cli import run_main
from sv.data.table import DataError, write_lines
from sv.score.cosine import key_rows, score_lines
from sv.score.embeddings import load_normalised, load_trial_sides
from sv.score.norm import normalise, read_scores, used_row_stats

log = logging.getLogger("sv.bin.score_norm")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sv.bin.score_norm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=("asnorm", "snorm"), default="asnorm",
                   help="asnorm: top-N cohort scores per side; snorm: all of them (default asnorm)")
    p.add_argument("--top-n", type=int, default=300, help="cohort scores per side for asnorm (default 300)")
    p.add_argument("--cohort-scp", required=True, help="input: cohort embeddings scp (speaker means or utterances)")
    p.add_argument("--emb-scp", required=True, help="input: test-side (and default enroll-side) embeddings scp")
    p.add_argument("--enroll-scp", help="input: enroll-side embeddings scp (default: --emb-scp)")
    p.add_argument("--mean-scp", help="input: embeddings whose mean is subtracted from enroll and test sides")
    p.add_argument("--scores", required=True, help="input: raw score file `enroll test score [label]`")
    p.add_argument("--out", required=True,
                   help="output: `enroll test norm_score label mean_topn_enroll mean_topn_test`")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.top_n < 1:
        raise ValueError(f"--top-n must be positive, got {args.top_n}")
    t0 = time.perf_counter()
    trials = read_scores(args.scores)
    enroll, test = load_trial_sides(args.emb_scp, args.enroll_scp, args.mean_scp)
    cohort = load_normalised(args.cohort_scp)
    if cohort.matrix.shape[1] != test.matrix.shape[1]:
        raise DataError(f"{args.cohort_scp}: cohort dimension {cohort.matrix.shape[1]} differs from "
                         f"{args.emb_scp}'s {test.matrix.shape[1]}")
    top_n = None
    if args.method == "asnorm":
        top_n = min(args.top_n, len(cohort.keys))
        if top_n < args.top_n:
            log.warning("--top-n %d exceeds the cohort's %d members; using all of them", args.top_n, top_n)
    enroll_rows = key_rows(trials.enroll, enroll, trials)
    test_rows = key_rows(trials.test, test, trials)
    if enroll is test:  # one embedding set: each embedding's statistics once, whichever side uses it
        test_mean, test_std = used_row_stats(test.matrix, np.concatenate([enroll_rows, test_rows]),
                                             cohort.matrix, top_n)
        enroll_mean, enroll_std = test_mean, test_std
    else:
        enroll_mean, enroll_std = used_row_stats(enroll.matrix, enroll_rows, cohort.matrix, top_n)
        test_mean, test_std = used_row_stats(test.matrix, test_rows, cohort.matrix, top_n)
    log.info("cohort statistics of %d cohort members (top %s) in %.1f s", len(cohort.keys),
             top_n or "all", time.perf_counter() - t0)
    e_mean, t_mean = enroll_mean[enroll_rows], test_mean[test_rows]
    norm = normalise(trials.scores, e_mean, enroll_std[enroll_rows], t_mean, test_std[test_rows])
    write_lines(args.out, score_lines(trials, norm, e_mean, t_mean))
    log.info("%s-normalised %d scores of %s into %s in %.1f s", args.method, len(norm), args.scores,
             args.out, time.perf_counter() - t0)


if __name__ == "__main__":
    run_main(main)
