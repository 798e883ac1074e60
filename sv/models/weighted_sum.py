"""SUPERB-style back-end: a softmax-weighted sum of the encoder's layer outputs replaces fbank as the input of a
speaker network (x-vector or ECAPA-TDNN), as in Chen et al.'s WavLM and SUPERB's speaker verification task.

forward([N x (B, T, D)], lengths (B,) | None) -> (B, embed_dim), N = the encoder's layers + 1.

    backend:
      name: weighted_sum
      downstream: {name: ecapa_tdnn, channels: 512}   # any registered fbank model; feat_dim is set to D
      embed_dim: 256
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sv.models.registry import build_model, register


@register("weighted_sum")
class WeightedSum(nn.Module):
    """layer_norm: normalise each layer before the sum (s3prl's Featurizer `normalize`), so that layers with
    large activations do not dominate whatever their weight."""

    def __init__(self, *, num_layers: int, hidden_size: int, downstream: dict[str, Any], embed_dim: int = 256,
                 layer_norm: bool = False):
        super().__init__()
        if not isinstance(downstream, dict) or "name" not in downstream:
            raise ValueError(f"downstream must be a model section with a name, got {downstream!r}")
        self.layer_weights = nn.Parameter(torch.zeros(num_layers))  # uniform at start, as SUPERB
        self.layer_norm = layer_norm
        self.embed_dim = embed_dim
        self.downstream = build_model({**downstream, "feat_dim": hidden_size, "embed_dim": embed_dim})

    def forward(self, hidden_states: list[torch.Tensor], lengths: torch.Tensor | None = None) -> torch.Tensor:
        if len(hidden_states) != len(self.layer_weights):
            raise ValueError(f"expected {len(self.layer_weights)} hidden states, got {len(hidden_states)}")
        stacked = torch.stack(hidden_states)  # (N, B, T, D)
        if self.layer_norm:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
        weights = torch.softmax(self.layer_weights.float(), dim=0).to(stacked.dtype)
        return self.downstream((weights[:, None, None, None] * stacked).sum(0), lengths)
