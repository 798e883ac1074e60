"""Reading the audio a wav.scp entry names: a file path, or a Kaldi pipe command ending in '|'."""
from __future__ import annotations

import io
import subprocess

import numpy as np
import soundfile as sf


class AudioError(IOError):
    pass


def read_audio_bytes(entry: str) -> bytes | str:
    """A path is returned as is; a pipe command is run and its stdout returned."""
    entry = entry.strip()
    if not entry.endswith("|"):
        return entry
    cmd = entry[:-1]
    proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"command failed ({proc.returncode}): {cmd}: {err[-1] if err else ''}")
    return proc.stdout


def _wav_shortfall(path: str) -> int | None:
    """Bytes a RIFF/WAVE file's `data` chunk claims beyond the end of the file (None: not a WAV file, or no size
    given). libsndfile reads such a truncated file to its end without a word."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            size = f.seek(0, io.SEEK_END)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, n = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if chunk == b"data":
            return None if n in (0, 0xFFFFFFFF) else max(0, pos + 8 + n - size)  # 0 / -1: a streamed WAV
        pos += 8 + n + (n & 1)
    return None


def load_audio(entry: str, start: float = 0.0, end: float | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 waveform in [-1, 1] and its sample rate; `start`/`end` in seconds (segments).

    Multi-channel audio keeps the first channel, as Kaldi's default channel 0 does.
    """
    src = read_audio_bytes(entry)
    try:
        f = sf.SoundFile(io.BytesIO(src) if isinstance(src, bytes) else src)
    except Exception as e:  # soundfile raises several types for unreadable input
        raise AudioError(f"cannot read audio {entry!r}: {e}") from e
    missing = _wav_shortfall(src) if isinstance(src, str) else None
    if missing:
        f.close()
        raise AudioError(f"truncated audio {entry!r}: its header promises {missing} more bytes of samples than "
                         "the file holds")
    with f:
        sr = f.samplerate
        first = int(round(start * sr))
        last = f.frames if end is None or end < 0 else min(f.frames, int(round(end * sr)))
        if first >= f.frames and f.frames > 0:
            raise AudioError(f"segment start {start}s is past the end ({f.frames / sr:.2f}s) of {entry!r}")
        f.seek(first)
        wav = f.read(max(0, last - first), dtype="float32", always_2d=True)
    if len(wav) < last - first:
        raise AudioError(f"truncated audio {entry!r}: read {len(wav)} of the {last - first} samples its header "
                         "promises")
    return wav[:, 0], sr


def audio_duration(entry: str) -> float:
    """Seconds, from the header when the entry is a file, else by decoding."""
    src = read_audio_bytes(entry)
    try:
        info = sf.info(io.BytesIO(src) if isinstance(src, bytes) else src)
    except Exception as e:
        raise AudioError(f"cannot read audio {entry!r}: {e}") from e
    missing = _wav_shortfall(src) if isinstance(src, str) else None
    if missing:
        raise AudioError(f"truncated audio {entry!r}: its header promises {missing} more bytes of samples than "
                         "the file holds")
    return info.frames / info.samplerate
