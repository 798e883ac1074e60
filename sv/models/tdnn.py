"""x-vector TDNN (Snyder et al., "X-vectors: robust DNN embeddings for speaker recognition", ICASSP 2018).

Five frame-level TDNN layers, statistics pooling, then two segment-level layers. As in WeSpeaker's XVEC
(4.61M parameters with 80-dim fbank), the embedding is the second segment layer's affine output: the
classifier head that training puts on top is the paper's softmax layer.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from sv.models.pooling import TSTP
from sv.models.registry import register


class TDNNLayer(nn.Module):
    """A dilated Conv1d over a frame context, then ReLU and BatchNorm, in Kaldi's order.

    No padding: each output frame sees its full context, so a layer drops `dilation * (kernel_size - 1)`
    frames, and the frames kept never depend on padding past an utterance's end.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, dilation=dilation)
        # Kaldi's batchnorm-component has no scale and offset: the next affine layer can absorb them.
        self.bn = nn.BatchNorm1d(out_dim, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


@register("xvector")
class XVector(nn.Module):
    def __init__(self, *, feat_dim: int = 80, embed_dim: int = 512):
        super().__init__()
        self.embed_dim = embed_dim
        # Contexts [-2..2], {-2,0,2}, {-3,0,3}, {0}, {0}: 15 input frames per output frame.
        self.frames = nn.Sequential(
            TDNNLayer(feat_dim, 512, kernel_size=5),
            TDNNLayer(512, 512, kernel_size=3, dilation=2),
            TDNNLayer(512, 512, kernel_size=3, dilation=3),
            TDNNLayer(512, 512, kernel_size=1),
            TDNNLayer(512, 1500, kernel_size=1),
        )
        self.pool = TSTP(1500)
        self.segment1 = nn.Linear(self.pool.out_dim, 512)
        self.segment_bn = nn.BatchNorm1d(512, affine=False)
        self.segment2 = nn.Linear(512, embed_dim)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """feats (B, T, feat_dim), T >= 15; lengths (B,) valid frames of a padded batch -> (B, embed_dim)."""
        x = self.frames(feats.transpose(1, 2))
        if lengths is not None:
            lengths = lengths - (feats.shape[1] - x.shape[-1])
        x = self.segment_bn(F.relu(self.segment1(self.pool(x, lengths))))
        return self.segment2(x)
