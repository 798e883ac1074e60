"""Classification heads used only in training: they map embeddings (B, D) and labels (B,) to logits (B, C)
with the margin already applied to each row's target class, so the loss is `F.cross_entropy(logits, labels)`.

- `softmax`: a plain Linear layer with bias; labels are ignored.
- `am_softmax` (CosFace, Wang et al. 2018): s·(cosθ − m) on the target, s·cosθ elsewhere.
- `aam_softmax` (ArcFace, Deng et al. 2019): s·cos(θ + m) on the target, s·cosθ elsewhere.

θ is the angle between the embedding and a class's weight row. The margin heads' `margin` is a plain float
attribute that the margin scheduler (sv.train.margin_scheduler) overwrites during training.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


class SoftmaxHead(nn.Module):
    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        self.embed_dim, self.num_classes = embed_dim, num_classes
        # Own parameters rather than an nn.Linear child, so every head keeps its class rows in `weight`.
        linear = nn.Linear(embed_dim, num_classes)
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_classes={self.num_classes}"


class _CosineMarginHead(nn.Module):
    """Shared part of the margin heads: scaled cosines with a margin function on the target column."""

    def __init__(self, embed_dim: int, num_classes: int, scale: float, margin: float):
        super().__init__()
        self.embed_dim, self.num_classes = embed_dim, num_classes
        self.scale, self.margin = float(scale), float(margin)
        self.weight = nn.Parameter(torch.empty(num_classes, embed_dim))
        nn.init.xavier_uniform_(self.weight)

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # fp32 even under bf16 autocast: bf16 resolves cosines near 1 only to ~4e-3, the size of the
        # differences a trained model's target cosines make.
        with torch.autocast(x.device.type, enabled=False):
            cos = F.linear(F.normalize(x.float()), F.normalize(self.weight.float()))
            target = labels.long()[:, None]
            # The margin function only on the B target cosines, not on all B×C.
            logits = cos.scatter(1, target, self.target_logit(cos.gather(1, target)))
            return self.scale * logits

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_classes={self.num_classes}, scale={self.scale}, margin={self.margin}"


class AMSoftmaxHead(_CosineMarginHead):
    def __init__(self, embed_dim: int, num_classes: int, scale: float = 32.0, margin: float = 0.2):
        super().__init__(embed_dim, num_classes, scale, margin)

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        return cos - self.margin


class AAMSoftmaxHead(_CosineMarginHead):
    """cos(θ + m) only decreases with θ while θ + m ≤ π. Past that (cosθ ≤ th = cos(π − m)) the target logit
    becomes cosθ − mm with mm = 1 + cos(π − m), WeSpeaker's choice, which meets cos(θ + m) = −1 at θ = π − m
    so the logit stays continuous and decreasing. With easy_margin the margin applies only while cosθ > 0.
    """

    def __init__(self, embed_dim: int, num_classes: int, scale: float = 32.0, margin: float = 0.2,
                 easy_margin: bool = False):
        super().__init__(embed_dim, num_classes, scale, margin)
        self.easy_margin = bool(easy_margin)

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        m = self.margin
        # The clamp keeps sqrt's gradient finite at cosθ = ±1 (else 0·inf = NaN through torch.where).
        sin = (1.0 - cos * cos).clamp(min=1e-12).sqrt()
        cos_theta_m = cos * math.cos(m) - sin * math.sin(m)
        if self.easy_margin:
            return torch.where(cos > 0, cos_theta_m, cos)
        th, mm = math.cos(math.pi - m), 1.0 + math.cos(math.pi - m)
        return torch.where(cos > th, cos_theta_m, cos - mm)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, easy_margin={self.easy_margin}"


HEADS = {"softmax": SoftmaxHead, "am_softmax": AMSoftmaxHead, "aam_softmax": AAMSoftmaxHead}


def build_head(cfg: dict[str, Any], embed_dim: int, num_classes: int) -> nn.Module:
    """cfg is the config's `head:` section: `name` plus the head's options (scale, margin, easy_margin)."""
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; known: {', '.join(sorted(HEADS))}")
    try:
        return HEADS[name](embed_dim, num_classes, **cfg)
    except TypeError as e:
        raise ValueError(f"head {name!r}: bad options {sorted(cfg)}: {e}") from e


def truncate_classes(head: nn.Module, num_classes: int) -> None:
    """Keep only classes 0..num_classes-1, in place; build the optimizer afterwards (the parameters are new).

    For large-margin fine-tuning from a model trained with speed perturbation: the perturbed copies of the
    S speakers were classes S..3S-1, so the real speakers keep their rows and logits.
    """
    if not 0 < num_classes <= head.num_classes:
        raise ValueError(f"cannot truncate a head of {head.num_classes} classes to {num_classes}")
    for name in ("weight", "bias"):
        p = getattr(head, name, None)
        if p is not None:
            setattr(head, name, nn.Parameter(p.detach()[:num_classes].clone(), requires_grad=p.requires_grad))
    head.num_classes = num_classes
