"""Quality measure functions (QMF): logistic-regression calibration of normalised scores with quality
features of each trial's two sides, trained to minimise Cllr (Thienpondt et al., ICASSP 2021).

Features of a trial: the normalised score, then for each quality measure q the two sides' min, max,
absolute difference and ratio min/max; symmetric, so swapping enroll and test changes nothing.
Every model uses the qualities of QUALITIES (duration in seconds capped at 20, embedding magnitude, mean
of the top-N cohort scores); a model may add those of OPTIONAL_QUALITIES (snr: an SNR estimate in dB,
clipped to [0, 40], as sv.bin.compute_snr writes it). The model file's `features` list says which.
The model standardises the features and maps them to a log-likelihood ratio `w·z + b`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

MAX_DURATION = 20.0
SNR_RANGE = (0.0, 40.0)  # dB; below 0 dB WADA-SNR estimates are coarse, above 40 dB audio is clean
QUALITIES = ("duration", "magnitude", "cohort_mean")
OPTIONAL_QUALITIES = ("snr",)
STATS = ("min", "max", "diff", "ratio")


def feature_names(qualities: tuple[str, ...] = QUALITIES) -> list[str]:
    return ["score"] + [f"{q}_{f}" for q in qualities for f in STATS]


FEATURES = feature_names()  # the features of a model without optional qualities (and of older models)


def model_qualities(optional: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """QUALITIES plus the optional ones asked for, in OPTIONAL_QUALITIES order."""
    unknown = set(optional) - set(OPTIONAL_QUALITIES)
    if unknown:
        raise ValueError(f"unknown QMF qualities {sorted(unknown)}; optional ones are {list(OPTIONAL_QUALITIES)}")
    return QUALITIES + tuple(q for q in OPTIONAL_QUALITIES if q in optional)


def clip_quality(name: str, values: np.ndarray) -> np.ndarray:
    if name == "duration":
        return np.minimum(values, MAX_DURATION)
    if name == "snr":
        return np.clip(values, *SNR_RANGE)
    return values


def trial_features(score: np.ndarray, enroll_q: np.ndarray, test_q: np.ndarray,
                   qualities: tuple[str, ...] = QUALITIES) -> np.ndarray:
    """(n, len(feature_names(qualities))); enroll_q and test_q are (n, len(qualities)) in `qualities` order."""
    if enroll_q.shape[1] != len(qualities) or test_q.shape[1] != len(qualities):
        raise ValueError(f"quality matrices have {enroll_q.shape[1]} and {test_q.shape[1]} columns, "
                         f"qualities {list(qualities)}")
    enroll_q, test_q = enroll_q.astype(np.float64), test_q.astype(np.float64)
    for i, name in enumerate(qualities):
        enroll_q[:, i] = clip_quality(name, enroll_q[:, i])
        test_q[:, i] = clip_quality(name, test_q[:, i])
    lo, hi = np.minimum(enroll_q, test_q), np.maximum(enroll_q, test_q)
    # Cohort means can be negative: the ratio is of magnitudes, so it stays in [0, 1].
    a, b = np.abs(lo), np.abs(hi)
    ratio = np.minimum(a, b) / np.maximum(np.maximum(a, b), 1e-8)
    per_quality = np.stack([lo, hi, hi - lo, ratio], axis=2)  # (n, qualities, 4 stats)
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
    qualities: tuple[str, ...] = QUALITIES

    @property
    def features(self) -> list[str]:
        return feature_names(self.qualities)

    def llr(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std) @ self.weights + self.bias

    def to_dict(self) -> dict:
        return {"features": self.features, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "weights": self.weights.tolist(), "bias": float(self.bias)}

    @classmethod
    def from_dict(cls, d: dict) -> "QMF":
        """A model as to_dict wrote it; files from before optional qualities (features == FEATURES) load too."""
        features = d.get("features")
        qualities = _qualities_of(features)
        if qualities is None:
            raise ValueError(f"QMF model features {features} are not those of any quality set this version knows "
                             f"({FEATURES} plus, optionally, those of {list(OPTIONAL_QUALITIES)})")
        arrays = [np.array(d[k], dtype=np.float64) for k in ("mean", "std", "weights")]
        if any(a.shape != (len(features),) for a in arrays):
            raise ValueError(f"QMF model: mean, std and weights must have {len(features)} values each")
        return cls(*arrays, float(d["bias"]), qualities)


def _qualities_of(features) -> tuple[str, ...] | None:
    """The quality set whose feature names are `features`, or None."""
    for n in range(len(OPTIONAL_QUALITIES) + 1):
        for optional in itertools.combinations(OPTIONAL_QUALITIES, n):
            qualities = model_qualities(optional)
            if features == feature_names(qualities):
                return qualities
    return None


def train_qmf(features: np.ndarray, is_target: np.ndarray, l2: float = 1e-4,
              qualities: tuple[str, ...] | None = None) -> QMF:
    """Logistic regression minimising Cllr (targets and non-targets weighted equally), by L-BFGS.

    `qualities` names the quality set of the columns (trial_features'); by default QUALITIES, or none
    at all (a quality-free linear calibration) when `features` is the score column alone."""
    if qualities is None:
        qualities = () if features.shape[1] == 1 else QUALITIES
    if features.shape[1] != len(feature_names(qualities)):
        raise ValueError(f"{features.shape[1]} feature columns, but qualities {list(qualities)} make "
                         f"{len(feature_names(qualities))}")
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
    return QMF(mean, std, res.x[:-1], float(res.x[-1]), tuple(qualities))
