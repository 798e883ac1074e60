"""Training: the loss falls, 2-process DDP keeps the ranks' weights equal, kill-and-resume is exact,
and average_model averages."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_tool
from sv.train.checkpoint import load_checkpoint

CONFIG = REPO / "egs/mini/conf/ecapa_tdnn_small.yaml"
TINY = ["model.channels=32", "model.embed_dim=32", "data.batch_size=8", "data.crop=1.0", "log_interval=1"]


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory) -> Path:
    """vox1_dev of a tiny synthetic corpus, with fbank: 6 speakers, 36 utterances."""
    root = tmp_path_factory.mktemp("train_data")
    run_tool("local/make_synthetic_corpus.py", "--num-speakers", "8", "--num-test-speakers", "2",
             "--utts-per-video", "2", str(root / "corpus"))
    run_tool("local/prepare_voxceleb1.py", str(root / "corpus/voxceleb1"), str(root / "data"))
    data = root / "data" / "vox1_dev"
    run_tool("bash", "steps/make_fbank.sh", "--nj", "1", str(data), str(root / "log"), str(root / "fbank"),
             cwd=REPO / "egs/mini")
    return data


def train(exp: Path, train_dir: Path, *overrides: str, nproc: int = 0) -> subprocess.CompletedProcess:
    args = ["--config", str(CONFIG), "--exp-dir", str(exp), f"data.train_dir={train_dir}", *TINY, *overrides]
    if nproc:
        return run_tool(str(Path(sys.executable).parent / "torchrun"), "--standalone",
                        f"--nproc-per-node={nproc}", "-m", "sv.bin.train", *args)
    return run_tool("-m", "sv.bin.train", *args)


def logged_losses(exp: Path) -> list[float]:
    return [float(line.split("loss ")[1].split()[0]) for line in (exp / "train.log").read_text().splitlines()
            if " loss " in line]


def test_loss_falls(tmp_path, train_dir):
    train(tmp_path / "exp", train_dir, "epochs=8", "margin_scheduler=null", "head.margin=0.1")
    losses = logged_losses(tmp_path / "exp")
    assert len(losses) == 8 * 4
    assert sum(losses[-4:]) / 4 < 0.6 * sum(losses[:4]) / 4, losses
    saved = (tmp_path / "exp" / "config.yaml").read_text()
    assert f"train_dir: {train_dir}" in saved and "channels: 32" in saved


def test_ddp_two_ranks_agree(tmp_path, train_dir):
    proc = train(tmp_path / "exp", train_dir, "epochs=2", "data.batch_size=4", nproc=2)
    log = (tmp_path / "exp" / "train.log").read_text()
    assert log.count("weights agree across 2 ranks") == 2, proc.stderr
    assert "2 ranks on cpu" in log
    ckpt = load_checkpoint(tmp_path / "exp" / "models" / "model_2.pt")
    assert len(ckpt["rng"]) == 2 and ckpt["position"]["global_step"] == 2 * 4


def test_kill_and_resume_is_exact(tmp_path, train_dir):
    common = ["epochs=4", "save_every_steps=1", "data.specaug.prob=0.5"]
    train(tmp_path / "straight", train_dir, *common)

    exp = tmp_path / "killed"
    args = [sys.executable, "-m", "sv.bin.train", "--config", str(CONFIG), "--exp-dir", str(exp),
            f"data.train_dir={train_dir}", *TINY, *common]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = exp / "models" / "checkpoint.pt"
    deadline = time.time() + 120
    while not (ckpt.exists() and load_checkpoint(ckpt)["position"]["global_step"] >= 5) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (exp / "models" / "model_4.pt").exists(), "the run finished before it could be killed"
    step_at_kill = load_checkpoint(ckpt)["position"]["global_step"]
    assert 5 <= step_at_kill < 16

    train(exp, train_dir, *common)
    assert f"resuming from {ckpt}" in (exp / "train.log").read_text()
    a = load_checkpoint(tmp_path / "straight" / "models" / "model_4.pt")
    b = load_checkpoint(exp / "models" / "model_4.pt")
    for part in ("model", "head"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"


def test_average_model(tmp_path, train_dir):
    exp = tmp_path / "exp"
    train(exp, train_dir, "epochs=3")
    run_tool("-m", "sv.bin.average_model", "--num", "2", str(exp))
    avg = load_checkpoint(exp / "models" / "avg_model.pt")
    assert avg["epochs"] == [2, 3]
    c2, c3 = (load_checkpoint(exp / "models" / f"model_{e}.pt") for e in (2, 3))
    for part in ("model", "head"):
        for k, v in avg[part].items():
            if v.is_floating_point():
                assert torch.allclose(v, (c2[part][k] + c3[part][k]) / 2, atol=1e-6), k
    bad = run_tool("-m", "sv.bin.average_model", str(exp), "--epochs", "7", check=False)
    assert bad.returncode == 1 and "no checkpoint for epochs [7]" in bad.stderr


def test_large_margin_init_keeps_real_speakers(tmp_path, train_dir):
    """A model trained with speed-perturbed classes (3 x S) starts LM fine-tuning with S classes:
    the first S classifier rows, the real speakers, carry over."""
    sp = tmp_path / "sp"
    train(sp, train_dir, "epochs=1", "scheduler.warmup_epochs=0", "data.mode=raw", "data.speed_perturb.prob=0.6")
    run_tool("-m", "sv.bin.average_model", "--num", "1", str(sp))
    avg = load_checkpoint(sp / "models" / "avg_model.pt")
    n_spk = 6
    assert avg["head"]["weight"].shape[0] == 3 * n_spk

    lm = tmp_path / "lm"
    train(lm, train_dir, "epochs=1", "scheduler.warmup_epochs=0", f"init={sp / 'models' / 'avg_model.pt'}", "optim.lr=1e-12", "scheduler.final_lr=1e-12",
          "head.margin=0.5", "margin_scheduler=null")
    start = load_checkpoint(lm / "models" / "model_1.pt")
    assert start["head"]["weight"].shape[0] == n_spk
    assert torch.allclose(start["head"]["weight"], avg["head"]["weight"][:n_spk], atol=1e-6)
    assert "init: keeping the first 6 of 18 classifier rows" in (lm / "train.log").read_text()
