"""Extract speaker embeddings (x-vectors) with a trained model, from features or, for a model on a pre-trained
speech encoder (`ssl_speaker`, trained with data.mode: waveform), from the audio.

  python -m sv.bin.extract --model exp/X/models/avg_model.pt FEATS_SCP ARK SCP
  python -m sv.bin.extract --model exp/X/models/avg_model.pt [--segments SEGMENTS] WAV_SCP ARK SCP

Reads:  FEATS_SCP (key -> feature matrix), or WAV_SCP (key -> audio, as in a data dir; with --segments the
        utterances are segments of its recordings), the checkpoint's `model` weights, and its `config`
        (or --config): `model:` builds the network, `data.normalize` says how training normalised features.
Writes: ARK (one float32 vector per utterance) and SCP (key -> ARK:offset), under temporary names
        renamed at the end, the SCP last, so a failed run leaves no table that looks complete.

Each utterance is normalised as a whole (per-utterance mean, or mean and variance, over time), as
training normalised each crop; audio is resampled to data.sample_rate and the encoder normalises it.
Audio lengths count in 10 ms frames for --max-frames and --batch-frames. By default the whole utterance is embedded. With --max-frames N a
longer utterance is cut into chunks of N frames; a final remainder shorter than N/4 is dropped (too
short for a reliable embedding) unless it is the only chunk, and the utterance's embedding is the
frame-count weighted mean of its chunks' embeddings (before any length normalisation, which scoring
does). Features are read in windows of utterances; within a window the chunks are sorted by length and
packed into batches of at most --batch-frames padded frames, and `lengths` keeps the padding out of
the embeddings. Same model, input and --num-threads: bitwise the same vectors.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import kaldiio
import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from sv.cli import run_main
from sv.config import load_yaml
from sv.data import train_loader
from sv.data.audio import AudioError
from sv.data.table import DataError, atomic_open, iter_lines, key_lines, read_scp, where
from sv.models.registry import build_model
from sv.train.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

# A window holds this many batches' worth of frames: enough for length sorting to pack batches
# tightly, while memory stays bounded however long FEATS_SCP is.
WINDOW_BATCHES = 32
MIN_REMAINDER = 0.25  # of --max-frames
FRAMES_PER_SECOND = 100  # the unit of --max-frames and --batch-frames for audio input


@dataclass
class Chunk:
    utt: int             # index of its utterance in the window
    feats: np.ndarray    # (frames, bins), normalised; or (samples,) audio
    embedding: np.ndarray | None = None


def chunk_spans(num_frames: int, max_frames: int | None) -> list[tuple[int, int]]:
    """(start, end) of each chunk of an utterance; see the module docstring."""
    if max_frames is None or num_frames <= max_frames:
        return [(0, num_frames)]
    spans = [(s, min(s + max_frames, num_frames)) for s in range(0, num_frames, max_frames)]
    if spans[-1][1] - spans[-1][0] < MIN_REMAINDER * max_frames:
        spans.pop()
    return spans


def pack_batches(chunks: list[Chunk], batch_frames: int) -> Iterator[list[Chunk]]:
    """Longest first, each batch as many chunks as fit in batch_frames padded frames (at least one)."""
    batch: list[Chunk] = []
    for c in sorted(chunks, key=lambda c: -len(c.feats)):  # stable: ties keep input order
        if batch and (len(batch) + 1) * len(batch[0].feats) > batch_frames:
            yield batch
            batch = []
        batch.append(c)
    if batch:
        yield batch


def embed_batch(model: nn.Module, batch: list[Chunk], device: torch.device) -> None:
    lengths = torch.tensor([len(c.feats) for c in batch])
    padded = torch.zeros(len(batch), int(lengths.max()), *batch[0].feats.shape[1:])
    for i, c in enumerate(batch):
        padded[i, :len(c.feats)] = torch.from_numpy(c.feats)
    out = model(padded.to(device), lengths.to(device)).float().cpu().numpy()
    for c, e in zip(batch, out):
        c.embedding = e


def embed_window(model: nn.Module, chunks: list[Chunk], num_utts: int, batch_frames: int,
                 device: torch.device) -> list[np.ndarray]:
    """One embedding per utterance of the window: the frame-weighted mean of its chunks'."""
    for batch in pack_batches(chunks, batch_frames):
        embed_batch(model, batch, device)
    total = [np.zeros_like(chunks[0].embedding, dtype=np.float64) for _ in range(num_utts)]
    frames = [0] * num_utts
    for c in chunks:
        total[c.utt] += len(c.feats) * c.embedding.astype(np.float64)
        frames[c.utt] += len(c.feats)
    return [(t / n).astype(np.float32) for t, n in zip(total, frames)]


def read_utterance(key: str, entry: str, fds: dict[str, Any], feats_scp: str) -> np.ndarray:
    try:
        feats = np.asarray(kaldiio.load_mat(entry, fd_dict=fds), dtype=np.float32)
    except Exception as e:  # kaldiio raises anything from OSError to ValueError on a bad entry
        raise DataError(f"{feats_scp}: utterance {key}: cannot read {entry}: {e}") from e
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise DataError(f"{feats_scp}: utterance {key}: expected a (frames, bins) matrix with frames, "
                        f"got shape {feats.shape}")
    return feats


def read_audio(key: str, entry: str, start: float, end: float | None, sr: int, wav_scp: str) -> np.ndarray:
    try:
        wave = train_loader.load_resampled(entry, sr, start, end)
    except (AudioError, OSError, RuntimeError) as e:
        raise DataError(f"{wav_scp}: utterance {key}: cannot read {entry}: {e}") from e
    if len(wave) == 0:
        raise DataError(f"{wav_scp}: utterance {key}: no audio in {entry} from {start} s to {end} s")
    return wave


@dataclass(frozen=True)
class Model:
    net: nn.Module
    normalize: str         # how features were normalised in training
    sample_rate: int | None  # audio input at this rate; None: the model takes features


def load_model(model_path: str, config_path: str | None, device: torch.device) -> Model:
    """The embedding network in eval mode, and what input it takes."""
    ckpt = load_checkpoint(model_path)
    if "model" not in ckpt:
        raise DataError(f"{model_path}: no `model` weights in the checkpoint")
    cfg = load_yaml(config_path) if config_path else ckpt.get("config")
    source = config_path or f"{model_path} (its config)"
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise DataError(f"{source}: no `model:` section; pass the training config with --config")
    how = cfg.get("data", {}).get("normalize", train_loader.DEFAULTS["normalize"])
    if how not in train_loader.NORMALIZATIONS:
        raise DataError(f"{source}: data.normalize must be {' | '.join(train_loader.NORMALIZATIONS)}, "
                        f"got {how!r}")
    model = build_model(cfg["model"])
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        raise DataError(f"{model_path}: the weights do not fit the model built from {source}: {e}") from e
    takes_audio = getattr(model, "input_kind", "features") == "waveform"
    sample_rate = int(cfg.get("data", {}).get("sample_rate", train_loader.DEFAULTS["sample_rate"])) if takes_audio else None
    return Model(model.to(device).eval(), how, sample_rate)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device available")
    use_cuda = name == "cuda" or (name == "auto" and torch.cuda.is_available())
    if use_cuda:
        # The same vectors on every run: no autotuned, possibly nondeterministic, convolution algorithms.
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return torch.device("cuda" if use_cuda else "cpu")


def read_windows(table: dict[str, str], input_scp: str, model: Model, segments: dict[str, str] | None,
                 max_frames: int | None, window_frames: int,
                 locate: Callable[[str], str]) -> Iterator[tuple[list[str], list[Chunk]]]:
    """(keys, their chunks) of consecutive utterances, about window_frames frames (or samples) at a time;
    locate(key) says where an utterance is listed, for errors."""
    fds: dict[str, Any] = {}
    keys: list[str] = []
    chunks: list[Chunk] = []
    buffered = 0
    try:
        for key, entry in (segments or table).items():
            if model.sample_rate is None:
                feats = train_loader.normalize_feats(read_utterance(key, entry, fds, locate(key)), model.normalize)
            elif segments is None:
                feats = read_audio(key, entry, 0.0, None, model.sample_rate, locate(key))
            else:
                reco, start, end = entry.split()
                if reco not in table:
                    raise DataError(f"{locate(key)}: no recording {reco} (of segment {key}) in {input_scp}")
                feats = read_audio(key, table[reco], float(start), float(end) if float(end) >= 0 else None,
                                   model.sample_rate, locate(key))
            for start, end in chunk_spans(len(feats), max_frames):
                chunks.append(Chunk(len(keys), feats[start:end]))
                buffered += end - start
            keys.append(key)
            if buffered >= window_frames:
                yield keys, chunks
                keys, chunks, buffered = [], [], 0
        if keys:
            yield keys, chunks
    finally:
        for fd in fds.values():
            fd.close()


def extract(model: Model, input_scp: str, writer: Any, batch_frames: int, max_frames: int | None,
            device: torch.device, segments_path: str | None = None,
            source_table: str | None = None) -> tuple[int, int, int]:
    """Embed every utterance of input_scp (or of segments_path) into writer; return (utterances, chunks,
    frames or samples embedded). source_table: the user's table that input_scp (or segments_path) was split
    from, whose lines the errors name."""
    if segments_path is not None and model.sample_rate is None:
        raise DataError(f"--segments {segments_path}: this model takes features (FEATS_SCP is indexed by utterance)")
    table = read_scp(input_scp)
    segments = read_scp(segments_path) if segments_path is not None else None
    utts = segments if segments is not None else table
    if not utts:
        raise DataError(f"{segments_path or input_scp}: no utterances")
    lines = key_lines(source_table) if source_table else {}
    listed_in = segments_path or input_scp

    def locate(key: str) -> str:
        return where(source_table, lines[key]) if key in lines else listed_in
    if model.sample_rate is not None:  # frame counts to samples
        unit = model.sample_rate // FRAMES_PER_SECOND
        batch_frames, max_frames = batch_frames * unit, max_frames and max_frames * unit
    num_chunks = num_frames = 0
    # A plain file is not a terminal: refresh rarely so a run.pl log does not fill with progress lines.
    interval = 1.0 if sys.stderr.isatty() else 60.0
    with tqdm(total=len(utts), desc="extract", unit="utt", mininterval=interval, file=sys.stderr) as bar:
        for keys, chunks in read_windows(table, input_scp, model, segments, max_frames, WINDOW_BATCHES * batch_frames,
                                         locate):
            for key, emb in zip(keys, embed_window(model.net, chunks, len(keys), batch_frames, device)):
                if not np.isfinite(emb).all():
                    raise DataError(f"{locate(key)}: utterance {key}: the model gives a non-finite embedding "
                                    "(NaN or inf): are its weights finite?")
                writer[key] = emb
            num_chunks += len(chunks)
            num_frames += sum(len(c.feats) for c in chunks)
            bar.update(len(keys))
    return len(utts), num_chunks, num_frames


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sv.bin.extract", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m sv.bin.extract --model exp/ecapa/models/avg_model.pt "
               "data/vox1_test/feats.scp exp/ecapa/embeddings/vox1_test/xvector.1.ark "
               "exp/ecapa/embeddings/vox1_test/xvector.1.scp")
    p.add_argument("input_scp", metavar="FEATS_SCP|WAV_SCP",
                   help="input: key -> feature matrix (frames, bins); for a model taking audio, a data dir's wav.scp")
    p.add_argument("--segments", help="input: a data dir's segments file (utterance recording start end) whose "
                                      "recordings WAV_SCP lists; audio models only")
    p.add_argument("ark", metavar="ARK", help="output: Kaldi archive of float32 embedding vectors")
    p.add_argument("scp", metavar="SCP", help="output: key -> ARK:offset, written last")
    p.add_argument("--model", required=True, help="input: checkpoint holding `model` (and `config`), "
                                                  "e.g. exp/X/models/avg_model.pt")
    p.add_argument("--config", help="input: training config YAML to use instead of the checkpoint's "
                                    "(its `model:` and `data.normalize`)")
    p.add_argument("--batch-frames", type=int, default=20000,
                   help="most padded frames in a batch; a longer chunk goes alone (default: %(default)s)")
    p.add_argument("--max-frames", type=int,
                   help="embed utterances in chunks of at most this many frames and average them "
                        "(default: whole utterances)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: cuda when available (default: %(default)s)")
    p.add_argument("--num-threads", type=int, default=1,
                   help="torch CPU threads; keep 1 when several jobs share the machine (default: %(default)s)")
    p.add_argument("--source-table", help="input: the user's table that FEATS_SCP|WAV_SCP (or --segments) is a "
                                          "split part of: errors name its lines")
    args = p.parse_args(argv)
    if args.batch_frames < 1:
        p.error(f"--batch-frames must be >= 1, got {args.batch_frames}")
    if args.max_frames is not None and args.max_frames < 1:
        p.error(f"--max-frames must be >= 1, got {args.max_frames}")
    return args


def _remove(*paths: str) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.num_threads)
    device = pick_device(args.device)
    # A rerun that fails must not leave the previous run's table looking valid.
    _remove(args.scp)
    model = load_model(args.model, args.config, device)
    for path in (args.ark, args.scp):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

    ark_tmp, scp_tmp = f"{args.ark}.tmp", f"{args.scp}.tmp"
    t0 = time.perf_counter()
    try:
        with torch.inference_mode(), kaldiio.WriteHelper(f"ark,scp:{ark_tmp},{scp_tmp}") as writer:
            utts, chunks, frames = extract(model, args.input_scp, writer, args.batch_frames, args.max_frames, device,
                                           args.segments, args.source_table)
        os.replace(ark_tmp, args.ark)
        # The scp names the ark it was written to; point it at the final name.
        with atomic_open(args.scp) as out:
            for _, line in iter_lines(scp_tmp):
                key, pos = line.split(maxsplit=1)
                out.write(f"{key} {args.ark}:{pos.rsplit(':', 1)[1]}\n")
    finally:
        _remove(ark_tmp, scp_tmp)
    elapsed = time.perf_counter() - t0
    what = f"{frames} frames; normalize={model.normalize}" if model.sample_rate is None else f"{frames} samples"
    log.info("embedded %d utterances (%d chunks, %s) on %s into %s in %.1f s, %.1f utterances/s",
             utts, chunks, what, device, args.scp, elapsed, utts / max(elapsed, 1e-9))


if __name__ == "__main__":
    run_main(main)
