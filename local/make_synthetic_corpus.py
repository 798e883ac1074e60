#!/usr/bin/env python3
"""Deterministic synthetic mini corpus in the on-disk layouts of VoxCeleb1, MUSAN and RIRS_NOISES,
and with --cnceleb also of CN-Celeb1 and CN-Celeb2 (CN-Celeb_flac/, CN-Celeb2_flac/).

The recipes need inputs that look like the real corpora (paths, wav format, trial lists, the MUSAN
ANNOTATIONS and RIRS_NOISES list files) so that their prep scripts and full pipelines can run end
to end in minutes, with no download. The speaker task is built to be learnable but not trivial:

* Speakers come from a source-filter synthesiser. What identifies a speaker is fixed per speaker
  and consistent across all their utterances: F0 median and range, vocal-tract length (a scale on
  one shared set of vowel/consonant formant targets, plus small per-speaker vowel offsets - an
  "accent"), formant bandwidths, a fixed antiresonance, spectral tilt, glottal open quotient and
  skew, breathiness, jitter/shimmer and speaking rate. Two "gender" groups have overlapping F0 and tract-length ranges;
  the Vox1-H style lists draw their non-targets within a group.
* Each utterance has random phonetic content (vowels with formant transitions, fricatives, stops,
  nasals, approximants, pauses), a random length and intonation.
* Each video has its own channel (random EQ and band limits, a synthetic room, background noise at
  15-30 dB SNR, a level) and a small session drift of the voice. Target trials always pair different
  videos, so a trivial long-term-spectrum baseline is confounded by the channel, while a trained
  model can learn to look past it.
* CN-Celeb speakers (--cnceleb) come from the same synthesiser under their own keys (no voice is
  shared with the VoxCeleb1 part); each speaker's genre sessions (<genre>-NN, e.g. singing-01) play
  the role of videos, each with its own channel and voice drift. An evaluation speaker's first
  session is its enrollment (enroll.map lists its segments, eval/enroll/ holds them concatenated),
  its other sessions are its test utterances; trials.lst crosses every model with every test
  utterance, and, as in the release, the lists name .wav files where the audio is .flac.

The vocal tract is applied in the STFT domain (the excitation's spectrum times each frame's
resonator-cascade response): a vectorised stand-in for a time-varying filter, fast in numpy.
Every random draw comes from a Generator seeded by (seed, ids...), so the output does not depend
on --nj or on the order of work; wavs are written atomically and a .done stamp, written last,
lets a rerun with the same parameters return at once (a killed run resumes, skipping finished wavs).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft, signal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sv.cli import run_main  # noqa: E402
from sv.data.table import DataError, atomic_open, write_lines  # noqa: E402

log = logging.getLogger("make_synthetic_corpus")

SR = 16000
N_FFT, HOP = 512, 128
WIN = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
FREQS = np.fft.rfftfreq(N_FFT, 1 / SR)
TEST_IDS = range(10270, 10310)  # the official VoxCeleb1 test speakers
VERSION = 1  # bump when the synthesis changes, so old stamps no longer match
OWN_DIRS = ("voxceleb1", "musan", "RIRS_NOISES", "CN-Celeb_flac", "CN-Celeb2_flac")
CN1, CN2 = "CN-Celeb_flac", "CN-Celeb2_flac"
GENRES = ("advertisement", "drama", "entertainment", "interview", "live_broadcast", "movie", "play",
          "recitation", "singing", "speech", "vlog")  # CN-Celeb's 11 genres
CN_EVAL_FIRST, CN_EVAL_MAX = 800, 200  # CN-Celeb1: dev id00000-id00799, eval id00800-id00999
CN2_FIRST = 10000  # CN-Celeb2: id10000-id11999


def rng_for(seed: int, *key: int | str) -> np.random.Generator:
    """A generator that depends only on the seed and the key, never on what ran before."""
    ints = [k if isinstance(k, int) else int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "little")
            for k in key]
    return np.random.default_rng(np.random.SeedSequence([seed, *ints]))


# ----------------------------------------------------------------------------------------------
# Phones: targets of a reference vocal tract (adult male, Peterson & Barney), scaled per speaker.


@dataclass(frozen=True)
class Phone:
    formants: tuple[float, float, float] | None  # F1-F3; None glides between the neighbours
    parts: tuple[tuple[float, float, float, float], ...]  # (ms, voicing, aspiration, frication)
    fric: tuple[float, float] = (4000.0, 2.0)  # frication noise centre (Hz) and width (octaves)


LABIAL, ALVEOLAR, POSTALV, VELAR = (300, 900, 2200), (300, 1700, 2600), (300, 1900, 2500), (300, 1900, 2300)
VOWELS = {
    "iy": (270, 2290, 3010), "ih": (390, 1990, 2550), "eh": (530, 1840, 2480), "ae": (660, 1720, 2410),
    "ah": (520, 1190, 2390), "aa": (730, 1090, 2440), "ao": (570, 840, 2410), "uh": (440, 1020, 2240),
    "uw": (300, 870, 2240), "er": (490, 1350, 1690),
}
PHONES: dict[str, Phone] = {v: Phone(f, ((110, 1.0, 0, 0),)) for v, f in VOWELS.items()}
PHONES.update({
    "l": Phone((360, 1000, 2600), ((60, 0.8, 0, 0),)), "r": Phone((350, 1100, 1500), ((60, 0.8, 0, 0),)),
    "w": Phone((300, 650, 2200), ((55, 0.8, 0, 0),)), "y": Phone((270, 2150, 2950), ((55, 0.8, 0, 0),)),
    "m": Phone((250, 1100, 2200), ((70, 0.5, 0, 0),)), "n": Phone((250, 1600, 2500), ((65, 0.5, 0, 0),)),
    "s": Phone(ALVEOLAR, ((100, 0, 0, 0.35),), (6000, 0.5)),
    "sh": Phone(POSTALV, ((100, 0, 0, 0.35),), (3300, 0.6)),
    "f": Phone(LABIAL, ((90, 0, 0, 0.10),), (5000, 2.0)),
    "th": Phone(ALVEOLAR, ((80, 0, 0, 0.08),), (5500, 2.0)),
    "z": Phone(ALVEOLAR, ((80, 0.35, 0, 0.2),), (6000, 0.5)),
    "v": Phone(LABIAL, ((70, 0.45, 0, 0.07),), (5000, 2.0)),
    "h": Phone(None, ((70, 0, 0.6, 0),)),
    # stops: closure (a voice bar when voiced), burst, aspiration when voiceless
    "p": Phone(LABIAL, ((70, 0, 0, 0), (12, 0, 0, 0.3), (45, 0, 0.5, 0)), (1500, 2.0)),
    "t": Phone(ALVEOLAR, ((60, 0, 0, 0), (12, 0, 0, 0.4), (45, 0, 0.5, 0)), (4500, 1.0)),
    "k": Phone(VELAR, ((65, 0, 0, 0), (15, 0, 0, 0.4), (50, 0, 0.5, 0)), (2500, 0.6)),
    "b": Phone(LABIAL, ((60, 0.12, 0, 0), (10, 0.1, 0, 0.2)), (1500, 2.0)),
    "d": Phone(ALVEOLAR, ((55, 0.12, 0, 0), (10, 0.1, 0, 0.25)), (4500, 1.0)),
    "g": Phone(VELAR, ((60, 0.12, 0, 0), (12, 0.1, 0, 0.25)), (2500, 0.6)),
    "sil": Phone(None, ((200, 0, 0, 0),)),
})
ONSETS = ["p", "t", "k", "b", "d", "g", "s", "sh", "f", "th", "z", "v", "h", "m", "n", "l", "r", "w", "y"]
CODAS = ["p", "t", "k", "d", "s", "z", "f", "m", "n", "l", "r"]
PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}
REF_HIGH_FORMANTS = (3300.0, 4200.0)  # F4, F5
REF_BANDWIDTHS = np.array([70.0, 90.0, 130.0, 180.0, 250.0])


@dataclass(frozen=True)
class Speaker:
    gender: str  # "m" or "f": the groups have overlapping F0 and tract-length ranges
    f0: float  # median F0, Hz
    f0_range: float  # pitch-accent size, semitones
    vtl: float  # formant scale: shorter tract, higher formants
    vowel_offsets: np.ndarray  # (n_phones, 3) multiplicative F1-F3 offsets: an accent
    high_offsets: np.ndarray  # (2,) F4, F5 offsets
    sinus: tuple[float, float, float]  # fixed antiresonance (piriform fossa): Hz, bandwidth Hz, depth 0-1
    bw_scale: float
    tilt: float  # dB/octave on the voiced spectrum
    open_quotient: float
    skew: float  # share of the open phase that is opening
    breath: float  # aspiration noise riding on the glottal pulses
    jitter: float
    shimmer: float
    rate: float  # phone-duration scale


def draw_speaker(rng: np.random.Generator, gender: str) -> Speaker:
    male = gender == "m"
    return Speaker(
        gender=gender,
        f0=float(np.exp(rng.uniform(*np.log([80, 170] if male else [140, 280])))),
        f0_range=rng.uniform(1.5, 5.0),
        vtl=rng.uniform(*([0.85, 1.08] if male else [1.0, 1.28])),
        vowel_offsets=np.exp(rng.normal(0, 0.04, (len(PHONES), 3))),
        high_offsets=np.exp(rng.normal(0, 0.07, 2)),
        sinus=(rng.uniform(3800, 5500), rng.uniform(300, 700), rng.uniform(0.6, 0.95)),
        bw_scale=float(np.exp(rng.uniform(np.log(0.6), np.log(1.3)))),
        tilt=rng.uniform(-4.0, 4.0),
        open_quotient=rng.uniform(0.4, 0.8),
        skew=rng.uniform(0.6, 0.8),
        breath=float(np.exp(rng.uniform(np.log(0.02), np.log(0.4)))),
        jitter=rng.uniform(0.003, 0.02),
        shimmer=rng.uniform(0.02, 0.1),
        rate=rng.uniform(0.8, 1.25),
    )


@dataclass(frozen=True)
class Session:
    """How a speaker's voice drifts from one video to another (mood, effort, fatigue)."""
    f0_shift: float = 0.0  # semitones
    tilt_shift: float = 0.0
    rate_scale: float = 1.0


def draw_session(rng: np.random.Generator) -> Session:
    return Session(rng.normal(0, 0.7), rng.normal(0, 0.5), float(np.exp(rng.normal(0, 0.05))))


# ----------------------------------------------------------------------------------------------
# Speech synthesis


def phone_sequence(rng: np.random.Generator, n_frames: int, rate: float) -> list[tuple[str, list[int]]]:
    """Random words of (C)V(C) syllables with pauses, as (phone, frames per part), at least n_frames long."""
    seq: list[tuple[str, list[int]]] = []
    total = 0

    def add(phone: str, scale: float = 1.0) -> None:
        nonlocal total
        stretch = rate * scale * rng.uniform(0.75, 1.3)
        frames = [max(1, round(ms * stretch * SR / 1000 / HOP)) for ms, *_ in PHONES[phone].parts]
        seq.append((phone, frames))
        total += sum(frames)

    add("sil", rng.uniform(0.05, 0.5))
    while total < n_frames:
        for _ in range(rng.integers(1, 4)):
            if rng.random() < 0.7:
                add(ONSETS[rng.integers(len(ONSETS))])
            add(list(VOWELS)[rng.integers(len(VOWELS))])
            if rng.random() < 0.4:
                add(CODAS[rng.integers(len(CODAS))])
        if rng.random() < 0.1:
            add("sil", rng.uniform(0.5, 1.2))
    return seq


def smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average along time (axis 0), edges held."""
    pad = np.pad(x, [(width // 2, width - 1 - width // 2)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    kernel = np.ones(width) / width
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, pad)


def fill_gaps(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN rows (pauses, /h/): formants glide through them."""
    good = ~np.isnan(x[:, 0])
    idx = np.arange(len(x))
    return np.stack([np.interp(idx, idx[good], x[good, j]) for j in range(x.shape[1])], axis=1)


def tracks(spk: Speaker, seq: list[tuple[str, list[int]]],
           n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame formants (T, 5), source amplitudes (T, 3), frication shape (T, 2) and vowel flags."""
    rows_f, rows_a, rows_fric, vowel = [], [], [], []
    for phone, frames in seq:
        p = PHONES[phone]
        f = np.full(3, np.nan) if p.formants is None else np.array(p.formants, float) * spk.vtl
        if phone in VOWELS:
            f = f * spk.vowel_offsets[PHONE_INDEX[phone]]
        for (_, av, ah, af), n in zip(p.parts, frames):
            rows_f += [f] * n
            rows_a += [(av, ah, af)] * n
            rows_fric += [(p.fric[0] * spk.vtl, p.fric[1])] * n
            vowel += [phone in VOWELS] * n
    formants = smooth(fill_gaps(np.array(rows_f[:n_frames])), 5)
    high = np.array(REF_HIGH_FORMANTS) * spk.vtl * spk.high_offsets
    formants = np.concatenate([formants, np.tile(high, (n_frames, 1))], axis=1)
    amps = smooth(np.array(rows_a[:n_frames], float), 3)
    return np.minimum(formants, 7600.0), amps, np.array(rows_fric[:n_frames]), np.array(vowel[:n_frames])


def f0_contour(rng: np.random.Generator, spk: Speaker, sess: Session, vowel: np.ndarray) -> np.ndarray:
    """Per-frame F0 (Hz): declination, pitch accents on some vowels, slow wander, in semitones."""
    t = len(vowel)
    st = np.linspace(1.0, -1.0, t) * rng.uniform(0.5, 1.5) + sess.f0_shift
    starts = np.flatnonzero(np.diff(vowel.astype(int)) == 1)
    frame = np.arange(t)
    for s in starts[rng.random(len(starts)) < 0.35]:
        st += rng.uniform(0.4, 1.0) * spk.f0_range * np.exp(-0.5 * ((frame - s - 5) / 6.0) ** 2)
    st += smooth(rng.normal(0, 2.0, t), 25)
    return spk.f0 * 2 ** (st / 12)


def glottal_source(rng: np.random.Generator, spk: Speaker, f0: np.ndarray) -> np.ndarray:
    """Rosenberg-pulse flow derivative with per-period jitter and shimmer, unit RMS; f0 per sample."""
    base_phase = np.cumsum(f0) / SR
    n_periods = int(base_phase[-1]) + 2
    period = base_phase.astype(int)
    phase = np.cumsum(f0 * (1 + spk.jitter * rng.standard_normal(n_periods)[period])) / SR
    frac, idx = phase % 1.0, phase.astype(int)
    t_open, t_close = spk.open_quotient * spk.skew, spk.open_quotient * (1 - spk.skew)
    flow = np.where(frac < t_open, 0.5 * (1 - np.cos(np.pi * frac / t_open)),
                    np.where(frac < t_open + t_close, np.cos(0.5 * np.pi * (frac - t_open) / t_close), 0.0))
    flow *= 1 + spk.shimmer * rng.standard_normal(n_periods + 2)[idx]
    deriv = np.diff(flow, prepend=0.0)
    breath = spk.breath * rng.standard_normal(len(f0)) * (0.3 + flow) * np.std(deriv)
    out = deriv + breath
    return out / (np.std(out) + 1e-12)


def stft(x: np.ndarray, n_frames: int) -> np.ndarray:
    padded = np.zeros((n_frames - 1) * HOP + N_FFT)
    padded[N_FFT // 2:N_FFT // 2 + len(x)] = x
    return np.fft.rfft(sliding_window_view(padded, N_FFT)[::HOP] * WIN, axis=1)


def istft(spec: np.ndarray, n: int) -> np.ndarray:
    frames = (np.fft.irfft(spec, n=N_FFT, axis=1) * WIN).reshape(len(spec), N_FFT // HOP, HOP)
    out = np.zeros((len(spec) + N_FFT // HOP - 1, HOP))
    for k in range(N_FFT // HOP):
        out[k:k + len(spec)] += frames[:, k]
    return out.ravel()[N_FFT // 2:N_FFT // 2 + n] / 1.5  # 1.5: sum of squared Hann windows at 75 % overlap


def tract_response(formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Per-frame response (T, bins) of a cascade of unit-DC-gain two-pole resonators."""
    z1 = np.exp(-1j * 2 * np.pi * FREQS / SR).astype(np.complex64)
    r = np.exp(-np.pi * bandwidths / SR).astype(np.float32)
    c = 2 * r * np.cos(2 * np.pi * formants / SR).astype(np.float32)
    dc_gain = np.prod(1 - c + r * r, axis=1)[:, None]
    return dc_gain / np.prod(1 - c[..., None] * z1 + (r * r)[..., None] * (z1 * z1), axis=1)


def antiresonance(freq: float, bandwidth: float, depth: float) -> np.ndarray:
    """Magnitude of a notch: a fixed trait of the speaker's anatomy, unlike the moving formants."""
    return 1 - depth * np.exp(-0.5 * ((FREQS - freq) / bandwidth) ** 2)


def synth_speech(rng: np.random.Generator, spk: Speaker, sess: Session, n: int) -> np.ndarray:
    """n samples of clean speech: glottal + noise sources through the frame-wise vocal tract."""
    n_frames = n // HOP + 1
    seq = phone_sequence(rng, n_frames, spk.rate * sess.rate_scale)
    formants, amps, fric, vowel = tracks(spk, seq, n_frames)
    frame_t, sample_t = np.arange(n_frames) * HOP, np.arange(n)
    av, ah, af = (np.interp(sample_t, frame_t, amps[:, j]) for j in range(3))
    f0 = np.interp(sample_t, frame_t, f0_contour(rng, spk, sess, vowel))
    voiced = av * glottal_source(rng, spk, f0) + ah * rng.standard_normal(n)
    tilt = (np.maximum(FREQS, 100) / 500) ** ((spk.tilt + sess.tilt_shift) / 6.02)
    bandwidths = np.broadcast_to(REF_BANDWIDTHS * spk.bw_scale, formants.shape)
    spec = stft(voiced, n_frames) * tract_response(formants, bandwidths) * tilt * antiresonance(*spk.sinus)
    octaves = np.log2(np.maximum(FREQS, 50) / fric[:, :1]) / fric[:, 1:]
    shape = np.exp(-0.5 * octaves ** 2) + 0.02
    spec += stft(af * rng.standard_normal(n), n_frames) * shape * 3.0
    return istft(spec, n)


# ----------------------------------------------------------------------------------------------
# Rooms and channels


def make_rir(rng: np.random.Generator, rt60: float, seconds: float, drr_db: float) -> np.ndarray:
    """Direct-path peak, a few early reflections, then exponentially decaying, darkening noise."""
    n = int(seconds * SR)
    delay = int(rng.uniform(0.002, 0.01) * SR)
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail = signal.lfilter([0.6], [1, -0.4], tail)  # walls and air absorb the highs
    tail[:delay + int(0.001 * SR)] = 0.0
    for _ in range(6):
        tail[delay + int(rng.uniform(0.002, 0.04) * SR)] += rng.uniform(-1, 1) * 3 * tail.std()
    tail *= 10 ** (-drr_db / 20) / np.sqrt(np.sum(tail ** 2))
    tail[delay] += 1.0
    return tail / np.max(np.abs(tail))


def biquad(kind: str, fc: float, gain_db: float, q: float) -> np.ndarray:
    """RBJ-cookbook peaking / shelving filter as one sos row."""
    a, w = 10 ** (gain_db / 40), 2 * np.pi * fc / SR
    alpha, cw = np.sin(w) / (2 * q), np.cos(w)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    else:
        sign = 1 if kind == "low" else -1
        k = 2 * np.sqrt(a) * alpha
        b = [a * ((a + 1) - sign * (a - 1) * cw + k), sign * 2 * a * ((a - 1) - sign * (a + 1) * cw),
             a * ((a + 1) - sign * (a - 1) * cw - k)]
        den = [(a + 1) + sign * (a - 1) * cw + k, -sign * 2 * ((a - 1) + sign * (a + 1) * cw),
               (a + 1) + sign * (a - 1) * cw - k]
    return np.array(b + den) / den[0]


def coloured_noise(rng: np.random.Generator, n: int, slope_db: float) -> np.ndarray:
    """Gaussian noise with a spectral slope in dB/octave, unit RMS."""
    size = fft.next_fast_len(n, real=True)
    spec = np.fft.rfft(rng.standard_normal(size))
    spec *= (np.maximum(np.fft.rfftfreq(size, 1 / SR), 20) / 1000) ** (slope_db / 6.02)
    x = np.fft.irfft(spec, size)[:n]
    return x / (np.std(x) + 1e-12)


@dataclass(frozen=True)
class Channel:
    sos: np.ndarray  # microphone / codec colouring
    rir: np.ndarray | None
    noise_slope: float
    hum: float  # mains hum frequency, 0 for none
    snr_db: float
    peak: float


def draw_channel(rng: np.random.Generator) -> Channel:
    """A video's recording chain. Its strength is tuned on the mean-fbank baseline: with SNRs down to
    5 dB, strong shelves or frequent high-passes the long-term spectrum loses even the F0 region, and
    that baseline falls to chance (about 45 % EER on veri_test2) instead of the intended 20-30 %."""
    rows = [biquad("peak", float(np.exp(rng.uniform(np.log(150), np.log(6000)))),
                   float(np.clip(rng.normal(0, 3), -6, 6)), rng.uniform(0.5, 2.0))
            for _ in range(rng.integers(2, 4))]
    rows += [biquad("low", 200, rng.uniform(-3, 3), 0.7), biquad("high", 3000, rng.uniform(-4, 3), 0.7)]
    if rng.random() < 0.3:
        rows += list(signal.butter(2, rng.uniform(50, 150), "highpass", fs=SR, output="sos"))
    if rng.random() < 0.1:
        rows += list(signal.butter(4, rng.uniform(4000, 7000), "lowpass", fs=SR, output="sos"))
    rir = None
    if rng.random() < 0.6:
        rt60 = rng.uniform(0.15, 0.6)
        rir = make_rir(rng, rt60, min(1.0, max(0.3, rt60)), rng.uniform(3, 15))
    return Channel(np.array(rows), rir, rng.uniform(-6, -3), float(rng.choice([0, 0, 0, 0, 50, 60])),
                   rng.uniform(15, 30), rng.uniform(0.6, 0.95))


def apply_channel(rng: np.random.Generator, x: np.ndarray, ch: Channel) -> np.ndarray:
    n = len(x)
    if ch.rir is not None:
        start = int(np.argmax(np.abs(ch.rir)))  # keep the direct path aligned with the dry speech
        x = signal.fftconvolve(x, ch.rir)[start:start + n]
    x = signal.sosfilt(ch.sos, x)
    noise = coloured_noise(rng, n, ch.noise_slope)
    if ch.hum:
        t = np.arange(n) / SR
        noise += sum(np.sin(2 * np.pi * ch.hum * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
    noise *= np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2)) * 10 ** (-ch.snr_db / 20)
    return x + noise


def to_pcm(x: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Peak-normalised 16-bit PCM."""
    return np.round(x * (peak * 32767 / (np.max(np.abs(x)) + 1e-12))).astype(np.int16)


def write_audio(path: Path, pcm: np.ndarray, fmt: str) -> None:
    """16-bit PCM as WAV or FLAC, renamed into place only once complete."""
    with atomic_open(path, "wb") as f:
        sf.write(f, pcm, SR, format=fmt, subtype="PCM_16")


def write_wav(path: Path, x: np.ndarray, peak: float = 0.9) -> None:
    write_audio(path, to_pcm(x, peak), "WAV")


# ----------------------------------------------------------------------------------------------
# VoxCeleb1


def speaker_ids(num_speakers: int, num_test: int) -> tuple[list[str], list[str]]:
    """(dev, test) ids: test inside the official test range, dev counting up from id10001 around it."""
    if not 2 <= num_test <= len(TEST_IDS) or num_test >= num_speakers:
        raise DataError(f"need 2 <= --num-test-speakers <= {len(TEST_IDS)} and < --num-speakers")
    dev = [i for i in range(10001, 10001 + num_speakers + len(TEST_IDS)) if i not in TEST_IDS]
    return [f"id{i}" for i in dev[:num_speakers - num_test]], [f"id{i}" for i in TEST_IDS[:num_test]]


def gender_of(spk: str) -> str:
    return "m" if int(spk[2:]) % 2 else "f"  # alternate, so every split has both groups


def video_id(seed: int, spk: str, v: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(alphabet[i] for i in rng_for(seed, "video", spk, v).integers(0, 64, 11))


def utterance_keys(cfg: dict, spk: str) -> dict[str, list[str]]:
    """video -> its keys (idXXXXX/<video>/NNNNN.wav), numbered on through the speaker as in VoxCeleb."""
    out, k = {}, 0
    for v in range(cfg["videos_per_speaker"]):
        vid = video_id(cfg["seed"], spk, v)
        out[vid] = [f"{spk}/{vid}/{k + u + 1:05d}.wav" for u in range(cfg["utts_per_video"])]
        k += cfg["utts_per_video"]
    return out


def make_speaker(cfg: dict, out: Path, spk: str) -> None:
    seed = cfg["seed"]
    voice = draw_speaker(rng_for(seed, "speaker", spk), gender_of(spk))
    for v, keys in enumerate(utterance_keys(cfg, spk).values()):
        sess, chan = draw_session(rng_for(seed, "session", spk, v)), draw_channel(rng_for(seed, "channel", spk, v))
        for u, key in enumerate(keys):
            path = out / "voxceleb1" / "wav" / key
            if path.exists():  # complete by construction (atomic) and identical by determinism
                continue
            rng = rng_for(seed, "utt", spk, v, u)
            n = int(round(rng.uniform(cfg["min_dur"], cfg["max_dur"]) * SR))
            write_wav(path, apply_channel(rng, synth_speech(rng, voice, sess, n), chan), chan.peak)


def trials(rng: np.random.Generator, keys: dict[str, dict[str, list[str]]], groups: list[list[str]],
           per_side: int) -> list[str]:
    """For each enrolment utterance: targets from the speaker's other videos, non-targets from the
    other speakers of its group; as many of each, so the list is balanced."""
    lines = []
    for group in groups:
        for spk in group:
            others = [k for s in group if s != spk for vid in keys[s].values() for k in vid]
            for vid, enrols in keys[spk].items():
                cross = [k for v, ks in keys[spk].items() if v != vid for k in ks]
                for e in enrols:
                    m = min(per_side, len(cross), len(others))  # a speaker alone in its group gets none
                    lines += [f"1 {e} {t}" for t in rng.choice(cross, m, replace=False)]
                    lines += [f"0 {e} {t}" for t in rng.choice(others, m, replace=False)]
    return lines


def write_trials(cfg: dict, out: Path, dev: list[str], test: list[str]) -> None:
    """Cleaned lists (names ending in 2) and 'uncleaned' ones holding ~1 % extra trials, as in VoxCeleb."""
    keys = {s: utterance_keys(cfg, s) for s in dev + test}
    everyone = sorted(dev + test)
    by_gender = [[s for s in everyone if gender_of(s) == g] for g in ("f", "m")]
    lists = {"veri_test": ([test], 8), "list_test_all": ([everyone], 3), "list_test_hard": (by_gender, 3)}
    for name, (groups, per_side) in lists.items():
        rng = rng_for(cfg["seed"], "trials", name)
        full = trials(rng, keys, groups, per_side)
        cleaned = [line for line, drop in zip(full, rng.random(len(full)) < 0.01) if not drop]
        write_lines(out / "voxceleb1" / f"{name}.txt", full)
        write_lines(out / "voxceleb1" / f"{name}2.txt", cleaned)
    test_set = set(test)
    write_lines(out / "voxceleb1" / "vox1_meta.csv",
                ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
                + [f"{s}\tSynthetic_{s}\t{gender_of(s)}\tSynthetic\t{'test' if s in test_set else 'dev'}"
                   for s in everyone])


# ----------------------------------------------------------------------------------------------
# CN-Celeb1 (CN-Celeb_flac) and CN-Celeb2 (CN-Celeb2_flac)


def cnceleb_ids(cn: dict) -> tuple[list[str], list[str], list[str]]:
    """(CN-Celeb1 dev, CN-Celeb1 eval, CN-Celeb2) speaker ids, in the ranges of the releases."""
    n_eval = cn["eval_speakers"]
    dev = [f"id{i:05d}" for i in range(cn["cnceleb1_speakers"] - n_eval)]
    evals = [f"id{CN_EVAL_FIRST + i:05d}" for i in range(n_eval)]
    return dev, evals, [f"id{CN2_FIRST + i:05d}" for i in range(cn["cnceleb2_speakers"])]


def cn_sessions(cfg: dict, spk: str) -> list[tuple[str, list[str]]]:
    """(session <genre>-NN, its utterance names <genre>-NN-NNN) of a speaker: genres in a random order,
    NN counting up when a speaker has more sessions than there are genres."""
    cn = cfg["cnceleb"]
    order = rng_for(cfg["seed"], "cn-genres", spk).permutation(len(GENRES))
    out = []
    for s in range(cn["genres_per_speaker"]):
        session = f"{GENRES[order[s % len(GENRES)]]}-{s // len(GENRES) + 1:02d}"
        out.append((session, [f"{session}-{u + 1:03d}" for u in range(cn["utts_per_genre"])]))
    return out


def make_cn_speaker(cfg: dict, out: Path, name: str) -> None:
    """One speaker's utterances under <corpus>/data/<spk>/; for an evaluation speaker also its test
    utterances (sessions after the first) in eval/test/ and its enrollment (the first session's
    segments concatenated) in eval/enroll/."""
    corpus, spk = name.split("/")
    seed = cfg["seed"]
    is_eval = corpus == CN1 and int(spk[2:]) >= CN_EVAL_FIRST
    base = out / corpus
    voice = draw_speaker(rng_for(seed, "cn-speaker", spk), gender_of(spk))
    enroll_path = base / "eval" / "enroll" / f"{spk}-enroll.flac"
    enroll_pcm = []
    for s, (_, utts) in enumerate(cn_sessions(cfg, spk)):
        sess = draw_session(rng_for(seed, "cn-session", spk, s))
        chan = draw_channel(rng_for(seed, "cn-channel", spk, s))
        for u, utt in enumerate(utts):
            paths = [base / "data" / spk / f"{utt}.flac"]
            if is_eval and s > 0:
                paths.append(base / "eval" / "test" / f"{spk}-{utt}.flac")
            if all(p.exists() for p in paths):  # complete by construction (atomic) and identical by determinism
                if is_eval and s == 0 and not enroll_path.exists():
                    enroll_pcm.append(sf.read(paths[0], dtype="int16")[0])
                continue
            rng = rng_for(seed, "cn-utt", spk, s, u)
            n = int(round(rng.uniform(cfg["min_dur"], cfg["max_dur"]) * SR))
            pcm = to_pcm(apply_channel(rng, synth_speech(rng, voice, sess, n), chan), chan.peak)
            for p in paths:
                write_audio(p, pcm, "FLAC")
            if is_eval and s == 0:
                enroll_pcm.append(pcm)
    if is_eval and not enroll_path.exists():
        write_audio(enroll_path, np.concatenate(enroll_pcm), "FLAC")


def write_cnceleb_lists(cfg: dict, out: Path) -> None:
    """dev.lst, the eval lists (naming .wav files, as the release does) and CN-Celeb2's spk.lst."""
    dev, evals, cn2 = cnceleb_ids(cfg["cnceleb"])
    lists = out / CN1 / "eval" / "lists"
    write_lines(out / CN1 / "dev" / "dev.lst", dev)
    sessions = {spk: cn_sessions(cfg, spk) for spk in evals}
    write_lines(lists / "enroll.map", [f"{spk}-enroll " + " ".join(f"{spk}/{u}.wav" for u in sessions[spk][0][1])
                                       for spk in evals])
    write_lines(lists / "enroll.lst", [f"{spk}-enroll enroll/{spk}-enroll.wav" for spk in evals])
    tests = [(spk, f"test/{spk}-{u}.wav") for spk in evals for _, utts in sessions[spk][1:] for u in utts]
    write_lines(lists / "test.lst", [t for _, t in tests])
    write_lines(lists / "trials.lst",
                [f"{model}-enroll {t} {int(model == spk)}" for model in evals for spk, t in tests])
    write_lines(out / CN2 / "spk.lst", cn2)


# ----------------------------------------------------------------------------------------------
# MUSAN


def note(freq: float, seconds: float, harmonics: int, decay: float) -> np.ndarray:
    """A plucked harmonic tone, read from a one-period wavetable (harmonics above Nyquist left out)."""
    k = np.arange(1, min(harmonics, int(SR / 2 / freq)) + 1)[:, None]
    table = np.sum(np.sin(2 * np.pi * k * np.arange(2048) / 2048) / k ** 1.3, axis=0)
    t = np.arange(int(seconds * SR)) / SR
    return table[(t * freq * 2048).astype(int) % 2048] * np.minimum(1, t / 0.01) * np.exp(-t / decay)


def synth_music(rng: np.random.Generator, n: int) -> np.ndarray:
    """Chords, a bass line, a melody and drums over a I-V-vi-IV progression in a random key."""
    x = np.zeros(n + SR)
    beat = 60 / rng.uniform(80, 140)
    key = 110 * 2 ** (rng.integers(0, 12) / 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    timbre = int(rng.integers(3, 10))
    for bar, root in enumerate(int(r) for r in np.tile([0, 7, 9, 5], 50)):
        start = int(bar * 4 * beat * SR)
        if start >= n:
            break
        for step in (0, 4, 7) if root != 9 else (0, 3, 7):
            tone = note(key * 2 ** ((root + step) / 12 + 1), 4 * beat, timbre, 2 * beat)
            x[start:start + len(tone)] += 0.25 * tone[:len(x) - start]
        bass = note(key * 2 ** (root / 12 - 1), 4 * beat, 4, 3 * beat)
        x[start:start + len(bass)] += 0.5 * bass[:len(x) - start]
        for b in range(8):
            s = start + int(b * beat / 2 * SR)
            if s >= n:
                break
            mel = note(key * 2 ** (scale[rng.integers(8)] / 12 + 2), beat / 2, timbre, beat / 3)
            x[s:s + len(mel)] += 0.2 * mel[:len(x) - s]
            hat = rng.standard_normal(400) * np.exp(-np.arange(400) / 60)
            x[s:s + 400] += 0.1 * hat
            if b % 4 == 0:
                t = np.arange(int(0.15 * SR)) / SR
                x[s:s + len(t)] += 0.8 * np.sin(2 * np.pi * (50 + 80 * np.exp(-t / 0.03)) * t) * np.exp(-t / 0.05)
    return x[:n]


IMPULSES = {"knocks": (100, 1500, 0.04), "claps": (800, 6000, 0.01)}  # band (Hz) and decay (s) of the bursts


def synth_noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Stationary (fan, rumble, hum) or impulsive/tonal (knocks, claps, beeps) noise."""
    t = np.arange(n) / SR
    if kind == "fan":
        return coloured_noise(rng, n, rng.uniform(-6, -1)) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 2) * t))
    if kind == "rumble":
        return signal.sosfilt(signal.butter(2, 300, fs=SR, output="sos"), coloured_noise(rng, n, -6))
    if kind == "hum":
        f = rng.choice([50, 60])
        return 0.3 * coloured_noise(rng, n, -3) + sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 6))
    x = 0.05 * coloured_noise(rng, n, -3)
    if kind == "beeps":
        period, length = rng.uniform(0.4, 1.2), rng.uniform(0.1, 0.3)
        return x + np.sin(2 * np.pi * rng.uniform(600, 2500) * t) * ((t % period) < length)
    low, high, decay = IMPULSES[kind]
    for onset in rng.uniform(0, n / SR, int(n / SR * rng.uniform(2, 6))):
        sos = signal.butter(2, sorted(rng.uniform(low, high, 2)), "bandpass", fs=SR, output="sos")
        burst = signal.sosfilt(sos, rng.standard_normal(int(0.2 * SR))) * np.exp(-np.arange(int(0.2 * SR)) / (decay * SR))
        s = int(onset * SR)
        x[s:s + len(burst)] += 3 * burst[:n - s] / (np.std(burst) + 1e-12)
    return x


MUSAN_NOISE = {"free-sound": ["fan", "rumble", "knocks", "hum"], "sound-bible": ["beeps", "claps"]}
MUSAN_BACKGROUND = {"fan", "rumble", "hum"}  # stationary: listed as background in ANNOTATIONS
MUSAN_MUSIC = {"fma": ("Pop", "Electronic"), "jamendo": ("Rock", "Classical")}
MUSAN_SPEECH = ("librivox", "us-gov")
MUSAN_README = """MUSAN-like corpus (synthetic)

Layout and file names follow MUSAN (OpenSLR 17): noise/, music/ and speech/, each split by source,
16 kHz 16-bit mono wavs, and an ANNOTATIONS file per source folder: for noise the ids of the
background (stationary) noises, for music "<id> <genre> <vocals Y/N> <artist>", for speech
"<id> <gender> <language>". All audio is synthetic (local/make_synthetic_corpus.py); the speech is
made by the corpus's voice synthesiser with voices that no corpus speaker has.
"""


def make_musan(cfg: dict, out: Path) -> None:
    seed, root = cfg["seed"], out / "musan"

    def length(rng: np.random.Generator) -> int:
        return int(rng.uniform(5.0, 10.0) * SR)

    for source, kinds in MUSAN_NOISE.items():
        ids = [f"noise-{source}-{i:04d}" for i in range(len(kinds))]
        for name, kind in zip(ids, kinds):
            rng = rng_for(seed, "musan", name)
            write_wav(root / "noise" / source / f"{name}.wav", synth_noise(rng, kind, length(rng)), 0.7)
        write_lines(root / "noise" / source / "ANNOTATIONS", [i for i, k in zip(ids, kinds) if k in MUSAN_BACKGROUND])
    for source, genres in MUSAN_MUSIC.items():
        rows = []
        for i, genre in enumerate(genres):
            name = f"music-{source}-{i:04d}"
            rng = rng_for(seed, "musan", name)
            write_wav(root / "music" / source / f"{name}.wav", synth_music(rng, length(rng)), 0.8)
            rows.append(f"{name} {genre} N Synthetic_Artist_{source}_{i}")
        write_lines(root / "music" / source / "ANNOTATIONS", rows)
    for source in MUSAN_SPEECH:
        rows = []
        for i, gender in enumerate(("m", "f")):
            name = f"speech-{source}-{i:04d}"
            rng = rng_for(seed, "musan", name)
            voice = draw_speaker(rng, gender)  # its own key: a voice no corpus speaker has
            write_wav(root / "speech" / source / f"{name}.wav", synth_speech(rng, voice, Session(), length(rng)))
            rows.append(f"{name} {'male' if gender == 'm' else 'female'} english")
        write_lines(root / "speech" / source / "ANNOTATIONS", rows)
    with atomic_open(root / "README") as f:
        f.write(MUSAN_README)


# ----------------------------------------------------------------------------------------------
# RIRS_NOISES (OpenSLR 28)

ROOMS = {"smallroom": (0.2, 0.4), "mediumroom": (0.4, 0.7), "largeroom": (0.7, 1.0)}  # RT60 ranges, s
REAL_ROOMS = ("smallroom1", "largeroom1")


def make_rirs(cfg: dict, out: Path) -> None:
    seed, root = cfg["seed"], out / "RIRS_NOISES"
    for room_type, (lo, hi) in ROOMS.items():
        rows = []
        for r in range(1, 3):
            room = f"Room{r:03d}"
            rt60 = rng_for(seed, "rirs", room_type, room).uniform(lo, hi)
            for k in range(1, 4):
                rng = rng_for(seed, "rirs", room_type, room, k)
                rel = f"RIRS_NOISES/simulated_rirs/{room_type}/{room}/{room}-{k:05d}.wav"
                write_wav(out / rel, make_rir(rng, rt60, min(1.0, max(0.3, rt60)), rng.uniform(-3, 10)))
                rows.append(f"--rir-id {room_type}-{room}-{k:05d} --room-id {room_type}-{room} {rel}")
        write_lines(root / "simulated_rirs" / room_type / "rir_list", rows)

    real = "RIRS_NOISES/real_rirs_isotropic_noises"
    rir_rows, noise_rows = [], []
    for room in REAL_ROOMS:
        rt60 = 0.3 if room.startswith("small") else 0.9
        for pos in ("near_angla", "far_angla"):
            rng = rng_for(seed, "rirs", "real", room, pos)
            name = f"RVB2014_type1_rir_{room}_{pos}.wav"
            write_wav(out / real / name, make_rir(rng, rt60, rt60, 8.0 if pos.startswith("near") else 0.0))
            rir_rows.append(f"--rir-id {len(rir_rows) + 1:05d} --room-id RVB2014_{room} {real}/{name}")
        rng = rng_for(seed, "rirs", "real", room, "noise")
        name = f"RVB2014_type1_noise_{room}_1.wav"
        write_wav(out / real / name, synth_noise(rng, "fan", 8 * SR), 0.5)
        noise_rows.append(f"--noise-id {len(noise_rows) + 1:05d} --noise-type isotropic "
                          f"--room-linkage RVB2014_{room} {real}/{name}")
    write_lines(root / "real_rirs_isotropic_noises" / "rir_list", rir_rows)
    write_lines(root / "real_rirs_isotropic_noises" / "noise_list", noise_rows)

    rows = []
    for i, kind in enumerate(("knocks", "beeps", "claps", "fan")):
        name = f"noise-free-sound-{i:04d}"
        rng = rng_for(seed, "rirs", "pointsource", name)
        write_wav(root / "pointsource_noises" / f"{name}.wav", synth_noise(rng, kind, int(rng.uniform(2, 6) * SR)), 0.7)
        rows.append(f"--noise-id {name} --noise-type point-source --bg-fg-type foreground "
                    f"RIRS_NOISES/pointsource_noises/{name}.wav")
    write_lines(root / "pointsource_noises" / "noise_list", rows)


# ----------------------------------------------------------------------------------------------


def run_task(task: tuple) -> str:
    kind, cfg, out, arg = task
    if kind == "speaker":
        make_speaker(cfg, out, arg)
    elif kind == "cnceleb":
        make_cn_speaker(cfg, out, arg)
    elif kind == "musan":
        make_musan(cfg, out)
    else:
        make_rirs(cfg, out)
    return arg or kind


def report_progress(done: Iterator[str], total: int) -> None:
    for i, name in enumerate(done, 1):
        log.info("[%d/%d] %s done", i, total, name)


def prepare_out_dir(out: Path, stamp: str) -> bool:
    """True when `out` already holds this corpus. Clears a corpus made with other parameters; a run
    with the same parameters that was killed is resumed."""
    done, started = out / ".done", out / ".started"
    if done.is_file() and done.read_text() == stamp:
        return True
    ours = done.is_file() or started.is_file()
    if ours and not (started.is_file() and started.read_text() == stamp):
        log.info("%s holds a corpus made with other parameters: removing it", out)
        for d in OWN_DIRS:
            shutil.rmtree(out / d, ignore_errors=True)
    elif not ours and any((out / d).exists() for d in OWN_DIRS):
        raise DataError(f"{out}: has {'/'.join(OWN_DIRS)} folders this script did not write; not touching them")
    else:  # resuming: a killed writer can leave its temporary file behind
        for d in OWN_DIRS:
            for tmp in (out / d).rglob(".*.tmp"):
                tmp.unlink()
    done.unlink(missing_ok=True)
    with atomic_open(started) as f:
        f.write(stamp)
    return False


HELP = """Write a deterministic synthetic mini corpus in the real on-disk layouts, under OUT_DIR:

  voxceleb1/wav/idXXXXX/<11-char video>/NNNNN.wav   16 kHz mono 16-bit speech; test speakers
                                                    take ids in id10270-id10309, dev ids the rest
  voxceleb1/veri_test2.txt, veri_test.txt           Vox1-O style trials over the test speakers
  voxceleb1/list_test_all2.txt, list_test_all.txt   Vox1-E style trials over all speakers
  voxceleb1/list_test_hard2.txt, list_test_hard.txt Vox1-H style: non-targets of the same gender
  voxceleb1/vox1_meta.csv                           id, gender, dev/test
  musan/{noise,music,speech}/<source>/*.wav         with ANNOTATIONS per folder, and musan/README
  RIRS_NOISES/simulated_rirs/<size>room/RoomNNN/    RIRs, with a rir_list per room size
  RIRS_NOISES/real_rirs_isotropic_noises/           RIRs and isotropic noises, rir_list, noise_list
  RIRS_NOISES/pointsource_noises/                   noises and noise_list
  .done                                             the parameters, written last
With --cnceleb also (16 kHz mono 16-bit FLAC; genre sessions <genre>-NN play the role of videos):
  CN-Celeb_flac/data/idXXXXX/<genre>-NN-NNN.flac    every CN-Celeb1 utterance; dev speakers
                                                    id00000 up, evaluation speakers id00800 up
  CN-Celeb_flac/dev/dev.lst                         the dev speakers
  CN-Celeb_flac/eval/enroll/idXXXXX-enroll.flac     an evaluation speaker's first session, concatenated
  CN-Celeb_flac/eval/test/idXXXXX-<genre>-NN-NNN.flac  its other sessions
  CN-Celeb_flac/eval/lists/enroll.map               idXXXXX-enroll idXXXXX/<genre>-NN-NNN.wav ...
  CN-Celeb_flac/eval/lists/{enroll.lst,test.lst}    idXXXXX-enroll enroll/idXXXXX-enroll.wav; test/....wav
  CN-Celeb_flac/eval/lists/trials.lst               every model against every test utterance:
                                                    idXXXXX-enroll test/idYYYYY-<genre>-NN-NNN.wav 1|0
  CN-Celeb2_flac/data/idXXXXX/<genre>-NN-NNN.flac   CN-Celeb2 speakers, id10000 up; and spk.lst

Trial lines are "1|0 <enrol key> <test key>" (1: same speaker; targets always from different videos);
the files without the 2 hold about 1 % more trials, like VoxCeleb's uncleaned lists. A rerun with
the same parameters returns at once, one that was killed resumes, and one with other parameters
replaces the corpus.
"""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=HELP, formatter_class=HelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="the corpus is a function of the seed and the sizes")
    p.add_argument("--num-speakers", type=int, default=40, help="dev + test speakers")
    p.add_argument("--num-test-speakers", type=int, default=10, help="speakers of veri_test*.txt")
    p.add_argument("--videos-per-speaker", type=int, default=3, help="each video has its own channel")
    p.add_argument("--utts-per-video", type=int, default=5, help="utterances per video")
    p.add_argument("--min-dur", type=float, default=2.0, help="seconds")
    p.add_argument("--max-dur", type=float, default=5.0, help="seconds")
    p.add_argument("--nj", type=int, default=2, help="parallel jobs; the output does not depend on it")
    cn = p.add_argument_group("CN-Celeb (with --cnceleb; utterance lengths from --min-dur/--max-dur)")
    cn.add_argument("--cnceleb", action="store_true", help="also write CN-Celeb_flac/ and CN-Celeb2_flac/")
    cn.add_argument("--cnceleb1-speakers", type=int, default=20, help="CN-Celeb1 dev + evaluation speakers")
    cn.add_argument("--cnceleb-eval-speakers", type=int, default=6, help="CN-Celeb1 evaluation speakers")
    cn.add_argument("--cnceleb2-speakers", type=int, default=10, help="CN-Celeb2 speakers")
    cn.add_argument("--genres-per-speaker", type=int, default=3,
                    help="genre sessions per speaker (an evaluation speaker enrolls with its first)")
    cn.add_argument("--utts-per-genre", type=int, default=3, help="utterances per genre session")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    args = p.parse_args(argv)
    if args.cnceleb:
        if not 1 <= args.cnceleb_eval_speakers <= CN_EVAL_MAX:
            p.error(f"need 1 <= --cnceleb-eval-speakers <= {CN_EVAL_MAX}")
        if not 1 <= args.cnceleb1_speakers - args.cnceleb_eval_speakers <= CN_EVAL_FIRST:
            p.error(f"need 1 to {CN_EVAL_FIRST} CN-Celeb1 dev speakers (--cnceleb1-speakers minus "
                    "--cnceleb-eval-speakers)")
        if not 1 <= args.cnceleb2_speakers <= 2000:
            p.error("need 1 <= --cnceleb2-speakers <= 2000")
        if args.genres_per_speaker < 2 or args.utts_per_genre < 1:
            p.error("need --genres-per-speaker >= 2 (enrollment and test sessions) and --utts-per-genre >= 1")
    if args.videos_per_speaker < 2 or args.utts_per_video < 1:
        p.error("need --videos-per-speaker >= 2 (target trials pair different videos) and --utts-per-video >= 1")
    if not 0.5 <= args.min_dur <= args.max_dur:
        p.error("need 0.5 <= --min-dur <= --max-dur")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = {k: getattr(args, k) for k in ("seed", "num_speakers", "num_test_speakers", "videos_per_speaker",
                                         "utts_per_video", "min_dur", "max_dur")}
    cn_speakers: list[str] = []
    if args.cnceleb:  # only then in the stamp, so the corpus without it is unchanged
        cfg["cnceleb"] = {"cnceleb1_speakers": args.cnceleb1_speakers, "eval_speakers": args.cnceleb_eval_speakers,
                          "cnceleb2_speakers": args.cnceleb2_speakers, "genres_per_speaker": args.genres_per_speaker,
                          "utts_per_genre": args.utts_per_genre}
        cn_dev, cn_eval, cn2 = cnceleb_ids(cfg["cnceleb"])
        cn_speakers = [f"{CN1}/{s}" for s in cn_dev + cn_eval] + [f"{CN2}/{s}" for s in cn2]
    stamp = json.dumps({"version": VERSION, **cfg}, sort_keys=True) + "\n"
    dev, test = speaker_ids(args.num_speakers, args.num_test_speakers)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if prepare_out_dir(out, stamp):
        log.info("%s already holds this corpus; nothing to do", out)
        return
    # the longest tasks first, so that the workers finish together
    tasks = [("musan", cfg, out, ""), ("rirs", cfg, out, "")] + [("speaker", cfg, out, s) for s in dev + test]
    tasks += [("cnceleb", cfg, out, s) for s in cn_speakers]
    if args.nj > 1:
        with multiprocessing.Pool(args.nj) as pool:
            report_progress(pool.imap_unordered(run_task, tasks), len(tasks))
    else:
        report_progress(map(run_task, tasks), len(tasks))
    write_trials(cfg, out, dev, test)
    if args.cnceleb:
        write_cnceleb_lists(cfg, out)
    with atomic_open(out / ".done") as f:
        f.write(stamp)
    (out / ".started").unlink()
    log.info("wrote %d speakers (%d test) to %s", len(dev) + len(test), len(test), out)
    if args.cnceleb:
        log.info("wrote %d CN-Celeb1 speakers (%d evaluation) and %d CN-Celeb2 speakers to %s",
                 args.cnceleb1_speakers, args.cnceleb_eval_speakers, args.cnceleb2_speakers, out)


if __name__ == "__main__":
    run_main(main)
