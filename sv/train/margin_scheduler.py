"""Margin warm-up for the margin heads, per step as in WeSpeaker: a large margin from the first step keeps an
untrained network from separating the classes at all, so the margin grows from `initial` to `final`.

Epochs are numbered from 1 (WeSpeaker's convention, so its configs carry over): epoch e covers the global
steps [(e-1)·steps_per_epoch, e·steps_per_epoch). The margin is `initial` before epoch increase_start_epoch,
grows during epochs increase_start_epoch..fix_start_epoch-1, and is `final` from epoch fix_start_epoch on.
The margin is a function of the global step alone, so a resumed run needs no saved state.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn


class MarginScheduler:
    def __init__(self, head: nn.Module, initial: float, final: float, increase_start_epoch: int,
                 fix_start_epoch: int, steps_per_epoch: int, mode: str = "exp"):
        if not hasattr(head, "margin"):
            raise ValueError(f"{type(head).__name__} has no margin to schedule")
        if mode not in ("linear", "exp"):
            raise ValueError(f"margin schedule mode must be 'linear' or 'exp', got {mode!r}")
        if not 1 <= increase_start_epoch <= fix_start_epoch:
            raise ValueError(f"need 1 <= increase_start_epoch ({increase_start_epoch}) "
                             f"<= fix_start_epoch ({fix_start_epoch})")
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
        self.head = head
        self.initial, self.final, self.mode = float(initial), float(final), mode
        self.increase_start = (increase_start_epoch - 1) * steps_per_epoch
        self.fix_start = (fix_start_epoch - 1) * steps_per_epoch
        self.step(0)

    def margin_at(self, global_step: int) -> float:
        if global_step >= self.fix_start:
            return self.final
        if global_step < self.increase_start:
            return self.initial
        progress = (global_step - self.increase_start) / (self.fix_start - self.increase_start)
        if self.mode == "linear":
            ratio = progress
        else:
            # WeSpeaker's curve: fast at first, 99.9% of the way by fix_start, where it snaps to `final`.
            ratio = 1.0 - 1e-3 ** progress
        return self.initial + (self.final - self.initial) * ratio

    def step(self, global_step: int) -> None:
        """Set the head's margin for the training step about to run."""
        self.head.margin = self.margin_at(global_step)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
