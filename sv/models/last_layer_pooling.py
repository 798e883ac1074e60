"""The fine-tuning baselines of Kim et al., "Layer-aware TDNN: Speaker Recognition Using Multi-Layer
Features from Pre-Trained Models" (Section IV-C): the embedding is pooled from the encoder's last hidden
state alone, without parameters.

- `last_layer_mean`: the mean of the last hidden state over valid frames (Fan et al., Interspeech 2021).
- `cls_token`: the last hidden state at frame 0, where an `SSLEncoder(cls_token=True)` put its [CLS]
  token (Vaessen & van Leeuwen, ICASSP 2022).

forward(hidden_states [num_layers x (B, T, D)], lengths (B,) | None) -> (B, embed_dim). The paper's
embedding is the D-dim pooled vector itself (embed_dim None); an embed_dim adds a Linear(D, embed_dim).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from sv.models.pooling import frame_mask
from sv.models.registry import register


class _LastLayerPooling(nn.Module):
    def __init__(self, *, num_layers: int, hidden_size: int, embed_dim: int | None = None):
        super().__init__()
        self.num_layers = num_layers
        self.embed_dim = hidden_size if embed_dim is None else embed_dim
        self.projection = nn.Identity() if embed_dim is None else nn.Linear(hidden_size, embed_dim)

    def pool(self, last: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, hidden_states: list[torch.Tensor], lengths: torch.Tensor | None = None) -> torch.Tensor:
        if len(hidden_states) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} hidden states, got {len(hidden_states)}")
        return self.projection(self.pool(hidden_states[-1], lengths))


@register("last_layer_mean")
class LastLayerMean(_LastLayerPooling):
    """Temporal mean of the last hidden state, (B, T, D) -> (B, D)."""

    def pool(self, last: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        # in fp32: a bf16 sum over hundreds of frames loses the mean's low bits
        mask = frame_mask(lengths, last.transpose(1, 2)).transpose(1, 2).float()  # (B, T, 1)
        return (last.float() * mask).sum(1) / mask.sum(1)


@register("cls_token")
class ClsToken(_LastLayerPooling):
    """The last hidden state's frame 0, the [CLS] token's output; needs an SSLEncoder with cls_token=True.

    The token is valid in every utterance, so lengths are not needed.
    """

    def pool(self, last: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return last[:, 0]
