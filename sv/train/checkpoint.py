"""Training checkpoints: one file with everything a run needs to continue exactly where it stopped.

    exp/<name>/models/model_<epoch>.pt   written at the end of each epoch
    exp/<name>/models/checkpoint.pt      written every `save_every_steps` optimizer steps (overwritten)

A checkpoint holds model, head, optimizer, scheduler and scaler states, the position (epoch, next batch,
global step), every rank's RNG states and the config. Files are written to a temporary name and renamed,
and read with `torch.load(weights_only=True)`, so loading never runs pickled code.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from sv.data.table import creation_mode

log = logging.getLogger(__name__)

EPOCH_FILE = re.compile(r"model_(\d+)\.pt$")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.chmod(tmp, creation_mode())  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return torch.load(path, map_location="cpu", weights_only=True)


def epoch_checkpoints(model_dir: str | os.PathLike) -> dict[int, Path]:
    """epoch -> model_<epoch>.pt found in model_dir."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return {}
    return {int(m.group(1)): p for p in model_dir.iterdir() if (m := EPOCH_FILE.match(p.name))}


def latest_checkpoint(model_dir: str | os.PathLike) -> Path | None:
    """The checkpoint furthest into training (by global step), epoch-end or mid-epoch."""
    epochs = epoch_checkpoints(model_dir)
    candidates = [epochs[max(epochs)]] if epochs else []
    if (Path(model_dir) / "checkpoint.pt").is_file():
        candidates.append(Path(model_dir) / "checkpoint.pt")
    best, best_step = None, -1
    for path in candidates:
        step = load_checkpoint(path)["position"]["global_step"]
        if step > best_step:
            best, best_step = path, step
    return best


def load_weights(module: nn.Module, weights: dict[str, torch.Tensor], what: str) -> list[str]:
    """Load what fits and report, never silently, what is missing, unexpected or of another shape; returns the
    module's keys left as they were (missing or of another shape)."""
    own = module.state_dict()
    mismatched = [k for k, v in weights.items() if k in own and own[k].shape != v.shape]
    fitting = {k: v for k, v in weights.items() if k not in mismatched}
    missing, unexpected = module.load_state_dict(fitting, strict=False)
    for kind, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            log.warning("%s: %d %s keys: %s", what, len(keys), kind, ", ".join(keys[:10]) + (" ..." if len(keys) > 10 else ""))
    for k in mismatched:
        log.warning("%s: %s has shape %s in the checkpoint but %s in the model: not loaded",
                    what, k, tuple(weights[k].shape), tuple(own[k].shape))
    if not missing and not unexpected and not mismatched:
        log.info("%s: all %d tensors loaded", what, len(own))
    return list(missing) + mismatched
