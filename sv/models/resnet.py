"""ResNet34 for speaker embeddings, laid out as WeSpeaker's ResNet34-TSTP-emb256 (6.63M parameters with
80-dim fbank): the features are a one-channel image (B, 1, F, T); basic blocks [3, 4, 6, 3] of widths
32, 64, 128, 256, the last three stages halving frequency and time; statistics pooling over time of the
(channels x frequency) map; one linear layer to the embedding.

The convolutions pad with zeros, so in a padded batch the frames past an utterance's end are zeroed after
every layer, with the valid length halved (rounding up) at each stride: each convolution then sees exactly
the zeros it would see at the end of the utterance on its own, and padding never changes an embedding.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from sv.models.pooling import TSTP, frame_mask
from sv.models.registry import register


def zero_padding(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """x (B, C, F, T): zero the frames t >= lengths."""
    return x if lengths is None else x * frame_mask(lengths, x).unsqueeze(1)


def strided_length(n: torch.Tensor | int, stride: int) -> torch.Tensor | int:
    """Output length of a kernel 3, padding 1 convolution: ceil(n / stride)."""
    return (n - 1) // stride + 1


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if lengths is not None:
            lengths = strided_length(lengths, self.stride)
        y = zero_padding(F.relu(self.bn1(self.conv1(x))), lengths)
        y = F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))
        return zero_padding(y, lengths), lengths


@register("resnet34")
class ResNet34(nn.Module):
    def __init__(self, *, feat_dim: int = 80, embed_dim: int = 256):
        super().__init__()
        self.embed_dim = embed_dim
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        blocks: list[nn.Module] = []
        in_channels, freq = 32, feat_dim
        for channels, depth, stride in ((32, 3, 1), (64, 4, 2), (128, 6, 2), (256, 3, 2)):
            for i in range(depth):
                blocks.append(BasicBlock(in_channels, channels, stride if i == 0 else 1))
                in_channels = channels
            freq = strided_length(freq, stride)
        self.blocks = nn.ModuleList(blocks)
        self.pool = TSTP(in_channels * freq)
        self.linear = nn.Linear(self.pool.out_dim, embed_dim)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """feats (B, T, feat_dim); lengths (B,) valid frames of a padded batch -> (B, embed_dim)."""
        x = zero_padding(feats.transpose(1, 2).unsqueeze(1), lengths)
        x = zero_padding(F.relu(self.bn1(self.conv1(x))), lengths)
        for block in self.blocks:
            x, lengths = block(x, lengths)
        return self.linear(self.pool(x.flatten(1, 2), lengths))
