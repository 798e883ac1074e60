"""Quality measure functions (QMF): logistic-regression calibration of normalised scores with quality
features of each trial's two sides, trained to minimise Cllr (Thienpondt et al., ICASSP 2021).

Features of a trial: the normalised score, then for each quality measure q (duration in seconds capped
at 20, embedding magnitude, mean of the top-N cohort scores) the two sides' min, max, absolute
difference and ratio min/max; symmetric, so swapping enroll and test changes nothing.
The model standardises the features and maps them to a log-likelihood ratio `w·z + b`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

MAX_DURATION = 20.0
QUALITIES = ("duration", "magnitude", "cohort_mean")
FEATURES = ["score"] + [f"{q}_{f}" for q in QUALITIES for f in ("min", "max", "diff", "ratio")]


def trial_features(score: np.ndarray, enroll_q: np.ndarray, test_q: np.ndarray) -> np.ndarray:
    """(n, len(FEATURES)); enroll_q and test_q are (n, 3) in QUALITIES order."""
    enroll_q, test_q = enroll_q.astype(np.float64), test_q.astype(np.float64)
    enroll_q[:, 0] = np.minimum(enroll_q[:, 0], MAX_DURATION)
    test_q[:, 0] = np.minimum(test_q[:, 0], MAX_DURATION)
    lo, hi = np.minimum(enroll_q, test_q), np.maximum(enroll_q, test_q)
    # Cohort means can be negative: the ratio is of magnitudes, so it stays in [0, 1].
    a, b = np.abs(lo), np.abs(hi)
    ratio = np.minimum(a, b) / np.maximum(np.maximum(a, b), 1e-8)
    per_quality = np.stack([lo, hi, hi - lo, ratio], axis=2)  # (n, 3 qualities, 4 stats)
    return np.concatenate([score[:, None].astype(np.float64), per_quality.reshape(len(score), -1)], axis=1)


def cllr_loss(llr: np.ndarray, is_target: np.ndarray) -> float:
    """Cllr in bits: the prior-0.5 cross-entropy of LLR scores."""
    tar, non = llr[is_target], llr[~is_target]
    return float((np.logaddexp(0, -tar).mean() + np.logaddexp(0, non).mean()) / (2 * math.log(2)))


@dataclass
class QMF:
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float

    def llr(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std) @ self.weights + self.bias

    def to_dict(self) -> dict:
        return {"features": FEATURES, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "weights": self.weights.tolist(), "bias": float(self.bias)}

    @classmethod
    def from_dict(cls, d: dict) -> "QMF":
        if d.get("features") != FEATURES:
            raise ValueError(f"QMF model features {d.get('features')} differ from this version's {FEATURES}")
        return cls(np.array(d["mean"]), np.array(d["std"]), np.array(d["weights"]), float(d["bias"]))


def train_qmf(features: np.ndarray, is_target: np.ndarray, l2: float = 1e-4) -> QMF:
    """Logistic regression minimising Cllr (targets and non-targets weighted equally), by L-BFGS."""
    if is_target.all() or not is_target.any():
        raise ValueError("QMF training needs both target and non-target trials")
    mean, std = features.mean(0), features.std(0)
    std[std < 1e-8] = 1.0
    z = (features - mean) / std
    # Per-trial weights that make the loss the mean over targets plus the mean over non-targets.
    sign = np.where(is_target, 1.0, -1.0)
    weight = np.where(is_target, 0.5 / is_target.sum(), 0.5 / (~is_target).sum())

    def loss_and_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        margin = sign * (z @ w + b)
        loss = float(weight @ np.logaddexp(0, -margin) + l2 * w @ w)
        g = -weight * sign / (1 + np.exp(margin))  # d loss / d llr
        return loss, np.concatenate([z.T @ g + 2 * l2 * w, [g.sum()]])

    init = np.zeros(z.shape[1] + 1)
    init[0] = 1.0  # start from the raw score
    res = minimize(loss_and_grad, init, jac=True, method="L-BFGS-B")
    return QMF(mean, std, res.x[:-1], float(res.x[-1]))
