"""An ASR Conformer-CTC imported from NeMo (`python -m sv.bin.import_nemo`), as sv runs it:

    waves -> NeMo log-mel front end -> ConformerEncoder (every block's output) -> CTC decoder -> log-probs

The decoder is NeMo's ConvASRDecoder, a 1x1 convolution to the vocabulary plus the CTC blank (last index),
kept here as the equivalent Linear. A model directory holds

    config.yaml        preprocessor: NeMo's preprocessor options; encoder: ConformerEncoder's arguments;
                       vocabulary: the output tokens (blank excluded), or their number in an
                       architecture-only directory; source: where it came from
    model.safetensors  encoder.* and decoder.{weight,bias} in sv's names

and `load_asr_model(dir)` builds it; speaker models that start from one (the MFA-Conformer's `pretrained`,
the speaker adaptor, the distillation teacher) read it through this module.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from sv.models.conformer import ConformerEncoder
from sv.models.nemo_mel import NeMoMelSpectrogram

CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"


class ASRConformerCTC(nn.Module):
    input_kind = "waveform"

    def __init__(self, preprocessor: dict[str, Any], encoder: dict[str, Any], vocabulary: list[str] | int):
        super().__init__()
        self.frontend = NeMoMelSpectrogram(**preprocessor)
        if encoder.get("feat_dim", self.frontend.n_mels) != self.frontend.n_mels:
            raise ValueError(f"encoder.feat_dim {encoder['feat_dim']} differs from the preprocessor's "
                             f"{self.frontend.n_mels} mel bins")
        self.encoder = ConformerEncoder(**{**encoder, "feat_dim": self.frontend.n_mels})
        # an architecture-only config (conf/asr_arch) may give just the vocabulary's size
        self.vocabulary = [f"<{i}>" for i in range(vocabulary)] if isinstance(vocabulary, int) else list(vocabulary)
        self.decoder = nn.Linear(self.encoder.d_model, len(self.vocabulary) + 1)

    def encode(self, waves: torch.Tensor, lengths: torch.Tensor | None = None,
               num_layers: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every block's output (the first num_layers only, when given) and the frame counts."""
        feats, frames = self.frontend(waves, lengths)
        return self.encoder(feats, frames, num_layers)

    def ctc_log_probs(self, last_layer: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.decoder(last_layer).float(), dim=-1)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T', vocabulary + 1) CTC log-probs, blank last, and their frame counts."""
        layers, frames = self.encode(waves, lengths)
        return self.ctc_log_probs(layers[-1]), frames


def read_asr_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(model_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: not an imported ASR model directory (no {CONFIG}; "
                                f"make one with python -m sv.bin.import_nemo MODEL.nemo {model_dir})")
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    missing = [k for k in ("preprocessor", "encoder", "vocabulary") if k not in (cfg or {})]
    if missing:
        raise ValueError(f"{path}: lacks {', '.join(missing)}")
    return cfg


def read_asr_weights(model_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    path = Path(model_dir) / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no weights (a directory with only {CONFIG} serves from_config: true)")
    return load_file(str(path))


def load_asr_model(model_dir: str | os.PathLike, weights: bool = True) -> ASRConformerCTC:
    """The imported model in eval mode; weights=False builds it from config.yaml alone (random weights)."""
    cfg = read_asr_config(model_dir)
    model = ASRConformerCTC(cfg["preprocessor"], cfg["encoder"], cfg["vocabulary"])
    if weights:
        model.load_state_dict(read_asr_weights(model_dir))
    return model.eval()
