"""Issue-10 scoring options: the utterance AS-norm cohort (sv.bin.make_cohort, steps/score.sh
--cohort-type utterance), the WADA-SNR estimator (sv.data.snr, sv.bin.compute_snr) and QMF with the
snr quality (sv.bin.calibrate --utt2snr), against direct computations on small synthetic sets."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from scipy.signal import lfilter
from scipy.signal.windows import tukey

from conftest import run_tool
from sv.data.snr import WADA_DB, WADA_G, wada_snr, wada_table
from sv.data.table import iter_table, read_list, read_scp
from sv.score.cohort import draw_utterances
from sv.score.embeddings import load_embeddings, write_embeddings
from sv.score.qmf import FEATURES, QMF, QUALITIES, cllr_loss, feature_names, train_qmf, trial_features

DIM = 8
SR = 16000
TRUE_SNRS = (0, 5, 10, 15, 20)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------------
# Utterance cohort

@pytest.fixture
def train_set(tmp_path: Path) -> dict:
    rng = np.random.default_rng(3)
    train = {f"tr{s:02d}-{i}": (rng.standard_normal(DIM) + 1.0).astype(np.float32) for s in range(10) for i in range(5)}
    write_embeddings(train, tmp_path / "train.ark", tmp_path / "train.scp")
    return {"dir": tmp_path, "train": train, "scp": tmp_path / "train.scp"}


def make_cohort(d: Path, scp: Path, size: int, seed: int, name: str) -> Path:
    run_tool("-m", "sv.bin.make_cohort", "--emb-scp", str(scp), "--size", str(size), "--seed", str(seed),
             "--mean-scp", str(scp), "--out-dir", str(d / name))
    return d / name


def test_draw_utterances_is_seeded_and_order_free() -> None:
    keys = [f"u{i:03d}" for i in range(100)]
    a = draw_utterances(keys, 30, seed=0)
    assert len(a) == 30 == len(set(a)) and a == sorted(a) and set(a) <= set(keys)
    assert draw_utterances(keys[::-1], 30, seed=0) == a  # the input's order does not matter
    assert draw_utterances(keys, 30, seed=1) != a
    expected = sorted(keys[i] for i in np.random.default_rng(0).choice(100, 30, replace=False))
    assert a == expected  # the documented draw
    assert draw_utterances(keys[:7], 30) == keys[:7]
    with pytest.raises(ValueError, match="positive"):
        draw_utterances(keys, 0)


def test_make_cohort(train_set: dict) -> None:
    d, train = train_set["dir"], train_set["train"]
    out = make_cohort(d, train_set["scp"], 20, 0, "c0")
    keys, matrix = load_embeddings(out / "xvector.scp")
    assert len(keys) == 20 == len(set(keys)) and read_list(out / "utt_list") == keys == sorted(keys)
    mean = np.mean(list(train.values()), axis=0)
    np.testing.assert_allclose(matrix, np.stack([train[k] for k in keys]) - mean, atol=1e-5)
    assert sorted(p.name for p in out.iterdir()) == ["utt_list", "xvector.ark", "xvector.scp"]
    # Deterministic by seed; another seed draws another cohort.
    assert read_list(make_cohort(d, train_set["scp"], 20, 0, "c0b") / "utt_list") == keys
    assert read_list(make_cohort(d, train_set["scp"], 20, 5, "c5") / "utt_list") != keys
    # Fewer utterances than asked: all of them.
    proc = run_tool("-m", "sv.bin.make_cohort", "--emb-scp", str(train_set["scp"]), "--size", "500",
                    "--out-dir", str(d / "all"))
    assert read_list(d / "all" / "utt_list") == sorted(train) and "fewer than --size 500" in proc.stderr
    help_text = run_tool("-m", "sv.bin.make_cohort", "--help").stdout
    assert "--emb-scp" in help_text and "xvector.ark" in help_text and "utt_list" in help_text


def test_asnorm_over_utterance_cohort(train_set: dict) -> None:
    d, train = train_set["dir"], train_set["train"]
    rng = np.random.default_rng(4)
    utts = {f"spk{s}/u{i}.wav": (rng.standard_normal(DIM) + 1.5).astype(np.float32) for s in range(3) for i in range(3)}
    write_embeddings(utts, d / "eval.ark", d / "eval.scp")
    keys = list(utts)
    pairs = [(keys[i], keys[j]) for i in range(len(keys)) for j in range(i + 1, len(keys))]
    (d / "trials").write_text("".join(f"{e} {t} {'target' if e[:4] == t[:4] else 'nontarget'}\n" for e, t in pairs))
    cohort = make_cohort(d, train_set["scp"], 25, 0, "cohort")
    run_tool("-m", "sv.bin.score", "--trials", str(d / "trials"), "--emb-scp", str(d / "eval.scp"),
             "--mean-scp", str(train_set["scp"]), "--out", str(d / "s"))
    top_n = 7
    run_tool("-m", "sv.bin.score_norm", "--method", "asnorm", "--top-n", str(top_n), "--cohort-scp",
             str(cohort / "xvector.scp"), "--emb-scp", str(d / "eval.scp"), "--mean-scp", str(train_set["scp"]),
             "--scores", str(d / "s"), "--out", str(d / "s.asnorm"))

    # Direct numpy: the drawn utterances, training mean off, length-normalised; top-N per side.
    mean = np.mean(list(train.values()), axis=0)
    chosen = draw_utterances(list(train), 25, seed=0)
    c = unit(np.stack([train[k] for k in chosen]) - mean)
    x = {k: unit(v - mean) for k, v in utts.items()}
    rows = [line.split() for line in (d / "s.asnorm").read_text().splitlines()]
    assert [(r[0], r[1]) for r in rows] == pairs
    for (e, t), r in zip(pairs, rows):
        raw = x[e] @ x[t]
        stats = []
        for side in (e, t):
            top = np.sort(c @ x[side])[::-1][:top_n]
            stats.append((top.mean(), top.std()))
        expected = 0.5 * ((raw - stats[0][0]) / stats[0][1] + (raw - stats[1][0]) / stats[1][1])
        np.testing.assert_allclose([float(r[2]), float(r[4]), float(r[5])], [expected, stats[0][0], stats[1][0]],
                                   atol=2e-5)


# ---------------------------------------------------------------------------------------------------
# SNR

def speech_like(rng: np.random.Generator, seconds: float = 4.0) -> np.ndarray:
    """A harmonic source with a wobbling F0 plus breath noise, through three formant resonators (an AR
    filter), under a syllable envelope: 0.1-0.3 s syllables of random level with 20-120 ms pauses."""
    n = int(SR * seconds)
    t = np.arange(n) / SR
    f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    source = sum(np.sin(k * phase) / k for k in range(1, 30)) + 0.3 * rng.standard_normal(n)
    poles = []
    for lo, hi, bw in ((500, 800, 80), (1000, 1800, 100), (2300, 3000, 150)):
        r, f = np.exp(-np.pi * bw / SR), rng.uniform(lo, hi)
        poles += [r * np.exp(2j * np.pi * f / SR), r * np.exp(-2j * np.pi * f / SR)]
    voiced = lfilter([1.0], np.real(np.poly(poles)), source)
    envelope, i = np.zeros(n), 0
    while i < n:
        on, off = int(SR * rng.uniform(0.1, 0.3)), int(SR * rng.uniform(0.02, 0.12))
        m = min(on, n - i)
        envelope[i:i + m] = (tukey(on, 0.6) * rng.uniform(0.3, 1.0))[:m]
        i += on + off
    return voiced * envelope


def with_noise(speech: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(len(speech)) * np.sqrt(np.mean(speech ** 2) / 10 ** (snr_db / 10))
    return speech + noise


def test_wada_table_matches_its_model() -> None:
    assert WADA_G.shape == WADA_DB.shape and np.all(np.diff(WADA_G) > 0)
    assert abs(WADA_G[0] - (0.5 * np.log(2 / np.pi) + (np.euler_gamma + np.log(2)) / 2)) < 2e-3  # Gaussian
    np.testing.assert_allclose(wada_table(num_samples=500_000, seed=1), WADA_G, atol=0.01)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wada_snr_on_speech_like_signals(seed: int) -> None:
    rng = np.random.default_rng(seed)
    speech = speech_like(rng)
    estimates = np.array([wada_snr(with_noise(speech, snr, rng)) for snr in TRUE_SNRS])
    assert np.all(np.abs(estimates - TRUE_SNRS) < 3.0), estimates
    assert np.all(np.diff(estimates) > 0), estimates
    noisy = with_noise(speech, 10, rng)
    assert wada_snr(0.01 * noisy) == pytest.approx(wada_snr(noisy), abs=1e-6)  # level-free
    assert wada_snr(rng.standard_normal(SR)) < -5  # noise alone
    assert wada_snr(speech) > 40  # clean
    assert np.isnan(wada_snr(np.zeros(100))) and np.isnan(wada_snr(np.zeros(0)))


def write_data_dir(d: Path, recordings: dict[str, np.ndarray], segments: dict[str, str] | None = None) -> None:
    d.mkdir(parents=True, exist_ok=True)
    lines = []
    for key, wav in sorted(recordings.items()):
        path = d / f"{key}.wav"
        sf.write(path, (wav / np.abs(wav).max() * 0.5).astype(np.float32), SR, subtype="FLOAT")
        lines.append(f"{key} {path}\n")
    (d / "wav.scp").write_text("".join(lines))
    if segments:
        (d / "segments").write_text("".join(f"{k} {v}\n" for k, v in sorted(segments.items())))


def test_compute_snr_cli(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    speech = speech_like(rng, seconds=3.0)
    recs = {f"r{snr:02d}": with_noise(speech, snr, rng) for snr in TRUE_SNRS}
    data = tmp_path / "data"
    write_data_dir(data, recs)
    run_tool("-m", "sv.bin.compute_snr", str(data))
    snrs = {k: float(v) for k, v in read_scp(data / "utt2snr").items()}
    assert list(snrs) == sorted(recs)
    np.testing.assert_allclose([snrs[f"r{s:02d}"] for s in TRUE_SNRS], TRUE_SNRS, atol=3.0)
    assert all(snrs[k] == pytest.approx(wada_snr(sf.read(data / f"{k}.wav")[0]), abs=0.006) for k in snrs)

    # Segments: each utterance is its part of a recording; two workers give the same.
    seg = tmp_path / "seg"
    long = np.concatenate([recs["r00"], recs["r20"]])
    write_data_dir(seg, {"rec": long}, {"u-a": "rec 0.00 3.00", "u-b": "rec 3.00 6.00", "u-c": "rec 3.00 -1"})
    run_tool("-m", "sv.bin.compute_snr", "--num-workers", "2", "--out", str(tmp_path / "seg.snr"), str(seg))
    got = {k: float(v) for k, v in read_scp(tmp_path / "seg.snr").items()}
    assert got["u-a"] == pytest.approx(snrs["r00"], abs=0.5) and got["u-b"] == pytest.approx(snrs["r20"], abs=0.5)
    assert got["u-c"] == got["u-b"]
    assert "--num-workers" in run_tool("-m", "sv.bin.compute_snr", "--help").stdout


def test_compute_snr_errors_name_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_data_dir(data, {"a": np.ones(SR), "b": np.random.default_rng(0).standard_normal(SR)})
    (data / "wav.scp").write_text((data / "wav.scp").read_text() + f"c {tmp_path}/missing.wav\n")
    proc = run_tool("-m", "sv.bin.compute_snr", str(data), check=False)
    assert proc.returncode == 1 and f"{data}/wav.scp:3: utterance c: cannot read audio" in proc.stderr
    assert "Traceback" not in proc.stderr and not (data / "utt2snr").exists()

    write_data_dir(data, {"a": np.ones(SR)}, {"u1": "a 0 0.5", "u2": "nobody 0 1"})
    proc = run_tool("-m", "sv.bin.compute_snr", str(data), check=False)
    assert proc.returncode == 1 and f"{data}/segments:2: segment u2: recording 'nobody' is not in" in proc.stderr

    sf.write(data / "a.wav", np.zeros(SR, np.float32), SR)
    (data / "segments").unlink()
    proc = run_tool("-m", "sv.bin.compute_snr", str(data), check=False)
    assert proc.returncode == 1 and f"{data}/wav.scp:1: utterance a: all-zero audio has no SNR" in proc.stderr


# ---------------------------------------------------------------------------------------------------
# QMF with the snr quality

def snr_trials(n: int, rng: np.random.Generator):
    """Scores that noisy trials pull down: the snr quality should explain them."""
    is_target = rng.random(n) < 0.5
    snr = rng.uniform(0, 30, size=(n, 2))
    score = np.where(is_target, 0.6, 0.1) + rng.normal(0, 0.1, n) - 0.3 * (snr.min(1) < 10)
    quality = [np.stack([rng.uniform(4, 20, n), rng.uniform(5, 10, n), rng.normal(0.2, 0.05, n), s], 1)
               for s in snr.T]
    return score, quality[0], quality[1], is_target


def test_qmf_snr_quality_lowers_cllr_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    qualities = QUALITIES + ("snr",)
    score, qe, qt, is_target = snr_trials(6000, rng)
    feats = trial_features(score, qe, qt, qualities)
    assert feats.shape[1] == len(feature_names(qualities)) == 17
    assert np.array_equal(feats, trial_features(score, qt, qe, qualities))  # symmetric
    with_snr = train_qmf(feats, is_target, qualities=qualities)
    without = train_qmf(feats[:, :13], is_target)
    s2, qe2, qt2, t2 = snr_trials(6000, rng)
    f2 = trial_features(s2, qe2, qt2, qualities)
    assert cllr_loss(with_snr.llr(f2), t2) < 0.9 * cllr_loss(without.llr(f2[:, :13]), t2)
    d = with_snr.to_dict()
    assert d["features"][-4:] == ["snr_min", "snr_max", "snr_diff", "snr_ratio"]
    back = QMF.from_dict(yaml.safe_load(yaml.safe_dump(d)))
    assert back.qualities == qualities and np.allclose(back.llr(f2), with_snr.llr(f2))
    assert QMF.from_dict(without.to_dict()).qualities == QUALITIES and without.to_dict()["features"] == FEATURES
    with pytest.raises(ValueError, match="not those of any quality set"):
        QMF.from_dict({**d, "features": FEATURES[:5]})
    with pytest.raises(ValueError, match="feature columns"):
        train_qmf(feats, is_target)  # 17 columns are not the default qualities'


def test_calibrate_cli_with_snr(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    keys = [f"s{s}-u{u}" for s in range(6) for u in range(6)]
    snr = {k: rng.uniform(0, 30) for k in keys}
    dur = {k: rng.uniform(2, 10) for k in keys}
    write_embeddings({k: rng.normal(size=DIM).astype(np.float32) for k in keys}, tmp_path / "e.ark", tmp_path / "e.scp")
    (tmp_path / "utt2dur").write_text("".join(f"{k} {v:.2f}\n" for k, v in dur.items()))
    (tmp_path / "utt2snr").write_text("".join(f"{k} {v:.2f}\n" for k, v in snr.items()))
    lines = []
    for _ in range(3000):
        e, t = rng.choice(keys, 2, replace=False)
        target = e.split("-")[0] == t.split("-")[0]
        s = (0.6 if target else 0.1) + rng.normal(0, 0.1) - 0.3 * (min(snr[e], snr[t]) < 10)
        lines.append(f"{e} {t} {s:.4f} {'target' if target else 'nontarget'} 0.1 0.2")
    (tmp_path / "scores").write_text("\n".join(lines) + "\n")
    common = ["--scores", str(tmp_path / "scores"), "--utt2dur", str(tmp_path / "utt2dur"),
              "--emb-scp", str(tmp_path / "e.scp")]
    snr_opt = ["--utt2snr", str(tmp_path / "utt2snr")]

    run_tool("-m", "sv.bin.calibrate", "train", *common, *snr_opt, "--out", str(tmp_path / "qmf_snr.yaml"))
    model = yaml.safe_load((tmp_path / "qmf_snr.yaml").read_text())
    assert model["features"] == feature_names(QUALITIES + ("snr",))
    run_tool("-m", "sv.bin.calibrate", "apply", "--model", str(tmp_path / "qmf_snr.yaml"), *common, *snr_opt,
             "--out", str(tmp_path / "llr"))
    out = [f for _, f in iter_table(tmp_path / "llr", nfields=4)]
    assert len(out) == 3000
    llr_snr = cllr_loss(np.array([float(o[2]) for o in out]), np.array([o[3] == "target" for o in out]))

    # The model needs utt2snr; a key it lacks names the score line, the side, the key and the file.
    proc = run_tool("-m", "sv.bin.calibrate", "apply", "--model", str(tmp_path / "qmf_snr.yaml"), *common,
                    "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 1 and "uses the snr quality" in proc.stderr and "--utt2snr" in proc.stderr
    t0 = lines[1].split()[1]
    (tmp_path / "utt2snr_part").write_text("".join(f"{k} {v:.2f}\n" for k, v in snr.items() if k != t0))
    proc = run_tool("-m", "sv.bin.calibrate", "apply", "--model", str(tmp_path / "qmf_snr.yaml"), *common,
                    "--utt2snr", str(tmp_path / "utt2snr_part"), "--out", str(tmp_path / "x"), check=False)
    first = next(i for i, line in enumerate(lines) if t0 in line.split()[:2])
    side = "enroll" if lines[first].split()[0] == t0 else "test"
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (f"{tmp_path}/scores:{first + 1}: {side} key {t0!r} has no snr in --utt2snr {tmp_path}/utt2snr_part"
            in proc.stderr)
    (tmp_path / "utt2snr_bad").write_text(f"{keys[0]} 3.0\n{keys[1]} loud\n")
    proc = run_tool("-m", "sv.bin.calibrate", "train", *common, "--utt2snr", str(tmp_path / "utt2snr_bad"),
                    "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 1 and f"{tmp_path}/utt2snr_bad:2: expected a finite number, got 'loud'" in proc.stderr

    # A model file written before the snr quality (features == FEATURES) still applies, with or without
    # --utt2snr, and gives the same LLRs either way.
    run_tool("-m", "sv.bin.calibrate", "train", *common, "--out", str(tmp_path / "qmf.yaml"))
    old = yaml.safe_load((tmp_path / "qmf.yaml").read_text())
    assert old["features"] == FEATURES
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    run_tool("-m", "sv.bin.calibrate", "apply", "--model", str(tmp_path / "old.yaml"), *common,
             "--out", str(tmp_path / "llr_old"))
    proc = run_tool("-m", "sv.bin.calibrate", "apply", "--model", str(tmp_path / "old.yaml"), *common, *snr_opt,
                    "--out", str(tmp_path / "llr_old2"))
    assert "does not use the snr quality" in proc.stderr
    assert (tmp_path / "llr_old").read_text() == (tmp_path / "llr_old2").read_text()
    old_out = [f for _, f in iter_table(tmp_path / "llr_old", nfields=4)]
    llr_old = cllr_loss(np.array([float(o[2]) for o in old_out]), np.array([o[3] == "target" for o in old_out]))
    assert llr_snr < 0.9 * llr_old


# ---------------------------------------------------------------------------------------------------
# steps/score.sh with both options

def score_sh_setup(tmp_path: Path, enroll_map: bool = False) -> dict:
    """An experiment with training and evaluation embeddings, the eval data dir (audio, utt2dur, one trial
    list; with enroll_map CN-Celeb's enroll models), and a QMF model with the snr quality whose LLR is
    the AS-norm score + 0.5."""
    rng = np.random.default_rng(11)
    exp, train_data, eval_data = tmp_path / "exp", tmp_path / "data" / "train", tmp_path / "data" / "eval"
    train = {f"tr{s:02d}-{i}": (rng.standard_normal(DIM) + 1.0).astype(np.float32) for s in range(8) for i in range(4)}
    write_embeddings(train, exp / "embeddings/train/xvector.ark", exp / "embeddings/train/xvector.scp")
    train_data.mkdir(parents=True)
    (train_data / "spk2utt").write_text("".join(f"tr{s:02d} " + " ".join(f"tr{s:02d}-{i}" for i in range(4)) + "\n"
                                                for s in range(8)))
    speech = speech_like(rng, seconds=1.0)
    recs = {f"spk{s}-u{i}": with_noise(speech, rng.uniform(0, 25), rng) for s in range(3) for i in range(3)}
    write_data_dir(eval_data, recs)
    durs = {k: 1.0 + i for i, k in enumerate(sorted(recs))}
    (eval_data / "utt2dur").write_text("".join(f"{k} {v:.2f}\n" for k, v in durs.items()))
    write_embeddings({k: (rng.standard_normal(DIM) + 1.0).astype(np.float32) for k in recs},
                     exp / "embeddings/eval/xvector.ark", exp / "embeddings/eval/xvector.scp")
    keys = sorted(recs)
    if enroll_map:
        (eval_data / "enroll.map").write_text("".join(f"spk{s}-enroll spk{s}-u0 spk{s}-u1\n" for s in range(3)))
        pairs = [(f"spk{s}-enroll", k) for s in range(3) for k in keys if k.endswith("-u2")]
    else:
        pairs = [(e, t) for i, e in enumerate(keys) for t in keys[i + 1:]]
    (eval_data / "trials").mkdir()
    (eval_data / "trials/t.kaldi").write_text("".join(
        f"{e} {t} {'target' if e[:4] == t[:4] else 'nontarget'}\n" for e, t in pairs))
    n = len(feature_names(QUALITIES + ("snr",)))
    model = QMF(np.zeros(n), np.ones(n), np.array([1.0] + [0.0] * (n - 1)), 0.5, QUALITIES + ("snr",))
    (tmp_path / "qmf.yaml").write_text(yaml.safe_dump(model.to_dict(), sort_keys=False))
    return {"exp": exp, "train_data": train_data, "eval_data": eval_data, "train": train, "durs": durs}


def check_qmf_is_asnorm_plus_half(exp: Path) -> None:
    asn = [line.split() for line in (exp / "scores/t.asnorm.score").read_text().splitlines()]
    qmf = [line.split() for line in (exp / "scores/t.qmf.score").read_text().splitlines()]
    assert [q[:2] for q in qmf] == [a[:2] for a in asn]
    np.testing.assert_allclose([float(q[2]) for q in qmf], [float(a[2]) + 0.5 for a in asn], atol=1e-5)


def test_score_sh_utterance_cohort_and_snr(tmp_path: Path, repo: Path) -> None:
    x = score_sh_setup(tmp_path)
    exp, train_data, eval_data = x["exp"], x["train_data"], x["eval_data"]
    proc = run_tool("bash", str(repo / "steps/score.sh"), "--cohort-data", str(train_data), "--cohort-type",
                    "utterance", "--cohort-size", "10", "--cohort-seed", "3", "--top-n", "4", "--nj", "1",
                    "--qmf-model", str(tmp_path / "qmf.yaml"), "--results-md", "none", str(exp), str(eval_data),
                    cwd=repo)
    assert "scored 1 trial list(s)" in proc.stdout
    cohort = exp / "embeddings/train/cohort_utt10_seed3"
    assert read_list(cohort / "utt_list") == draw_utterances(list(x["train"]), 10, seed=3)
    assert set(read_scp(eval_data / "utt2snr")) == set(x["durs"])  # computed, as the model needs it
    check_qmf_is_asnorm_plus_half(exp)

    bad = run_tool("bash", str(repo / "steps/score.sh"), "--cohort-data", str(train_data), "--cohort-type", "speakers",
                   "--results-md", "none", str(exp), str(eval_data), cwd=repo, check=False)
    assert bad.returncode == 1 and "--cohort-type must be speaker or utterance" in bad.stderr


def test_score_sh_enroll_models_snr(tmp_path: Path, repo: Path) -> None:
    """CN-Celeb's enroll models: an enroll model's SNR is its utterances' estimates weighted by duration."""
    x = score_sh_setup(tmp_path, enroll_map=True)
    exp, eval_data = x["exp"], x["eval_data"]
    run_tool("bash", str(repo / "steps/score.sh"), "--cohort-data", str(x["train_data"]), "--top-n", "4",
             "--qmf-model", str(tmp_path / "qmf.yaml"), "--results-md", "none", str(exp), str(eval_data), cwd=repo)
    assert (exp / "embeddings/train/cohort/spk_xvector.scp").is_file()  # the default speaker cohort
    snr = {k: float(v) for k, v in read_scp(eval_data / "utt2snr").items()}
    enroll_snr = {k: float(v) for k, v in read_scp(exp / "embeddings/eval/enroll/utt2snr").items()}
    d = x["durs"]
    for s in range(3):
        a, b = f"spk{s}-u0", f"spk{s}-u1"
        assert enroll_snr[f"spk{s}-enroll"] == pytest.approx((d[a] * snr[a] + d[b] * snr[b]) / (d[a] + d[b]), abs=0.01)
    check_qmf_is_asnorm_plus_half(exp)
