"""NeMo's log-mel front end (`AudioToMelSpectrogramPreprocessor` / `FilterbankFeatures`) on torchaudio, so that
a model imported from a NeMo ASR checkpoint sees the features it was trained on.

forward(waves (B, samples) [-1, 1], lengths (B,)) -> (feats (B, T, n_mels), frames (B,)):
    dither (training only) -> pre-emphasis, zeroed past each length -> |STFT|^mag_power (centred frames,
    constant padding, symmetric window of window_size s zero-padded to n_fft) -> Slaney mel filterbank
    (librosa's default, as NeMo builds it) -> log(x + guard) -> per-utterance, per-bin normalisation over
    the valid frames (unbiased std + 1e-5) -> frames past each length set to pad_value.

The options are the keys of the `preprocessor:` section of NeMo's model_config.yaml, so an imported config
is passed on as it is; keys that change nothing at evaluation (nb_augmentation_prob 0, pad_to, ...) are
accepted as long as they hold NeMo's defaults, and any other value is an error naming the key.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torchaudio.functional

WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window, "blackman": torch.blackman_window,
           "bartlett": torch.bartlett_window}
NORM_EPS = 1e-5  # NeMo's CONSTANT, added to the per-bin std

# NeMo options that only matter for training-time augmentation, streaming or batching efficiency:
# accepted with any of the listed values (pad_to pads whole frames after masking, which sv's lengths make moot).
_INERT = {"pad_to": None, "nb_augmentation_prob": (0, 0.0), "nb_max_freq": None, "use_grads": None,
          "rng": (None,), "stft_exact_pad": (False,), "stft_conv": (False,), "_target_": None,
          "max_duration": None, "frame_splicing": (1,)}


class NeMoMelSpectrogram(nn.Module):
    def __init__(self, sample_rate: int = 16000, window_size: float = 0.02, window_stride: float = 0.01,
                 n_window_size: int | None = None, n_window_stride: int | None = None, window: str = "hann",
                 normalize: str | None = "per_feature", n_fft: int | None = None, preemph: float | None = 0.97,
                 features: int = 64, lowfreq: float = 0.0, highfreq: float | None = None, log: bool = True,
                 log_zero_guard_type: str = "add", log_zero_guard_value: float = 2 ** -24,
                 dither: float = 1e-5, pad_value: float = 0.0, mag_power: float = 2.0, exact_pad: bool = False,
                 mel_norm: str | None = "slaney", stft_pad_mode: str = "constant", **inert: Any):
        super().__init__()
        for key, value in inert.items():
            if key not in _INERT:
                raise ValueError(f"preprocessor.{key}: unknown NeMo preprocessor option")
            if _INERT[key] is not None and value not in _INERT[key]:
                raise ValueError(f"preprocessor.{key}: {value!r} is not supported (only {_INERT[key]})")
        if window not in WINDOWS:
            raise ValueError(f"preprocessor.window: {window!r} is not one of {', '.join(WINDOWS)}")
        if normalize not in ("per_feature", None):
            raise ValueError(f"preprocessor.normalize: {normalize!r} is not supported (per_feature or null)")
        if log_zero_guard_type not in ("add", "clamp"):
            raise ValueError(f"preprocessor.log_zero_guard_type: {log_zero_guard_type!r} (add or clamp)")
        if exact_pad:
            raise ValueError("preprocessor.exact_pad: true is not supported")
        self.sample_rate = int(sample_rate)
        self.win_length = int(n_window_size or window_size * sample_rate)
        self.hop_length = int(n_window_stride or window_stride * sample_rate)
        self.n_fft = int(n_fft or 2 ** math.ceil(math.log2(self.win_length)))
        self.n_mels = int(features)
        self.preemph, self.normalize, self.log, self.dither = preemph, normalize, log, float(dither)
        self.log_zero_guard_type, self.log_zero_guard_value = log_zero_guard_type, float(log_zero_guard_value)
        self.pad_value, self.mag_power, self.stft_pad_mode = float(pad_value), float(mag_power), stft_pad_mode
        # buffers, so they move with the model, but not saved: they follow from the options
        self.register_buffer("window", WINDOWS[window](self.win_length, periodic=False), persistent=False)
        fb = torchaudio.functional.melscale_fbanks(
            self.n_fft // 2 + 1, float(lowfreq), float(highfreq or sample_rate / 2), self.n_mels, self.sample_rate,
            norm=mel_norm, mel_scale="slaney")
        self.register_buffer("fb", fb.T.contiguous(), persistent=False)  # (n_mels, n_freqs)

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames of `lengths` samples, as NeMo's get_seq_len (since NeMo 2.x: floor(samples / hop); the
        centred STFT's one further frame is padding)."""
        return torch.div(lengths + (self.n_fft // 2) * 2 - self.n_fft, self.hop_length, rounding_mode="floor")

    @torch.autocast("cuda", enabled=False)  # the STFT and log want full precision
    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = waves.float()
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        lengths = lengths.to(x.device)
        frames = self.num_frames(lengths)
        if self.training and self.dither > 0:
            x = x + self.dither * torch.randn_like(x)
        if self.preemph is not None:
            x = torch.cat([x[:, :1], x[:, 1:] - self.preemph * x[:, :-1]], dim=1)
            x = x.masked_fill(torch.arange(x.shape[1], device=x.device)[None, :] >= lengths[:, None], 0.0)
        spec = torch.stft(x, self.n_fft, self.hop_length, self.win_length, self.window, center=True,
                          pad_mode=self.stft_pad_mode, return_complex=True)
        spec = torch.view_as_real(spec).pow(2).sum(-1).sqrt()  # NeMo's magnitude, then its power
        if self.mag_power != 1.0:
            spec = spec.pow(self.mag_power)
        x = self.fb @ spec  # (B, n_mels, T)
        if self.log:
            x = torch.log(x + self.log_zero_guard_value) if self.log_zero_guard_type == "add" \
                else torch.log(x.clamp(min=self.log_zero_guard_value))
        valid = (torch.arange(x.shape[-1], device=x.device)[None, :] < frames[:, None]).unsqueeze(1)
        if self.normalize == "per_feature":
            n = frames[:, None].to(x.dtype)
            mean = x.masked_fill(~valid, 0.0).sum(-1) / n
            var = (x - mean[..., None]).masked_fill(~valid, 0.0).pow(2).sum(-1) / (n - 1)
            std = var.sqrt().nan_to_num(0.0) + NORM_EPS  # one frame: NeMo's std is 0
            x = (x - mean[..., None]) / std[..., None]
        x = x.masked_fill(~valid, self.pad_value)
        return x.transpose(1, 2), frames
