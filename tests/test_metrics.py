"""Verification metrics against scikit-learn / brute force, hand-made cases, and the compute_metrics CLI."""
import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from conftest import run_tool
from sv.score.metrics import (OperatingPoints, act_dcf, cllr, compute_all, eer, eer_star, min_cllr, min_dcf,
                              rates_at)
from sv.score.results import append_results


def sklearn_eer(scores, labels):
    """EER from sklearn's ROC: linear interpolation where fnr - fpr changes sign."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    d = fnr - fpr  # decreasing threshold: starts at 1 (all rejected), ends at -1
    i = int(np.argmax(d <= 0))
    a = d[i - 1] / (d[i - 1] - d[i])
    return fpr[i - 1] + a * (fpr[i] - fpr[i - 1])


def brute_min_dcf(scores, labels, p, c_miss=1.0, c_fa=1.0):
    best = math.inf
    for t in [*np.unique(scores), scores.max() + 1]:
        p_miss = np.mean(scores[labels] < t)
        p_fa = np.mean(scores[~labels] >= t)
        best = min(best, (c_miss * p * p_miss + c_fa * (1 - p) * p_fa) / min(c_miss * p, c_fa * (1 - p)))
    return best


def random_trials(n, seed, decimals=None):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    scores = rng.normal(size=n) + 1.5 * labels
    return (np.round(scores, decimals) if decimals is not None else scores), labels


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_eer_matches_sklearn(seed, decimals):
    scores, labels = random_trials(2000, seed, decimals)
    value, threshold = eer(scores, labels)
    assert abs(value - sklearn_eer(scores, labels)) < 1e-4
    assert scores.min() <= threshold <= scores.max()


def test_eer_hand_made():
    assert eer([0.1, 0.9], [0, 1])[0] == 0.0  # perfect separation
    assert eer([0.9, 0.1], [0, 1])[0] == 1.0  # fully inverted
    # non-targets 0.1, 0.4; targets 0.35, 0.8: at threshold 0.4 one of each is wrong, both rates 1/2.
    assert eer([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == (0.5, 0.4)
    # non-targets 0, 1, 2; target 1.5: rates cross between threshold 1 (miss 0, fa 2/3) and 1.5
    # (miss 0, fa 1/3) and 2 (miss 1, fa 1/3): on the last segment miss = fa at 1/3 (a = 1/3).
    value, threshold = eer([0, 1, 2, 1.5], [0, 0, 0, 1])
    assert value == pytest.approx(1 / 3) and threshold == pytest.approx(1.5 + 0.5 / 3)
    # All scores tied: one threshold step from (miss 0, fa 1) to (miss 1, fa 0).
    assert eer([1.0, 1.0, 1.0, 1.0], [0, 1, 0, 1])[0] == pytest.approx(0.5)


@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("p", [0.01, 0.05, 0.5])
def test_min_dcf_matches_brute_force(p, decimals):
    scores, labels = random_trials(300, 7, decimals)
    value, threshold = min_dcf(scores, labels, p)
    assert value == pytest.approx(brute_min_dcf(scores, labels, p), abs=1e-12)
    p_miss, p_fa = rates_at(scores, labels, threshold)
    assert value == pytest.approx((p * p_miss + (1 - p) * p_fa) / min(p, 1 - p))
    assert min_dcf(scores, labels, p, c_miss=10)[0] == pytest.approx(brute_min_dcf(scores, labels, p, c_miss=10))


def test_cllr_of_calibrated_and_scaled_scores():
    # Scores drawn as LLRs of two unit-variance Gaussians 2 apart are calibrated: llr(x) = 2x.
    rng = np.random.default_rng(3)
    n = 20000
    labels = rng.random(n) < 0.5
    llrs = 2 * (rng.normal(size=n) + np.where(labels, 1, -1))
    calibrated = cllr(llrs, labels)
    assert min_cllr(llrs, labels) <= calibrated < 1
    assert calibrated == pytest.approx(min_cllr(llrs, labels), abs=0.02)  # calibrated: little to gain
    assert cllr(5 * llrs, labels) > calibrated + 0.1  # over-confident scores cost more
    assert cllr(np.zeros(n), labels) == pytest.approx(1.0)
    for transformed in (5 * llrs, np.tanh(llrs / 7), llrs**3 + 4):  # minCllr only sees the order
        assert min_cllr(transformed, labels) == pytest.approx(min_cllr(llrs, labels), abs=1e-9)
    assert min_cllr([0.1, 0.9], [0, 1]) == 0.0


def test_act_dcf_uses_bayes_threshold():
    labels = np.array([1, 1, 0, 0, 0])
    # -logit(0.01) = log(99) ~ 4.595: the 4.0 target is missed, the 5.0 non-target is a false alarm.
    llrs = np.array([6.0, 4.0, 5.0, -1.0, -2.0])
    assert act_dcf(llrs, labels, 0.01) == pytest.approx((0.01 * 0.5 + 0.99 / 3) / 0.01)
    # At p = 0.5 the threshold is 0: only the 5.0 non-target is wrong.
    assert act_dcf(llrs, labels, 0.5) == pytest.approx(0.5 / 3 / 0.5)


def test_eer_star():
    # Validation EER threshold: non-targets 0, 1; targets 2, 3: perfect split, crossing at threshold 2.
    valid_scores, valid_labels = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0, 0, 1, 1])
    assert eer(valid_scores, valid_labels) == (0.0, 2.0)
    # Eval at tau = 2: target 1.5 missed (1/2), non-target 2.5 accepted (1/4): EER* = (1/2 + 1/4) / 2.
    eval_scores = np.array([1.5, 3.0, 0.0, 0.5, 1.0, 2.5])
    eval_labels = np.array([1, 1, 0, 0, 0, 0])
    assert eer_star(valid_scores, valid_labels, eval_scores, eval_labels) == (0.375, 2.0)


def test_compute_all_and_errors():
    scores, labels = random_trials(500, 1)
    m = compute_all(scores, labels)
    assert m["trials"] == 500 and m["targets"] == labels.sum()
    assert m["eer"] == eer(scores, labels)[0] and m["min_dcf"][0.01] == min_dcf(scores, labels, 0.01)[0]
    points = OperatingPoints.from_scores(scores, labels)
    assert np.all(np.diff(points.p_miss) >= 0) and np.all(np.diff(points.p_fa) <= 0)
    with pytest.raises(ValueError, match="no target"):
        eer([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="no non-target"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="finite"):
        eer([np.nan, 0.2], [0, 1])


@pytest.fixture
def score_files(tmp_path):
    valid = tmp_path / "valid.score"
    valid.write_text("a b 0 nontarget\na c 1 nontarget\nb c 2 target\nb d 3 target\n")
    test = tmp_path / "test.score"
    test.write_text("e f 1.5 target x\ne g 3.0 target x\n\nf g 0.0 nontarget x\nf h 0.5 nontarget x\n"
                    "g h 1.0 nontarget x\ng i 2.5 nontarget x\n")
    return valid, test


def test_cli_table_and_json(score_files):
    valid, test = score_files
    out = run_tool("-m", "sv.bin.compute_metrics", "--threshold-from", str(valid), str(test), str(valid)).stdout
    header, row, _ = out.splitlines()
    assert header.split() == ["name", "trials", "EER%", "minDCF0.01", "minDCF0.05", "actDCF0.01", "actDCF0.05",
                              "actCllr", "minCllr", "EER*%"]
    assert row.split()[:2] == ["test.score", "6"] and row.split()[-1] == "37.500"
    rows = json.loads(run_tool("-m", "sv.bin.compute_metrics", str(test), "--json", "--p-target", "0.01").stdout)
    assert len(rows) == 1 and rows[0]["trials"] == 6 and rows[0]["targets"] == 2
    assert rows[0]["eer_percent"] == pytest.approx(100 * eer([1.5, 3, 0, 0.5, 1, 2.5], [1, 1, 0, 0, 0, 0])[0])
    assert "min_dcf_0.01" in rows[0] and "min_dcf_0.05" not in rows[0] and "eer_star_percent" not in rows[0]
    assert rows[0]["act_dcf_0.01"] == pytest.approx(act_dcf([1.5, 3, 0, 0.5, 1, 2.5], [1, 1, 0, 0, 0, 0], 0.01))


def test_cli_errors(tmp_path, score_files):
    bad = tmp_path / "bad.score"
    bad.write_text("a b 0.5 target\na c 0.1 nontarget\na d 0.2\n")
    proc = run_tool("-m", "sv.bin.compute_metrics", str(bad), check=False)
    assert proc.returncode == 1 and f"{bad}:3:" in proc.stderr and "without labels" in proc.stderr
    bad.write_text("a b 0.5 target\na c 0.1 nontraget\n")
    proc = run_tool("-m", "sv.bin.compute_metrics", str(bad), check=False)
    assert proc.returncode == 1 and f"{bad}:2:" in proc.stderr and "'nontraget'" in proc.stderr
    bad.write_text("a b 0.5 target\na c x nontarget\n")
    proc = run_tool("-m", "sv.bin.compute_metrics", str(bad), check=False)
    assert proc.returncode == 1 and f"{bad}:2:" in proc.stderr
    bad.write_text("a b 0.5 target\na c 0.1 target\n")
    proc = run_tool("-m", "sv.bin.compute_metrics", str(bad), check=False)
    assert proc.returncode == 1 and str(bad) in proc.stderr and "no non-target" in proc.stderr
    proc = run_tool("-m", "sv.bin.compute_metrics", "--det-plot", str(tmp_path / "det.png"), str(score_files[1]),
                    check=False)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert proc.returncode == 1 and "needs matplotlib" in proc.stderr
    else:
        assert proc.returncode == 0 and (tmp_path / "det.png").stat().st_size > 0


def test_results_md_append(tmp_path, score_files):
    """Two runs with the same --title add rows to one table; another title starts a second table."""
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results of this recipe\n")
    for system in ("sys1", "sys2"):
        run_tool("-m", "sv.bin.compute_metrics", "--results-md", str(md), "--system", system, "--title", "VoxCeleb1",
                 str(score_files[1]))
    append_results(md, "Other", [{"trial_list": "vox1_E", "system": "sys3", "eer_percent": 1.234}])
    lines = md.read_text().splitlines()
    assert lines[0] == "# Results of this recipe"
    assert lines.count("## VoxCeleb1") == 1 and lines.count("## Other") == 1
    table = [line for line in lines if line.startswith("| test.score")]
    assert [line.split("|")[2].strip() for line in table] == ["sys1", "sys2"]
    assert lines.index("## VoxCeleb1") < lines.index(table[1]) < lines.index("## Other")
    assert lines[-1] == "| vox1_E | sys3 | 1.23 | - | - |"
    run_tool("-m", "sv.bin.compute_metrics", "--results-md", str(md), "--system", "sys4", "--title", "VoxCeleb1",
             str(score_files[1]))
    lines = md.read_text().splitlines()
    assert lines.index("## Other") > [i for i, line in enumerate(lines) if "| sys4 |" in line][0]
    # A rerun replaces its row rather than adding another.
    append_results(md, "VoxCeleb1", [{"trial_list": "test.score", "system": "sys1", "eer_percent": 99.0}])
    table = [line for line in md.read_text().splitlines() if line.startswith("| test.score")]
    assert [line.split("|")[2].strip() for line in table] == ["sys1", "sys2", "sys4"]
    assert "| 99.00 |" in table[0]


def test_cli_help():
    out = run_tool("-m", "sv.bin.compute_metrics", "--help").stdout
    assert "enroll test score label" in out and "--results-md" in out and "--threshold-from" in out
