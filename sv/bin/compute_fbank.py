"""Compute log mel filterbank features for a wav.scp (one split part) into a Kaldi ark/scp pair.

Like Kaldi's compute-fbank-feats + copy-feats, but any unreadable utterance fails the whole job, and
the scp appears only when every utterance was written, so a failed job leaves no partial table.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from typing import Any, Mapping

import kaldiio
import torch
from tqdm import tqdm

from sv.cli import run_main
from sv.data.audio import AudioError, load_audio
from sv.data.fbank import compute_fbank, load_config
from sv.data.table import DataError, atomic_open, iter_lines, write_lines
from sv.data.utterances import Utterance, read_utterances

log = logging.getLogger(__name__)


def check_files_exist(items: list[Utterance], max_shown: int = 10) -> None:
    """Fail before any computing if an audio file is missing (pipe commands can only be tried)."""
    missing = [it for it in items
               if not it.entry.rstrip().endswith("|") and not os.path.isfile(it.entry.strip())]
    if missing:
        shown = [f"{it.origin}: audio file not found: {it.entry.strip()}" for it in missing[:max_shown]]
        if len(missing) > max_shown:
            shown.append(f"... and {len(missing) - max_shown} more")
        raise AudioError(f"{len(missing)} of {len(items)} utterances have no audio file:\n  " + "\n  ".join(shown))


def _remove(*paths: str) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def write_features(items: list[Utterance], cfg: Mapping[str, Any], ark: str, scp: str,
                   utt2num_frames: str | None = None) -> tuple[int, float]:
    """Write every item's features; return the utterance count and the total audio seconds.

    The ark and scp are written under temporary names and moved into place only once all succeeded,
    the scp last.
    """
    ark_tmp, scp_tmp = f"{ark}.tmp", f"{scp}.tmp"
    frames: dict[str, int] = {}
    audio_seconds = 0.0
    # A plain file is not a terminal: refresh rarely so a run.pl log does not fill with progress lines.
    interval = 1.0 if sys.stderr.isatty() else 60.0
    for path in (ark, scp):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        with kaldiio.WriteHelper(f"ark,scp:{ark_tmp},{scp_tmp}") as writer:
            for it in tqdm(items, desc="fbank", unit="utt", mininterval=interval, file=sys.stderr):
                try:
                    wave, sr = load_audio(it.entry, it.start, it.end)
                    feats = compute_fbank(wave, sr, cfg)
                except AudioError as e:
                    raise AudioError(f"{it.origin}: {e}") from e
                writer[it.key] = feats
                frames[it.key] = feats.shape[0]
                audio_seconds += len(wave) / sr
        os.replace(ark_tmp, ark)
        if utt2num_frames:
            write_lines(utt2num_frames, (f"{k} {n}" for k, n in frames.items()))
        # The scp names the ark it was written to; point it at the final name.
        with atomic_open(scp) as out:
            for _, line in iter_lines(scp_tmp):
                key, pos = line.split(maxsplit=1)
                out.write(f"{key} {ark}:{pos.rsplit(':', 1)[1]}\n")
    finally:
        _remove(ark_tmp, scp_tmp)
    return len(frames), audio_seconds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sv.bin.compute_fbank", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m sv.bin.compute_fbank --config conf/fbank.yaml "
               "data/train/wav.scp fbank/raw_fbank_train.1.ark fbank/raw_fbank_train.1.scp")
    p.add_argument("wav_scp", metavar="WAV_SCP", help="input: wav.scp (key -> file or 'command |')")
    p.add_argument("ark", metavar="ARK_PATH", help="output: Kaldi archive of float32 (frames, bins) matrices")
    p.add_argument("scp", metavar="SCP_PATH", help="output: key -> ARK_PATH:offset table, written last")
    p.add_argument("--config", default="conf/fbank.yaml",
                   help="input: YAML of torchaudio.compliance.kaldi.fbank options (default: %(default)s)")
    p.add_argument("--segments", help="input: segments (utt reco start end); then keys are segment ids "
                                      "and WAV_SCP is keyed by recording")
    p.add_argument("--utt2num-frames", help="output: key -> number of frames")
    p.add_argument("--source-table", help="input: the user's table (wav.scp, or segments) that WAV_SCP (or "
                                          "--segments) is a split part of: errors name its lines")
    p.add_argument("--num-threads", type=int, default=1,
                   help="torch threads; keep 1 when several jobs share the machine (default: %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.num_threads)
    cfg = load_config(args.config)
    # A rerun that fails must not leave the previous run's tables looking valid.
    _remove(args.scp, *([args.utt2num_frames] if args.utt2num_frames else []))
    items = read_utterances(args.wav_scp, args.segments, args.source_table)
    if not items:
        raise DataError(f"{args.segments or args.wav_scp}: no utterances")
    check_files_exist(items)

    t0 = time.perf_counter()
    count, audio_seconds = write_features(items, cfg, args.ark, args.scp, args.utt2num_frames)
    elapsed = time.perf_counter() - t0
    log.info("wrote %d utterances (%.1f s of audio) to %s in %.1f s, real-time factor %.4f",
             count, audio_seconds, args.scp, elapsed, elapsed / max(audio_seconds, 1e-9))


if __name__ == "__main__":
    run_main(main)
