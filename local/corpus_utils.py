"""What the corpus preparation scripts in local/ share: finding a corpus folder, scanning it for
audio, reading durations, and writing the data dir.

The scripts run as `python local/NAME.py`, so local/ is on sys.path and they import this module directly.
"""
from __future__ import annotations

import argparse
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Collection, Iterable, Sequence, TypeVar

from tqdm import tqdm

from sv.data.audio import AudioError, audio_duration
from sv.data.data_dir import write_data_dir
from sv.data.table import DataError

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Enough to list the problem without flooding the terminal on a broken corpus of a million files.
MAX_REPORTED = 5


def add_nj_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nj", type=int, default=min(8, os.cpu_count() or 1), metavar="N",
                        help="parallel jobs for reading audio headers (and running ffmpeg) (default: %(default)s)")


def find_dir(root: str | os.PathLike, subdirs: Sequence[str], layout: str) -> Path:
    """The first of root/SUBDIR that exists, else root itself, as an absolute path.

    Users name either the corpus folder or the folder inside it that holds the audio (VOX1_ROOT or
    VOX1_ROOT/wav); trying the inner names first makes both work. `layout` describes what is expected,
    for the error message.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory (expected {layout})")
    for sub in subdirs:
        if (root / sub).is_dir():
            return (root / sub).absolute()
    return root.absolute()


def scan_files(top: Path, depth: int, suffixes: Iterable[str], desc: str) -> list[Path]:
    """Sorted files exactly `depth` levels below top (1 = top/NAME) whose suffix is one of `suffixes`.

    Hidden files are skipped: they are partial outputs (e.g. an interrupted conversion's temp file).
    The progress bar counts the first-level folders (speakers), which is what takes time on a big corpus.
    """
    suffixes = {s.lower() for s in suffixes}
    found: list[Path] = []
    pattern = "/".join(["*"] * (depth - 1)) if depth > 1 else None
    firsts = sorted(top.iterdir()) if top.is_dir() else []
    for first in tqdm(firsts, desc=desc, unit="dir", mininterval=1.0):
        candidates = [first] if pattern is None else (first.glob(pattern) if first.is_dir() else [])
        found.extend(p for p in candidates if p.suffix.lower() in suffixes and not p.name.startswith("."))
    return sorted(found)


def require_files(found: Collection, top: Path, layout: str) -> None:
    if not found:
        raise DataError(f"{top}: no audio files found (expected {layout})")


def unique_table(pairs: Iterable[tuple[str, str]], what: str) -> dict[str, str]:
    """key -> value, where a repeated key is an error naming both values (two files mapping to one key)."""
    table: dict[str, str] = {}
    for key, value in pairs:
        if key in table:
            raise DataError(f"duplicate {what} {key!r}: {table[key]} and {value}")
        table[key] = value
    return table


def parallel_map(fn: Callable[[T], R], items: Sequence[T], nj: int, desc: str) -> list[R]:
    """fn over items in nj threads (the work is file or subprocess I/O), in order, with a progress bar.

    Items go to the pool a chunk at a time so that a million files do not become a million pending futures.
    """
    results: list[R] = []
    chunk = max(1, nj) * 256
    with ThreadPoolExecutor(max(1, nj)) as pool, \
            tqdm(total=len(items), desc=desc, unit="file", mininterval=1.0) as bar:
        for start in range(0, len(items), chunk):
            done = list(pool.map(fn, items[start:start + chunk]))
            results.extend(done)
            bar.update(len(done))
    return results


def raise_failures(failures: Sequence[str], total: int, what: str) -> None:
    """A DataError listing the first few failures, so that one bad file does not hide the others."""
    if failures:
        more = f"\n  ... and {len(failures) - MAX_REPORTED} more" if len(failures) > MAX_REPORTED else ""
        raise DataError(f"{what} failed for {len(failures)} of {total} files:\n  "
                        + "\n  ".join(failures[:MAX_REPORTED]) + more)


def read_durations(wav_scp: dict[str, str], nj: int) -> dict[str, float]:
    """Seconds of every entry: from the header for a file, by running the command for a pipe."""
    keys = sorted(wav_scp)

    def one(key: str) -> float | str:
        try:
            return audio_duration(wav_scp[key])
        except AudioError as e:
            return f"{key}: {e}"

    results = parallel_map(one, keys, nj, "reading durations")
    raise_failures([r for r in results if isinstance(r, str)], len(keys), "reading the duration")
    return {k: r for k, r in zip(keys, results) if isinstance(r, float)}


def write_corpus_dir(data: str | os.PathLike, wav_scp: dict[str, str], utt2spk: dict[str, str],
                     utt2dur: dict[str, float] | None) -> None:
    """Write and validate a data dir (write_data_dir does both), and log what it holds."""
    write_data_dir(data, wav_scp, utt2spk, utt2dur)
    hours = f", {sum(utt2dur.values()) / 3600:.2f} h" if utt2dur is not None else ""
    logger.info("wrote %s: %d utterances, %d speakers%s", data, len(utt2spk), len(set(utt2spk.values())), hours)
