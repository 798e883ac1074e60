"""MFA back-ends over the layer outputs of a pre-trained encoder (w2v-bert2-lora-adapter-mfa-pruning.txt).

forward([N x (B, T, D)], lengths (B,) | None) -> (B, embed_dim), N = the encoder's layers + 1.

  mfa:          concat(h_0..h_L) -> ASP -> Linear                                    (the paper's eq. 3)
  adapter_mfa:  concat(adapter_i(h_i)) -> ASP -> Linear, adapter = Linear(D, d') -> LayerNorm -> ReLU
                -> Linear(d', d'), one per layer                                      (its section 2.4)

ASP is attentive statistics pooling without global context, its hidden size that of the layers being pooled
(D for mfa, d' = 128 for adapter_mfa), as the paper's section 3.2 says. On w2v-BERT 2.0 (25 x 1024) with
embed_dim 256 this gives its Table 3 sizes: 65.6M for mfa and 6.16M for adapter_mfa.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from sv.models.mfa_conformer import MFA
from sv.models.registry import register


class LayerAdapter(nn.Sequential):
    def __init__(self, in_dim: int, adapter_dim: int):
        super().__init__(nn.Linear(in_dim, adapter_dim), nn.LayerNorm(adapter_dim), nn.ReLU(),
                         nn.Linear(adapter_dim, adapter_dim))


@register("mfa")
class LayerMFA(nn.Module):
    """adapter_dim: None for plain MFA, else the width d' of a Layer Adapter on each layer.
    layer_norm: a LayerNorm on the concatenation (the MFA-Conformer's; off in the w2v-BERT 2.0 paper)."""

    def __init__(self, *, num_layers: int, hidden_size: int, embed_dim: int = 256, adapter_dim: int | None = None,
                 layer_norm: bool = False):
        super().__init__()
        if adapter_dim is not None and adapter_dim < 1:
            raise ValueError(f"adapter_dim must be >= 1 or null, got {adapter_dim}")
        self.adapters = (nn.ModuleList(LayerAdapter(hidden_size, adapter_dim) for _ in range(num_layers))
                         if adapter_dim else None)
        layer_dim = adapter_dim or hidden_size
        self.embed_dim = embed_dim
        self.num_layers = num_layers
        self.mfa = MFA(layer_dim * num_layers, embed_dim, bottleneck_dim=layer_dim, layer_norm=layer_norm,
                       global_context=False, batch_norm=False)

    def forward(self, hidden_states: list[torch.Tensor], lengths: torch.Tensor | None = None) -> torch.Tensor:
        if len(hidden_states) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} hidden states, got {len(hidden_states)}")
        if self.adapters is not None:
            hidden_states = [adapt(h) for adapt, h in zip(self.adapters, hidden_states)]
        return self.mfa(hidden_states, lengths)


@register("adapter_mfa")
class AdapterMFA(LayerMFA):
    def __init__(self, *, num_layers: int, hidden_size: int, embed_dim: int = 256, adapter_dim: int = 128,
                 layer_norm: bool = False):
        super().__init__(num_layers=num_layers, hidden_size=hidden_size, embed_dim=embed_dim,
                         adapter_dim=adapter_dim, layer_norm=layer_norm)
