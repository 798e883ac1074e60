"""The training data pipeline: batches of (features or waveforms, speaker label) for one epoch of one DDP rank.

Three modes, chosen by `data.mode`:
  features: crops of the precomputed features in <train_dir>/feats.scp (read with kaldiio);
  raw:      crops of the audio in <train_dir>/wav.scp, augmented on the fly, then fbank;
  waveform: the same augmented crops at data.sample_rate, as waveforms, for models on a pre-trained speech
            encoder (which normalises its input itself, so data.normalize and SpecAugment do not apply).
Each is a WeSpeaker-style chain of generators over samples:
  features: shard -> load_feats -> normalize -> spec_augment -> collate
  raw:      shard -> draw_speed -> load_waves -> perturb_speed -> add_reverb -> add_musan -> fbank
            -> normalize -> spec_augment -> collate
  waveform: shard -> draw_speed -> load_waves -> perturb_speed -> add_reverb -> add_musan -> collate

Augmentation, each step applied to an item with its own probability: speed perturbation (prob is the
chance of a speed other than 1.0, drawn uniformly from speeds; WeSpeaker's uniform pick among 1.0, 0.9
and 1.1 is prob 2/3), reverberation with a random RIR, then MUSAN noise, music or babble at an SNR drawn
from its type's range (raw mode); SpecAugment masks on the normalised features (both modes).

Determinism. An epoch's utterance order is a permutation drawn from (seed, epoch), cut to a multiple of
world_size x batch_size so that every rank gets the same number of batches (DDP would hang otherwise).
Global batch g holds order[g*B:(g+1)*B] and goes to rank g % world_size. Every random choice for that
batch (crop length, offsets, speeds, augmentations, SNRs, masks) comes from generators seeded by
(seed, epoch, g) - one for the batch, one per item - so a batch is the same whatever the number of ranks
or DataLoader workers, and resuming at a batch needs no replay of the ones before it.

Labels. Speakers in spk2utt (sorted) order are 0..S-1. In raw mode with speed perturbation an item is
played at speed index k (0: 1.0, i >= 1: speed_perturb.speeds[i-1]); with as_new_speakers its label is
spk + k*S, so k = label // S tells which speed it got. Without as_new_speakers it keeps spk.
"""
from __future__ import annotations

import copy
import difflib
import functools
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import kaldiio
import numpy as np
import torch
import torchaudio.functional
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sv.data import augment
from sv.data.audio import AudioError, load_audio
from sv.data.crop import draw_num_frames, random_chunk
from sv.data.data_dir import validate_data_dir
from sv.data.fbank import INT16_SCALE, compute_fbank, default_config, load_config
from sv.data.table import DataError, read_scp, read_spk2utt

log = logging.getLogger(__name__)

MODES = ("features", "raw", "waveform")
NORMALIZATIONS = ("mean", "meanvar", "none")
BABBLE = "speech"  # the MUSAN type that is mixed as babble of several files

DEFAULTS: dict[str, Any] = {
    "train_dir": None,          # required
    "mode": "features",
    "fbank_config": None,       # raw mode; None: <train_dir>/conf/fbank.yaml if present, else fbank's defaults
    "sample_rate": 16000,       # waveform mode
    "batch_size": 64,           # per rank
    "num_workers": 2,
    "crop": 2.0,                # seconds, or [low, high] drawn per batch
    "normalize": "mean",
    "seed": 42,
    "speed_perturb": {"prob": 0.0, "speeds": [0.9, 1.1], "as_new_speakers": True},
    "musan": {"data_dir": "data/musan", "prob": 0.0,
              "snr": {"noise": [0, 15], "music": [5, 15], "speech": [13, 20]}, "babble_speakers": [3, 7]},
    "rir": {"data_dir": "data/rirs", "prob": 0.0},
    "specaug": {"prob": 0.0, "time_masks": 1, "time_width": 10, "freq_masks": 1, "freq_width": 8},
}
# Mappings whose keys are the user's to choose (MUSAN type names), merged rather than checked.
_OPEN_MAPPINGS = {"data.musan.snr"}
_ORDER_STREAM, _BATCH_STREAM = 0, 1  # SeedSequence spawn keys keep the two kinds of draws independent
_AUDIO_MARGIN_S = 0.01  # read a little extra so duration rounding and resampling never leave a chunk short


# ---------------------------------------------------------------------------------------------- config

def _merge(defaults: Mapping[str, Any], given: Any, path: str) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        raise DataError(f"{path}: expected a mapping, got {type(given).__name__}")
    out = copy.deepcopy(dict(defaults))
    for key, value in given.items():
        if key not in defaults:
            close = difflib.get_close_matches(str(key), list(defaults), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(f"{path}.{key}: unknown key{hint}; valid keys: {', '.join(defaults)}")
        sub = f"{path}.{key}"
        if sub in _OPEN_MAPPINGS:
            if not isinstance(value, Mapping):
                raise DataError(f"{sub}: expected a mapping, got {type(value).__name__}")
            out[key] = {**defaults[key], **value}
        elif isinstance(defaults[key], Mapping):
            out[key] = _merge(defaults[key], value, sub)
        else:
            out[key] = value
    return out


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _require(ok: bool, path: str, what: str, value: Any) -> None:
    if not ok:
        raise DataError(f"{path}: must be {what}, got {value!r}")


def _is_range(x: Any, is_elem: Callable[[Any], bool]) -> bool:
    return isinstance(x, (list, tuple)) and len(x) == 2 and all(map(is_elem, x)) and x[0] <= x[1]


def resolve_config(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """data_cfg over DEFAULTS, checked: an unknown key or a bad value is a DataError naming it."""
    cfg = _merge(DEFAULTS, data_cfg, "data")
    _require(isinstance(cfg["train_dir"], (str, os.PathLike)), "data.train_dir", "a data directory path",
             cfg["train_dir"])
    _require(cfg["mode"] in MODES, "data.mode", " or ".join(MODES), cfg["mode"])
    _require(cfg["fbank_config"] is None or isinstance(cfg["fbank_config"], (str, os.PathLike)),
             "data.fbank_config", "a file path or null", cfg["fbank_config"])
    _require(_is_int(cfg["batch_size"]) and cfg["batch_size"] >= 1, "data.batch_size", "an integer >= 1",
             cfg["batch_size"])
    _require(_is_int(cfg["num_workers"]) and cfg["num_workers"] >= 0, "data.num_workers", "an integer >= 0",
             cfg["num_workers"])
    _require(_is_int(cfg["seed"]) and cfg["seed"] >= 0, "data.seed", "an integer >= 0", cfg["seed"])
    _require(_is_int(cfg["sample_rate"]) and cfg["sample_rate"] > 0, "data.sample_rate", "an integer > 0 (Hz)",
             cfg["sample_rate"])
    crop = cfg["crop"]
    _require((_is_number(crop) and crop > 0) or (_is_range(crop, _is_number) and crop[0] > 0), "data.crop",
             "seconds > 0, or a [low, high] range of them", crop)
    _require(cfg["normalize"] in NORMALIZATIONS, "data.normalize", " | ".join(NORMALIZATIONS), cfg["normalize"])

    for section in ("speed_perturb", "musan", "rir", "specaug"):
        prob = cfg[section]["prob"]
        _require(_is_number(prob) and 0 <= prob <= 1, f"data.{section}.prob", "a probability in [0, 1]", prob)
    sp = cfg["speed_perturb"]
    _require(isinstance(sp["speeds"], (list, tuple)) and len(sp["speeds"]) > 0
             and all(_is_number(s) and s > 0 and s != 1 for s in sp["speeds"]),
             "data.speed_perturb.speeds", "a non-empty list of positive speed factors other than 1 "
             "(speed index 0 is 1.0)", sp["speeds"])
    _require(isinstance(sp["as_new_speakers"], bool), "data.speed_perturb.as_new_speakers", "true or false",
             sp["as_new_speakers"])
    musan = cfg["musan"]
    for kind, snr in musan["snr"].items():
        _require(_is_range(snr, _is_number), f"data.musan.snr.{kind}", "a [low, high] range in dB", snr)
    _require(_is_range(musan["babble_speakers"], _is_int) and musan["babble_speakers"][0] >= 1,
             "data.musan.babble_speakers", "a [low, high] range of integers >= 1", musan["babble_speakers"])
    for section in ("musan", "rir"):
        _require(isinstance(cfg[section]["data_dir"], (str, os.PathLike)), f"data.{section}.data_dir",
                 "a data directory path", cfg[section]["data_dir"])
    for key in ("time_masks", "time_width", "freq_masks", "freq_width"):
        value = cfg["specaug"][key]
        _require(_is_int(value) and value >= 0, f"data.specaug.{key}", "an integer >= 0", value)
    if cfg["mode"] == "features":
        for section in ("speed_perturb", "musan", "rir"):
            if cfg[section]["prob"] > 0:
                raise DataError(f"data.{section}.prob: {cfg[section]['prob']} needs data.mode: raw "
                                f"(waveform augmentation cannot be applied to precomputed features)")
    if cfg["mode"] == "waveform" and cfg["specaug"]["prob"] > 0:
        raise DataError(f"data.specaug.prob: {cfg['specaug']['prob']} needs fbank features (data.mode: features "
                        f"or raw); waveform mode feeds the model audio")
    return cfg


# ------------------------------------------------------------------------------------------ data dirs

@dataclass(frozen=True)
class Source:
    """Where an item's data lies: a feats.scp or wav.scp entry, and for audio its span in seconds."""
    entry: str
    start: float = 0.0
    duration: float | None = None  # None: unknown, read to the end

    @property
    def end(self) -> float | None:
        return None if self.duration is None else self.start + self.duration


@dataclass(frozen=True)
class Corpus:
    sources: tuple[Source, ...]  # utt2spk (sorted) order
    labels: np.ndarray           # speaker index of each utterance
    num_speakers: int


def _audio_sources(data: Path) -> dict[str, Source]:
    """utt -> Source from wav.scp, segments and utt2dur (the durations allow reading just a chunk)."""
    if not (data / "wav.scp").is_file():
        raise DataError(f"{data / 'wav.scp'}: no such file; raw mode reads the audio it lists")
    wav = read_scp(data / "wav.scp")
    durations = ({k: float(v) for k, v in read_scp(data / "utt2dur").items()}
                 if (data / "utt2dur").is_file() else {})
    if not (data / "segments").is_file():
        return {utt: Source(entry, 0.0, durations.get(utt)) for utt, entry in wav.items()}
    sources = {}
    for utt, value in read_scp(data / "segments").items():
        reco, start, end = value.split()
        span = float(end) - float(start) if float(end) >= 0 else None
        sources[utt] = Source(wav[reco], float(start), durations.get(utt, span))
    return sources


@functools.lru_cache(maxsize=8)
def _load_corpus(train_dir: str, mode: str, stamp: tuple[float, ...]) -> Corpus:
    data = Path(train_dir)
    validate_data_dir(data)
    if mode == "features":
        if not (data / "feats.scp").is_file():
            raise DataError(f"{data / 'feats.scp'}: no such file; data.mode 'features' reads it "
                            f"(make it with steps/make_fbank.sh, or set data.mode: raw)")
        sources = {utt: Source(entry) for utt, entry in read_scp(data / "feats.scp").items()}
    else:
        sources = _audio_sources(data)
    utt2spk = read_scp(data / "utt2spk")
    speaker_index = {spk: i for i, spk in enumerate(read_spk2utt(data / "spk2utt"))}
    corpus = Corpus(tuple(sources[u] for u in utt2spk),
                    np.array([speaker_index[s] for s in utt2spk.values()], dtype=np.int64), len(speaker_index))
    log.info("%s: %d utterances of %d speakers (%s mode)", data, len(corpus.sources), corpus.num_speakers, mode)
    return corpus


def load_corpus(train_dir: str | os.PathLike, mode: str) -> Corpus:
    """The validated training utterances; cached per process while the tables are unchanged, since a
    large corpus takes seconds to check and every epoch asks again."""
    names = ("utt2spk", "spk2utt", "feats.scp", "wav.scp", "segments", "utt2dur")
    stamp = tuple(os.stat(p).st_mtime if p.is_file() else -1.0 for p in (Path(train_dir) / n for n in names))
    return _load_corpus(str(train_dir), mode, stamp)


def load_aug_dir(data_dir: str | os.PathLike, section: str) -> dict[str, tuple[Source, ...]]:
    """The audio files of a MUSAN or RIR data dir by type (its utt2spk "speaker")."""
    data = Path(data_dir)
    if not data.is_dir():
        raise DataError(f"{data}: no such data directory (data.{section}.data_dir; "
                        f"set data.{section}.prob: 0 to train without it)")
    validate_data_dir(data)
    sources = _audio_sources(data)
    by_type: dict[str, list[Source]] = {}
    for utt, kind in read_scp(data / "utt2spk").items():
        by_type.setdefault(kind, []).append(sources[utt])
    return {kind: tuple(files) for kind, files in sorted(by_type.items())}


def frame_shift_ms(train_dir: str | os.PathLike) -> float:
    """The shift the features of a data dir were made with (make_fbank.sh keeps the config in conf/)."""
    path = Path(train_dir) / "conf" / "fbank.yaml"
    return float(load_config(path)["frame_shift"]) if path.is_file() else 10.0


# ------------------------------------------------------------------------------------- epoch planning

def num_classes(data_cfg: Mapping[str, Any]) -> int:
    """Output classes: the speakers, times 1 + len(speeds) when speed perturbation makes new speakers."""
    cfg = resolve_config(data_cfg)
    speakers = load_corpus(cfg["train_dir"], cfg["mode"]).num_speakers
    sp = cfg["speed_perturb"]
    return speakers * (1 + len(sp["speeds"])) if sp["prob"] > 0 and sp["as_new_speakers"] else speakers


def _batches_per_rank(num_utts: int, batch_size: int, world_size: int, train_dir: str) -> int:
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    n = num_utts // (batch_size * world_size)
    if n == 0:
        raise DataError(f"{train_dir}: {num_utts} utterances do not fill one batch of {batch_size} on each of "
                        f"{world_size} ranks; lower data.batch_size")
    return n


def steps_per_epoch(data_cfg: Mapping[str, Any], world_size: int) -> int:
    """Batches each rank gets per epoch; the same on every rank."""
    cfg = resolve_config(data_cfg)
    corpus = load_corpus(cfg["train_dir"], cfg["mode"])
    return _batches_per_rank(len(corpus.sources), cfg["batch_size"], world_size, cfg["train_dir"])


def epoch_batches(num_utts: int, batch_size: int, world_size: int, seed: int, epoch: int) -> np.ndarray:
    """(global batches, batch_size) utterance indices: the epoch's permutation with the remainder dropped."""
    order = np.random.default_rng(np.random.SeedSequence([seed, epoch], spawn_key=(_ORDER_STREAM,))) \
        .permutation(num_utts)
    num_batches = num_utts // (batch_size * world_size) * world_size
    return order[:num_batches * batch_size].reshape(num_batches, batch_size)


# ------------------------------------------------------------------------------------ pipeline steps

@dataclass
class Sample:
    """One batch item on its way through the steps."""
    source: Source
    label: int
    num_frames: int
    rng: np.random.Generator
    speed: float = 1.0
    wave: np.ndarray | None = None
    feats: np.ndarray | None = None


def shard(batches: np.ndarray, batch_ids: Iterable[int], corpus: Corpus, crop: float | list[float],
          shift_ms: float, seed: int, epoch: int) -> Iterator[Sample]:
    """The items of the given global batches, in order, each with its own seeded generator."""
    for g in batch_ids:
        batch_seq = np.random.SeedSequence([seed, epoch], spawn_key=(_BATCH_STREAM, g))
        batch_rng, *item_seqs = (np.random.default_rng(s) for s in batch_seq.spawn(batches.shape[1] + 1))
        num_frames = draw_num_frames(crop, shift_ms, batch_rng)
        for utt, rng in zip(batches[g], item_seqs):
            yield Sample(corpus.sources[utt], int(corpus.labels[utt]), num_frames, rng)


def load_feats(samples: Iterable[Sample]) -> Iterator[Sample]:
    for s in samples:
        feats = kaldiio.load_mat(s.source.entry)
        s.feats = random_chunk(np.asarray(feats, dtype=np.float32), s.num_frames, s.rng)
        yield s


def load_resampled(entry: str, sr: int, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """The audio of a wav.scp entry (from start to end seconds) at sample rate sr."""
    wave, file_sr = load_audio(entry, start, end)
    if file_sr != sr:
        with torch.inference_mode():
            wave = torchaudio.functional.resample(torch.from_numpy(wave), file_sr, sr).numpy()
    return wave


def read_chunk(source: Source, num_samples: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """num_samples at sr from a random offset of the source (tiled when shorter). With a known duration
    only that part of the file is read, which matters for long MUSAN music and speech files."""
    seconds = num_samples / sr + _AUDIO_MARGIN_S
    start, end = source.start, source.end
    if source.duration is not None and source.duration > seconds:
        start += float(rng.uniform(0.0, source.duration - seconds))
        end = start + seconds
    wave = load_resampled(source.entry, sr, start, end)
    if len(wave) == 0:
        raise AudioError(f"no audio in {source.entry!r}")
    return random_chunk(wave, num_samples, rng)


def draw_speed(samples: Iterable[Sample], prob: float, speeds: list[float], num_speakers: int,
               as_new_speakers: bool) -> Iterator[Sample]:
    for s in samples:
        k = int(s.rng.integers(1, len(speeds) + 1)) if s.rng.random() < prob else 0
        s.speed = speeds[k - 1] if k else 1.0
        if as_new_speakers:
            s.label += k * num_speakers
        yield s


def samples_for_frames(num_frames: int, fbank_cfg: Mapping[str, Any]) -> int:
    """Waveform length giving num_frames fbank frames (torchaudio's rounding of window and shift);
    without snip_edges it gives a few more, which the fbank step drops."""
    sr = fbank_cfg["sample_frequency"]
    window = int(sr * fbank_cfg["frame_length"] * 0.001)
    shift = int(sr * fbank_cfg["frame_shift"] * 0.001)
    return (num_frames - 1) * shift + window


def load_waves(samples: Iterable[Sample], crop_samples: Callable[[int], int], sr: int) -> Iterator[Sample]:
    """The crop's audio (crop_samples(num_frames) samples at sr); with a speed other than 1 the stretch of
    source audio that plays in the crop."""
    for s in samples:
        s.wave = read_chunk(s.source, math.ceil(crop_samples(s.num_frames) * s.speed), sr, s.rng)
        yield s


def perturb_speed(samples: Iterable[Sample], crop_samples: Callable[[int], int], sr: int) -> Iterator[Sample]:
    """Speed-perturbing the crop, not the whole utterance, saves resampling audio that is thrown away."""
    for s in samples:
        if s.speed != 1.0:
            s.wave = augment.speed_perturb(s.wave, sr, s.speed)[:crop_samples(s.num_frames)]
        yield s


def add_reverb(samples: Iterable[Sample], rirs: tuple[Source, ...], prob: float, sr: int) -> Iterator[Sample]:
    for s in samples:
        if s.rng.random() < prob:
            rir = rirs[int(s.rng.integers(len(rirs)))]
            s.wave = augment.reverberate(s.wave, load_resampled(rir.entry, sr, rir.start, rir.end))
        yield s


def add_musan(samples: Iterable[Sample], noises: Mapping[str, tuple[Source, ...]], prob: float,
              snr: Mapping[str, list[float]], babble_speakers: list[int], sr: int) -> Iterator[Sample]:
    """Additive noise of a type drawn uniformly among those present. BABBLE sums several files, and
    the SNR is that of the speech against their sum."""
    kinds = sorted(noises)
    for s in samples:
        if s.rng.random() < prob:
            kind = kinds[int(s.rng.integers(len(kinds)))]
            files = noises[kind]
            count = int(s.rng.integers(babble_speakers[0], babble_speakers[1] + 1)) if kind == BABBLE else 1
            picks = s.rng.choice(len(files), size=count, replace=count > len(files))
            noise = augment.babble([read_chunk(files[i], len(s.wave), sr, s.rng) for i in picks])
            s.wave = augment.add_noise(s.wave, noise, float(s.rng.uniform(*snr[kind])))
        yield s


def fbank(samples: Iterable[Sample], fbank_cfg: Mapping[str, Any]) -> Iterator[Sample]:
    """Features of the crop. Dither comes from the item's generator, not torch's global one, so that
    it is reproducible in any worker (it is Kaldi's Gaussian dither, added to the samples up front)."""
    sr = int(fbank_cfg["sample_frequency"])
    dither = fbank_cfg["dither"]
    no_dither = {**fbank_cfg, "dither": 0.0}
    for s in samples:
        wave = s.wave
        if dither > 0:
            wave = wave + (dither / INT16_SCALE) * s.rng.standard_normal(len(wave), dtype=np.float32)
        s.feats = compute_fbank(wave, sr, no_dither)[:s.num_frames]
        s.wave = None
        yield s


def normalize_feats(feats: np.ndarray, how: str) -> np.ndarray:
    """Cepstral mean (and variance) normalisation over time, bin by bin; extraction uses it too."""
    if how != "none":
        feats = feats - feats.mean(axis=0)
    if how == "meanvar":
        feats = feats / np.sqrt(feats.var(axis=0) + 1e-8)
    return feats


def normalize(samples: Iterable[Sample], how: str) -> Iterator[Sample]:
    for s in samples:
        s.feats = normalize_feats(s.feats, how)
        yield s


def spec_augment(samples: Iterable[Sample], prob: float, **masks: int) -> Iterator[Sample]:
    for s in samples:
        if s.rng.random() < prob:
            s.feats = augment.spec_augment(s.feats, s.rng, **masks)
        yield s


def collate(samples: Iterable[Sample], batch_size: int, field: str = "feats") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of the items' `field` (feats, or wave in waveform mode) and labels."""
    group: list[Sample] = []
    for s in samples:
        group.append(s)
        if len(group) == batch_size:
            yield (torch.from_numpy(np.stack([getattr(g, field) for g in group]).astype(np.float32, copy=False)),
                   torch.tensor([g.label for g in group], dtype=torch.int64))
            group = []


# ------------------------------------------------------------------------------------------- loader

def _single_threaded(batches: Iterator[Any]) -> Iterator[Any]:
    """Make each batch with one torch thread, as DataLoader workers do, then give the caller its threads
    back. Thread count changes float reduction order (fbank's matmul, FFTs), so this keeps in-process
    batches bit-identical to the workers' ones; it is also faster for such small ops."""
    while True:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            batch = next(batches)
        except StopIteration:
            return
        finally:
            torch.set_num_threads(threads)
        yield batch


class TrainSet(IterableDataset):
    """One rank's batches of one epoch from `start_batch` on. Worker w of W makes the rank's batches
    start_batch + w, + w + W, ...; the DataLoader takes from workers in turn, so they arrive in order."""

    def __init__(self, cfg: dict[str, Any], rank: int, world_size: int, epoch: int, start_batch: int):
        self.cfg = cfg
        self.epoch = epoch
        self.corpus = load_corpus(cfg["train_dir"], cfg["mode"])
        _batches_per_rank(len(self.corpus.sources), cfg["batch_size"], world_size, cfg["train_dir"])
        self.batches = epoch_batches(len(self.corpus.sources), cfg["batch_size"], world_size, cfg["seed"], epoch)
        self.global_ids = list(range(rank, len(self.batches), world_size))[start_batch:]
        self.fbank_cfg = self._raw_fbank_config() if cfg["mode"] == "raw" else None
        if cfg["mode"] == "features":
            self.shift_ms = frame_shift_ms(cfg["train_dir"])
        elif cfg["mode"] == "raw":
            self.shift_ms = float(self.fbank_cfg["frame_shift"])
        else:  # waveform: a "frame" is a sample, so crops are drawn in samples
            self.shift_ms = 1000.0 / cfg["sample_rate"]
        self.rirs = (tuple(f for files in load_aug_dir(cfg["rir"]["data_dir"], "rir").values() for f in files)
                     if cfg["rir"]["prob"] > 0 else ())
        self.noises = self._musan() if cfg["musan"]["prob"] > 0 else {}

    def _raw_fbank_config(self) -> dict[str, Any]:
        path = self.cfg["fbank_config"] or Path(self.cfg["train_dir"]) / "conf" / "fbank.yaml"
        if self.cfg["fbank_config"] is None and not Path(path).is_file():
            log.info("no %s: raw-mode features use the default fbank options", path)
            return default_config()
        return load_config(path)

    def _musan(self) -> dict[str, tuple[Source, ...]]:
        noises = load_aug_dir(self.cfg["musan"]["data_dir"], "musan")
        for kind in noises:
            if kind not in self.cfg["musan"]["snr"]:
                raise DataError(f"{Path(self.cfg['musan']['data_dir']) / 'utt2spk'}: type {kind!r} has no SNR "
                                f"range; add data.musan.snr.{kind}: [low, high]")
        return noises

    def __len__(self) -> int:
        return len(self.global_ids)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        cfg = self.cfg
        samples = shard(self.batches, self.global_ids[worker::workers], self.corpus, cfg["crop"],
                        self.shift_ms, cfg["seed"], self.epoch)
        if cfg["mode"] == "features":
            samples = load_feats(samples)
        else:
            if cfg["mode"] == "raw":
                sr = int(self.fbank_cfg["sample_frequency"])
                crop_samples = functools.partial(samples_for_frames, fbank_cfg=self.fbank_cfg)
            else:
                sr, crop_samples = cfg["sample_rate"], int
            sp, musan = cfg["speed_perturb"], cfg["musan"]
            samples = draw_speed(samples, sp["prob"], sp["speeds"], self.corpus.num_speakers, sp["as_new_speakers"])
            samples = load_waves(samples, crop_samples, sr)
            samples = perturb_speed(samples, crop_samples, sr)
            samples = add_reverb(samples, self.rirs, cfg["rir"]["prob"], sr)
            samples = add_musan(samples, self.noises, musan["prob"], musan["snr"], musan["babble_speakers"], sr)
        if cfg["mode"] == "waveform":
            batches = collate(samples, cfg["batch_size"], field="wave")
        else:
            if cfg["mode"] == "raw":
                samples = fbank(samples, self.fbank_cfg)
            samples = normalize(samples, cfg["normalize"])
            masks = {k: v for k, v in cfg["specaug"].items() if k != "prob"}
            samples = spec_augment(samples, cfg["specaug"]["prob"], **masks)
            batches = collate(samples, cfg["batch_size"])
        return batches if info is not None else _single_threaded(batches)


def build_train_loader(data_cfg: Mapping[str, Any], rank: int, world_size: int, epoch: int,
                       start_batch: int = 0) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Batches (feats (B, T, F) or waveforms (B, samples) float32, labels (B,) int64) for one epoch of this rank, starting at batch
    `start_batch` (for exact resume). All inputs are checked here, before any worker starts."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    if start_batch < 0:
        raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    cfg = resolve_config(data_cfg)
    dataset = TrainSet(cfg, rank, world_size, epoch, start_batch)
    log.debug("epoch %d rank %d: %d batches from batch %d", epoch, rank, len(dataset), start_batch)
    # Its own generator: iterating a DataLoader otherwise draws a seed from torch's global RNG, and a resumed
    # run would then see different dropout masks from an uninterrupted one.
    return DataLoader(dataset, batch_size=None, num_workers=cfg["num_workers"], persistent_workers=False,
                      pin_memory=torch.cuda.is_available(), generator=torch.Generator())
