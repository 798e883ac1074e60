"""AS-norm cohorts of training utterances: a fixed-size random draw, reproducible from its seed.

(The other cohort, one mean embedding per training speaker, is sv.bin.speaker_mean.)
"""
from __future__ import annotations

import numpy as np

from sv.score.embeddings import load_centred, mean_embedding


def draw_utterances(keys: list[str], size: int, seed: int = 0) -> list[str]:
    """`size` of `keys` drawn at random without replacement, all of them when there are fewer; sorted.

    The draw is `np.random.default_rng(seed).choice(n, size, replace=False)` over the keys in sorted
    (C-locale) order, so it depends only on the key set, the size and the seed, not on the input's order.
    """
    if size < 1:
        raise ValueError(f"cohort size must be positive, got {size}")
    pool = sorted(keys)
    if size >= len(pool):
        return pool
    chosen = np.random.default_rng(seed).choice(len(pool), size=size, replace=False)
    return [pool[i] for i in sorted(chosen)]


def utterance_cohort(emb_scp: str, size: int, seed: int = 0,
                     mean_scp: str | None = None) -> tuple[list[str], np.ndarray]:
    """(drawn keys, sorted; their embeddings, float32, with mean_scp's mean subtracted when given)."""
    keys, matrix = load_centred(emb_scp, mean_embedding(mean_scp) if mean_scp else None)
    index = {k: i for i, k in enumerate(keys)}
    chosen = draw_utterances(keys, size, seed)
    return chosen, matrix[[index[k] for k in chosen]]
