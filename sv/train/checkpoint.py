"""Training checkpoints: one file with everything a run needs to continue exactly where it stopped.

    exp/<name>/models/model_<epoch>.pt   written at the end of each epoch
    exp/<name>/models/checkpoint.pt      written every `save_every_steps` optimizer steps (overwritten)

A checkpoint holds model, head, optimizer, scheduler and scaler states, the position (epoch, next batch,
global step), every rank's RNG states and the config. Files are written to a temporary name and renamed,
and read with `torch.load(weights_only=True)`, so loading never runs pickled code. Each file also holds a
checksum of its contents, checked on load: a truncated or corrupted file is a CheckpointError naming it, and
resuming skips it for the newest checkpoint that loads.
"""
from __future__ import annotations

import hashlib
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


class CheckpointError(ValueError):
    pass


def _digest(obj: Any, h: Any = None) -> str:
    """sha256 of a checkpoint's contents: tensors by their bytes, containers in key order, the rest by repr."""
    top = h is None
    h = h or hashlib.sha256()
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}{len(obj)}".encode())
        for v in obj:
            _digest(v, h)
    else:
        h.update(repr(obj).encode())
    return h.hexdigest() if top else ""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    state = {**state, "checksum": _digest(state)}
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
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a truncated or garbage file
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt): {e}") from e
    if isinstance(state, dict) and "checksum" in state:
        expected = state.pop("checksum")
        if _digest(state) != expected:
            raise CheckpointError(f"{path}: its contents do not match their checksum: the file is corrupt")
    return state


def epoch_checkpoints(model_dir: str | os.PathLike) -> dict[int, Path]:
    """epoch -> model_<epoch>.pt found in model_dir."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return {}
    return {int(m.group(1)): p for p in model_dir.iterdir() if (m := EPOCH_FILE.match(p.name))}


def _step(path: Path) -> int | None:
    """The checkpoint's global step, or None (with a warning) when it does not load."""
    try:
        return load_checkpoint(path)["position"]["global_step"]
    except (CheckpointError, KeyError, TypeError) as e:
        log.warning("skipping %s: %s", path, e)
        return None


def latest_checkpoint(model_dir: str | os.PathLike) -> Path | None:
    """The checkpoint furthest into training (by global step) among the mid-epoch checkpoint.pt and the newest
    epoch checkpoint that loads; corrupt ones are skipped with a warning naming them."""
    epochs = epoch_checkpoints(model_dir)
    found: list[tuple[int, Path]] = []
    for epoch in sorted(epochs, reverse=True):
        step = _step(epochs[epoch])
        if step is not None:
            found.append((step, epochs[epoch]))
            break
    mid = Path(model_dir) / "checkpoint.pt"
    if mid.is_file() and (step := _step(mid)) is not None:
        found.append((step, mid))
    return max(found, key=lambda x: x[0])[1] if found else None


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
