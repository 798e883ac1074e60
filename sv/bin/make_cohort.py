"""An AS-norm cohort of training utterances: a random draw of a given size (the speaker-mean cohort is
sv.bin.speaker_mean).

  python -m sv.bin.make_cohort --emb-scp E --size N [--seed 0] [--mean-scp M] --out-dir D

Reads:  E, utterance embeddings of the training set (xvector.scp);
        M, an embedding set (the training set) whose mean is subtracted from each drawn embedding, as
           speaker_mean does for the speaker cohort.
Writes: D/xvector.{ark,scp}, one float32 vector per drawn utterance, in sorted key order;
        D/utt_list, the drawn keys, one a line.
The draw: the keys of E sorted (C locale), then `numpy.random.default_rng(SEED).choice(len, N,
replace=False)`; all utterances when E has N or fewer. Same E, N and seed, same cohort.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sv.cli import run_main
from sv.data.table import write_lines
from sv.score.cohort import utterance_cohort
from sv.score.embeddings import write_embeddings

log = logging.getLogger("sv.bin.make_cohort")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sv.bin.make_cohort", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--emb-scp", required=True, help="input: training-set utterance embeddings scp")
    p.add_argument("--size", type=int, required=True, help="utterances to draw (all if the set has fewer)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    p.add_argument("--mean-scp", help="input: embeddings whose mean is subtracted from each drawn one")
    p.add_argument("--out-dir", required=True, type=Path,
                   help="output: dir receiving xvector.ark, xvector.scp and utt_list")
    args = p.parse_args(argv)
    keys, matrix = utterance_cohort(args.emb_scp, args.size, args.seed, args.mean_scp)
    if len(keys) < args.size:
        log.warning("%s has %d utterances, fewer than --size %d: the cohort takes all of them",
                    args.emb_scp, len(keys), args.size)
    write_embeddings((keys, matrix), args.out_dir / "xvector.ark", args.out_dir / "xvector.scp")
    write_lines(args.out_dir / "utt_list", keys)
    log.info("wrote a cohort of %d utterances (seed %d) to %s", len(keys), args.seed, args.out_dir / "xvector.scp")


if __name__ == "__main__":
    run_main(main)
