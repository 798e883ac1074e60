"""Conformer encoder laid out like NVIDIA NeMo's ConformerEncoder (Conformer-CTC), so that NeMo
checkpoints load into it by parameter name: `pre_encode`, `pos_enc`, `layers.N.{norm_feed_forward1,
feed_forward1, norm_self_att, self_attn, norm_conv, conv, norm_feed_forward2, feed_forward2, norm_out}`.

Striding conv subsampling -> x * sqrt(d_model) -> N blocks of
    x + FFN/2 -> + rel-pos MHSA -> + conv module -> + FFN/2 -> LayerNorm   (Gulati et al., 2020)
with Transformer-XL relative positions (Dai et al., 2019). The encoder returns every block's output.

Padded frames never change valid ones: the subsampling zeroes them before each convolution (as the
convolution's own zero padding would for an utterance alone), attention never attends to them and the
conv module zeroes them before its depthwise convolution. NeMo does the latter two but not the first,
so it agrees with this encoder exactly on unpadded input.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sv.models.registry import register

# NeMo's stt_en_conformer_ctc_{small,medium,large}; all use ff_expansion 4 and conv kernel 31.
PRESETS: dict[str, dict[str, int]] = {
    "small": {"d_model": 176, "num_layers": 16, "num_heads": 4},
    "medium": {"d_model": 256, "num_layers": 18, "num_heads": 4},
    "large": {"d_model": 512, "num_layers": 18, "num_heads": 8},
}


def valid_frames(lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, T) bool, True on the first lengths[b] frames."""
    return torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]


def conv_out_length(length: Any) -> Any:
    """Frames (or bins) left by a kernel-3, stride-2, padding-1 convolution; int or tensor."""
    return (length - 1) // 2 + 1


class ConvSubsampling(nn.Module):
    """NeMo's 'striding' subsampling: log2(factor) Conv2d(k3, s2) + ReLU over (time, freq), then a
    Linear from channels x remaining freq bins to d_model. Factor 4 is NeMo's; factor 2 ("half") keeps
    one conv and twice the frame rate.
    """

    def __init__(self, feat_dim: int, d_model: int, factor: int = 4, channels: int | None = None):
        super().__init__()
        num_convs = int(math.log2(factor))
        if factor < 2 or 2 ** num_convs != factor:
            raise ValueError(f"subsampling_factor must be a power of 2 >= 2, got {factor}")
        self.factor = factor
        channels = channels or d_model
        layers: list[nn.Module] = []
        freq = feat_dim
        for i in range(num_convs):
            layers += [nn.Conv2d(1 if i == 0 else channels, channels, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            freq = conv_out_length(freq)
        self.conv = nn.Sequential(*layers)  # indices 0, 2, ... are the convs, as in NeMo's state dict
        self.out = nn.Linear(channels * freq, d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.unsqueeze(1)  # (B, 1, T, F)
        for conv, act in zip(self.conv[0::2], self.conv[1::2]):
            x = x * valid_frames(lengths, x.shape[2])[:, None, :, None].to(x.dtype)
            x = act(conv(x))
            lengths = conv_out_length(lengths)
        b, c, t, f = x.shape
        # channel-major flattening, as NeMo's `out` layer expects
        return self.out(x.transpose(1, 2).reshape(b, t, c * f)), lengths


def sinusoids(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(len(positions), dim) sin on even, cos on odd channels (Vaswani et al.)."""
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) * -(math.log(10000.0) / dim))
    angles = positions.float()[:, None] * inv_freq[None, :]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)


class RelPositionalEncoding(nn.Module):
    """Scales x by sqrt(d_model) (NeMo's xscaling) and returns the embeddings of relative positions
    T-1, ..., -(T-1)."""

    def __init__(self, d_model: int, dropout: float = 0.1, xscaling: bool = True):
        super().__init__()
        self.xscale = math.sqrt(d_model) if xscaling else 1.0
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = x.shape[1]
        positions = torch.arange(t - 1, -t, -1, device=x.device)
        pos_emb = sinusoids(positions, x.shape[-1]).to(x.dtype).unsqueeze(0)  # (1, 2T-1, D)
        return self.dropout(x * self.xscale), pos_emb


def rel_shift(x: torch.Tensor) -> torch.Tensor:
    """(..., T, 2T-1) scores against positions T-1..-(T-1) -> (..., T, T) with [i, j] at position i - j.

    Transformer-XL's pad-and-reshape trick: one left column of zeros, then viewing the rows with a
    stride of one element less shifts row i left by T-1-i.
    """
    *batch, t, p = x.shape
    x = F.pad(x, (1, 0)).view(*batch, p + 1, t)[..., 1:, :].reshape(*batch, t, p)
    return x[..., :t]


class RelPositionMultiHeadAttention(nn.Module):
    """Multi-head self-attention with relative positions: score = (q + u)·k + (q + v)·W_pos p(i - j)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.1):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.h, self.d_k = num_heads, d_model // num_heads
        self.linear_q = nn.Linear(d_model, d_model)
        self.linear_k = nn.Linear(d_model, d_model)
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        # per-layer ("untied") content and position biases, zero at start as in NeMo
        self.pos_bias_u = nn.Parameter(torch.zeros(num_heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(num_heads, self.d_k))
        self.dropout = dropout

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.h, self.d_k).transpose(1, 2)  # (B, H, T, d_k)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), pos_emb (1, 2T-1, D), valid (B, T) -> (B, T, D)."""
        q = self.linear_q(x).view(x.shape[0], x.shape[1], self.h, self.d_k)
        k, v = self.heads(self.linear_k(x)), self.heads(self.linear_v(x))
        p = self.heads(self.linear_pos(pos_emb))
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        # the position term enters as an additive bias; scaled like the content term
        bias = rel_shift(q_v @ p.transpose(-2, -1)) / math.sqrt(self.d_k)
        bias = bias.masked_fill(~valid[:, None, None, :], float("-inf"))
        out = F.scaled_dot_product_attention(q_u, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
        return self.linear_out(out.transpose(1, 2).reshape(x.shape))


class ConformerFeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.activation = nn.SiLU()
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class ConformerConvolution(nn.Module):
    """Pointwise conv to 2D + GLU -> depthwise conv -> BatchNorm -> Swish -> pointwise conv."""

    def __init__(self, d_model: int, kernel_size: int = 31):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {kernel_size}")
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, kernel_size=1)
        self.depthwise_conv = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=d_model)
        self.batch_norm = nn.BatchNorm1d(d_model)
        self.activation = nn.SiLU()
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, kernel_size=1)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)
        x = x.masked_fill(~valid[:, None, :], 0.0)
        x = self.activation(self.batch_norm(self.depthwise_conv(x)))
        return self.pointwise_conv2(x).transpose(1, 2)


class ConformerLayer(nn.Module):
    def __init__(self, d_model: int, num_heads: int, d_ff: int, conv_kernel: int = 31,
                 dropout: float = 0.1, dropout_att: float = 0.1):
        super().__init__()
        self.norm_feed_forward1 = nn.LayerNorm(d_model)
        self.feed_forward1 = ConformerFeedForward(d_model, d_ff, dropout)
        self.norm_self_att = nn.LayerNorm(d_model)
        self.self_attn = RelPositionMultiHeadAttention(d_model, num_heads, dropout_att)
        self.norm_conv = nn.LayerNorm(d_model)
        self.conv = ConformerConvolution(d_model, conv_kernel)
        self.norm_feed_forward2 = nn.LayerNorm(d_model)
        self.feed_forward2 = ConformerFeedForward(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm_out = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # macaron: two half-step feed-forwards around attention and convolution
        x = x + 0.5 * self.dropout(self.feed_forward1(self.norm_feed_forward1(x)))
        x = x + self.dropout(self.self_attn(self.norm_self_att(x), pos_emb, valid))
        x = x + self.dropout(self.conv(self.norm_conv(x), valid))
        x = x + 0.5 * self.dropout(self.feed_forward2(self.norm_feed_forward2(x)))
        return self.norm_out(x)


def resolve_size(size: str | None, **dims: int | None) -> dict[str, int]:
    """A `size` preset's d_model/num_layers/num_heads, overridden by the dims that are not None."""
    if size is not None and size not in PRESETS:
        raise ValueError(f"unknown conformer size {size!r}; choose from {', '.join(PRESETS)}")
    out = {**PRESETS.get(size, {}), **{k: v for k, v in dims.items() if v is not None}}
    missing = [k for k in ("d_model", "num_layers", "num_heads") if k not in out]
    if missing:
        raise ValueError(f"give a size ({'|'.join(PRESETS)}) or all of d_model, num_layers, num_heads; missing {missing}")
    return out


@register("conformer")
class ConformerEncoder(nn.Module):
    """forward(feats (B, T, feat_dim), lengths (B,) | None) -> ([num_layers x (B, T', d_model)], lengths').

    size: small|medium|large fills d_model/num_layers/num_heads from NeMo's Conformer-CTC; explicit
    values override it. num_layers_to_keep builds only the first N blocks (a truncated encoder).
    subsampling_channels (default d_model), xscaling and dropout_pre_encoder are NeMo's options of those names.
    """

    def __init__(self, size: str | None = None, feat_dim: int = 80, d_model: int | None = None,
                 num_layers: int | None = None, num_heads: int | None = None, ff_expansion: int = 4,
                 conv_kernel: int = 31, subsampling_factor: int = 4, num_layers_to_keep: int | None = None,
                 dropout: float = 0.1, dropout_att: float = 0.1, subsampling_channels: int | None = None,
                 xscaling: bool = True, dropout_pre_encoder: float | None = None):
        super().__init__()
        dims = resolve_size(size, d_model=d_model, num_layers=num_layers, num_heads=num_heads)
        d_model, num_layers = dims["d_model"], dims["num_layers"]
        if num_layers_to_keep is not None and not 1 <= num_layers_to_keep <= num_layers:
            raise ValueError(f"num_layers_to_keep must be in 1..{num_layers}, got {num_layers_to_keep}")
        self.d_model = d_model
        self.pre_encode = ConvSubsampling(feat_dim, d_model, subsampling_factor, subsampling_channels)
        self.pos_enc = RelPositionalEncoding(d_model, dropout if dropout_pre_encoder is None else dropout_pre_encoder,
                                             xscaling)
        self.layers = nn.ModuleList(
            ConformerLayer(d_model, dims["num_heads"], d_model * ff_expansion, conv_kernel, dropout, dropout_att)
            for _ in range(num_layers_to_keep or num_layers)
        )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None,
                num_layers: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """num_layers: run only the first blocks (what a caller reading the lower layers needs)."""
        if lengths is None:
            lengths = torch.full((feats.shape[0],), feats.shape[1], dtype=torch.long, device=feats.device)
        x, lengths = self.pre_encode(feats, lengths.to(feats.device))
        x, pos_emb = self.pos_enc(x)
        valid = valid_frames(lengths, x.shape[1])
        outputs = []
        for layer in self.layers[:num_layers]:
            x = layer(x, pos_emb, valid)
            outputs.append(x)
        return outputs, lengths
