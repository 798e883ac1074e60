"""Blind SNR estimate (WADA-SNR, sv/data/snr.py) of every utterance of a data dir: a QMF quality measure.

  python -m sv.bin.compute_snr [--num-workers N] [--out FILE] DATA

Reads:  DATA/wav.scp (`recording path` or `recording command |`) and, when it exists, DATA/segments
        (`utt recording start end`, seconds; then each utterance is that part of its recording).
Writes: DATA/utt2snr (or FILE): `utt snr_db`, one line per utterance, sorted by key; estimates lie in
        [-20, 100] dB. An utterance whose audio cannot be read, is empty or is all zeros is an error
        naming the wav.scp / segments line.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sv.cli import run_main
from sv.data.audio import AudioError, load_audio
from sv.data.snr import wada_snr
from sv.data.table import DataError, write_scp
from sv.data.utterances import Utterance, read_utterances

log = logging.getLogger("sv.bin.compute_snr")


def snr_of(item: Utterance) -> tuple[str, float]:
    try:
        wav, _ = load_audio(item.entry, item.start, item.end)
    except AudioError as e:
        raise DataError(f"{item.origin}: {e}") from None
    snr = wada_snr(wav)
    if np.isnan(snr):
        raise DataError(f"{item.origin}: {'empty' if wav.size == 0 else 'all-zero'} audio "
                        f"has no SNR; remove the utterance from the data dir")
    return item.key, snr


def compute_snr(data: Path, out: Path, num_workers: int = 1) -> dict[str, float]:
    segments = data / "segments"
    items = read_utterances(data / "wav.scp", segments if segments.is_file() else None)
    if not items:
        raise DataError(f"{data}: no utterances")
    snrs: dict[str, float] = {}
    interval = 1.0 if sys.stderr.isatty() else 30.0
    with tqdm(total=len(items), desc="snr", unit="utt", mininterval=interval, file=sys.stderr) as bar:
        if num_workers <= 1:
            for utt, snr in map(snr_of, items):
                snrs[utt] = snr
                bar.update()
        else:
            with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
                for utt, snr in pool.imap_unordered(snr_of, items, chunksize=16):
                    snrs[utt] = snr
                    bar.update()
    write_scp(out, {k: f"{v:.2f}" for k, v in snrs.items()})
    values = np.array(list(snrs.values()))
    log.info("%s: SNR of %d utterances: mean %.1f dB, median %.1f, min %.1f, max %.1f", out, len(values),
             values.mean(), np.median(values), values.min(), values.max())
    return snrs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sv.bin.compute_snr", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, help="input: data dir with wav.scp (and segments, if any)")
    p.add_argument("--out", type=Path, help="output: `utt snr_db` table (default: DATA/utt2snr)")
    p.add_argument("--num-workers", type=int, default=1, help="processes reading audio (default 1)")
    args = p.parse_args(argv)
    compute_snr(args.data, args.out or args.data / "utt2snr", args.num_workers)


if __name__ == "__main__":
    run_main(main)
