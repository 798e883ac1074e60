"""Temporal pooling of frame-level features (B, D, T) into one vector per utterance.

`lengths` (B,) counts the valid frames of padded batches; padded frames never reach the statistics,
so an utterance pools to the same vector whether or not it was batched with longer ones.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def frame_mask(lengths: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, T) float mask of valid frames; all ones when lengths is None."""
    if lengths is None:
        return x.new_ones(x.shape[0], 1, x.shape[-1])
    t = torch.arange(x.shape[-1], device=x.device)
    return (t[None, :] < lengths.to(x.device)[:, None]).unsqueeze(1).to(x.dtype)


def masked_mean_std(x: torch.Tensor, weights: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and std over time; weights (B, 1|D, T) sum to 1 over T.

    Computed in fp32: E[x^2] - mean^2 cancels badly in bf16 on trained networks' activations.
    """
    x, weights = x.float(), weights.float()
    mean = (x * weights).sum(-1)
    var = (x.pow(2) * weights).sum(-1) - mean.pow(2)
    return mean, var.clamp(min=eps).sqrt()


class TSTP(nn.Module):
    """Temporal statistics pooling: mean and std over frames (x-vector, ResNet)."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = 2 * in_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        mask = frame_mask(lengths, x)
        mean, std = masked_mean_std(x, mask / mask.sum(-1, keepdim=True))
        return torch.cat([mean, std], dim=1)


class ASTP(nn.Module):
    """Attentive statistics pooling with per-channel attention (ECAPA-TDNN).

    With global_context, each frame's attention also sees the utterance's mean and std.
    """

    def __init__(self, in_dim: int, bottleneck_dim: int = 128, global_context: bool = True):
        super().__init__()
        self.global_context = global_context
        self.attention = nn.Sequential(
            nn.Conv1d(in_dim * 3 if global_context else in_dim, bottleneck_dim, kernel_size=1),
            nn.Tanh(),
            nn.Conv1d(bottleneck_dim, in_dim, kernel_size=1),
        )
        self.out_dim = 2 * in_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        mask = frame_mask(lengths, x)
        if self.global_context:
            mean, std = masked_mean_std(x, mask / mask.sum(-1, keepdim=True))
            t = x.shape[-1]
            att_in = torch.cat([x, mean.unsqueeze(-1).expand(-1, -1, t), std.unsqueeze(-1).expand(-1, -1, t)], 1)
        else:
            att_in = x
        scores = self.attention(att_in).masked_fill(mask == 0, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        mean, std = masked_mean_std(x, weights)
        return torch.cat([mean, std], dim=1)


POOLINGS = {"tstp": TSTP, "astp": ASTP}


def build_pooling(name: str, in_dim: int, **kwargs) -> nn.Module:
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; choose from {', '.join(POOLINGS)}")
    return POOLINGS[name](in_dim, **kwargs)
