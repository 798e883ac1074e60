"""Fixed-length training chunks: a random window of a longer signal, or a shorter one repeated to fill.

Works along the first axis, so the same code crops waveforms (samples) and feature matrices (frames).
"""
from __future__ import annotations

import numpy as np


def random_chunk(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """`length` consecutive rows of x from a random offset; x shorter than that is tiled first.

    Tiling (rather than zero padding) keeps every frame speech-like, as WeSpeaker and Kaldi's
    egs do for short utterances. The result never shares memory with x.
    """
    if len(x) == 0:
        raise ValueError("cannot take a chunk of an empty signal")
    if len(x) < length:
        reps = -(-length // len(x))
        x = np.concatenate([x] * reps)
    start = int(rng.integers(0, len(x) - length + 1))
    return x[start:start + length].copy()


def draw_num_frames(crop: float | list[float], frame_shift_ms: float, rng: np.random.Generator) -> int:
    """Frames in this batch's crops: `crop` seconds, or a whole number of frames drawn uniformly from
    the [low, high] range in seconds."""
    per_second = 1000.0 / frame_shift_ms
    if isinstance(crop, (int, float)):
        return max(1, round(crop * per_second))
    low, high = (max(1, round(c * per_second)) for c in crop)
    return int(rng.integers(low, high + 1))
