"""Mean embedding per speaker: the AS-norm cohort (training speakers) or CN-Celeb's enrollment models.

  python -m sv.bin.speaker_mean --spk2utt F --emb-scp E --out-dir D [--mean-scp M] [--length-norm]

Reads:  F, `spk utt1 utt2 ...` lines (data/<set>/spk2utt, or CN-Celeb's eval/lists/enroll.map);
        E, utterance embeddings (xvector.scp);
        M, an embedding set (the training set) whose mean is subtracted from each utterance first,
           as the AS-norm cohort wants.
Writes: D/spk_xvector.{ark,scp}, one float32 vector per speaker, in F's order.
With --length-norm each utterance embedding is length-normalised (after subtracting M's mean) before
averaging, so every utterance weighs the same; the means themselves are not normalised.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from sv.cli import run_main
from sv.data.table import DataError, iter_table, where
from sv.score.embeddings import length_norm, load_centred, mean_embedding, write_embeddings

log = logging.getLogger("sv.bin.speaker_mean")


def speaker_means(spk2utt: str, emb_scp: str, mean_scp: str | None = None,
                  normalise_utts: bool = False) -> tuple[list[str], np.ndarray]:
    """(speakers in map order, float32 matrix of their mean embeddings)."""
    keys, matrix = load_centred(emb_scp, mean_embedding(mean_scp) if mean_scp else None)
    if normalise_utts:
        matrix = length_norm(matrix)
    index = {k: i for i, k in enumerate(keys)}
    speakers: list[str] = []
    first_line: dict[str, int] = {}
    means = []
    for lineno, (spk, *utts) in iter_table(spk2utt):
        missing = [u for u in utts if u not in index]
        if missing:
            raise DataError(f"{where(spk2utt, lineno)}: no embedding for {missing[0]!r} in {emb_scp}"
                            f" ({len(missing)} of speaker {spk!r}'s utterances lack one)")
        if spk in first_line:
            raise DataError(f"{where(spk2utt, lineno)}: duplicate speaker {spk!r} (first on line {first_line[spk]})")
        first_line[spk] = lineno
        speakers.append(spk)
        means.append(matrix[[index[u] for u in utts]].mean(axis=0, dtype=np.float64))
    if not speakers:
        raise DataError(f"{spk2utt}: no speakers")
    return speakers, np.stack(means).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sv.bin.speaker_mean", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spk2utt", required=True, help="input: `spk utt1 utt2 ...` map (spk2utt or enroll.map)")
    p.add_argument("--emb-scp", required=True, help="input: utterance embeddings scp")
    p.add_argument("--mean-scp", help="input: embeddings whose mean is subtracted from each utterance first")
    p.add_argument("--length-norm", action="store_true",
                   help="length-normalise each utterance embedding before averaging")
    p.add_argument("--out-dir", required=True, help="output: dir receiving spk_xvector.ark and spk_xvector.scp")
    args = p.parse_args(argv)
    speakers, means = speaker_means(args.spk2utt, args.emb_scp, args.mean_scp, args.length_norm)
    out = Path(args.out_dir)
    write_embeddings((speakers, means), out / "spk_xvector.ark", out / "spk_xvector.scp")
    log.info("wrote %d speaker means to %s", len(speakers), out / "spk_xvector.scp")


if __name__ == "__main__":
    run_main(main)
