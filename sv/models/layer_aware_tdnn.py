"""L-TDNN: Kim et al., "Layer-aware TDNN: Speaker Recognition Using Multi-Layer Features from Pre-Trained
Models". A back-end over every hidden state of a (frozen) SSL encoder, treating the stack as a 2D map:

    hidden_states [L x (B, T, D)] -> (B, D, L, T)
    layer/frame network (Sec. III-A): ECAPA-TDNN with 2D convolutions, C0 = 256  -> (B, 3*C0, L, T)
    frame-adaptive layer aggregation (Sec. III-B, eq. 1-3): H = 8 heads, r = L/2  -> (B, C1 = 512, T)
    attentive statistics pooling (Sec. III-C), Linear, BatchNorm                 -> (B, C_E = 192)

The paper gives C0, C1, C_E, H and r; where it is silent (the kernel, dilation and scale values of its
Fig. 2 are not in the text) the choices are ECAPA-TDNN's, noted where made. Convolutions run along frames
as in ECAPA-TDNN and also across `layer_kernel` neighbouring layers, undilated: an encoder has only 13 or
25 layers.

Padding: frames past an utterance's end are zeroed before every convolution (as in ecapa_tdnn), the SE
squeezes and the attentive pooling see valid frames only, and the layer aggregation works frame by frame,
so padding never changes an embedding (BatchNorm in eval mode).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from sv.models.ecapa_tdnn import Res2Conv
from sv.models.pooling import ASTP, frame_mask
from sv.models.registry import register


def zero_padding_2d(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """x (B, C, L, T) with the frames t >= lengths[b] zeroed."""
    return x if lengths is None else x * frame_mask(lengths, x).unsqueeze(1)


class Conv2dReluBn(nn.Module):
    """Conv2d over (layers, frames) keeping both sizes, dilated along frames only; then ReLU and BatchNorm."""

    def __init__(self, in_dim: int, out_dim: int, layer_kernel: int = 1, frame_kernel: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, (layer_kernel, frame_kernel), dilation=(1, dilation),
                              padding=((layer_kernel - 1) // 2, dilation * (frame_kernel - 1) // 2))
        self.bn = nn.BatchNorm2d(out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return self.bn(F.relu(self.conv(zero_padding_2d(x, lengths))))


class SqueezeExcite2d(nn.Module):
    """Rescales each channel by a gate computed from its mean over layers and valid frames."""

    def __init__(self, channels: int, bottleneck_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, bottleneck_dim)
        self.fc2 = nn.Linear(bottleneck_dim, channels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        x = zero_padding_2d(x, lengths)
        frames = x.shape[-1] if lengths is None else lengths.to(x.device)[:, None]
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.sum((-2, -1)) / (frames * x.shape[-2])))))
        return x * gate[:, :, None, None]


class SERes2Block2d(nn.Module):
    def __init__(self, channels: int, layer_kernel: int, frame_kernel: int, dilation: int, scale: int,
                 se_bottleneck_dim: int):
        super().__init__()
        self.conv1 = Conv2dReluBn(channels, channels)
        self.res2 = Res2Conv(channels, scale,
                             lambda width: Conv2dReluBn(width, width, layer_kernel, frame_kernel, dilation))
        self.conv2 = Conv2dReluBn(channels, channels)
        self.se = SqueezeExcite2d(channels, se_bottleneck_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        y = self.conv2(self.res2(self.conv1(x, lengths), lengths), lengths)
        return x + self.se(y, lengths)


class FrameAdaptiveLayerAggregation(nn.Module):
    """(B, in_dim, L, T) -> (B, out_dim, T): per frame and head, layers weighted by an SE gate, then max-pooled.

    Eq. (1) W_in projects the channels into `heads` heads of in_dim / heads; eq. (2) each head's max and
    mean over its channels, (L, T), go through its own W_sq (r x L) and W_ex (L x r), shared by the two
    statistics, and a sigmoid of their sum weighs the layers; eq. (3) the weighted map is max-pooled over
    layers; W_out projects the concatenated heads to out_dim.
    """

    def __init__(self, num_layers: int, in_dim: int, out_dim: int, heads: int):
        super().__init__()
        if in_dim % heads:
            raise ValueError(f"channels ({in_dim}) must be a multiple of the heads ({heads})")
        self.heads = heads
        bottleneck = max(1, num_layers // 2)
        self.w_in = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        # grouped 1x1 convolutions: one (W_sq, W_ex) pair per head, applied to every frame
        self.w_sq = nn.Conv1d(heads * num_layers, heads * bottleneck, kernel_size=1, groups=heads)
        self.w_ex = nn.Conv1d(heads * bottleneck, heads * num_layers, kernel_size=1, groups=heads)
        self.w_out = nn.Conv1d(in_dim, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, num_layers, t = x.shape
        x = self.w_in(x).reshape(b, self.heads, -1, num_layers, t)

        def excite(z: torch.Tensor) -> torch.Tensor:  # z (B, H, L, T)
            return self.w_ex(F.relu(self.w_sq(z.reshape(b, -1, t))))

        weights = torch.sigmoid(excite(x.amax(2)) + excite(x.mean(2))).reshape(b, self.heads, 1, num_layers, t)
        return self.w_out((weights * x).amax(3).reshape(b, -1, t))


@register("ltdnn")
class LayerAwareTDNN(nn.Module):
    """hidden_states [num_layers x (B, T, hidden_size)], lengths (B,) | None -> (B, embed_dim)."""

    def __init__(self, *, num_layers: int, hidden_size: int, embed_dim: int = 192, channels: int = 256,
                 agg_dim: int = 512, heads: int = 8, layer_kernel: int = 3, scale: int = 8,
                 se_bottleneck_dim: int = 128, attention_dim: int = 128):
        super().__init__()
        self.num_layers = num_layers
        self.embed_dim = embed_dim
        # ECAPA-TDNN's frame kernels and dilations: 5 in the first layer, 3 dilated by 2, 3, 4 in the blocks
        self.layer1 = Conv2dReluBn(hidden_size, channels, layer_kernel, frame_kernel=5)
        self.blocks = nn.ModuleList(SERes2Block2d(channels, layer_kernel, 3, d, scale, se_bottleneck_dim)
                                    for d in (2, 3, 4))
        # ECAPA-TDNN's multi-layer feature aggregation; the paper's X has 3 * C0 channels
        self.mfa = nn.Conv2d(3 * channels, 3 * channels, kernel_size=1)
        self.aggregate = FrameAdaptiveLayerAggregation(num_layers, 3 * channels, agg_dim, heads)
        self.pool = ASTP(agg_dim, bottleneck_dim=attention_dim, global_context=True)
        # Sec. III-C: the linear layer, then batch normalisation
        self.linear = nn.Linear(self.pool.out_dim, embed_dim)
        self.bn = nn.BatchNorm1d(embed_dim)

    def forward(self, hidden_states: list[torch.Tensor], lengths: torch.Tensor | None = None) -> torch.Tensor:
        if len(hidden_states) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} hidden states, got {len(hidden_states)}")
        x = torch.stack(hidden_states, dim=1).permute(0, 3, 1, 2)  # (B, D, L, T)
        x = self.layer1(x, lengths)
        # the paper's dense connections: as in ECAPA-TDNN, each block reads the sum of all earlier outputs
        outs = [x]
        for block in self.blocks:
            outs.append(block(sum(outs), lengths))
        x = F.relu(self.mfa(torch.cat(outs[1:], dim=1)))
        return self.bn(self.linear(self.pool(self.aggregate(x), lengths)))
