"""Self-supervised pre-trained speech models from Hugging Face transformers as layered encoders.

forward(inputs (B, samples) 16 kHz waveform, lengths (B,) | None) -> ([L+1 x (B, T', D)], lengths'):
the feature-projection (embedding) output followed by every transformer/conformer layer's output, as
transformers' `output_hidden_states` gives them.

Supported: WavLM, HuBERT, wav2vec 2.0, data2vec-audio (waveform in) and w2v-BERT 2.0, which reads
SeamlessM4T fbank features that `w2vbert_features` computes here from the waveform, so every SSL encoder
takes the same input.

Padding is always zeroed. An attention mask is passed as transformers recommends: when the model's
preprocessor_config.json says return_attention_mask, else when its conv feature extractor is
layer-normalised (and always for w2v-BERT). Such models' valid frames do not depend on what else is in the
batch. Models without a mask (wav2vec 2.0 / HuBERT Base, WavLM Base, trained without one) let the group norm
statistics and attention see the padding, so a padded utterance's output differs slightly from its output
alone. WavLM Base+ has a group-normalised extractor but return_attention_mask: its attention skips the
padding, its group norm does not. Training crops batches to one length and extraction can run one utterance
at a time, so neither sees padding.

cls_token: a learnable D-dim [CLS] token is prepended to the sequence entering the transformer (after the
feature projection, before any positional convolution), as Vaessen & van Leeuwen, "Fine-tuning wav2vec2
for speaker recognition", ICASSP 2022 do; every hidden state then has T'+1 frames, position 0 being the
token, and lengths' count it.
"""
from __future__ import annotations

import json
from typing import Any

import torch
import torch.nn as nn
import torchaudio.compliance.kaldi as kaldi

from sv.models.pruning import add_gates, apply_structure, read_pruned_weights, read_structure
from sv.models.registry import register

SAMPLE_RATE = 16000
WAVEFORM_MODELS = ("wavlm", "hubert", "wav2vec2", "data2vec-audio")
FBANK_MODELS = ("wav2vec2-bert",)

# Kaldi reads 16-bit samples as integers; SeamlessM4TFeatureExtractor scales [-1, 1] floats back likewise.
INT16_SCALE = 32768.0
W2VBERT_STRIDE = 2  # SeamlessM4T stacks pairs of 10 ms frames into one 160-dim 20 ms frame


def valid_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size) bool, True on the first lengths[b] positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def w2vbert_features(waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SeamlessM4TFeatureExtractor's input_features for a padded batch of 16 kHz [-1, 1] waveforms.

    80 Kaldi fbank bins (25 ms povey window, 10 ms hop, no dither), each utterance normalised per bin
    over its own frames (unbiased variance, as the extractor does), zero-padded to an even frame count,
    then pairs of frames stacked to 160 dims. Returns (B, T, 160) and the valid stacked frames per
    utterance: the extractor's attention mask drops a stacked frame whose second half is padding.
    """
    feats = []
    for wave, n in zip(waves, lengths.tolist()):
        fbank = kaldi.fbank(wave[:n].float().unsqueeze(0) * INT16_SCALE, num_mel_bins=80,
                            sample_frequency=SAMPLE_RATE, dither=0.0)
        mean, var = fbank.mean(0, keepdim=True), fbank.var(0, keepdim=True, unbiased=True)
        feats.append((fbank - mean) / torch.sqrt(var + 1e-7))
    num_frames = torch.tensor([f.shape[0] for f in feats], device=waves.device)
    padded = nn.utils.rnn.pad_sequence(feats, batch_first=True)
    if padded.shape[1] % W2VBERT_STRIDE:
        padded = nn.functional.pad(padded, (0, 0, 0, W2VBERT_STRIDE - padded.shape[1] % W2VBERT_STRIDE))
    b, t, f = padded.shape
    return padded.reshape(b, t // W2VBERT_STRIDE, f * W2VBERT_STRIDE), num_frames // W2VBERT_STRIDE


def _feature_extractor_setting(pretrained: str, key: str) -> Any:
    """A value from the model's preprocessor_config.json, or None where there is no such file or key."""
    from transformers.utils import cached_file

    path = cached_file(pretrained, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get(key)


@register("ssl_encoder")
class SSLEncoder(nn.Module):
    """A transformers SSL speech model returning every layer's output.

    pretrained: local directory or hub id of the model (AutoModel.from_pretrained).
    from_config: build it from its config.json with random weights (e.g. to count parameters, or when
        a checkpoint of this encoder will be loaded anyway).
    num_layers: keep only the first N transformer layers; the others are removed, parameters included.
    max_input_seconds: crop longer inputs (training crops anyway; extraction averages over chunks upstream).
    normalize: zero-mean unit-variance normalise each waveform over its valid samples; by default as the
        model's preprocessor_config.json says (`do_normalize`). Waveform models only.
    config_overrides: config attributes to change, e.g. {"hidden_dropout": 0.0}.
    cls_token: prepend a [CLS] token to the transformer's input (see the module docstring). Vaessen &
        van Leeuwen fill it with ones and train it or not; here it starts at ones and is a parameter, so
        `requires_grad_(False)` gives their constant token.
    gates: Hard Concrete gates on every layer's heads, FFN units and convolution channels, for structured
        pruning (sv/models/pruning.py): a mapping of add_gates' options ({} for the defaults), or null.

    A pruned encoder directory (written by sv.bin.prune_encoder: config.json, model.safetensors and
    sv_pruned_structure.json with the per-layer sizes) loads like any other `pretrained` directory.

    Layer drop and the model's own SpecAugment are always off: layer drop would change the number of
    hidden states, and augmentation belongs to the data pipeline.
    """

    def __init__(self, pretrained: str, from_config: bool = False, num_layers: int | None = None,
                 max_input_seconds: float | None = None, normalize: bool | None = None,
                 config_overrides: dict[str, Any] | None = None, cls_token: bool = False,
                 gates: dict[str, Any] | None = None):
        super().__init__()
        # imported here, not at the top: build_model imports every model module, and only this one needs
        # transformers, which takes seconds to import
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(pretrained, **{**(config_overrides or {}), "layerdrop": 0.0,
                                                           "apply_spec_augment": False})
        if config.model_type not in WAVEFORM_MODELS + FBANK_MODELS:
            raise ValueError(f"{pretrained}: model type {config.model_type!r} is not one of "
                             f"{', '.join(WAVEFORM_MODELS + FBANK_MODELS)}")
        if num_layers is not None and not 1 <= num_layers <= config.num_hidden_layers:
            raise ValueError(f"num_layers must be in 1..{config.num_hidden_layers}, got {num_layers}")
        structure = read_structure(pretrained)
        if structure is None and getattr(config, "sv_pruned", False):
            raise ValueError(f"{pretrained}: config.json describes a pruned encoder, but its per-layer sizes "
                             f"(sv_pruned_structure.json) are missing")
        if structure is None:
            self.model = AutoModel.from_config(config) if from_config else AutoModel.from_pretrained(pretrained, config=config)
        else:  # transformers cannot build per-layer sizes: build it whole, shrink it, then load the weights
            self.model = AutoModel.from_config(config)
        # Unused with SpecAugment off; a parameter without gradients would stall DDP. Dropped after loading, so
        # that loading does not report it as an unexpected key.
        if hasattr(self.model, "masked_spec_embed"):
            del self.model.masked_spec_embed
        if structure is not None:
            apply_structure(self.model, structure)
            if not from_config:
                self.model.load_state_dict(read_pruned_weights(pretrained))
        if gates is not None:
            add_gates(self.model, **gates)
        if num_layers is not None:
            self.model.encoder.layers = self.model.encoder.layers[:num_layers]
            self.model.config.num_hidden_layers = num_layers

        self.takes_fbank = config.model_type in FBANK_MODELS
        if self.takes_fbank and normalize is not None:
            raise ValueError("normalize applies to waveform models; w2v-BERT's fbank is always normalised per bin")
        if not self.takes_fbank and normalize is None:
            normalize = _feature_extractor_setting(pretrained, "do_normalize")
            if normalize is None:
                raise ValueError(f"{pretrained}: no do_normalize in preprocessor_config.json; set normalize")
        self.normalize = bool(normalize)
        # data2vec-audio's conv feature extractor is always layer-normalised, and it has no such setting
        return_mask = None if self.takes_fbank else _feature_extractor_setting(pretrained, "return_attention_mask")
        self.use_attention_mask = (self.takes_fbank or getattr(config, "feat_extract_norm", "layer") == "layer"
                                   if return_mask is None else bool(return_mask))
        self.max_samples = None if max_input_seconds is None else int(max_input_seconds * SAMPLE_RATE)
        # data2vec-audio's positional embedding is a stack of convolutions: transformers zeroes the
        # padding before the first one only, so later ones would carry padding into the last valid frames
        self._valid_frames: torch.Tensor | None = None
        if config.model_type == "data2vec-audio":
            for layer in self.model.encoder.pos_conv_embed.layers:
                layer.register_forward_hook(self._zero_padded_frames)
        self.cls_token = nn.Parameter(torch.ones(config.hidden_size)) if cls_token else None
        if cls_token:
            # the positional convolution and the masking of padded frames run inside the encoder, so the
            # token goes in at the encoder's input for them to see it as frame 0
            self.model.encoder.register_forward_pre_hook(self._prepend_cls_token, with_kwargs=True)

    def _prepend_cls_token(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """Forward pre-hook on the encoder: hidden_states (B, T, D) -> (B, T+1, D), the mask one valid frame longer."""
        hidden_states, *rest = args
        token = self.cls_token.to(hidden_states.dtype).expand(hidden_states.shape[0], 1, -1)
        hidden_states = torch.cat([token, hidden_states], dim=1)
        mask = kwargs.get("attention_mask")
        if mask is not None:  # models run without a mask attend to every frame, the token included
            kwargs["attention_mask"] = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        return (hidden_states, *rest), kwargs

    def _zero_padded_frames(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on a (B, D, T) positional conv layer."""
        return output if self._valid_frames is None else output * self._valid_frames[:, None, :].to(output.dtype)

    @property
    def num_layers(self) -> int:
        return len(self.model.encoder.layers)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def _prepare_waveform(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = valid_mask(lengths, waves.shape[1])
        if self.normalize:
            # per utterance over its valid samples, as Wav2Vec2FeatureExtractor does (biased variance)
            n = lengths[:, None].to(waves.dtype)
            mean = (waves * valid).sum(1, keepdim=True) / n
            var = (((waves - mean) * valid) ** 2).sum(1, keepdim=True) / n
            waves = (waves - mean) / torch.sqrt(var + 1e-7)
        return waves * valid

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        if lengths is None:
            lengths = torch.full((inputs.shape[0],), inputs.shape[1], dtype=torch.long, device=inputs.device)
        lengths = lengths.to(inputs.device)
        if self.max_samples is not None and inputs.shape[1] > self.max_samples:
            inputs, lengths = inputs[:, :self.max_samples], lengths.clamp(max=self.max_samples)

        if self.takes_fbank:
            x, lengths = w2vbert_features(inputs, lengths)
            x = x.to(inputs.dtype)
        else:
            x = self._prepare_waveform(inputs, lengths)
        mask = valid_mask(lengths, x.shape[1]).long() if self.use_attention_mask else None
        out_lengths = self.model._get_feat_extract_output_lengths(lengths).long()
        if mask is not None and not self.takes_fbank:
            self._valid_frames = valid_mask(out_lengths, int(self.model._get_feat_extract_output_lengths(x.shape[1])))
            if self.cls_token is not None:
                self._valid_frames = nn.functional.pad(self._valid_frames, (1, 0), value=True)
        try:
            out = self.model(x, attention_mask=mask, output_hidden_states=True)
        finally:
            self._valid_frames = None
        if self.cls_token is not None:
            out_lengths = out_lengths + 1
        return list(out.hidden_states), out_lengths
