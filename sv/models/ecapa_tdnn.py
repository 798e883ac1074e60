"""ECAPA-TDNN (Desplanques et al., "ECAPA-TDNN: Emphasized Channel Attention, Propagation and Aggregation
in TDNN based speaker verification", Interspeech 2020), laid out as WeSpeaker's ECAPA_TDNN_GLOB_c512/c1024
(6.19M / 14.65M parameters with 80-dim fbank and a 192-dim embedding).

The convolutions pad with zeros to keep every frame, so in a padded batch the frames past an utterance's
end are zeroed after every layer: each convolution then sees exactly the zeros it would see at the end of
the utterance on its own, and padding never changes an embedding.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from sv.models.pooling import ASTP, frame_mask
from sv.models.registry import register


def zero_padding(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    return x if lengths is None else x * frame_mask(lengths, x)


class ConvReluBn(nn.Module):
    """Conv1d keeping the frame count, then ReLU and BatchNorm (WeSpeaker's order)."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, dilation=dilation,
                              padding=dilation * (kernel_size - 1) // 2)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return zero_padding(self.bn(F.relu(self.conv(x))), lengths)


class Res2Conv(nn.Module):
    """Res2Net's hierarchical convolution: the channels split into `scale` groups and each group's conv also
    sees the previous group's output, so one block covers several receptive fields. The last group passes
    through unchanged. make_conv(width) builds a group's conv, taking (x, lengths): 1D here, 2D in L-TDNN."""

    def __init__(self, channels: int, scale: int, make_conv: Callable[[int], nn.Module]):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels ({channels}) must be a multiple of the Res2Net scale ({scale})")
        self.width = channels // scale
        self.convs = nn.ModuleList(make_conv(self.width) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        groups = x.split(self.width, dim=1)
        out = []
        y = None
        for conv, group in zip(self.convs, groups):
            y = conv(group if y is None else y + group, lengths)
            out.append(y)
        out.append(groups[-1])
        return torch.cat(out, dim=1)


class SqueezeExcite(nn.Module):
    """Rescales each channel by a gate computed from the utterance's mean frame."""

    def __init__(self, channels: int, bottleneck_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, bottleneck_dim)
        self.fc2 = nn.Linear(bottleneck_dim, channels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        # x is zero past each utterance's end, so summing and dividing by the length averages valid frames.
        frames = x.shape[-1] if lengths is None else lengths.to(x.device)[:, None]
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.sum(-1) / frames))))
        return x * gate.unsqueeze(-1)


class SERes2Block(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int, se_bottleneck_dim: int):
        super().__init__()
        self.conv1 = ConvReluBn(channels, channels)
        self.res2 = Res2Conv(channels, scale, lambda width: ConvReluBn(width, width, kernel_size, dilation))
        self.conv2 = ConvReluBn(channels, channels)
        self.se = SqueezeExcite(channels, se_bottleneck_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        y = self.conv2(self.res2(self.conv1(x, lengths), lengths), lengths)
        return x + self.se(y, lengths)


@register("ecapa_tdnn")
class ECAPATDNN(nn.Module):
    def __init__(self, *, feat_dim: int = 80, channels: int = 512, embed_dim: int = 192):
        super().__init__()
        self.embed_dim = embed_dim
        self.layer1 = ConvReluBn(feat_dim, channels, kernel_size=5)
        self.blocks = nn.ModuleList(
            SERes2Block(channels, kernel_size=3, dilation=d, scale=8, se_bottleneck_dim=128) for d in (2, 3, 4))
        # Multi-layer feature aggregation into 1536 channels whatever the width (the paper's Fig. 2;
        # WeSpeaker's c1024 published figure of 14.65M counts it so).
        self.mfa = nn.Conv1d(3 * channels, 1536, kernel_size=1)
        self.pool = ASTP(1536, bottleneck_dim=128, global_context=True)
        self.bn = nn.BatchNorm1d(self.pool.out_dim)
        self.linear = nn.Linear(self.pool.out_dim, embed_dim)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """feats (B, T, feat_dim); lengths (B,) valid frames of a padded batch -> (B, embed_dim)."""
        x = self.layer1(zero_padding(feats.transpose(1, 2), lengths), lengths)
        outs = []
        for block in self.blocks:
            x = block(x, lengths)
            outs.append(x)
        x = F.relu(self.mfa(torch.cat(outs, dim=1)))
        return self.linear(self.bn(self.pool(x, lengths)))
