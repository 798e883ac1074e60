"""Embedding sets as Kaldi ark/scp of float32 vectors (key = utterance or speaker): reading into one
matrix, atomic writing, and the mean/length normalisation every back-end applies first.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import struct
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

import kaldiio
import numpy as np

from sv.data.table import DataError, creation_mode, read_scp

# Kaldi binary float vector: binary marker, type token, then the size as a 4-byte int (size byte 4).
_VECTOR_HEADER = b"\0BFV \x04"


def load_embeddings(scp: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(keys in scp order, float32 matrix with one row per key); duplicate keys (read_scp names both
    lines) or vectors of differing dimension are a DataError."""
    table = read_scp(scp)
    if not table:
        raise DataError(f"{scp}: no embeddings")
    keys = list(table)
    matrix = _read_plain_vectors(list(table.values()))
    if matrix is None:
        matrix = _read_with_kaldiio(scp)
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if len(bad):
        raise DataError(f"{scp}: {len(bad)} embedding(s) hold NaN or inf, the first {keys[bad[0]]!r}")
    return keys, matrix


def _read_plain_vectors(locations: list[str]) -> np.ndarray | None:
    """The common case, read fast: every entry is `ark:offset` pointing at a binary float32 vector
    (what write_embeddings and extraction write). None if any entry is anything else."""
    parsed = []
    for location in locations:
        path, sep, offset = location.rpartition(":")
        if not sep or not offset.isdigit():
            return None
        parsed.append((path, int(offset)))
    if not all(os.path.isfile(p) for p in {p for p, _ in parsed}):
        return None
    header_size = len(_VECTOR_HEADER) + 4
    with contextlib.ExitStack() as stack:
        arks = {}
        for path in {p for p, _ in parsed}:
            f = stack.enter_context(open(path, "rb"))
            if os.fstat(f.fileno()).st_size == 0:
                return None
            arks[path] = stack.enter_context(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        path, offset = parsed[0]
        header = arks[path][offset:offset + header_size]  # all vectors must have this one, dimension included
        if len(header) < header_size or not header.startswith(_VECTOR_HEADER):
            return None
        dim = struct.unpack("<i", header[len(_VECTOR_HEADER):])[0]
        out = np.empty((len(parsed), dim), dtype=np.float32)
        for i, (path, offset) in enumerate(parsed):
            ark = arks[path]
            if ark[offset:offset + header_size] != header or offset + header_size + 4 * dim > len(ark):
                return None
            out[i] = np.frombuffer(ark, "<f4", dim, offset + header_size)
    return out


def _read_with_kaldiio(scp: str | os.PathLike) -> np.ndarray:
    """Any other scp kaldiio reads (compressed or double arks, pipes), one vector at a time."""
    try:
        rows = [vec for _, vec in kaldiio.load_scp_sequential(str(scp))]
    except (OSError, ValueError) as e:
        raise DataError(f"{scp}: cannot read embeddings: {e}") from e
    shapes = {r.shape for r in rows}
    if len(shapes) != 1 or rows[0].ndim != 1:
        raise DataError(f"{scp}: expected vectors of one dimension, got shapes {sorted(shapes)[:5]}")
    return np.stack(rows).astype(np.float32, copy=False)


def write_embeddings(embeddings: Mapping[str, np.ndarray] | tuple[Sequence[str], np.ndarray],
                     ark: str | os.PathLike, scp: str | os.PathLike) -> None:
    """Write float32 vectors as a binary ark and its scp, in the given key order.

    Both go to temporary names first and are renamed ark first, scp last: an scp that exists
    always points into a complete ark. The scp names the ark by the path as given here.
    """
    if isinstance(embeddings, Mapping):
        keys, vectors = list(embeddings), [np.asarray(v) for v in embeddings.values()]
    else:
        keys, vectors = list(embeddings[0]), list(np.asarray(embeddings[1]))
    ark, scp = Path(ark), Path(scp)
    offsets = []
    with _temporary_beside(ark) as ark_tmp:
        with open(ark_tmp, "wb") as f:
            for key, vec in zip(keys, vectors):
                if vec.ndim != 1 or key.split() != [key]:
                    raise ValueError(f"cannot write {key!r}: keys must be one word and values vectors")
                f.write(key.encode() + b" ")
                offsets.append(f.tell())
                f.write(_VECTOR_HEADER + struct.pack("<i", vec.shape[0]) + vec.astype("<f4").tobytes())
        with _temporary_beside(scp) as scp_tmp:
            Path(scp_tmp).write_text("".join(f"{k} {ark}:{o}\n" for k, o in zip(keys, offsets)))
            os.replace(ark_tmp, ark)
            os.replace(scp_tmp, scp)


@contextlib.contextmanager
def _temporary_beside(path: Path):
    """A temporary file name in path's dir, removed unless the block renamed it away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, creation_mode())
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def length_norm(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def mean_embedding(scp: str | os.PathLike) -> np.ndarray:
    """Mean vector of an embedding set (e.g. the training set), accumulated in float64."""
    return load_embeddings(scp)[1].mean(axis=0, dtype=np.float64).astype(np.float32)


@dataclass
class EmbeddingSet:
    scp: str
    keys: list[str]
    matrix: np.ndarray

    @cached_property
    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}


def load_centred(scp: str | os.PathLike, mean: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
    """load_embeddings, with the mean (when given) subtracted from every row."""
    keys, matrix = load_embeddings(scp)
    if mean is not None:
        if mean.shape[0] != matrix.shape[1]:
            raise DataError(f"{scp}: embeddings have dimension {matrix.shape[1]}, the mean {mean.shape[0]}")
        matrix -= mean
    return keys, matrix


def load_normalised(scp: str | os.PathLike, mean: np.ndarray | None = None) -> EmbeddingSet:
    """An embedding set, mean-subtracted (when a mean is given) and length-normalised: the input every
    cosine back-end wants."""
    keys, matrix = load_centred(scp, mean)
    return EmbeddingSet(str(scp), keys, length_norm(matrix))


def load_trial_sides(emb_scp: str | os.PathLike, enroll_scp: str | os.PathLike | None = None,
                     mean_scp: str | os.PathLike | None = None) -> tuple[EmbeddingSet, EmbeddingSet]:
    """(enroll, test) sets: test from emb_scp, enroll from enroll_scp or else the same object; with
    mean_scp, that set's mean is subtracted from both."""
    mean = mean_embedding(mean_scp) if mean_scp else None
    test = load_normalised(emb_scp, mean)
    if not enroll_scp:
        return test, test
    enroll = load_normalised(enroll_scp, mean)
    if enroll.matrix.shape[1] != test.matrix.shape[1]:
        raise DataError(f"{enroll_scp}: embeddings have dimension {enroll.matrix.shape[1]}, "
                        f"those of {emb_scp} {test.matrix.shape[1]}")
    return enroll, test
