"""Scoring back-end: embedding I/O, cosine scoring, speaker means, AS-norm and S-norm against direct
computations on small random sets."""
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from conftest import run_tool
from sv.data.table import DataError
from sv.score.embeddings import length_norm, load_embeddings, write_embeddings

DIM = 8


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def write_set(d: Path, name: str, vectors: dict[str, np.ndarray]) -> Path:
    write_embeddings(vectors, d / f"{name}.ark", d / f"{name}.scp")
    return d / f"{name}.scp"


def read_score_file(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


@pytest.fixture
def data(tmp_path: Path) -> dict:
    """Utterances of 4 speakers, a training set of 12 speakers (the cohort), and trials."""
    rng = np.random.default_rng(1)
    utts = {f"spk{s}/u{i}.wav": (rng.standard_normal(DIM) + 2.0).astype(np.float32)
            for s in range(4) for i in range(3)}
    train = {f"tr{s:02d}-{i}": rng.standard_normal(DIM).astype(np.float32) + 1.0
             for s in range(12) for i in range(3)}
    keys = list(utts)
    pairs = [(keys[i], keys[j]) for i in range(len(keys)) for j in range(len(keys)) if (i + 2 * j) % 3 == 0]
    trials = tmp_path / "trials"
    trials.write_text("".join(f"{e} {t} {'target' if e[:4] == t[:4] else 'nontarget'}\n" for e, t in pairs))
    spk2utt = tmp_path / "train_spk2utt"
    spk2utt.write_text("".join(f"tr{s:02d} " + " ".join(f"tr{s:02d}-{i}" for i in range(3)) + "\n"
                               for s in range(12)))
    return {"dir": tmp_path, "utts": utts, "train": train, "pairs": pairs, "trials": trials, "spk2utt": spk2utt,
            "emb": write_set(tmp_path, "utts", utts), "train_scp": write_set(tmp_path, "train", train)}


def test_write_and_load_embeddings(tmp_path: Path) -> None:
    vectors = {f"k{i}": np.arange(i, i + DIM, dtype=np.float32) for i in range(5)}
    scp = write_set(tmp_path, "x", vectors)
    keys, matrix = load_embeddings(scp)
    assert keys == list(vectors)
    np.testing.assert_array_equal(matrix, np.stack(list(vectors.values())))
    for key, vec in kaldiio.load_scp(str(scp)).items():  # Kaldi's own reader agrees
        np.testing.assert_array_equal(vec, vectors[key])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ark", "x.scp"]  # no temporary left
    # A compressed or double-precision ark takes the slow path and reads the same.
    kaldiio.save_ark(str(tmp_path / "d.ark"), {k: v.astype(np.float64) for k, v in vectors.items()},
                     scp=str(tmp_path / "d.scp"))
    np.testing.assert_array_equal(load_embeddings(tmp_path / "d.scp")[1], matrix)


def test_write_embeddings_failure_leaves_old_files(tmp_path: Path) -> None:
    scp = write_set(tmp_path, "x", {"a": np.ones(DIM, np.float32)})
    before = scp.read_text()
    with pytest.raises(ValueError):
        write_embeddings({"b": np.ones(DIM, np.float32), "bad key": np.ones(DIM, np.float32)},
                         tmp_path / "x.ark", scp)
    assert scp.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ark", "x.scp"]


def test_load_embeddings_errors(tmp_path: Path) -> None:
    write_set(tmp_path, "x", {"a": np.ones(DIM, np.float32)})
    (tmp_path / "dup.scp").write_text((tmp_path / "x.scp").read_text() * 2)
    with pytest.raises(DataError, match=r"dup.scp:2: duplicate key 'a'"):
        load_embeddings(tmp_path / "dup.scp")
    with pytest.raises(DataError, match="no such file"):
        load_embeddings(tmp_path / "missing.scp")


@pytest.mark.parametrize("with_mean", [False, True])
def test_cosine_scores(data: dict, with_mean: bool) -> None:
    out = data["dir"] / "s.score"
    extra = ["--mean-scp", str(data["train_scp"])] if with_mean else []
    run_tool("-m", "sv.bin.score", "--trials", str(data["trials"]), "--emb-scp", str(data["emb"]), *extra,
             "--out", str(out))
    mean = np.mean(list(data["train"].values()), axis=0) if with_mean else 0.0
    rows = read_score_file(out)
    assert [(r[0], r[1]) for r in rows] == data["pairs"]
    assert [r[3] for r in rows] == [line.split()[2] for line in data["trials"].read_text().splitlines()]
    expected = [unit(data["utts"][e] - mean) @ unit(data["utts"][t] - mean) for e, t in data["pairs"]]
    np.testing.assert_allclose([float(r[2]) for r in rows], expected, atol=2e-6)
    assert not list(data["dir"].glob(".*.tmp"))


def test_cosine_with_enroll_scp_and_no_labels(data: dict) -> None:
    d = data["dir"]
    speakers = {f"spk{s}": np.mean([data["utts"][f"spk{s}/u{i}.wav"] for i in range(3)], axis=0) for s in range(4)}
    enroll = write_set(d, "enroll", speakers)
    pairs = [(f"spk{s}", u) for s in range(4) for u in data["utts"]]
    (d / "unlabelled").write_text("".join(f"{e} {t}\n" for e, t in pairs))
    run_tool("-m", "sv.bin.score", "--trials", str(d / "unlabelled"), "--emb-scp", str(data["emb"]),
             "--enroll-scp", str(enroll), "--mean-scp", str(data["train_scp"]), "--out", str(d / "s"))
    mean = np.mean(list(data["train"].values()), axis=0)
    rows = read_score_file(d / "s")
    assert all(len(r) == 4 and r[3] == "-" for r in rows)
    expected = [unit(speakers[e] - mean) @ unit(data["utts"][t] - mean) for e, t in pairs]
    np.testing.assert_allclose([float(r[2]) for r in rows], expected, atol=2e-6)


def test_missing_key_names_trial_line(data: dict) -> None:
    trials = data["dir"] / "bad_trials"
    lines = data["trials"].read_text().splitlines()
    lines.insert(2, "spk0/u0.wav nobody.wav nontarget")
    trials.write_text("\n".join(lines) + "\n")
    out = data["dir"] / "s"
    proc = run_tool("-m", "sv.bin.score", "--trials", str(trials), "--emb-scp", str(data["emb"]),
                    "--out", str(out), check=False)
    assert proc.returncode == 1
    assert f"{trials}:3: no embedding for 'nobody.wav' in {data['emb']}" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_speaker_mean(data: dict) -> None:
    d = data["dir"]
    run_tool("-m", "sv.bin.speaker_mean", "--spk2utt", str(data["spk2utt"]), "--emb-scp", str(data["train_scp"]),
             "--mean-scp", str(data["train_scp"]), "--out-dir", str(d / "cohort"))
    keys, means = load_embeddings(d / "cohort" / "spk_xvector.scp")
    train_mean = np.mean(list(data["train"].values()), axis=0)
    assert keys == [f"tr{s:02d}" for s in range(12)]
    for key, got in zip(keys, means):
        np.testing.assert_allclose(got, np.mean([data["train"][f"{key}-{i}"] for i in range(3)], axis=0)
                                   - train_mean, atol=1e-5)
    assert sorted(p.name for p in (d / "cohort").iterdir()) == ["spk_xvector.ark", "spk_xvector.scp"]


def test_speaker_mean_enroll_map(data: dict) -> None:
    """CN-Celeb's enroll.map form: `<spk>-enroll utt utt ...`, here with --length-norm."""
    d = data["dir"]
    (d / "enroll.map").write_text("id00800-enroll spk0/u0.wav spk0/u2.wav\nid00801-enroll spk3/u1.wav\n")
    run_tool("-m", "sv.bin.speaker_mean", "--spk2utt", str(d / "enroll.map"), "--emb-scp", str(data["emb"]),
             "--length-norm", "--out-dir", str(d / "enroll"))
    keys, means = load_embeddings(d / "enroll" / "spk_xvector.scp")
    assert keys == ["id00800-enroll", "id00801-enroll"]
    u = data["utts"]
    np.testing.assert_allclose(means[0], (unit(u["spk0/u0.wav"]) + unit(u["spk0/u2.wav"])) / 2, atol=1e-6)
    np.testing.assert_allclose(means[1], unit(u["spk3/u1.wav"]), atol=1e-6)

    (d / "bad.map").write_text("a spk0/u0.wav\nb spk0/u1.wav nobody.wav\n")
    proc = run_tool("-m", "sv.bin.speaker_mean", "--spk2utt", str(d / "bad.map"), "--emb-scp", str(data["emb"]),
                    "--out-dir", str(d / "bad"), check=False)
    assert proc.returncode == 1 and f"{d / 'bad.map'}:2: no embedding for 'nobody.wav'" in proc.stderr


def reference_norm(score: float, e: np.ndarray, t: np.ndarray, cohort: list[np.ndarray],
                   top_n: int | None) -> tuple[float, float, float]:
    """Per-trial loop: (normalised score, enroll top-N mean, test top-N mean)."""
    stats = []
    for x in (e, t):
        s = sorted((float(unit(x) @ unit(c)) for c in cohort), reverse=True)[:top_n]
        mu = sum(s) / len(s)
        stats.append((mu, (sum((v - mu) ** 2 for v in s) / len(s)) ** 0.5))  # population std
    (mu_e, sd_e), (mu_t, sd_t) = stats
    return 0.5 * ((score - mu_e) / sd_e + (score - mu_t) / sd_t), mu_e, mu_t


@pytest.mark.parametrize("method,top_n", [("asnorm", 5), ("snorm", None)])
@pytest.mark.parametrize("separate_enroll", [False, True])
def test_score_norm(data: dict, method: str, top_n: int | None, separate_enroll: bool) -> None:
    d = data["dir"]
    train_mean = np.mean(list(data["train"].values()), axis=0)
    run_tool("-m", "sv.bin.speaker_mean", "--spk2utt", str(data["spk2utt"]), "--emb-scp", str(data["train_scp"]),
             "--mean-scp", str(data["train_scp"]), "--out-dir", str(d / "cohort"))
    trials, enroll_vectors = data["trials"], data["utts"]
    enroll_args: list[str] = []
    if separate_enroll:  # enroll side from another set (CN-Celeb speaker models), trials unlabelled
        enroll_vectors = {f"e{k}": v * 0.5 + 1.0 for k, v in data["utts"].items()}
        enroll_args = ["--enroll-scp", str(write_set(d, "enroll", enroll_vectors))]
        trials = d / "enroll_trials"
        trials.write_text("".join(f"e{e} {t}\n" for e, t in data["pairs"]))
    common = ["--emb-scp", str(data["emb"]), "--mean-scp", str(data["train_scp"]), *enroll_args]
    run_tool("-m", "sv.bin.score", "--trials", str(trials), *common, "--out", str(d / "raw"))
    run_tool("-m", "sv.bin.score_norm", "--method", method, "--top-n", str(top_n or 300), "--cohort-scp",
             str(d / "cohort" / "spk_xvector.scp"), *common, "--scores", str(d / "raw"), "--out", str(d / "norm"))

    cohort = list(load_embeddings(d / "cohort" / "spk_xvector.scp")[1])
    assert len(cohort) == 12 and (top_n is None or top_n < len(cohort))
    raw, norm = read_score_file(d / "raw"), read_score_file(d / "norm")
    assert len(norm) == len(raw) and all(len(r) == 6 for r in norm)
    for r, n in zip(raw, norm):
        assert n[:2] == r[:2] and n[3] == r[3]
        expected = reference_norm(float(r[2]), enroll_vectors[r[0]] - train_mean, data["utts"][r[1]] - train_mean,
                                  cohort, top_n)
        np.testing.assert_allclose([float(v) for v in (n[2], n[4], n[5])], expected, atol=1e-5)


def test_score_norm_missing_key(data: dict) -> None:
    d = data["dir"]
    (d / "raw").write_text("spk0/u0.wav spk0/u1.wav 0.5 target\nspk0/u0.wav ghost.wav 0.1 nontarget\n")
    proc = run_tool("-m", "sv.bin.score_norm", "--cohort-scp", str(data["train_scp"]), "--emb-scp", str(data["emb"]),
                    "--scores", str(d / "raw"), "--out", str(d / "norm"), check=False)
    assert proc.returncode == 1 and f"{d / 'raw'}:2: no embedding for 'ghost.wav'" in proc.stderr


def test_length_norm() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(length_norm(x), [[0.6, 0.8], [0.0, 0.0]])
