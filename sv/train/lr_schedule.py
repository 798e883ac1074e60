"""Per-step learning-rate schedules from the config's `scheduler:` section, as a LambdaLR: every parameter
group's lr is its initial lr (optim.lr · lr_mult) times the same factor, so per-module ratios hold throughout.

    scheduler: {name: exponential, warmup_epochs: 6, final_lr: 5.0e-5}
    scheduler: {name: cosine, warmup_epochs: 1, final_lr: 5.0e-6, decay_epochs: 2}
    scheduler: {name: step, warmup_epochs: 5, step_epochs: [10, 20], gamma: 0.1}
    scheduler: {name: onecycle, pct_start: 0.3, div_factor: 25, final_div_factor: 1.0e4}

Steps t = 0, 1, ... count optimizer steps over the whole run (steps_per_epoch · epochs of them).
- Warm-up (all but onecycle): the factor rises linearly, (t+1)/(W+1), over the W = warmup_epochs · steps_per_epoch
  first steps, and is 1 (the base lr) at step W.
- exponential, cosine: from the base lr at step W to final_lr, geometrically (WeSpeaker's ExponentialDecrease)
  or along a half cosine, reached at the last step, or after decay_epochs and held from then on. final_lr is
  the base group's value; a group with lr_mult ends at final_lr · lr_mult.
- step: the factor is gamma^k after k of the step_epochs have passed (milestones count from the start of
  training, as MultiStepLR's).
- onecycle: torch's OneCycleLR for the lr (not momentum): cosine up from lr/div_factor to the optimizer's lr
  (the peak, max_lr) over the first pct_start of the steps, then down to lr/(div_factor · final_div_factor).

Call scheduler.step() after every optimizer.step(). To resume, rebuild optimizer and scheduler from the config,
then load the optimizer's state and then the scheduler's: the lambda is not saved, and building the scheduler
resets the optimizer's lrs, which loading the optimizer's state sets back.
"""
from __future__ import annotations

import difflib

import math
from typing import Any, Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

_KEYS = {
    "exponential": {"warmup_epochs", "final_lr", "decay_epochs"},
    "cosine": {"warmup_epochs", "final_lr", "decay_epochs"},
    "step": {"warmup_epochs", "step_epochs", "gamma"},
    "onecycle": {"pct_start", "div_factor", "final_div_factor"},
}
_REQUIRED = {"exponential": {"final_lr"}, "cosine": {"final_lr"}, "step": {"step_epochs"}, "onecycle": set()}


def _as_number(value: Any, where: str) -> float:
    # YAML reads 1e-4 (no dot) as a string.
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}") from None


def _number(cfg: dict[str, Any], key: str, default: float | None = None) -> float:
    return _as_number(cfg.get(key, default), f"scheduler.{key}")


def _decay(cfg: dict[str, Any], base_lr: float, warmup: int, total: int, steps_per_epoch: int,
           epochs: int) -> Callable[[int], float]:
    """The factor from step `warmup` on, 1 at step `warmup`."""
    name = cfg["name"]
    if name == "step":
        milestones = cfg["step_epochs"]
        if not isinstance(milestones, list):
            raise ValueError(f"scheduler.step_epochs: expected a list of epochs, got {milestones!r}")
        milestones = [_as_number(m, "scheduler.step_epochs") for m in milestones]
        warmup_epochs = warmup / steps_per_epoch
        if milestones != sorted(set(milestones)) or not all(warmup_epochs < m < epochs for m in milestones):
            raise ValueError(f"scheduler.step_epochs: {milestones} must increase strictly, each after the "
                             f"warm-up ({warmup_epochs:g} epochs) and less than epochs ({epochs})")
        gamma = _number(cfg, "gamma", 0.1)
        steps = [round(m * steps_per_epoch) for m in milestones]
        return lambda t: gamma ** sum(t >= s for s in steps)

    final_ratio = _number(cfg, "final_lr") / base_lr
    if final_ratio < 0 or (name == "exponential" and final_ratio == 0):
        raise ValueError(f"scheduler.final_lr must be {'positive' if name == 'exponential' else '>= 0'}")
    if "decay_epochs" in cfg:
        decay_epochs = _number(cfg, "decay_epochs")
        decay = round(decay_epochs * steps_per_epoch)
        if decay < 1 or warmup + decay > total:
            raise ValueError(f"scheduler.decay_epochs ({decay_epochs:g}) must be positive and fit in the "
                             f"{epochs} epochs after the warm-up ({warmup / steps_per_epoch:g} epochs)")
    else:
        decay = max(total - 1 - warmup, 1)

    def progress(t: int) -> float:
        return min((t - warmup) / decay, 1.0)

    if name == "exponential":
        return lambda t: final_ratio ** progress(t)
    return lambda t: final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress(t)))


def _onecycle(cfg: dict[str, Any], total: int) -> Callable[[int], float]:
    pct_start = _number(cfg, "pct_start", 0.3)
    start = 1.0 / _number(cfg, "div_factor", 25.0)
    end = start / _number(cfg, "final_div_factor", 1e4)
    # Step indices where each phase ends, as OneCycleLR computes them.
    peak, last = pct_start * total - 1, total - 1
    if not 0 < peak < last:
        raise ValueError(f"scheduler.pct_start ({pct_start:g}) leaves a onecycle phase without steps "
                         f"({total} steps in all)")

    def cos_anneal(a: float, b: float, pct: float) -> float:
        return b + (a - b) / 2 * (math.cos(math.pi * min(pct, 1.0)) + 1)

    def factor(t: int) -> float:
        return cos_anneal(start, 1.0, t / peak) if t <= peak else cos_anneal(1.0, end, (t - peak) / (last - peak))

    return factor


def check_scheduler_config(cfg: dict[str, Any]) -> None:
    """The `scheduler:` section's name and keys, before anything is built; errors name the dotted key."""
    name = cfg.get("name")
    if name not in _KEYS:
        raise ValueError(f"scheduler.name: unknown schedule {name!r}; known: {', '.join(sorted(_KEYS))}")
    for key in cfg:
        if key != "name" and key not in _KEYS[name]:
            close = difflib.get_close_matches(str(key), sorted(_KEYS[name]), n=1)
            raise ValueError(f"scheduler.{key}: unknown key for {name}"
                             f"{f' (did you mean {close[0]!r}?)' if close else ''}; known: {', '.join(sorted(_KEYS[name]))}")
    missing = _REQUIRED[name] - set(cfg)
    if missing:
        raise ValueError(f"scheduler: {name} needs {', '.join(f'scheduler.{k}' for k in sorted(missing))}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], steps_per_epoch: int,
                    epochs: int) -> LambdaLR:
    check_scheduler_config(cfg)
    name = cfg["name"]
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(f"steps_per_epoch ({steps_per_epoch}) and epochs ({epochs}) must be positive")
    total = steps_per_epoch * epochs

    if name == "onecycle":
        factor = _onecycle(cfg, total)
    else:
        warmup_epochs = _number(cfg, "warmup_epochs", 0.0)
        if not 0 <= warmup_epochs < epochs:
            raise ValueError(f"scheduler.warmup_epochs ({warmup_epochs:g}) must be >= 0 and less than "
                             f"the {epochs} epochs")
        warmup = round(warmup_epochs * steps_per_epoch)
        # The base group's lr: build_optimizer passes optim.lr as the optimizer's default.
        decay = _decay(cfg, optimizer.defaults["lr"], warmup, total, steps_per_epoch, epochs)

        def factor(t: int) -> float:
            return (t + 1) / (warmup + 1) if t < warmup else decay(t)

    return LambdaLR(optimizer, factor)
