"""Kaldi data directories: validation, fixing, subsetting and combining.

A data dir holds per-utterance tables (utt2spk, feats.scp, utt2dur, ...), per-recording tables
(wav.scp and reco2dur when `segments` exists, else they are per-utterance too), and spk2utt.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Iterable

from sv.data.audio import AudioError, audio_duration
from sv.data.table import (DataError, iter_lines, read_scp, read_spk2utt, where, write_scp, write_spk2utt)

# Tables keyed by utterance; any that exist are kept in step by fix/subset/combine.
UTT_TABLES = ("utt2spk", "feats.scp", "utt2dur", "utt2num_frames", "text", "vad.scp", "utt2lang", "utt2snr")
# Keyed by recording: per-utterance too when there is no `segments`.
RECO_TABLES = ("wav.scp", "reco2dur")
SPK_TABLES = ("spk2gender",)
NUMERIC_TABLES = ("utt2dur", "utt2num_frames", "reco2dur", "utt2snr")


def utt2spk_to_spk2utt(utt2spk: dict[str, str]) -> dict[str, list[str]]:
    """Utterances of each speaker in sorted order, as Kaldi's utt2spk_to_spk2utt.pl."""
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return spk2utt


def spk2utt_to_utt2spk(spk2utt: dict[str, list[str]]) -> dict[str, str]:
    return {utt: spk for spk, utts in spk2utt.items() for utt in utts}


def _check_sorted_unique(path: Path, errors: list[str]) -> list[tuple[int, str]]:
    """(line, key) pairs of a table, noting unsorted or duplicate keys."""
    keys: list[tuple[int, str]] = []
    prev: tuple[int, str] | None = None
    seen: dict[str, int] = {}
    for lineno, line in iter_lines(path):
        key = line.split()[0]
        if len(line.split()) < 2:
            errors.append(f"{where(path, lineno)}: expected 'key value', got {line!r}")
        if key in seen:
            errors.append(f"{where(path, lineno)}: duplicate key {key!r} (first on line {seen[key]})")
        elif prev is not None and key < prev[1]:
            errors.append(f"{where(path, lineno)}: not sorted (C locale): {key!r} comes after "
                          f"{prev[1]!r} on line {prev[0]}; run utils/fix_data_dir.py")
        seen.setdefault(key, lineno)
        prev = (lineno, key)
        keys.append((lineno, key))
    return keys


def _check_same_keys(path: Path, keys: list[tuple[int, str]], ref_path: Path, ref: set[str],
                     errors: list[str]) -> None:
    own = {k for _, k in keys}
    for lineno, key in keys:
        if key not in ref:
            errors.append(f"{where(path, lineno)}: key {key!r} is not in {ref_path}")
    missing = sorted(ref - own)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        errors.append(f"{path}: missing keys present in {ref_path}: {', '.join(missing[:3])}{more}")


FEATURE_TABLES = ("feats.scp", "utt2num_frames")


def validate_data_dir(data: str | os.PathLike, check_audio: bool = False,
                      max_errors: int = 20, no_feats: bool = False) -> None:
    """Raise DataError listing every problem found (file:line each); return quietly if the dir is valid.
    no_feats: leave feats.scp and utt2num_frames unchecked (Kaldi's --no-feats), e.g. before features are
    remade for an edited data dir."""
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"{data}: no such data directory")
    errors: list[str] = []
    for required in ("utt2spk", "spk2utt", "wav.scp"):
        if not (data / required).is_file() and not (required == "wav.scp" and (data / "feats.scp").is_file()):
            errors.append(f"{data / required}: no such file")
    if errors:
        raise DataError("\n".join(errors))

    utt_keys = _check_sorted_unique(data / "utt2spk", errors)
    if not utt_keys and not errors:
        raise DataError(f"{data}: an empty data directory ({data / 'utt2spk'} has no utterance)")
    utts = {k for _, k in utt_keys}
    utt2spk = read_scp(data / "utt2spk", unique=False)
    for lineno, line in iter_lines(data / "utt2spk"):
        if len(line.split()) != 2:
            errors.append(f"{where(data / 'utt2spk', lineno)}: expected 'utt spk', got {line!r}")

    spk_path = data / "spk2utt"
    _check_sorted_unique(spk_path, errors)
    try:
        spk2utt = read_spk2utt(spk_path)
    except DataError as e:
        errors.append(str(e))
        spk2utt = {}
    expected = utt2spk_to_spk2utt(utt2spk)
    for lineno, line in iter_lines(spk_path):
        spk, *spk_utts = line.split()
        if spk not in expected:
            errors.append(f"{where(spk_path, lineno)}: speaker {spk!r} has no utterance in utt2spk")
        elif spk_utts != expected[spk]:
            errors.append(f"{where(spk_path, lineno)}: utterances of {spk!r} disagree with utt2spk "
                          f"(regenerate with utils/utt2spk_to_spk2utt.py)")
    for spk in sorted(set(expected) - set(spk2utt)):
        errors.append(f"{spk_path}: speaker {spk!r} of utt2spk is missing")

    reco_ref = utts
    reco_ref_path = data / "utt2spk"
    seg_path = data / "segments"
    if seg_path.is_file():
        seg_keys = _check_sorted_unique(seg_path, errors)
        _check_same_keys(seg_path, seg_keys, data / "utt2spk", utts, errors)
        wav_recos = set(read_scp(data / "wav.scp", unique=False)) if (data / "wav.scp").is_file() else set()
        for lineno, line in iter_lines(seg_path):
            f = line.split()
            if len(f) != 4:
                errors.append(f"{where(seg_path, lineno)}: expected 'utt reco start end', got {line!r}")
                continue
            try:
                start, end = float(f[2]), float(f[3])
            except ValueError:
                errors.append(f"{where(seg_path, lineno)}: start and end must be numbers: {line!r}")
                continue
            if start < 0 or (end >= 0 and end <= start):
                errors.append(f"{where(seg_path, lineno)}: bad times {start} {end}")
            if f[1] not in wav_recos:
                errors.append(f"{where(seg_path, lineno)}: recording {f[1]!r} is not in {data / 'wav.scp'}")
        reco_ref = {line.split()[1] for _, line in iter_lines(seg_path) if len(line.split()) == 4}
        reco_ref_path = seg_path

    for name in UTT_TABLES[1:] + RECO_TABLES:
        path = data / name
        if not path.is_file() or (no_feats and name in FEATURE_TABLES):
            continue
        keys = _check_sorted_unique(path, errors)
        if name in RECO_TABLES and seg_path.is_file():
            own = {k for _, k in keys}
            for reco in sorted(reco_ref - own)[:3]:
                errors.append(f"{path}: recording {reco!r} named in {seg_path} is missing")
        else:
            _check_same_keys(path, keys, reco_ref_path if name in RECO_TABLES else data / "utt2spk",
                             reco_ref if name in RECO_TABLES else utts, errors)
        if name in NUMERIC_TABLES:
            for lineno, line in iter_lines(path):
                try:
                    float(line.split()[1])
                except (ValueError, IndexError):
                    errors.append(f"{where(path, lineno)}: value must be a number: {line!r}")

    if check_audio and (data / "wav.scp").is_file() and not errors:
        for lineno, line in iter_lines(data / "wav.scp"):
            key, entry = line.split(maxsplit=1)
            if not entry.rstrip().endswith("|") and not os.path.isfile(entry.strip()):
                errors.append(f"{where(data / 'wav.scp', lineno)}: {key}: audio file not found: {entry.strip()}")
                continue
            try:
                audio_duration(entry)
            except AudioError as e:
                errors.append(f"{where(data / 'wav.scp', lineno)}: {key}: {e}")
            if len(errors) >= max_errors:
                break

    if errors:
        shown = errors[:max_errors]
        if len(errors) > max_errors:
            shown.append(f"... and {len(errors) - max_errors} more problems")
        raise DataError(f"{data}: invalid data directory:\n  " + "\n  ".join(shown))


def _table_paths(data: Path) -> tuple[list[str], list[str]]:
    utt = [n for n in UTT_TABLES if (data / n).is_file()]
    reco = [n for n in RECO_TABLES if (data / n).is_file()]
    if not (data / "segments").is_file():
        utt, reco = utt + reco, []
    return utt, reco


def filter_data_dir(src: str | os.PathLike, dst: str | os.PathLike,
                    keep: Callable[[str, str], bool]) -> int:
    """Copy src to dst keeping the utterances for which keep(utt, spk) is true; return how many.

    dst may equal src (rewritten in place, atomically per file).
    """
    src, dst = Path(src), Path(dst)
    utt2spk = read_scp(src / "utt2spk")
    kept = {u for u, s in utt2spk.items() if keep(u, s)}
    if not kept:
        raise DataError(f"{src}: no utterance left after filtering")
    dst.mkdir(parents=True, exist_ok=True)
    utt_names, reco_names = _table_paths(src)
    for name in utt_names:
        table = read_scp(src / name)
        write_scp(dst / name, {k: v for k, v in table.items() if k in kept})
    if (src / "segments").is_file():
        segs = {k: v for k, v in read_scp(src / "segments").items() if k in kept}
        write_scp(dst / "segments", segs)
        recos = {v.split()[0] for v in segs.values()}
        for name in reco_names:
            write_scp(dst / name, {k: v for k, v in read_scp(src / name).items() if k in recos})
    spk2utt = utt2spk_to_spk2utt({u: utt2spk[u] for u in kept})
    write_spk2utt(dst / "spk2utt", spk2utt)
    for name in SPK_TABLES:
        if (src / name).is_file():
            write_scp(dst / name, {k: v for k, v in read_scp(src / name).items() if k in spk2utt})
    _copy_extras(src, dst)
    return len(kept)


def _copy_extras(src: Path, dst: Path) -> None:
    """Trial lists and enrollment maps travel with the dir; they are not keyed by the dir's utterances."""
    if src == dst:
        return
    for name in ("trials", "enroll.map"):
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name, dirs_exist_ok=True)
        elif (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def fix_data_dir(data: str | os.PathLike) -> tuple[int, int]:
    """Sort every table and keep only utterances present in all of them, as Kaldi's fix_data_dir.sh.

    The original tables are copied to data/.backup first. Returns (kept, removed).
    """
    data = Path(data)
    backup = data / ".backup"
    backup.mkdir(exist_ok=True)
    utt_names, reco_names = _table_paths(data)
    for name in utt_names + reco_names + ["segments", "spk2utt"]:
        if (data / name).is_file():
            shutil.copy2(data / name, backup / name)

    def last_wins(path: Path) -> dict[str, str]:
        return read_scp(path, unique=False)

    utt2spk = last_wins(data / "utt2spk")
    utts = set(utt2spk)
    for name in utt_names[1:]:
        utts &= set(last_wins(data / name))
    if (data / "segments").is_file():
        segs = last_wins(data / "segments")
        recos = set.intersection(*(set(last_wins(data / n)) for n in reco_names)) if reco_names else set()
        utts &= {u for u, v in segs.items() if v.split()[0] in recos}
    removed = len(utt2spk) - len(utts)
    if not utts:
        raise DataError(f"{data}: no utterance is present in every table")
    for name in utt_names:
        write_scp(data / name, {k: v for k, v in last_wins(data / name).items() if k in utts})
    if (data / "segments").is_file():
        kept_segs = {k: v for k, v in segs.items() if k in utts}
        write_scp(data / "segments", kept_segs)
        used = {v.split()[0] for v in kept_segs.values()}
        for name in reco_names:
            write_scp(data / name, {k: v for k, v in last_wins(data / name).items() if k in used})
    write_spk2utt(data / "spk2utt", utt2spk_to_spk2utt({u: utt2spk[u] for u in utts}))
    return len(utts), removed


def subset_data_dir(src: str | os.PathLike, dst: str | os.PathLike, utt_list: Iterable[str] | None = None,
                    spk_list: Iterable[str] | None = None, per_spk: int | None = None,
                    first: int | None = None) -> int:
    """Write the chosen subset of src to dst; return the number of utterances kept.

    per_spk keeps each speaker's first N utterances (in sorted order); first keeps the first N overall.
    """
    utt2spk = read_scp(Path(src) / "utt2spk")
    chosen = set(utt2spk)
    if utt_list is not None:
        chosen &= set(utt_list)
    if spk_list is not None:
        spks = set(spk_list)
        chosen = {u for u in chosen if utt2spk[u] in spks}
    if per_spk is not None:
        by_spk = utt2spk_to_spk2utt({u: utt2spk[u] for u in chosen})
        chosen = {u for utts in by_spk.values() for u in utts[:per_spk]}
    if first is not None:
        chosen = set(sorted(chosen)[:first])
    return filter_data_dir(src, dst, lambda u, s: u in chosen)


def combine_data_dirs(dst: str | os.PathLike, srcs: list[str | os.PathLike]) -> int:
    """Concatenate data dirs into dst; a key found in two sources is an error naming both."""
    dst = Path(dst)
    srcs = [Path(s) for s in srcs]
    if not srcs:
        raise DataError("combine_data: no source directories")
    with_segments = [(s / "segments").is_file() for s in srcs]
    if any(with_segments) and not all(with_segments):
        raise DataError("combine_data: either all or none of the sources must have segments: "
                        + ", ".join(f"{s}({'yes' if w else 'no'})" for s, w in zip(srcs, with_segments)))
    names = [n for n in UTT_TABLES + RECO_TABLES + SPK_TABLES + ("segments",)
             if all((s / n).is_file() for s in srcs)]
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        merged: dict[str, str] = {}
        origin: dict[str, Path] = {}
        for s in srcs:
            for k, v in read_scp(s / name).items():
                if k in merged and not (name in SPK_TABLES + RECO_TABLES and merged[k] == v):
                    raise DataError(f"combine_data: key {k!r} of {s / name} is also in {origin[k] / name}")
                merged[k] = v
                origin.setdefault(k, s)
        write_scp(dst / name, merged)
    utt2spk = read_scp(dst / "utt2spk")
    write_spk2utt(dst / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    return len(utt2spk)


def write_data_dir(data: str | os.PathLike, wav_scp: dict[str, str], utt2spk: dict[str, str],
                   utt2dur: dict[str, float] | None = None, segments: dict[str, str] | None = None) -> None:
    """Write the core tables of a new data dir (sorted, atomically) and validate it."""
    data = Path(data)
    data.mkdir(parents=True, exist_ok=True)
    write_scp(data / "wav.scp", wav_scp)
    write_scp(data / "utt2spk", utt2spk)
    write_spk2utt(data / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    if segments is not None:
        write_scp(data / "segments", segments)
    if utt2dur is not None:
        write_scp(data / "utt2dur", {k: f"{v:.3f}" for k, v in utt2dur.items()})
    validate_data_dir(data)

