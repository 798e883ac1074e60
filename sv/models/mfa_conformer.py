"""MFA-Conformer (Zhang et al., Interspeech 2022), as used on NeMo's ASR Conformers by Cai & Li,
"Leveraging ASR Pretrained Conformers for Speaker Verification" (asr-conformer-transfer-kd-adaptor):

    every block's output -> concat -> LayerNorm -> attentive statistics pooling -> BatchNorm -> Linear

The encoder is kept under `encoder`, so a NeMo Conformer-CTC checkpoint's `encoder.*` keys match.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from sv.models.conformer import ConformerEncoder
from sv.models.pooling import ASTP
from sv.models.registry import register


class MFA(nn.Module):
    """Multi-scale feature aggregation back-end: [L x (B, T, D)] + lengths -> (B, embed_dim).

    concat -> LayerNorm (layer_norm) -> attentive statistics pooling -> BatchNorm (batch_norm) -> Linear.
    The defaults are the MFA-Conformer code's (SpeechBrain's AttentiveStatisticsPooling: ECAPA-style ASTP with
    global context and a 128-channel bottleneck); with embed_dim 256 they reproduce Cai & Li's parameter counts.
    The w2v-BERT 2.0 MFA of Li et al. has neither norm and no global context (sv/models/ssl_mfa.py).
    """

    def __init__(self, in_dim: int, embed_dim: int = 256, bottleneck_dim: int = 128, *, layer_norm: bool = True,
                 global_context: bool = True, batch_norm: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim) if layer_norm else nn.Identity()
        self.pooling = ASTP(in_dim, bottleneck_dim, global_context=global_context)
        self.bn = nn.BatchNorm1d(self.pooling.out_dim) if batch_norm else nn.Identity()
        self.fc = nn.Linear(self.pooling.out_dim, embed_dim)

    def forward(self, layers: list[torch.Tensor], lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(torch.cat(layers, dim=-1))
        return self.fc(self.bn(self.pooling(x.transpose(1, 2), lengths)))


@register("mfa_conformer")
class MFAConformer(nn.Module):
    """forward(feats (B, T, feat_dim), lengths (B,) | None) -> (B, embed_dim).

    embed_dim is 256 as in Cai & Li (the original MFA-Conformer used 192). The other keyword
    arguments go to ConformerEncoder: size (small|medium|large), feat_dim, d_model, num_layers,
    num_heads, ff_expansion, conv_kernel, subsampling_factor, num_layers_to_keep, dropout, dropout_att.
    """

    def __init__(self, embed_dim: int = 256, pool_bottleneck: int = 128, **encoder_kwargs: Any):
        super().__init__()
        self.embed_dim = embed_dim
        self.encoder = ConformerEncoder(**encoder_kwargs)
        self.mfa = MFA(self.encoder.d_model * self.encoder.num_layers, embed_dim, pool_bottleneck)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        layers, lengths = self.encoder(feats, lengths)
        return self.mfa(layers, lengths)
