"""QMF score calibration, in three steps (see sv/score/qmf.py for the features and the model).

  python -m sv.bin.calibrate make-trials [--num-utts 3000] [--num-trials 30000] [--short 2 4] [--seed 0] DATA OUT
      Reads DATA/{wav.scp,utt2spk,utt2dur} (a training set). Writes OUT, a data dir of crops
      (wav.scp, segments, utt2spk, spk2utt, utt2dur): for each of --num-utts utterances a short crop
      (`<utt>-short`, --short seconds) and the whole utterance (`<utt>-long`, capped at 20 s); and
      OUT/trials/qmf.kaldi, half target and half non-target, each a short/short, short/long or
      long/long pair. The recipe then computes features, embeddings and AS-norm scores for OUT.
  python -m sv.bin.calibrate train --scores S --utt2dur F... --emb-scp E... [--utt2snr F...] --out MODEL.yaml
      Reads AS-norm scores with quality columns (`enroll test score label mean_topn_enroll mean_topn_test`,
      as sv.bin.score_norm writes them), durations and raw embeddings (for their magnitudes), and with
      --utt2snr SNR estimates (sv.bin.compute_snr), which add the snr quality to the model.
      Writes the QMF model (YAML; its `features` list names the qualities used) and logs Cllr before
      and after calibration.
  python -m sv.bin.calibrate apply --model MODEL.yaml --scores S --utt2dur F... --emb-scp E... [--utt2snr F...] --out S2
      Writes `enroll test llr label`: calibrated log-likelihood ratios. --utt2snr is required when the
      model uses the snr quality and ignored otherwise; models written before the snr quality apply as before.
  Every key of S (both sides) needs a value in each quality's files; a missing one is an error naming
  the score line, the side, the key and the files.
"""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import yaml

from sv.cli import run_main
from sv.data.data_dir import utt2spk_to_spk2utt, validate_data_dir
from sv.data.table import DataError, atomic_open, iter_table, read_scp, where, write_lines, write_scp, write_spk2utt
from sv.score.embeddings import load_embeddings
from sv.score.qmf import MAX_DURATION, QMF, cllr_loss, model_qualities, train_qmf, trial_features

log = logging.getLogger("sv.bin.calibrate")
MIXES = (("short", "short"), ("short", "long"), ("long", "long"))


def make_trials(data: Path, out: Path, num_utts: int, num_trials: int, short: tuple[float, float], seed: int) -> None:
    validate_data_dir(data)
    if (data / "segments").is_file():
        raise DataError(f"{data}/segments: calibration crops of segmented data dirs are not supported")
    if not (data / "utt2dur").is_file():
        raise DataError(f"{data}/utt2dur: no such file (calibration crops need durations)")
    wav, utt2spk = read_scp(data / "wav.scp"), read_scp(data / "utt2spk")
    utt2dur = {k: float(v) for k, v in read_scp(data / "utt2dur").items()}
    rng = np.random.default_rng(seed)
    utts = sorted(utt2spk)
    chosen = sorted(rng.choice(utts, size=min(num_utts, len(utts)), replace=False).tolist())
    by_spk = utt2spk_to_spk2utt({u: utt2spk[u] for u in chosen})
    multi = [s for s, us in by_spk.items() if len(us) >= 2]
    if len(by_spk) < 2 or not multi:
        raise DataError(f"{data}: too few speakers or utterances for calibration trials")

    segments, crop_spk, crop_dur = {}, {}, {}
    for utt in chosen:
        dur = utt2dur[utt]
        length = min(dur, rng.uniform(*short))
        start = rng.uniform(0, dur - length)
        for kind, (b, e) in (("short", (start, start + length)), ("long", (0.0, min(dur, MAX_DURATION)))):
            key = f"{utt}-{kind}"
            segments[key] = f"{utt} {b:.2f} {e:.2f}"
            crop_spk[key], crop_dur[key] = utt2spk[utt], e - b

    spks = sorted(by_spk)
    trials = set()
    for _ in range(num_trials * 4):  # duplicates are dropped; stop once there are enough
        if len(trials) == num_trials:
            break
        kinds = MIXES[rng.integers(len(MIXES))]
        if rng.random() < 0.5:
            kinds = kinds[::-1]
        if rng.random() < 0.5:
            a, b = rng.choice(by_spk[multi[rng.integers(len(multi))]], size=2, replace=False)
            label = "target"
        else:
            s1, s2 = rng.choice(spks, size=2, replace=False)
            a, b = by_spk[s1][rng.integers(len(by_spk[s1]))], by_spk[s2][rng.integers(len(by_spk[s2]))]
            label = "nontarget"
        trials.add(f"{a}-{kinds[0]} {b}-{kinds[1]} {label}")

    write_scp(out / "wav.scp", {u: wav[u] for u in chosen})
    write_scp(out / "segments", segments)
    write_scp(out / "utt2spk", crop_spk)
    write_spk2utt(out / "spk2utt", utt2spk_to_spk2utt(crop_spk))
    write_scp(out / "utt2dur", {k: f"{v:.3f}" for k, v in crop_dur.items()})
    write_lines(out / "trials" / "qmf.kaldi", sorted(trials))
    validate_data_dir(out)
    log.info("%s: %d crops of %d utterances, %d trials", out, len(segments), len(chosen), len(trials))


def read_scores(path: Path, quality: bool) -> tuple[list[list], np.ndarray, np.ndarray]:
    """Rows (enroll, test, label, line number), scores, and the two cohort-mean columns when `quality`."""
    rows, scores, cohort = [], [], []
    for lineno, f in iter_table(path, min_fields=6 if quality else 4):
        try:
            scores.append(float(f[2]))
            if quality:
                cohort.append((float(f[4]), float(f[5])))
        except ValueError:
            raise DataError(f"{path}:{lineno}: score columns must be numbers: {' '.join(f)}") from None
        rows.append([f[0], f[1], f[3], lineno])
    return rows, np.array(scores), np.array(cohort).reshape(-1, 2)


def read_numbers(files: list[str]) -> dict[str, float]:
    """key -> finite float of `key value` tables (utt2dur, utt2snr); a key in two files takes the later
    file's value, a key twice in one file is an error."""
    table: dict[str, float] = {}
    for path in files:
        first_line: dict[str, int] = {}
        for lineno, f in iter_table(path, nfields=2):
            if f[0] in first_line:
                raise DataError(f"{where(path, lineno)}: duplicate key {f[0]!r} (first on line {first_line[f[0]]})")
            first_line[f[0]] = lineno
            try:
                value = float(f[1])
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DataError(f"{where(path, lineno)}: expected a finite number, got {f[1]!r}")
            table[f[0]] = value
    return table


class Quality(NamedTuple):
    """One per-key quality measure: its values and the files they came from (for error messages)."""
    values: dict[str, float]
    source: str


def load_qualities(utt2dur: list[str], emb_scp: list[str], utt2snr: list[str] | None = None) -> dict[str, Quality]:
    """The per-key qualities (duration, magnitude and, with utt2snr, snr); cohort_mean comes with the scores."""
    magnitudes: dict[str, float] = {}
    for f in emb_scp:
        keys, matrix = load_embeddings(f)
        magnitudes.update(zip(keys, np.linalg.norm(matrix, axis=1).tolist()))
    out = {"duration": Quality(read_numbers(utt2dur), f"--utt2dur {' '.join(utt2dur)}"),
           "magnitude": Quality(magnitudes, f"--emb-scp {' '.join(emb_scp)}")}
    if utt2snr:
        out["snr"] = Quality(read_numbers(utt2snr), f"--utt2snr {' '.join(utt2snr)}")
    return out


def side_qualities(rows: list[list], cohort: np.ndarray, measures: dict[str, Quality], qualities: tuple[str, ...],
                   scores_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(enroll, test) quality matrices, columns in `qualities` order; a key some measure lacks is an
    error naming the score line, the side, the key and the files searched."""
    per_key = [name for name in qualities if name != "cohort_mean"]
    for r in rows:
        for name in per_key:
            for side, side_name in ((0, "enroll"), (1, "test")):
                if r[side] not in measures[name].values:
                    raise DataError(f"{where(scores_path, r[3])}: {side_name} key {r[side]!r} has no {name} in "
                                    f"{measures[name].source}")
    sides = []
    for side in (0, 1):
        columns = [cohort[:, side] if name == "cohort_mean" else
                   np.array([measures[name].values[r[side]] for r in rows], dtype=np.float64) for name in qualities]
        sides.append(np.stack(columns, 1))
    return sides[0], sides[1]


def features_of(scores_path: Path, qualities: tuple[str, ...], utt2dur: list[str], emb_scp: list[str],
                utt2snr: list[str] | None = None):
    rows, scores, cohort = read_scores(scores_path, quality=True)
    measures = load_qualities(utt2dur, emb_scp, utt2snr)
    enroll_q, test_q = side_qualities(rows, cohort, measures, qualities, scores_path)
    return rows, scores, trial_features(scores, enroll_q, test_q, qualities)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make-trials", help="calibration crops and trials from a training set")
    m.add_argument("--num-utts", type=int, default=3000)
    m.add_argument("--num-trials", type=int, default=30000)
    m.add_argument("--short", type=float, nargs=2, default=[2.0, 4.0], metavar=("MIN", "MAX"))
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("data", type=Path)
    m.add_argument("out", type=Path)
    for name in ("train", "apply"):
        s = sub.add_parser(name)
        s.add_argument("--scores", type=Path, required=True)
        s.add_argument("--utt2dur", nargs="+", required=True, help="durations of both sides' keys")
        s.add_argument("--emb-scp", nargs="+", required=True, help="raw embeddings of both sides' keys")
        s.add_argument("--utt2snr", nargs="+", help="SNR estimates (dB) of both sides' keys (sv.bin.compute_snr); "
                       + ("adds the snr quality to the model" if name == "train" else
                          "needed when the model uses the snr quality, else ignored"))
        s.add_argument("--out", type=Path, required=True)
        if name == "apply":
            s.add_argument("--model", type=Path, required=True)
    args = p.parse_args(argv)

    if args.command == "make-trials":
        make_trials(args.data, args.out, args.num_utts, args.num_trials, tuple(args.short), args.seed)
        return
    if args.command == "train":
        qualities = model_qualities(["snr"] if args.utt2snr else [])
    else:
        with open(args.model, encoding="utf-8") as f:
            model = QMF.from_dict(yaml.safe_load(f))
        qualities = model.qualities
        if "snr" in qualities and not args.utt2snr:
            raise DataError(f"{args.model}: the model uses the snr quality ({', '.join(model.features[-4:])}); "
                            f"give --utt2snr")
        if "snr" not in qualities and args.utt2snr:
            log.info("%s does not use the snr quality: ignoring --utt2snr", args.model)
    rows, scores, feats = features_of(args.scores, qualities, args.utt2dur, args.emb_scp,
                                      args.utt2snr if "snr" in qualities else None)
    if args.command == "train":
        if any(r[2] not in ("target", "nontarget") for r in rows):
            raise DataError(f"{args.scores}: training needs target/nontarget labels on every line")
        is_target = np.array([r[2] == "target" for r in rows])
        model = train_qmf(feats, is_target, qualities=qualities)
        with atomic_open(args.out) as f:
            yaml.safe_dump(model.to_dict(), f, sort_keys=False)
        # The raw score is no LLR; its best affine map is what calibration without quality would give.
        log.info("Cllr on %d calibration trials: quality-free linear %.4f -> QMF (%s) %.4f; wrote %s", len(rows),
                 cllr_loss(train_qmf(feats[:, :1], is_target, qualities=()).llr(feats[:, :1]), is_target),
                 ", ".join(qualities), cllr_loss(model.llr(feats), is_target), args.out)
    else:
        llr = model.llr(feats)
        write_lines(args.out, (f"{e} {t} {s:.6f} {label}" for (e, t, label, _), s in zip(rows, llr)))
        log.info("calibrated %d trials into %s", len(rows), args.out)

if __name__ == "__main__":
    run_main(main)
