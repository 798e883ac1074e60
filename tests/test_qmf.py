"""QMF calibration: lowers Cllr where quality shifts scores; the CLI's three steps on files."""
import kaldiio
import numpy as np
import soundfile as sf

from conftest import run_tool
from sv.data.data_dir import validate_data_dir
from sv.data.table import iter_table, read_scp
from sv.score.qmf import cllr_loss, train_qmf, trial_features


def shifted_trials(n: int, rng: np.random.Generator):
    """Scores that short trials pull down, targets and non-targets alike, as short audio does."""
    is_target = rng.random(n) < 0.5
    dur = rng.uniform(1, 20, size=(n, 2))
    score = np.where(is_target, 0.6, 0.1) + rng.normal(0, 0.1, n) - 0.3 * (dur.min(1) < 5)
    quality = [np.stack([d, rng.uniform(5, 10, n), rng.normal(0.2, 0.05, n)], 1) for d in dur.T]
    return score, quality[0], quality[1], is_target


def test_qmf_lowers_cllr():
    rng = np.random.default_rng(0)
    score, qe, qt, is_target = shifted_trials(6000, rng)
    feats = trial_features(score, qe, qt)
    linear = train_qmf(feats[:, :1], is_target)
    qmf = train_qmf(feats, is_target)
    s2, qe2, qt2, t2 = shifted_trials(6000, rng)  # held-out trials
    f2 = trial_features(s2, qe2, qt2)
    before, after = cllr_loss(linear.llr(f2[:, :1]), t2), cllr_loss(qmf.llr(f2), t2)
    assert after < 0.8 * before, (before, after)
    assert abs(cllr_loss(np.zeros(len(t2)), t2) - 1.0) < 1e-12  # an uninformative LLR costs 1 bit


def test_features_are_symmetric():
    rng = np.random.default_rng(1)
    score, qe, qt, _ = shifted_trials(50, rng)
    assert np.array_equal(trial_features(score, qe, qt), trial_features(score, qt, qe))


def test_calibrate_cli(tmp_path):
    rng = np.random.default_rng(2)
    data = tmp_path / "train"
    data.mkdir()
    wav, utt2spk, utt2dur = {}, {}, {}
    for s in range(4):
        for u in range(5):
            key = f"spk{s}-u{u}"
            path = tmp_path / f"{key}.wav"
            sf.write(path, np.zeros(16000 * (3 + u)), 16000)
            wav[key], utt2spk[key], utt2dur[key] = str(path), f"spk{s}", f"{3 + u}.000"
    for name, table in (("wav.scp", wav), ("utt2spk", utt2spk), ("utt2dur", utt2dur)):
        (data / name).write_text("".join(f"{k} {v}\n" for k, v in sorted(table.items())))
    (data / "spk2utt").write_text(run_tool("utils/utt2spk_to_spk2utt.py", str(data / "utt2spk")).stdout)

    crops = tmp_path / "crops"
    run_tool("-m", "sv.bin.calibrate", "make-trials", "--num-utts", "16", "--num-trials", "200",
             str(data), str(crops))
    validate_data_dir(crops)
    durs = {k: float(v) for k, v in read_scp(crops / "utt2dur").items()}
    assert len(durs) == 32 and all(2.0 <= durs[k] <= 4.0 for k in durs if k.endswith("-short"))
    trials = [f for _, f in iter_table(crops / "trials" / "qmf.kaldi", nfields=3)]
    assert len(trials) == 200 and {t[2] for t in trials} == {"target", "nontarget"}
    assert all((utt2spk[e.rsplit("-", 1)[0]] == utt2spk[t.rsplit("-", 1)[0]]) == (lab == "target")
               for e, t, lab in trials)

    # Scores with quality columns, as score_norm writes them, for those trials.
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/e.ark,{tmp_path}/e.scp") as w:
        for k in durs:
            w(k, rng.normal(size=8).astype(np.float32))
    lines = [f"{e} {t} {(0.5 if lab == 'target' else 0.0) - 0.2 * (min(durs[e], durs[t]) < 5):.4f} {lab} 0.1 0.2"
             for e, t, lab in trials]
    (tmp_path / "scores").write_text("\n".join(lines) + "\n")
    common = ["--scores", str(tmp_path / "scores"), "--utt2dur", str(crops / "utt2dur"),
              "--emb-scp", str(tmp_path / "e.scp")]
    run_tool("-m", "sv.bin.calibrate", "train", *common, "--out", str(tmp_path / "qmf.yaml"))
    run_tool("-m", "sv.bin.calibrate", "apply", "--model", str(tmp_path / "qmf.yaml"), *common,
             "--out", str(tmp_path / "llr"))
    out = [f for _, f in iter_table(tmp_path / "llr", nfields=4)]
    assert [o[:2] + o[3:] for o in out] == [[e, t, lab] for e, t, lab in trials]
    llr = np.array([float(o[2]) for o in out])
    assert cllr_loss(llr, np.array([o[3] == "target" for o in out])) < 0.5

    (tmp_path / "bad").write_text(f"{trials[0][0]} {trials[0][1]} oops target 0.1 0.2\n")
    bad = run_tool("-m", "sv.bin.calibrate", "apply", "--model", str(tmp_path / "qmf.yaml"), *common[2:],
                   "--scores", str(tmp_path / "bad"), "--out", str(tmp_path / "x"), check=False)
    assert bad.returncode == 1 and f"{tmp_path}/bad:1: score columns must be numbers" in bad.stderr
