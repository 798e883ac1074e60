"""Teacher + auxiliary loss: a second training objective beside the speaker loss, L = L_spk + weight * L_aux.

    teacher:
      loss: ctc_kl                                   # a name from AUXILIARY_LOSSES
      model: exp/asr/stt_en_conformer_ctc_large      # what the loss's teacher is built from
      weight: 1.0                                    # the auxiliary loss's weight (alpha)
      ...                                            # the loss's own options

The trainer asks the student for `forward_outputs(inputs)` (a dict with at least `embedding`), scores the
embedding with the margin head and hands the inputs and the student's outputs to the auxiliary loss, all
inside the one module DDP wraps. An auxiliary loss may own trainable parts (a student-side projection); they
train with the model and are saved in checkpoints under `auxiliary`. Its teacher is frozen and held outside
the module tree, so it is never trained, never wrapped by DDP and never written into a checkpoint.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

import torch.nn as nn

# name -> "module:Class", imported when used
AUXILIARY_LOSSES = {"ctc_kl": "sv.train.ctc_distillation:CTCDistillation",
                    "hidden_distill": "sv.train.hidden_distillation:HiddenStateDistillation"}


class AuxiliaryLoss(nn.Module):
    """Base class: forward(inputs, outputs) -> the weighted auxiliary loss (a scalar)."""

    def __init__(self, teacher: nn.Module, weight: float):
        super().__init__()
        # Not a submodule (see the module docstring); _apply below still moves it with .to()/.cuda().
        self.__dict__["teacher"] = teacher.requires_grad_(False).eval()
        self.weight = float(weight)

    def _apply(self, fn: Callable, recurse: bool = True) -> "AuxiliaryLoss":
        self.teacher._apply(fn)
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> "AuxiliaryLoss":
        super().train(mode)
        self.teacher.eval()
        return self


def build_auxiliary(cfg: dict[str, Any], student: nn.Module, data_cfg: dict[str, Any]) -> AuxiliaryLoss:
    """The auxiliary loss the config's `teacher:` section names, for this student and data config."""
    if not isinstance(cfg, dict):
        raise ValueError(f"teacher: expected a mapping, got {cfg!r}")
    cfg = dict(cfg)
    name = cfg.pop("loss", None)
    if name not in AUXILIARY_LOSSES:
        raise ValueError(f"teacher.loss: {name!r} is not one of {', '.join(AUXILIARY_LOSSES)}")
    if not hasattr(student, "forward_outputs"):
        raise ValueError(f"teacher: the model {type(student).__name__} has no forward_outputs, so no auxiliary "
                         "loss can see its frame-level outputs")
    module, cls_name = AUXILIARY_LOSSES[name].split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    params = inspect.signature(cls).parameters
    options = [p for p in params if p not in ("student", "data_cfg")]
    for key in cfg:
        if key not in options:
            raise ValueError(f"teacher.{key}: not an option of the {name} loss ({', '.join(['loss', *options])})")
    missing = [p for p in options if params[p].default is inspect.Parameter.empty and p not in cfg]
    if missing:
        raise ValueError(f"teacher: the {name} loss needs {', '.join(f'teacher.{p}' for p in missing)}")
    return cls(student=student, data_cfg=data_cfg, **cfg)
