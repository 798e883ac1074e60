"""The speaker adaptor of Cai & Li (asr-conformer-transfer-kd-adaptor, section III-E, Fig. 4): a frozen ASR
Conformer-CTC keeps its transcription output, and a light module on its first L layers yields speaker
embeddings.

    h_1..h_L (frozen ASR blocks) --layer adaptors A_i (v2, v3)--> A_i(h_i)           } concat -> LayerNorm
    K light Conformer layers fed by h_L (v1, v2) or Linear(concat h_1..h_L) (v3) -> h~_1..h~_K } -> ASTP -> BN -> FC

    v1: no layer adaptors (h_i as they are); v2: layer adaptors, light layers fed by h_L;
    v3: layer adaptors, light layers fed by a linear reduction of the concatenated h_1..h_L.

A layer adaptor is Linear(d, 128) -> LayerNorm -> ReLU -> Linear(128, 128). The light layers are NeMo Small's
Conformer layer (176 dims, 4 heads, 704 hidden units, kernel 31), entered through a Linear when their input
is wider. These choices reproduce the paper's trainable counts (Tables IV-VI, see README).

forward(waves, lengths) -> (B, embed_dim). forward_outputs(...) also returns the ASR model's CTC log-probs,
computed by the untouched ASR model, so they are those of the imported model bit for bit. The ASR part never
leaves eval mode and never trains; while training, only its first L blocks run.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from sv.models.asr_conformer import load_asr_model, read_asr_config
from sv.models.conformer import ConformerLayer, RelPositionalEncoding, valid_frames
from sv.models.mfa_conformer import MFA
from sv.models.registry import register

VERSIONS = ("v1", "v2", "v3")
LIGHT_DEFAULTS = {"d_model": 176, "num_heads": 4, "ff_expansion": 4, "conv_kernel": 31, "dropout": 0.1,
                  "dropout_att": 0.1}


class LayerAdaptor(nn.Module):
    def __init__(self, in_dim: int, dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, dim), nn.LayerNorm(dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LightConformer(nn.Module):
    """K trainable Conformer layers over (B, T, in_dim) -> [K x (B, T, d_model)]."""

    def __init__(self, in_dim: int, num_layers: int, d_model: int, num_heads: int, ff_expansion: int,
                 conv_kernel: int, dropout: float, dropout_att: float):
        super().__init__()
        self.proj = nn.Linear(in_dim, d_model) if in_dim != d_model else nn.Identity()
        self.pos_enc = RelPositionalEncoding(d_model, dropout, xscaling=False)
        self.layers = nn.ModuleList(ConformerLayer(d_model, num_heads, d_model * ff_expansion, conv_kernel, dropout,
                                                   dropout_att) for _ in range(num_layers))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        x, pos_emb = self.pos_enc(self.proj(x))
        valid = valid_frames(lengths, x.shape[1])
        outputs = []
        for layer in self.layers:
            x = layer(x, pos_emb, valid)
            outputs.append(x)
        return outputs


@register("asr_adaptor")
class ASRSpeakerAdaptor(nn.Module):
    """asr: imported ASR model directory (sv.bin.import_nemo); version v1|v2|v3; num_layers: L; num_light_layers:
    K; adaptor_dim: the layer adaptors' width; light: the light Conformer layers' d_model, num_heads,
    ff_expansion, conv_kernel, dropout, dropout_att; from_config: random ASR weights (counting only)."""

    input_kind = "waveform"

    def __init__(self, asr: str, version: str = "v3", num_layers: int = 10, num_light_layers: int = 2,
                 adaptor_dim: int = 128, light: dict[str, Any] | None = None, embed_dim: int = 256,
                 pool_bottleneck: int = 128, from_config: bool = False):
        super().__init__()
        if version not in VERSIONS:
            raise ValueError(f"model.version must be one of {', '.join(VERSIONS)}, got {version!r}")
        asr_layers = read_asr_config(asr)["encoder"]["num_layers"]
        if not 1 <= num_layers <= asr_layers:
            raise ValueError(f"model.num_layers (L) must be in 1..{asr_layers} (the layers of {asr}), got {num_layers}")
        if num_light_layers < 0:
            raise ValueError(f"model.num_light_layers (K) must be >= 0, got {num_light_layers}")
        unknown = set(light or {}) - set(LIGHT_DEFAULTS)
        if unknown:
            raise ValueError(f"model.light: unknown keys {sorted(unknown)} ({', '.join(LIGHT_DEFAULTS)})")
        self.asr = load_asr_model(asr, weights=not from_config).requires_grad_(False)
        self.version, self.num_layers, self.embed_dim = version, num_layers, embed_dim
        d = self.asr.encoder.d_model
        self.adaptors = None
        if version != "v1":
            self.adaptors = nn.ModuleList(LayerAdaptor(d, adaptor_dim) for _ in range(num_layers))
        light_cfg = {**LIGHT_DEFAULTS, **(light or {})}
        self.light = None
        if num_light_layers:
            self.light = LightConformer(d * num_layers if version == "v3" else d, num_light_layers, **light_cfg)
        tapped = adaptor_dim if self.adaptors is not None else d
        self.mfa = MFA(tapped * num_layers + light_cfg["d_model"] * num_light_layers, embed_dim, pool_bottleneck)

    def train(self, mode: bool = True) -> "ASRSpeakerAdaptor":
        super().train(mode)
        self.asr.eval()  # frozen: no dropout, and its batch-norm statistics stay the imported ones
        return self

    def _embed(self, layers: list[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        tapped = layers[:self.num_layers]
        frames = [a(h) for a, h in zip(self.adaptors, tapped)] if self.adaptors is not None else list(tapped)
        if self.light is not None:
            light_in = torch.cat(tapped, dim=-1) if self.version == "v3" else tapped[-1]
            frames += self.light(light_in, lengths)
        return self.mfa(frames, lengths)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            layers, lengths = self.asr.encode(waves, lengths, num_layers=self.num_layers)
        return self._embed(layers, lengths)

    def forward_outputs(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The speaker embedding and the ASR model's CTC log-probs (B, T', vocabulary + 1), from one encoder pass."""
        with torch.no_grad():
            layers, lengths = self.asr.encode(waves, lengths)
            log_probs = self.asr.ctc_log_probs(layers[-1])
        return {"embedding": self._embed(layers, lengths), "ctc_log_probs": log_probs, "lengths": lengths}
