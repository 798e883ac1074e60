"""Score trial lists: EER, minDCF, Cllr and minCllr of each score file, and EER* given a validation set.

Input: score files with lines `enroll test score label [extra columns...]`, label `target` or `nontarget`
(a score file without labels cannot be scored). Output: one table row per file on stdout (or a JSON list
with --json); optionally a DET-curve PNG (--det-plot, needs matplotlib) and rows appended to a markdown
results table (--results-md FILE --system NAME).

actDCF and Cllr take the raw scores as LLRs: meaningful only for calibrated (QMF) natural-log LLRs.
EER* (--threshold-from VALID): the EER threshold of the validation scores applied to each file, reported
as the mean of its miss and false-alarm rates there.
"""
from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sv.cli import run_main
from sv.data.table import DataError, iter_table, where
from sv.score.metrics import OperatingPoints, compute_all, eer, rates_at
from sv.score.results import append_results

LABELS = ("target", "nontarget")


def read_scores(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(scores float64, labels bool with True = target) of a score file.

    The fast path is numpy's C parser (about 0.35 s per million lines); when it rejects the file, a
    line-by-line pass finds the first bad line and names it.
    """
    if not os.path.exists(path) or os.path.isdir(path):
        raise DataError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # loadtxt warns on an empty file; we raise below
            table = np.loadtxt(path, usecols=(2, 3), dtype=[("score", "f8"), ("label", "U10")],
                               comments=None, ndmin=1)
    except ValueError as e:
        _raise_first_bad_line(path)
        raise DataError(f"{path}: {e}") from e
    if len(table) == 0:
        raise DataError(f"{path}: no trials")
    scores, labels = table["score"], table["label"]
    is_target = labels == "target"
    if not (is_target | (labels == "nontarget")).all() or not np.isfinite(scores).all():
        _raise_first_bad_line(path)
    return scores, is_target


def _raise_first_bad_line(path: str | os.PathLike) -> None:
    for lineno, fields in iter_table(path, min_fields=1):
        at = where(path, lineno)
        if len(fields) < 4:
            hint = " (no label column: a score file without labels cannot be scored)" if len(fields) == 3 else ""
            raise DataError(f"{at}: expected 'enroll test score label', got {len(fields)} fields{hint}")
        try:
            score = float(fields[2])
        except ValueError:
            raise DataError(f"{at}: score {fields[2]!r} is not a number") from None
        if not np.isfinite(score):
            raise DataError(f"{at}: score {fields[2]!r} is not finite")
        if fields[3] not in LABELS:
            raise DataError(f"{at}: label {fields[3]!r} is neither 'target' nor 'nontarget'")


def score_file(path: str, p_targets: list[float], threshold: float | None) -> tuple[dict[str, Any], OperatingPoints]:
    """The result row of one score file (EER and EER* in percent), and its operating points for plotting."""
    scores, labels = read_scores(path)
    try:
        points = OperatingPoints.from_scores(scores, labels)
    except ValueError as e:  # e.g. no target trials
        raise DataError(f"{path}: {e}") from e
    m = compute_all(scores, labels, tuple(p_targets), points)
    row: dict[str, Any] = {"name": Path(path).name, "path": str(path), "trials": m["trials"],
                           "targets": m["targets"], "nontargets": m["nontargets"],
                           "eer_percent": 100 * m["eer"], "eer_threshold": m["eer_threshold"]}
    row.update({f"min_dcf_{p:g}": m["min_dcf"][p] for p in p_targets})
    row.update({f"act_dcf_{p:g}": m["act_dcf"][p] for p in p_targets})
    row.update(cllr=m["cllr"], min_cllr=m["min_cllr"])
    if threshold is not None:
        p_miss, p_fa = rates_at(scores, labels, threshold)
        row.update(eer_star_percent=100 * (p_miss + p_fa) / 2, eer_star_threshold=threshold)
    return row, points


def format_table(rows: list[dict[str, Any]], p_targets: list[float]) -> str:
    header = ["name", "trials", "EER%"] + [f"minDCF{p:g}" for p in p_targets] + \
        [f"actDCF{p:g}" for p in p_targets] + ["actCllr", "minCllr"]
    star = "eer_star_percent" in rows[0]
    if star:
        header.append("EER*%")
    body = []
    for r in rows:
        cells = [r["name"], str(r["trials"]), f"{r['eer_percent']:.3f}"]
        cells += [f"{r[f'min_dcf_{p:g}']:.4f}" for p in p_targets]
        cells += [f"{r[f'act_dcf_{p:g}']:.4f}" for p in p_targets]
        cells += [f"{r['cllr']:.4f}", f"{r['min_cllr']:.4f}"]
        if star:
            cells.append(f"{r['eer_star_percent']:.3f}")
        body.append(cells)
    widths = [max(len(c[i]) for c in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
                     for cells in [header, *body])


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ValueError("--det-plot needs matplotlib, which is not installed") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_det(out: Path, curves: dict[str, OperatingPoints]) -> None:
    """DET curve: miss against false-alarm rate on normal-deviate axes."""
    from scipy.stats import norm
    plt = _pyplot()
    ticks = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
    fig, ax = plt.subplots(figsize=(5, 5))

    def deviate(rate: np.ndarray) -> np.ndarray:
        return norm.ppf(np.clip(rate, 1e-6, 1 - 1e-6))  # rates of 0 and 1 would be infinite deviates

    for name, pts in curves.items():
        ax.plot(deviate(pts.p_fa), deviate(pts.p_miss), label=f"{name} (EER {100 * pts.eer()[0]:.2f}%)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set(xlim=norm.ppf([0.0005, 0.5]), ylim=norm.ppf([0.0005, 0.5]),
           xlabel="false-alarm rate (%)", ylabel="miss rate (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sv.bin.compute_metrics", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m sv.bin.compute_metrics --threshold-from exp/x/scores/valid.score "
               "exp/x/scores/vox1_O.score --results-md RESULTS.md --system ecapa_c512")
    p.add_argument("scores", nargs="+", metavar="SCORES", help="input: score files `enroll test score label ...`")
    p.add_argument("--p-target", type=float, nargs="+", default=[0.01, 0.05],
                   help="target priors of the minDCFs (c_miss = c_fa = 1; default 0.01 0.05); it takes every number "
                        "that follows, so give SCORES before it")
    p.add_argument("--threshold-from", metavar="VALID_SCORES",
                   help="input: validation score file; adds EER* at its EER threshold")
    p.add_argument("--json", action="store_true", help="output: a JSON list of one object per score file")
    p.add_argument("--det-plot", type=Path, metavar="OUT.png", help="output: DET curves of all files (needs matplotlib)")
    p.add_argument("--results-md", type=Path, metavar="FILE",
                   help="output: append one row per score file to the markdown table under --title")
    p.add_argument("--system", help="system name of the --results-md rows")
    p.add_argument("--title", default="Results", help="section title of the --results-md table (default: Results)")
    args = p.parse_args(argv)
    if args.results_md and not args.system:
        p.error("--results-md needs --system")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.det_plot:
        _pyplot()  # fail before the scoring work, not after it
    threshold = None
    if args.threshold_from:
        valid = read_scores(args.threshold_from)
        try:
            threshold = eer(*valid)[1]
        except ValueError as e:
            raise DataError(f"{args.threshold_from}: {e}") from e
    rows, curves = [], {}
    for path in args.scores:
        row, points = score_file(path, args.p_target, threshold)
        rows.append(row)
        if args.det_plot:  # only then keep every file's curve in memory
            curves[Path(path).name] = points
    print(json.dumps(rows, indent=1) if args.json else format_table(rows, args.p_target))
    if args.det_plot:
        plot_det(args.det_plot, curves)
    if args.results_md:
        append_results(args.results_md, args.title, [dict(r, trial_list=r["name"], system=args.system) for r in rows])


if __name__ == "__main__":
    run_main(main)
