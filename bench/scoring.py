"""Scoring back-end at VoxCeleb1-E size: wall time and peak memory of each stage's real CLI.

  python bench/scoring.py [--num-utts 145160] [--num-trials 579818] [--num-speakers 5994] [--dim 256]
                          [--utts-per-speaker 10] [--top-n 300]

Builds random embeddings in a temporary dir (nothing is downloaded): the evaluation set (--num-utts,
Vox1-E has 145,160), a training set of --num-speakers x --utts-per-speaker (Vox2-dev has 5,994 speakers)
and --num-trials random trials (Vox1-E has 579,818). Then runs, each as its own process:
  sv.bin.speaker_mean   the AS-norm cohort: training speaker means, training mean subtracted
  sv.bin.score          cosine scoring, training mean subtracted
  sv.bin.score_norm     AS-norm (top-N) and S-norm with that cohort
  sv.bin.compute_metrics  EER/minDCF/Cllr of the AS-norm scores (when that entry point exists)
and prints each one's wall seconds and peak resident memory (ru_maxrss from os.wait4), start-up and
file reading and writing included.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from sv.score.embeddings import write_embeddings  # noqa: E402  (needs the repo on sys.path)

log = logging.getLogger("bench.scoring")


def make_workload(work: Path, args: argparse.Namespace) -> None:
    """eval/xvector.scp, train/xvector.scp, train/spk2utt and trials under work."""
    rng = np.random.default_rng(0)
    # Per-speaker centres plus noise, so AS-norm's top-N is not uniform noise.
    num_eval_spk = max(1, args.num_utts // 116)  # Vox1 averages about 116 utterances per speaker
    eval_spk = rng.integers(num_eval_spk, size=args.num_utts)
    centres = rng.standard_normal((num_eval_spk, args.dim)).astype(np.float32)
    eval_emb = centres[eval_spk] + rng.standard_normal((args.num_utts, args.dim), dtype=np.float32)
    eval_keys = [f"id{s:05d}/vid{i % 97:04d}/{i:06d}.wav" for i, s in enumerate(eval_spk)]
    write_embeddings((eval_keys, eval_emb), work / "eval/xvector.ark", work / "eval/xvector.scp")

    n_train = args.num_speakers * args.utts_per_speaker
    train_spk = np.repeat(np.arange(args.num_speakers), args.utts_per_speaker)
    train_centres = rng.standard_normal((args.num_speakers, args.dim)).astype(np.float32)
    train_emb = train_centres[train_spk] + rng.standard_normal((n_train, args.dim), dtype=np.float32)
    train_keys = [f"tr{s:05d}/vid/{i:07d}.wav" for i, s in enumerate(train_spk)]
    write_embeddings((train_keys, train_emb), work / "train/xvector.ark", work / "train/xvector.scp")
    (work / "train/spk2utt").write_text("".join(
        f"tr{s:05d} " + " ".join(train_keys[s * args.utts_per_speaker:(s + 1) * args.utts_per_speaker]) + "\n"
        for s in range(args.num_speakers)))

    enroll = rng.integers(args.num_utts, size=args.num_trials)
    test = rng.integers(args.num_utts, size=args.num_trials)
    (work / "trials").write_text("".join(
        f"{eval_keys[e]} {eval_keys[t]} {'target' if eval_spk[e] == eval_spk[t] else 'nontarget'}\n"
        for e, t in zip(enroll.tolist(), test.tolist())))


def run_stage(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *cmd], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    if proc.returncode != 0:
        sys.exit(f"bench/scoring.py: {' '.join(cmd)} failed ({proc.returncode}):\n{stderr}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-utts", type=int, default=145160, help="evaluation embeddings (default: %(default)s)")
    p.add_argument("--num-trials", type=int, default=579818, help="trials (default: %(default)s)")
    p.add_argument("--num-speakers", type=int, default=5994, help="cohort speakers (default: %(default)s)")
    p.add_argument("--utts-per-speaker", type=int, default=10,
                   help="training utterances per cohort speaker (default: %(default)s)")
    p.add_argument("--dim", type=int, default=256, help="embedding dimension (default: %(default)s)")
    p.add_argument("--top-n", type=int, default=300, help="AS-norm top-N (default: %(default)s)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="bench_scoring.") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        # In a child of its own: a stage's ru_maxrss counts the memory of the process it was started
        # from (the fork before exec), so this one must stay small.
        maker = multiprocessing.get_context("fork").Process(target=make_workload, args=(work, args))
        maker.start()
        maker.join()
        if maker.exitcode != 0:
            sys.exit("bench/scoring.py: building the workload failed")
        log.info("workload written in %.1f s", time.perf_counter() - t0)
        common = ["--emb-scp", "eval/xvector.scp", "--mean-scp", "train/xvector.scp"]
        stages = [
            ("speaker_mean (cohort)", ["-m", "sv.bin.speaker_mean", "--spk2utt", "train/spk2utt", "--emb-scp",
                                       "train/xvector.scp", "--mean-scp", "train/xvector.scp", "--out-dir", "cohort"]),
            ("score (cosine)", ["-m", "sv.bin.score", "--trials", "trials", *common, "--out", "trials.score"]),
            (f"score_norm asnorm top-{args.top_n}",
             ["-m", "sv.bin.score_norm", "--method", "asnorm", "--top-n", str(args.top_n), "--cohort-scp",
              "cohort/spk_xvector.scp", *common, "--scores", "trials.score", "--out", "trials.asnorm.score"]),
            ("score_norm snorm", ["-m", "sv.bin.score_norm", "--method", "snorm", "--cohort-scp",
                                  "cohort/spk_xvector.scp", *common, "--scores", "trials.score",
                                  "--out", "trials.snorm.score"]),
        ]
        has_metrics = (REPO / "sv/bin/compute_metrics.py").exists()
        if has_metrics:
            stages.append(("compute_metrics", ["-m", "sv.bin.compute_metrics", "trials.asnorm.score"]))
        rows = [(name, *run_stage(cmd, work)) for name, cmd in stages]

    print(f"{args.num_utts} embeddings of dim {args.dim}, {args.num_trials} trials, "
          f"{args.num_speakers}-speaker cohort, {os.cpu_count()} CPUs")
    print(f"{'stage':36s} {'wall s':>8s} {'peak RSS MB':>12s}")
    for name, wall, rss in rows:
        print(f"{name:36s} {wall:8.2f} {rss:12.0f}")
    if not has_metrics:
        print("compute_metrics: skipped, sv/bin/compute_metrics.py does not exist")


if __name__ == "__main__":
    main()
