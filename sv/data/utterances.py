"""The utterances of a data dir's audio: wav.scp entries, or the segments cut from its recordings, each with the
file and line that defines it, so that a job's error about one utterance points at the user's table."""
from __future__ import annotations

import os
from dataclasses import dataclass

from sv.data.table import DataError, iter_lines, iter_table, key_lines, where


@dataclass(frozen=True)
class Utterance:
    key: str
    entry: str            # the wav.scp value: a path, or a command ending in `|`
    start: float          # seconds into the recording
    end: float | None     # None: to its end
    origin: str           # "file:line: utterance KEY" (and the recording's wav.scp line for a segment)


def read_wav_scp(path: str | os.PathLike) -> dict[str, tuple[str, int]]:
    """key -> (entry, line number); duplicate keys are an error naming both lines."""
    out: dict[str, tuple[str, int]] = {}
    for lineno, line in iter_lines(path):
        parts = line.strip().split(maxsplit=1)
        if len(parts) < 2:
            raise DataError(f"{where(path, lineno)}: expected 'key audio', got {line!r}")
        key, entry = parts
        if key in out:
            raise DataError(f"{where(path, lineno)}: duplicate key {key!r} (first on line {out[key][1]})")
        out[key] = (entry, lineno)
    return out


def read_utterances(wav_scp: str | os.PathLike, segments: str | os.PathLike | None = None,
                    source: str | os.PathLike | None = None) -> list[Utterance]:
    """Utterances in table order: wav.scp entries, or segments (Kaldi: end -1 is the recording's end).
    source: the user's table that the utterance table (wav.scp, or segments) is a split part of; origins then
    name its lines."""
    lines = key_lines(source) if source is not None else None

    def locate(table: str | os.PathLike, key: str, lineno: int) -> str:
        return where(source, lines.get(key)) if lines is not None and key in lines else where(table, lineno)
    recos = read_wav_scp(wav_scp)
    if segments is None:
        return [Utterance(key, entry, 0.0, None, f"{locate(wav_scp, key, lineno)}: utterance {key}")
                for key, (entry, lineno) in recos.items()]
    items = []
    seen: dict[str, int] = {}
    for lineno, (utt, reco, start, end) in iter_table(segments, nfields=4):
        at = locate(segments, utt, lineno)
        if utt in seen:
            raise DataError(f"{at}: duplicate segment {utt!r} (first on line {seen[utt]})")
        seen[utt] = lineno
        if reco not in recos:
            raise DataError(f"{at}: segment {utt}: recording {reco!r} is not in {wav_scp}")
        try:
            t0, t1 = float(start), float(end)
        except ValueError:
            raise DataError(f"{at}: segment {utt}: start and end must be numbers") from None
        if t0 < 0 or 0 <= t1 <= t0:
            raise DataError(f"{at}: segment {utt}: bad times {start} {end}")
        entry, reco_line = recos[reco]
        items.append(Utterance(utt, entry, t0, None if t1 < 0 else t1,
                               f"{at}: segment {utt} (recording {reco}, {where(wav_scp, reco_line)})"))
    return items
