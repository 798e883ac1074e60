"""MHFA and CA-MHFA back-ends over the layer stack of a self-supervised speech encoder.

Peng et al., "CA-MHFA: A Context-Aware Multi-Head Factorized Attentive Pooling for SSL-Based Speaker
Verification" (ICASSP 2025), building on MHFA (Peng et al., SLT 2022). Shapes, with N+1 hidden states of
width F, compression dim D, G heads and a context of L frames:

    hidden_states [N+1 x (B, T, F)] -> keys, values (B, T, D)                  eq. (1): two layer weightings
    keys -> attention logits (B, G, T)                                         eq. (2): G groups of L queries
    softmax over T, pool values per head -> (B, G, D) -> concat (B, G*D)       eq. (3)
    -> Linear -> embedding (B, embed_dim), returned before the L2 norm that scoring and the loss apply.

The G x L learnable queries are a Conv1d over the keys with kernel L (the paper's 2-D conv with kernel
(L, D)). With L = 1 the conv is a Linear(D, G) and CA-MHFA is the original MHFA (paper section II.D).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from sv.models.registry import register


@register("ca_mhfa")
class CAMHFA(nn.Module):
    """forward(hidden_states [num_layers x (B, T, hidden_size)], lengths (B,) | None) -> (B, embed_dim).

    Defaults are the paper's WavLM Base+ set-up: 64 heads, 128-dim compression, 256-dim embedding.
    context 5: in Table I it has the best Vox1-O EER (tied with 17) and is within 0.02 of the best
    Vox1-E/H (context 9, which section III.C picks), at a quarter of the query parameters of 17.
    """

    def __init__(self, num_layers: int, hidden_size: int, embed_dim: int = 256, heads: int = 64,
                 compression_dim: int = 128, context: int = 5):
        super().__init__()
        for name, value in [("num_layers", num_layers), ("hidden_size", hidden_size), ("embed_dim", embed_dim),
                            ("heads", heads), ("compression_dim", compression_dim)]:
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if context < 1 or context % 2 == 0:
            raise ValueError(f"context must be odd and >= 1 (the current frame plus R on each side), got {context}")
        self.num_layers = num_layers
        self.context = context
        self.embed_dim = embed_dim
        # Uniform start: every layer contributes equally to keys and values, as in the reference code.
        self.layer_weights_k = nn.Parameter(torch.ones(num_layers))
        self.layer_weights_v = nn.Parameter(torch.ones(num_layers))
        self.compress_k = nn.Linear(hidden_size, compression_dim)
        self.compress_v = nn.Linear(hidden_size, compression_dim)
        # The bias is a per-head constant that the softmax over time cancels; it is kept so that context 1
        # is exactly MHFA's Linear(D, heads), parameter count and state_dict included.
        self.queries = nn.Conv1d(compression_dim, heads, kernel_size=context, padding=context // 2)
        self.out = nn.Linear(heads * compression_dim, embed_dim)

    def forward(self, hidden_states: list[torch.Tensor], lengths: torch.Tensor | None = None) -> torch.Tensor:
        if len(hidden_states) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} hidden states, got {len(hidden_states)}")
        x = torch.stack(hidden_states, dim=-1)                                      # (B, T, F, N+1)
        layer_weights = torch.stack([self.layer_weights_k, self.layer_weights_v], dim=-1).float().softmax(0)
        kv = x @ layer_weights.to(x.dtype)                                          # (B, T, F, 2)
        k, v = self.compress_k(kv[..., 0]), self.compress_v(kv[..., 1])             # (B, T, D)

        b, t = k.shape[:2]
        if lengths is None:
            valid = torch.ones(b, t, dtype=torch.bool, device=k.device)
        else:
            valid = torch.arange(t, device=k.device)[None, :] < lengths.to(k.device)[:, None]
        # Zero keys past the end, so the last valid frames see the same zeros as the conv's own padding
        # does for an utterance alone; the compression bias would otherwise make them non-zero.
        k = k * valid.unsqueeze(-1).to(k.dtype)
        # 1/L as in eq. (2): the logits keep their scale whatever the context length.
        logits = self.queries(k.transpose(1, 2)).float() / self.context             # (B, G, T)
        attn = logits.masked_fill(~valid.unsqueeze(1), float("-inf")).softmax(dim=-1)
        pooled = torch.einsum("bgt,btd->bgd", attn.to(v.dtype), v)                  # (B, G, D)
        return self.out(pooled.flatten(1))


@register("mhfa")
class MHFA(CAMHFA):
    """Multi-head factorized attentive pooling: CA-MHFA with a context of one frame."""

    def __init__(self, num_layers: int, hidden_size: int, embed_dim: int = 256, heads: int = 64,
                 compression_dim: int = 128):
        super().__init__(num_layers, hidden_size, embed_dim, heads, compression_dim, context=1)
