"""Kaldi text tables (wav.scp, utt2spk, segments, trials ...): reading with file:line errors, atomic writing.

A table line is `key rest`: the key is the first whitespace-free field, the value is the rest
of the line with its inner whitespace kept (wav.scp pipe commands need that).
Keys are sorted in C-locale (byte) order; for UTF-8 text Python's `sorted` gives exactly that.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping


class DataError(ValueError):
    """Bad input data; the message names the file and, where there is one, the line."""


def where(path: str | os.PathLike, lineno: int | None = None) -> str:
    return f"{path}:{lineno}" if lineno is not None else str(path)


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(line number, line without newline) for each non-empty line; a missing file is a DataError."""
    if not os.path.exists(path) or os.path.isdir(path):  # exists(): /dev/stdin is no regular file
        raise DataError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.strip():
                yield lineno, line


def iter_table(path: str | os.PathLike, nfields: int | None = None,
               min_fields: int = 2) -> Iterator[tuple[int, list[str]]]:
    """(line number, whitespace-split fields), checking the field count."""
    for lineno, line in iter_lines(path):
        fields = line.split()
        if nfields is not None and len(fields) != nfields:
            raise DataError(f"{where(path, lineno)}: expected {nfields} fields, got {len(fields)}: {line!r}")
        if len(fields) < min_fields:
            raise DataError(f"{where(path, lineno)}: expected at least {min_fields} fields: {line!r}")
        yield lineno, fields


def read_scp(path: str | os.PathLike, unique: bool = True) -> dict[str, str]:
    """key -> value (rest of the line). Duplicate keys are an error naming both lines."""
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, line in iter_lines(path):
        parts = line.strip().split(maxsplit=1)
        if len(parts) < 2:
            raise DataError(f"{where(path, lineno)}: expected 'key value', got {line!r}")
        key, value = parts
        if key in out and unique:
            raise DataError(f"{where(path, lineno)}: duplicate key {key!r} (first on line {first_line[key]})")
        out[key] = value
        first_line.setdefault(key, lineno)
    return out


def read_list(path: str | os.PathLike) -> list[str]:
    """First field of each line (an utterance or speaker list)."""
    return [line.split()[0] for _, line in iter_lines(path)]


def read_spk2utt(path: str | os.PathLike) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for lineno, fields in iter_table(path):
        if fields[0] in out:
            raise DataError(f"{where(path, lineno)}: duplicate speaker {fields[0]!r}")
        out[fields[0]] = fields[1:]
    return out


def creation_mode(executable: bool = False) -> int:
    """The mode a new file (or directory, executable) gets under the user's umask, as open() would give it; for
    files made by mkstemp/mkdtemp (0600/0700) before they are renamed into place."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if executable else 0o666) & ~umask


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary directory beside `path` to fill; it replaces `path` (and whatever was there) only if the block
    succeeds, with the user's umask, so a directory appears whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        yield tmp
        os.chmod(tmp, creation_mode(executable=True))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
        os.chmod(tmp, creation_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def key_lines(path: str | os.PathLike) -> dict[str, int]:
    """key -> line number in a table: where a split job's utterance stands in the user's own file."""
    return {line.split(maxsplit=1)[0]: lineno for lineno, line in iter_lines(path)}


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    with atomic_open(path) as f:
        for line in lines:
            f.write(line + "\n")


def write_scp(path: str | os.PathLike, table: Mapping[str, str] | Iterable[tuple[str, str]],
              sort: bool = True) -> None:
    items = list(table.items()) if isinstance(table, Mapping) else list(table)
    if sort:
        items.sort(key=lambda kv: kv[0])
    write_lines(path, (f"{k} {v}" for k, v in items))


def write_spk2utt(path: str | os.PathLike, spk2utt: Mapping[str, list[str]]) -> None:
    write_lines(path, (f"{s} {' '.join(spk2utt[s])}" for s in sorted(spk2utt)))
