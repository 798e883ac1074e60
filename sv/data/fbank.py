"""Kaldi-compatible log mel filterbank features (torchaudio.compliance.kaldi.fbank) and their YAML config.

A config is a flat mapping whose keys are fbank's own argument names, so conf/fbank.yaml reads like
torchaudio's documentation. Keys that are left out take DEFAULTS, then torchaudio's defaults.
"""
from __future__ import annotations

import difflib
import inspect
import os
from typing import Any, Mapping

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional
import yaml

from sv.data.audio import AudioError
from sv.data.table import DataError, where

# Where we differ from torchaudio's defaults:
# - 80 bins, as modern speaker embedding extractors (ECAPA-TDNN, ResNet in WeSpeaker) use;
# - dither 0: features are computed once to disk and shared by training, enrollment and test, so they
#   should be reproducible; Kaldi's random dither (1.0) belongs to on-the-fly training augmentation;
# - energy_floor 0 as in Kaldi (only used with use_energy).
DEFAULTS: dict[str, Any] = {"num_mel_bins": 80, "dither": 0.0, "energy_floor": 0.0}

# `waveform` is the input and `channel` picks from a multi-channel tensor; load_audio already gives mono.
_NOT_OPTIONS = ("waveform", "channel")
_SIGNATURE = {name: p.default for name, p in inspect.signature(kaldi.fbank).parameters.items()
              if name not in _NOT_OPTIONS}

# Kaldi reads 16-bit samples as integers; the [-1, 1] floats from load_audio are scaled back to that range.
INT16_SCALE = 32768.0


def default_config() -> dict[str, Any]:
    return {**_SIGNATURE, **DEFAULTS}


def _check_value(name: str, value: Any, loc: str) -> Any:
    """The value with ints widened to float where fbank wants a float; a wrong type is a DataError."""
    default = _SIGNATURE[name]
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise DataError(f"{loc}: fbank option {name!r} must be a {type(default).__name__}, got {value!r}")
    if name == "window_type" and value not in kaldi.WINDOWS:
        raise DataError(f"{loc}: window_type {value!r} is not one of {', '.join(kaldi.WINDOWS)}")
    if name == "sample_frequency" and (value <= 0 or value != int(value)):
        raise DataError(f"{loc}: sample_frequency must be a positive whole number of Hz, got {value!r}")
    return value


def make_config(options: Mapping[str, Any], source: str = "fbank config",
                lines: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Defaults updated with `options`; an unknown key or a mistyped value is a DataError naming `source`."""
    cfg = default_config()
    for name, value in options.items():
        loc = where(source, (lines or {}).get(name))
        if name not in _SIGNATURE:
            close = difflib.get_close_matches(str(name), _SIGNATURE, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(f"{loc}: unknown fbank option {name!r}{hint}; "
                            f"valid options are the arguments of torchaudio.compliance.kaldi.fbank: "
                            f"{', '.join(sorted(_SIGNATURE))}")
        cfg[name] = _check_value(name, value, loc)
    return cfg


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a flat YAML fbank config; errors name the file and the key's line."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such fbank config file")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        options = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML: {e}") from e
    if options is None:
        return default_config()
    if not isinstance(options, dict):
        raise DataError(f"{path}: expected a mapping of fbank options, got {type(options).__name__}")
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
    return make_config(options, str(path), lines)


@torch.inference_mode()
def compute_fbank(wave: np.ndarray | torch.Tensor, sr: int, cfg: Mapping[str, Any]) -> np.ndarray:
    """(frames, num_mel_bins) float32 features of a mono [-1, 1] waveform sampled at `sr` Hz.

    Audio at another rate than cfg['sample_frequency'] is resampled first, so a corpus mixing 8 and
    16 kHz recordings gets features on one frequency scale. Audio shorter than one frame is an AudioError.
    """
    x = torch.as_tensor(wave, dtype=torch.float32)
    if x.ndim != 1:
        raise ValueError(f"compute_fbank wants a 1-D waveform, got shape {tuple(x.shape)}")
    target = int(cfg["sample_frequency"])
    if sr != target:
        x = torchaudio.functional.resample(x, sr, target)
    frame_samples = int(target * cfg["frame_length"] / 1000)
    if x.numel() < frame_samples:
        raise AudioError(f"audio too short: {x.numel() / target:.3f} s is less than one "
                         f"{cfg['frame_length']} ms frame")
    feats = kaldi.fbank(x.unsqueeze(0) * INT16_SCALE, **cfg)
    return feats.numpy().astype(np.float32, copy=False)
