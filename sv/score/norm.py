"""Score normalisation against a cohort: adaptive S-norm (AS-norm, top-N cohort scores per side) and
S-norm (the whole cohort).

For each side x of a trial, μ_x and σ_x are the mean and population std of x's cosine scores against
its top-N cohort members (all of them for S-norm); s' = ½[(s−μ_e)/σ_e + (s−μ_t)/σ_t].
The statistics depend on one embedding only, so they are computed once per distinct embedding and then
gathered for every trial. AS-norm forms the scores a chunk of rows at a time (CHUNK × cohort size) and
takes each row's top N; S-norm needs no scores at all (see _all_cohort_stats).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from sv.data.table import DataError, iter_table, where
from sv.score.cosine import NO_LABEL, Trials

CHUNK = 4096  # rows per cohort matmul: 4096 x 5,994 float32 scores is about 100 MB
MIN_STD = 1e-8  # keeps a degenerate cohort (all scores equal) from dividing by zero


def read_scores(path: str | os.PathLike) -> Trials:
    """`enroll test score [label] [extra columns...]` lines; extra columns are not kept."""
    trials = Trials(str(path), [], [], [], [])
    scores: list[float] = []
    for lineno, fields in iter_table(path, min_fields=3):
        try:
            scores.append(float(fields[2]))
        except ValueError:
            raise DataError(f"{where(path, lineno)}: score {fields[2]!r} is not a number") from None
        trials.enroll.append(fields[0])
        trials.test.append(fields[1])
        trials.labels.append(fields[3] if len(fields) > 3 else NO_LABEL)
        trials.linenos.append(lineno)
    if not scores:
        raise DataError(f"{path}: no scores")
    trials.scores = np.asarray(scores)
    return trials


def cohort_stats(embeddings: np.ndarray, cohort: np.ndarray, top_n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(mean, population std) over each row's top_n highest scores against the cohort (all of them when
    top_n is None); rows and cohort are length-normalised, so scores are cosines."""
    if top_n is None:
        return _all_cohort_stats(embeddings, cohort)
    cohort_t = torch.from_numpy(cohort).T.contiguous()
    means = np.empty(len(embeddings))
    stds = np.empty(len(embeddings))
    with torch.no_grad():
        for start in range(0, len(embeddings), CHUNK):
            scores = torch.from_numpy(embeddings[start:start + CHUNK]) @ cohort_t
            top = torch.topk(scores, top_n, dim=1, sorted=False).values.double()
            std, mean = torch.std_mean(top, dim=1, correction=0)
            means[start:start + CHUNK] = mean.numpy()
            stds[start:start + CHUNK] = std.numpy()
    return means, stds


def _all_cohort_stats(embeddings: np.ndarray, cohort: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Over the whole cohort no score need be formed: with the cohort's mean c̄ and population
    covariance Σ, the scores of x have mean x·c̄ and variance xᵀΣx (d² per row instead of d x cohort)."""
    cohort = cohort.astype(np.float64)
    centre = cohort.mean(axis=0)
    cov = np.cov(cohort, rowvar=False, bias=True).reshape(len(centre), len(centre))
    means = np.empty(len(embeddings))
    variances = np.empty(len(embeddings))
    for start in range(0, len(embeddings), CHUNK):
        x = embeddings[start:start + CHUNK].astype(np.float64)
        means[start:start + CHUNK] = x @ centre
        variances[start:start + CHUNK] = np.einsum("ij,ij->i", x @ cov, x)
    return means, np.sqrt(np.maximum(variances, 0.0))


def used_row_stats(embeddings: np.ndarray, rows: np.ndarray, cohort: np.ndarray,
                   top_n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """cohort_stats for the rows some trial uses, as full-length arrays indexed by row (NaN elsewhere)."""
    used = np.unique(rows)
    means = np.full(len(embeddings), np.nan)
    stds = np.full(len(embeddings), np.nan)
    matrix = embeddings if len(used) == len(embeddings) else embeddings[used]  # a copy only when needed
    means[used], stds[used] = cohort_stats(matrix, cohort, top_n)
    return means, stds


def normalise(scores: np.ndarray, enroll_mean: np.ndarray, enroll_std: np.ndarray,
              test_mean: np.ndarray, test_std: np.ndarray) -> np.ndarray:
    """s' = ½[(s−μ_e)/σ_e + (s−μ_t)/σ_t], elementwise over trials."""
    return 0.5 * ((scores - enroll_mean) / np.maximum(enroll_std, MIN_STD)
                  + (scores - test_mean) / np.maximum(test_std, MIN_STD))
