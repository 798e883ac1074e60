"""Speaker-verification metrics from trial scores and target/non-target labels.

Conventions: a trial is accepted when its score is >= the threshold; P_miss is the fraction of targets
rejected, P_fa the fraction of non-targets accepted. Tied scores cannot be split by any threshold, so the
operating points are taken only at unique-score boundaries: one sort, then cumulative counts (O(n log n)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import isotonic_regression


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64, labels as bool (True = target); both classes must be present."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"scores and labels must be 1-D and of equal length, got {s.shape} and {y.shape}")
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be boolean or 0/1 (1 = target)")
        y = y.astype(bool)
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (found NaN or inf)")
    n_tar = int(np.count_nonzero(y))
    if n_tar == 0:
        raise ValueError("no target trials: EER, DCF and Cllr need both targets and non-targets")
    if n_tar == len(y):
        raise ValueError("no non-target trials: EER, DCF and Cllr need both targets and non-targets")
    return s, y


@dataclass(frozen=True)
class OperatingPoints:
    """P_miss and P_fa at every distinct threshold, in increasing threshold order.

    thresholds[k] is the k-th unique score, plus one last threshold just above the highest score
    (everything rejected): p_miss rises from 0 to 1, p_fa falls from 1 to 0.
    block_targets/block_trials count the targets/trials sharing each unique score (used by PAV).
    """
    thresholds: np.ndarray
    p_miss: np.ndarray
    p_fa: np.ndarray
    block_targets: np.ndarray
    block_trials: np.ndarray

    @classmethod
    def from_scores(cls, scores: np.ndarray, labels: np.ndarray) -> OperatingPoints:
        s, y = _check(scores, labels)
        order = np.argsort(s)
        s, y = s[order], y[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        n, n_tar = len(s), int(np.count_nonzero(y))
        n_non = n - n_tar
        tar_below = np.r_[0, np.cumsum(y)][np.r_[starts, n]]  # targets scoring below each threshold
        non_below = np.r_[starts, n] - tar_below
        thresholds = np.r_[s[starts], np.nextafter(s[-1], np.inf)]
        return cls(thresholds=thresholds, p_miss=tar_below / n_tar, p_fa=(n_non - non_below) / n_non,
                   block_targets=np.diff(tar_below), block_trials=np.diff(np.r_[starts, n]))

    @property
    def n_targets(self) -> int:
        return int(self.block_targets.sum())

    @property
    def n_trials(self) -> int:
        return int(self.block_trials.sum())

    def eer(self) -> tuple[float, float]:
        """(EER, threshold), linearly interpolated between the two operating points where P_miss - P_fa
        changes sign; the threshold is interpolated the same way."""
        d = self.p_miss - self.p_fa  # d[0] = -1 and d[-1] = 1, so a crossing always exists
        i = int(np.argmax(d >= 0))
        a = d[i - 1] / (d[i - 1] - d[i])
        eer = self.p_miss[i - 1] + a * (self.p_miss[i] - self.p_miss[i - 1])
        threshold = self.thresholds[i - 1] + a * (self.thresholds[i] - self.thresholds[i - 1])
        return float(eer), float(threshold)

    def min_dcf(self, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
        """(normalised minimum DCF, threshold attaining it)."""
        dcf = _dcf(self.p_miss, self.p_fa, p_target, c_miss, c_fa)
        i = int(np.argmin(dcf))
        return float(dcf[i]), float(self.thresholds[i])

    def min_cllr(self) -> float:
        """Cllr after the best monotone calibration: PAV (isotonic regression of the target posterior on
        the score, tied scores pooled as one block) gives the ROC convex hull's posteriors; dividing out the
        empirical prior turns them into LLRs. scipy's isotonic_regression is the O(n) PAV."""
        tar, trials = self.block_targets, self.block_trials
        posterior = isotonic_regression(tar / trials, weights=trials, increasing=True).x
        prior = tar.sum() / trials.sum()
        with np.errstate(divide="ignore"):
            llr = np.log(posterior) - np.log1p(-posterior) - math.log(prior / (1 - prior))
        # A block with posterior 0 (1) has no targets (non-targets): its infinite LLR costs nothing.
        non = trials - tar
        has_tar, has_non = tar > 0, non > 0
        tar_cost = (tar[has_tar] * np.logaddexp(0, -llr[has_tar])).sum() / tar.sum()
        non_cost = (non[has_non] * np.logaddexp(0, llr[has_non])).sum() / non.sum()
        return float((tar_cost + non_cost) / (2 * math.log(2)))


def _dcf(p_miss, p_fa, p_target: float, c_miss: float, c_fa: float):
    if not 0 < p_target < 1:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    cost = c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa
    return cost / min(c_miss * p_target, c_fa * (1 - p_target))


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(EER as a fraction, threshold) where the interpolated miss and false-alarm rates cross."""
    return OperatingPoints.from_scores(scores, labels).eer()


def min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float,
            c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """(min over thresholds of (c_miss·P_miss·p + c_fa·P_fa·(1−p)) / min(c_miss·p, c_fa·(1−p)), threshold)."""
    return OperatingPoints.from_scores(scores, labels).min_dcf(p_target, c_miss, c_fa)


def rates_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(P_miss, P_fa) when trials scoring >= threshold are accepted."""
    s, y = _check(scores, labels)
    accept = s >= threshold
    return float(np.mean(~accept[y])), float(np.mean(accept[~y]))


def act_dcf(llrs: np.ndarray, labels: np.ndarray, p_target: float,
            c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised DCF of calibrated LLRs at the Bayes threshold log(c_fa(1−p) / (c_miss·p)),
    i.e. −logit(p) for unit costs."""
    threshold = math.log(c_fa * (1 - p_target) / (c_miss * p_target))
    p_miss, p_fa = rates_at(llrs, labels, threshold)
    return float(_dcf(p_miss, p_fa, p_target, c_miss, c_fa))


def cllr(llrs: np.ndarray, labels: np.ndarray) -> float:
    """Log-likelihood-ratio cost in bits: ½[mean log2(1+e^−llr) over targets + mean log2(1+e^llr) over
    non-targets]. Meaningful only for scores that are natural-log LLRs; 1.0 = an uninformative system."""
    s, y = _check(llrs, labels)
    return float((np.mean(np.logaddexp(0, -s[y])) + np.mean(np.logaddexp(0, s[~y]))) / (2 * math.log(2)))


def min_cllr(scores: np.ndarray, labels: np.ndarray) -> float:
    """Cllr of the scores after optimal monotone (PAV) calibration; invariant to monotone transforms."""
    return OperatingPoints.from_scores(scores, labels).min_cllr()


def eer_star(valid_scores: np.ndarray, valid_labels: np.ndarray,
             eval_scores: np.ndarray, eval_labels: np.ndarray) -> tuple[float, float]:
    """(EER*, τ) as in the layer-aware TDNN paper (eq. 5): τ is the EER threshold of the validation set,
    EER* = (FAR + FRR) / 2 of the evaluation set at τ."""
    threshold = eer(valid_scores, valid_labels)[1]
    p_miss, p_fa = rates_at(eval_scores, eval_labels, threshold)
    return (p_miss + p_fa) / 2, threshold


def compute_all(scores: np.ndarray, labels: np.ndarray, p_targets: tuple[float, ...] = (0.01, 0.05),
                points: OperatingPoints | None = None) -> dict:
    """Every summary metric from one sort: trials, targets, nontargets, eer (fraction), eer_threshold,
    min_dcf {p: value}, min_dcf_threshold {p: threshold}, act_dcf {p: value} (of the raw scores taken as
    LLRs), cllr (actual, of the raw scores), min_cllr.
    points: OperatingPoints.from_scores(scores, labels) if the caller already has it."""
    if points is None:
        points = OperatingPoints.from_scores(scores, labels)
    eer_value, eer_threshold = points.eer()
    dcfs = {p: points.min_dcf(p) for p in p_targets}
    return {
        "trials": points.n_trials, "targets": points.n_targets, "nontargets": points.n_trials - points.n_targets,
        "eer": eer_value, "eer_threshold": eer_threshold,
        "min_dcf": {p: v for p, (v, _) in dcfs.items()},
        "min_dcf_threshold": {p: t for p, (_, t) in dcfs.items()},
        "act_dcf": {p: act_dcf(scores, labels, p) for p in p_targets},
        "cllr": cllr(scores, labels), "min_cllr": points.min_cllr(),
    }
