"""Cosine scoring of Kaldi trial lists, vectorised: trial keys are mapped to embedding rows once, then
scores are row-wise dot products of length-normalised embeddings, a chunk of trials at a time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from sv.data.table import DataError, iter_table, where
from sv.score.embeddings import EmbeddingSet

LABELS = ("target", "nontarget")
NO_LABEL = "-"
CHUNK = 32768  # trials per chunk: its two (CHUNK, 256) float32 gathers take 64 MB


@dataclass
class Trials:
    """A trial list or score file: its key pairs, labels (`-` where absent), and line numbers."""
    path: str
    enroll: list[str]
    test: list[str]
    labels: list[str]
    linenos: list[int]
    scores: np.ndarray | None = None  # a score file's third column


def read_trials(path: str | os.PathLike) -> Trials:
    """`enroll test [target|nontarget]` lines."""
    trials = Trials(str(path), [], [], [], [])
    for lineno, fields in iter_table(path):
        if len(fields) > 3 or (len(fields) == 3 and fields[2] not in LABELS):
            raise DataError(f"{where(path, lineno)}: expected 'enroll test [target|nontarget]', got {fields}")
        trials.enroll.append(fields[0])
        trials.test.append(fields[1])
        trials.labels.append(fields[2] if len(fields) == 3 else NO_LABEL)
        trials.linenos.append(lineno)
    if not trials.enroll:
        raise DataError(f"{path}: no trials")
    return trials


def key_rows(keys: list[str], embeddings: EmbeddingSet, trials: Trials) -> np.ndarray:
    """Row of each key in the embedding matrix; a key with no embedding is a DataError naming the
    trial's file:line and the scp."""
    index = embeddings.index
    rows = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    missing = np.flatnonzero(rows < 0)
    if missing.size:
        i = int(missing[0])
        raise DataError(f"{where(trials.path, trials.linenos[i])}: no embedding for {keys[i]!r} in {embeddings.scp}"
                        f" ({missing.size} trials lack one)")
    return rows


def cosine_scores(enroll: np.ndarray, test: np.ndarray, enroll_rows: np.ndarray,
                  test_rows: np.ndarray) -> np.ndarray:
    """score[i] = enroll[enroll_rows[i]] · test[test_rows[i]] for length-normalised matrices."""
    out = np.empty(len(enroll_rows), dtype=np.float32)
    for start in range(0, len(out), CHUNK):
        e = enroll[enroll_rows[start:start + CHUNK]]
        t = test[test_rows[start:start + CHUNK]]
        out[start:start + CHUNK] = np.einsum("ij,ij->i", e, t)
    return out


def score_lines(trials: Trials, scores: np.ndarray, *extra: np.ndarray) -> Iterator[str]:
    """`enroll test score label [extra columns...]` lines, made one at a time to keep memory flat."""
    for enroll, test, score, label, *rest in zip(trials.enroll, trials.test, scores.tolist(), trials.labels,
                                                 *(c.tolist() for c in extra)):
        yield " ".join([enroll, test, f"{score:.6f}", label, *(f"{v:.6f}" for v in rest)])
