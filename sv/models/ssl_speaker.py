"""A speaker embedding network on a pre-trained speech encoder: SSLEncoder -> back-end over its layer outputs.

forward(waves (B, samples) 16 kHz, lengths (B,) | None) -> (B, embed_dim). The data pipeline feeds it
waveforms (`data.mode: waveform`), and extraction reads wav.scp.

    model:
      name: ssl_speaker
      encoder: {pretrained: facebook/w2v-bert-2.0}        # SSLEncoder's arguments
      backend: {name: adapter_mfa, adapter_dim: 128}      # any layer back-end: mfa, adapter_mfa, weighted_sum,
                                                          # mhfa, ca_mhfa, ltdnn, last_layer_mean, cls_token
      lora: {r: 64, alpha: 128, dropout: 0.0}             # optional; target_modules: default query and value
      freeze_encoder: true                                # only LoRA and the back-end train

A back-end is a registered model built with num_layers (the hidden states: encoder layers + 1) and
hidden_size from the encoder, and the rest of its section. The training stages of the papers map to configs:
frozen encoder (freeze_encoder, with or without LoRA), joint fine-tuning (freeze_encoder false, optim.grad_mult
on `^model\\.encoder\\.`; LoRA merged first by sv.bin.merge_lora), large-margin fine-tuning (the same, init from the
previous stage).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from sv.models.lora import add_lora
from sv.models.registry import build_model, register
from sv.models.ssl_encoder import SSLEncoder


@register("ssl_speaker")
class SSLSpeaker(nn.Module):
    input_kind = "waveform"  # what extraction and model_info feed it; fbank models take features

    def __init__(self, encoder: dict[str, Any], backend: dict[str, Any], lora: dict[str, Any] | None = None,
                 freeze_encoder: bool = False):
        super().__init__()
        for section, value in (("encoder", encoder), ("backend", backend)):
            if not isinstance(value, dict):
                raise ValueError(f"model.{section} must be a mapping, got {value!r}")
        if "name" not in backend:
            raise ValueError("model.backend needs a name (mfa, adapter_mfa, weighted_sum, mhfa, ca_mhfa, ltdnn, ...)")
        if backend["name"] == "cls_token":  # it reads the token that the encoder inserts
            encoder = {**encoder, "cls_token": True}
        self.encoder = SSLEncoder(**encoder)
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        if lora:
            unknown = set(lora) - {"r", "alpha", "dropout", "target_modules"}
            if unknown:
                raise ValueError(f"model.lora: unknown keys {sorted(unknown)} (r, alpha, dropout, target_modules)")
            add_lora(self.encoder.model, **lora)
        self.backend = build_model({**backend, "num_layers": self.encoder.num_layers + 1,
                                    "hidden_size": self.encoder.hidden_size})
        self.embed_dim = self.backend.embed_dim

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states, lengths = self.encoder(waves, lengths)
        return self.backend(hidden_states, lengths)

    def forward_outputs(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> dict[str, Any]:
        """The embedding with the hidden states and frame counts it came from (for auxiliary losses)."""
        hidden_states, lengths = self.encoder(waves, lengths)
        return {"embedding": self.backend(hidden_states, lengths), "hidden_states": hidden_states, "lengths": lengths}


def load_ssl_speaker(ckpt: dict[str, Any], source: str, **encoder_options: Any) -> SSLSpeaker:
    """The ssl_speaker a checkpoint holds, every weight from the checkpoint (the encoder is built from its config
    alone), with encoder_options changed; a ValueError naming `source` when the checkpoint holds something else."""
    config = ckpt.get("config")
    cfg = config.get("model") if isinstance(config, dict) else None
    if not isinstance(cfg, dict) or cfg.get("name") != "ssl_speaker" or "model" not in ckpt:
        raise ValueError(f"{source}: expected a checkpoint of an ssl_speaker model (`model` weights, config model.name "
                         "ssl_speaker)")
    cfg = {**cfg, "encoder": {**cfg["encoder"], "from_config": True, **encoder_options}}
    model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ValueError(f"{source}: the weights do not fit the model its config describes: {e}") from e
    return model

