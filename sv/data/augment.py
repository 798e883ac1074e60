"""Training-time data augmentation: additive noise and babble (MUSAN), reverberation (RIRs), speed
perturbation, and SpecAugment masks on features.

Waveforms are mono float32 numpy arrays in [-1, 1] (as load_audio gives them). The functions are pure:
randomness comes in through an explicit numpy Generator, so a caller that seeds it gets the same result
in any process.
"""
from __future__ import annotations

import numpy as np
import scipy.signal
import torch
import torchaudio.functional


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """wave + noise scaled so that 10*log10(P_wave / P_scaled_noise) is exactly snr_db.

    Powers are mean squares over the whole signals (Kaldi's wav-reverberate and WeSpeaker use this
    energy-based SNR too). Silent noise adds nothing. `noise` must have wave's length.
    """
    if noise.shape != wave.shape:
        raise ValueError(f"noise shape {noise.shape} differs from the waveform's {wave.shape}")
    noise_power = _power(noise)
    if noise_power == 0.0:
        return wave.copy()
    gain = np.sqrt(_power(wave) / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (wave + gain * noise).astype(np.float32)


def babble(speech: list[np.ndarray]) -> np.ndarray:
    """Several talkers at once: the sum of equal-length speech signals, added to a wave as one noise."""
    return np.sum(np.stack(speech), axis=0, dtype=np.float32)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """wave convolved with a room impulse response, aligned and scaled like the input.

    The RIR is normalised to unit energy, and the output starts at the RIR's peak (Kaldi's
    wav-reverberate --shift-output), so the direct path lines up with the dry speech instead of lagging by
    the source-microphone delay. The output keeps wave's length and its power (Kaldi's
    --normalize-output), so a later SNR is relative to the same speech level.
    """
    energy = np.sqrt(np.sum(np.square(rir, dtype=np.float64)))
    if energy == 0.0:
        raise ValueError("room impulse response is all zeros")
    rir = (rir / energy).astype(np.float32)
    peak = int(np.argmax(np.abs(rir)))
    # scipy picks a fast FFT length; torch's FFT on the exact (often prime-rich) length is ~20x slower.
    out = scipy.signal.fftconvolve(wave, rir)[peak:peak + len(wave)]
    out_power = _power(out)
    if out_power > 0.0:
        out = out * np.sqrt(_power(wave) / out_power)
    return out.astype(np.float32)


def speed_perturb(wave: np.ndarray, sr: int, speed: float) -> np.ndarray:
    """Play `speed` times as fast, pitch and tempo together (sox `speed` then `rate`, as Kaldi and
    WeSpeaker do): the samples are taken as recorded at sr*speed and resampled to sr, so the length
    becomes about len/speed."""
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    if speed == 1.0:
        return wave
    with torch.inference_mode():
        out = torchaudio.functional.resample(torch.from_numpy(wave), round(sr * speed), sr)
    return out.numpy()


def spec_augment(feats: np.ndarray, rng: np.random.Generator, time_masks: int = 1, time_width: int = 10,
                 freq_masks: int = 1, freq_width: int = 8) -> np.ndarray:
    """A copy of (frames, bins) feats with SpecAugment masks (Park et al. 2019) set to zero.

    Each mask's width is drawn from [0, width] and it lies wholly inside the matrix. Zero is the
    utterance mean once features are mean-normalised, which is why masking comes after normalisation.
    """
    out = feats.copy()
    for axis, count, max_width in ((0, time_masks, time_width), (1, freq_masks, freq_width)):
        size = out.shape[axis]
        for _ in range(count):
            width = min(int(rng.integers(0, max_width + 1)), size)
            start = int(rng.integers(0, size - width + 1))
            if axis == 0:
                out[start:start + width, :] = 0.0
            else:
                out[:, start:start + width] = 0.0
    return out
