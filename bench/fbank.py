"""Fbank throughput: the whole stage against the bare feature calls, on the same audio.

  python bench/fbank.py [--num-utts 200] [--seconds 4] [--nj 2] [--audio-dir DIR]

Rows: (a) steps/make_fbank.sh with utils/run.pl and --nj jobs (process start-up, audio reading,
ark/scp writing included); (b) torchaudio.compliance.kaldi.fbank on waveforms already in memory;
(c) kaldi-native-fbank on the same waveforms. (b) and (c) run in this one process with one thread.
Audio is synthesised into a temporary dir (nothing is downloaded) unless --audio-dir gives wav files.
Prints utterances per second and the real-time factor (compute seconds per audio second); the
difference between (a) and its jobs' feature loops is start-up: validation, splitting, imports.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import kaldi_native_fbank as knf
import numpy as np
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as kaldi

from sv.data.audio import load_audio
from sv.data.data_dir import write_data_dir
from sv.data.fbank import INT16_SCALE, load_config

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.fbank")


def synthesise(out_dir: Path, num_utts: int, seconds: float, sr: int = 16000) -> list[Path]:
    """Tone chords with a syllable-rate envelope over noise: cheap stand-ins for speech."""
    rng = np.random.default_rng(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    paths = []
    for i in range(num_utts):
        tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 3000, size=4))
        envelope = (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t)) ** 2
        x = envelope * tones + 0.3 * rng.standard_normal(len(t))
        path = out_dir / f"spk{i % 10:02d}-utt{i:04d}.wav"
        sf.write(path, (0.3 * x / np.abs(x).max()).astype(np.float32), sr, subtype="PCM_16")
        paths.append(path)
    return paths


def make_recipe(work: Path, wavs: list[Path], config: Path) -> Path:
    """A recipe-like dir (utils, steps, conf) holding data/bench over the given wav files."""
    recipe = work / "recipe"
    (recipe / "conf").mkdir(parents=True)
    for name in ("utils", "steps"):
        (recipe / name).symlink_to(REPO / name)
    (recipe / "conf" / "fbank.yaml").write_text(config.read_text())
    # Speaker = the part of the file name before the first '-', so utterances sort with their speaker.
    wav_scp = {p.stem: str(p.resolve()) for p in wavs}
    write_data_dir(recipe / "data" / "bench", wav_scp, {k: k.split("-")[0] for k in wav_scp})
    return recipe


def time_stage(recipe: Path, nj: int) -> tuple[float, float]:
    """Wall seconds of the whole stage, and of the slowest job's feature loop (start-up excluded)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    t0 = time.perf_counter()
    subprocess.run(["bash", "steps/make_fbank.sh", "--nj", str(nj), "--cmd", "utils/run.pl", "data/bench"],
                   cwd=recipe, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    # compute_fbank's last log line: "wrote N utterances (S s of audio) to SCP in T s, ..."
    loops = [float(m.group(1)) for log in (recipe / "data" / "bench" / "log").glob("make_fbank_bench.*.log")
             for m in re.finditer(r" in ([\d.]+) s, real-time factor", log.read_text())]
    return wall, max(loops)


def time_calls(waves: list[np.ndarray], fn: Callable[[np.ndarray], object]) -> float:
    fn(waves[0])  # warm-up: first-call allocations and caches
    t0 = time.perf_counter()
    for w in waves:
        fn(w)
    return time.perf_counter() - t0


def knf_options(cfg: dict) -> knf.FbankOptions:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = cfg["sample_frequency"]
    opts.frame_opts.dither = cfg["dither"]
    opts.frame_opts.window_type = cfg["window_type"]
    opts.frame_opts.snip_edges = cfg["snip_edges"]
    opts.frame_opts.frame_length_ms = cfg["frame_length"]
    opts.frame_opts.frame_shift_ms = cfg["frame_shift"]
    opts.mel_opts.num_bins = cfg["num_mel_bins"]
    opts.mel_opts.low_freq = cfg["low_freq"]
    opts.mel_opts.high_freq = cfg["high_freq"]
    return opts


def knf_fbank(wave: np.ndarray, opts: knf.FbankOptions) -> np.ndarray:
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(opts.frame_opts.samp_freq, (wave * INT16_SCALE).tolist())
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-utts", type=int, default=200, help="synthetic utterances (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of each (default: %(default)s)")
    p.add_argument("--nj", type=int, default=2, help="jobs for the stage row (default: %(default)s)")
    p.add_argument("--audio-dir", type=Path, help="input: use the *.wav files here instead")
    p.add_argument("--config", type=Path, default=REPO / "egs/mini/conf/fbank.yaml",
                   help="input: fbank config (default: %(default)s)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(1)
    cfg = load_config(args.config)

    with tempfile.TemporaryDirectory(prefix="bench_fbank.") as tmp:
        work = Path(tmp)
        wavs = sorted(args.audio_dir.glob("*.wav")) if args.audio_dir else \
            synthesise(work / "wav", args.num_utts, args.seconds)
        if not wavs:
            sys.exit(f"bench/fbank.py: no *.wav files in {args.audio_dir}")
        loaded = [load_audio(str(w)) for w in wavs]
        if any(sr != cfg["sample_frequency"] for _, sr in loaded):
            sys.exit("bench/fbank.py: the audio must be at the config's sample_frequency")
        waves = [w for w, _ in loaded]
        audio_seconds = sum(len(w) for w in waves) / cfg["sample_frequency"]
        log.info("%d utterances, %.0f s of audio", len(waves), audio_seconds)

        stage, job_loop = time_stage(make_recipe(work, wavs, args.config), args.nj)
        tensors = [torch.from_numpy(w).unsqueeze(0) * INT16_SCALE for w in waves]
        bare = time_calls(tensors, lambda x: kaldi.fbank(x, **cfg))
        opts = knf_options(cfg)
        native = time_calls(waves, lambda w: knf_fbank(w, opts))

    print(f"{len(waves)} utterances, {audio_seconds:.0f} s of audio, {os.cpu_count()} CPUs")
    print(f"{'':42s} {'utts/s':>8s} {'RTF':>8s}")
    for name, seconds in ((f"(a) make_fbank.sh, run.pl, nj={args.nj}", stage),
                          ("    of which the jobs' feature loops", job_loop),
                          ("(b) torchaudio kaldi.fbank, 1 thread", bare),
                          ("(c) kaldi-native-fbank, 1 thread", native)):
        print(f"{name:42s} {len(waves) / seconds:8.1f} {seconds / audio_seconds:8.4f}")


if __name__ == "__main__":
    main()
