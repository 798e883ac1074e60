"""MFA-Conformer (Zhang et al., Interspeech 2022), as used on NeMo's ASR Conformers by Cai & Li,
"Leveraging ASR Pretrained Conformers for Speaker Verification" (asr-conformer-transfer-kd-adaptor):

    every block's output -> concat -> LayerNorm -> attentive statistics pooling -> BatchNorm -> Linear

The encoder is kept under `encoder`, so a NeMo Conformer-CTC checkpoint's `encoder.*` keys match.

Transfer learning (Cai & Li, section III-C): `pretrained: DIR` names an ASR model directory written by
`python -m sv.bin.import_nemo`; the encoder takes its architecture and weights (the first num_layers_to_keep
blocks for a truncated one) and the model takes waveforms through the ASR model's own log-mel front end.
Architecture keys given beside it (size, d_model, num_layers, ...) must agree with the checkpoint.
`frontend:` (NeMo preprocessor options) gives a model trained from scratch the same kind of input.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from sv.models.asr_conformer import read_asr_config, read_asr_weights
from sv.models.conformer import PRESETS, ConformerEncoder
from sv.models.nemo_mel import NeMoMelSpectrogram
from sv.models.pooling import ASTP
from sv.models.registry import register

# architecture keys that must agree with a pretrained checkpoint (the rest, dropouts and truncation, may differ)
_ARCH_KEYS = ("feat_dim", "d_model", "num_layers", "num_heads", "ff_expansion", "conv_kernel", "subsampling_factor",
              "subsampling_channels", "xscaling")


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


def pretrained_encoder_config(model_dir: str, given: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's encoder arguments updated with `given`; an architecture key that disagrees with the
    checkpoint is a ValueError naming both shapes."""
    ckpt = read_asr_config(model_dir)["encoder"]
    given = dict(given)
    size = given.pop("size", None)
    if size is not None:
        if size not in PRESETS:
            raise ValueError(f"unknown conformer size {size!r}; choose from {', '.join(PRESETS)}")
        given = {**PRESETS[size], **given}
    clashes = [k for k in _ARCH_KEYS if k in given and given[k] != ckpt.get(k, given[k])]
    if clashes:
        shown = list(dict.fromkeys(["num_layers", "d_model", "num_heads", *clashes]))
        def shape(d: dict[str, Any]) -> str:
            return ", ".join(f"{k}={d.get(k, '-')}" for k in shown)
        raise ValueError(f"the model config's encoder ({shape(given)}) does not match the pretrained checkpoint "
                         f"{model_dir} ({shape(ckpt)})")
    return {**ckpt, **given}


@register("mfa_conformer")
class MFAConformer(nn.Module):
    """forward(feats (B, T, feat_dim) or waves (B, samples), lengths (B,) | None) -> (B, embed_dim).

    embed_dim is 256 as in Cai & Li (the original MFA-Conformer used 192). The other keyword
    arguments go to ConformerEncoder: size (small|medium|large), feat_dim, d_model, num_layers,
    num_heads, ff_expansion, conv_kernel, subsampling_factor, num_layers_to_keep, dropout, dropout_att.
    pretrained: an imported ASR model directory (see the module docstring); from_config: take its architecture
    but not its weights (counting, or weights that a checkpoint will replace). frontend: NeMo preprocessor
    options, for waveform input without a pretrained encoder.
    """

    def __init__(self, embed_dim: int = 256, pool_bottleneck: int = 128, pretrained: str | None = None,
                 from_config: bool = False, frontend: dict[str, Any] | None = None, **encoder_kwargs: Any):
        super().__init__()
        self.embed_dim = embed_dim
        if pretrained:
            if frontend is not None:
                raise ValueError("give model.frontend or model.pretrained (whose front end is used), not both")
            frontend = read_asr_config(pretrained)["preprocessor"]
            encoder_kwargs = pretrained_encoder_config(pretrained, encoder_kwargs)
        self.frontend = NeMoMelSpectrogram(**frontend) if frontend else None
        self.input_kind = "features" if self.frontend is None else "waveform"
        if self.frontend is not None:
            encoder_kwargs["feat_dim"] = self.frontend.n_mels
        self.encoder = ConformerEncoder(**encoder_kwargs)
        self.mfa = MFA(self.encoder.d_model * self.encoder.num_layers, embed_dim, pool_bottleneck)
        if pretrained and not from_config:
            self._load_encoder(pretrained)

    def _load_encoder(self, model_dir: str) -> None:
        own = self.encoder.state_dict()
        weights = {k[len("encoder."):]: v for k, v in read_asr_weights(model_dir).items() if k.startswith("encoder.")}
        self.encoder.load_state_dict({k: v for k, v in weights.items() if k in own})  # strict: all of own

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every block's output and the frame counts."""
        if self.frontend is not None:
            inputs, lengths = self.frontend(inputs, lengths)
        return self.encoder(inputs, lengths)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        layers, lengths = self.encode(inputs, lengths)
        return self.mfa(layers, lengths)

    def forward_outputs(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> dict[str, Any]:
        """The embedding with the blocks' outputs and frame counts it came from (for auxiliary losses)."""
        layers, lengths = self.encode(inputs, lengths)
        return {"embedding": self.mfa(layers, lengths), "layers": layers, "lengths": lengths}
