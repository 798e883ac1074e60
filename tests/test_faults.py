"""Faults a new user meets (issue 12): bad job ranges and shell words, truncated audio, empty data dirs, file
modes, unchecked flags. Each case fails with its own message before anything runs, or keeps what was there."""
import os
import stat

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO, run_tool
from sv.data.audio import AudioError, load_audio
from sv.data.table import atomic_open
from sv.train.checkpoint import save_checkpoint

RUN_PL = str(REPO / "utils" / "run.pl")


@pytest.mark.parametrize("word", ["optim.no_decay=[bias|norm]", "a;touch {tmp}/pwned", "$(touch {tmp}/pwned)",
                                  "`touch {tmp}/pwned`", "x > {tmp}/pwned", "it's"])
def test_run_pl_passes_every_word_as_one_argument(tmp_path, word):
    word = word.format(tmp=tmp_path)
    proc = run_tool(RUN_PL, "JOB=1:2", f"{tmp_path}/log/x.JOB.log", "python3", "-c",
                    "import sys; print(repr(sys.argv[1]))", word, check=False)
    assert proc.returncode == 0, proc.stderr
    assert repr(word) in (tmp_path / "log" / "x.2.log").read_text()
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("args, message", [
    (["JOB=a:b", "log/x.JOB.log", "true"], "bad job range 'JOB=a:b'"),
    (["JOB=1:", "log/x.JOB.log", "true"], "bad job range 'JOB=1:'"),
    (["JOB=-1:2", "log/x.JOB.log", "true"], "bad job range 'JOB=-1:2'"),
    (["JOB=1:3", "log/x.log", "true"], "lacks JOB, so the 3 jobs would write one log"),
    (["--max-jobs-run", "abc", "JOB=1:2", "log/x.JOB.log", "true"], "--max-jobs-run must be a whole number"),
])
@pytest.mark.parametrize("runner", ["run.pl", "slurm.pl"])
def test_job_runner_usage_errors(tmp_path, runner, args, message):
    proc = run_tool(str(REPO / "utils" / runner), *args, cwd=tmp_path, check=False)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "log").exists()


@pytest.mark.parametrize("flag, value", [("--nproc-per-node", "0"), ("--nproc-per-node", "two"),
                                         ("--nnodes", "-1"), ("--node-rank", "x")])
def test_train_sh_checks_its_numbers(tmp_path, flag, value):
    proc = run_tool("bash", "steps/train.sh", flag, value, "conf/ecapa_tdnn_small.yaml", str(tmp_path / "exp"),
                    cwd=REPO / "egs/mini", check=False)
    assert proc.returncode == 1 and f"{flag} must be a whole number" in proc.stderr
    assert not (tmp_path / "exp").exists()


def test_truncated_wav_is_corrupt_audio(tmp_path):
    sf.write(tmp_path / "full.wav", 0.1 * np.random.default_rng(0).standard_normal(int(4.4 * 16000)), 16000,
             subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "full.wav").read_bytes()[:3000])
    assert load_audio(str(tmp_path / "full.wav"))[0].shape == (70400,)
    with pytest.raises(AudioError, match="truncated audio .*cut.wav.*header promises"):
        load_audio(str(tmp_path / "cut.wav"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"a {tmp_path}/full.wav\nb {tmp_path}/cut.wav\n")
    (data / "utt2spk").write_text("a s\nb s\n")
    (data / "spk2utt").write_text("s a b\n")
    proc = run_tool("utils/validate_data_dir.py", "--check-audio", str(data), check=False)
    assert proc.returncode == 1 and f"{data}/wav.scp:2: b: truncated audio" in proc.stderr


def test_empty_data_dir_is_an_error(tmp_path):
    data = tmp_path / "empty"
    data.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (data / name).write_text("")
    proc = run_tool("utils/validate_data_dir.py", str(data), check=False)
    assert proc.returncode == 1 and "an empty data directory" in proc.stderr
    proc = run_tool("bash", "steps/make_fbank.sh", "--nj", "2", str(data), str(tmp_path / "log"),
                    str(tmp_path / "fbank"), cwd=REPO / "egs/mini", check=False)
    assert proc.returncode != 0 and "an empty data directory" in proc.stderr + proc.stdout
    assert "usage:" not in (proc.stderr + proc.stdout).lower().split("an empty data directory")[0][-200:]


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint({"x": torch.zeros(1)}, tmp_path / "ckpt.pt")
        with atomic_open(tmp_path / "table") as f:
            f.write("a 1\n")
        os.umask(0o002)
        save_checkpoint({"x": torch.zeros(1)}, tmp_path / "ckpt2.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ckpt.pt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "table").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "ckpt2.pt").stat().st_mode) == 0o664


def test_check_audio_says_it_runs_pipes():
    assert "runs the commands of pipe entries" in " ".join(run_tool("utils/validate_data_dir.py", "--help").stdout.split())


# ---------------------------------------------------------------------------------------- training state

TRAIN_CFG = REPO / "egs/mini/conf/ecapa_tdnn_small.yaml"
TINY = ["model.channels=16", "model.embed_dim=16", "data.batch_size=8", "data.crop=1.0", "data.mode=raw",
        "epochs=1", "margin_scheduler=null", "scheduler.warmup_epochs=0"]


def _train(exp, data, *extra, check=True, fresh=False):
    return run_tool("-m", "sv.bin.train", "--config", str(TRAIN_CFG), "--exp-dir", str(exp),
                    *(["--no-resume"] if fresh else []), f"data.train_dir={data / 'vox1_dev'}", *TINY, *extra,
                    check=check)


def test_a_fresh_start_never_resumes_an_earlier_run(tmp_path, mini_data):
    exp = tmp_path / "exp"
    _train(exp, mini_data)
    first = (exp / "models" / "model_1.pt").read_bytes()
    _train(exp, mini_data, "seed=7", fresh=True)
    assert (exp / "models.old.1" / "model_1.pt").read_bytes() == first
    assert (exp / "models" / "model_1.pt").read_bytes() != first
    _train(exp, mini_data, "epochs=2", "seed=7")  # resumes this run, not the earlier one
    from sv.train.checkpoint import load_checkpoint
    assert load_checkpoint(exp / "models" / "model_2.pt")["config"]["seed"] == 7


def test_a_resume_for_another_network_is_refused_and_keeps_the_config(tmp_path, mini_data):
    exp = tmp_path / "exp"
    _train(exp, mini_data)
    saved = (exp / "config.yaml").read_text()
    proc = _train(exp, mini_data, "epochs=2", "model.channels=32", check=False)
    assert proc.returncode == 1 and "model.channels (16 in the checkpoint, 32 now)" in proc.stderr
    assert (exp / "config.yaml").read_text() == saved


def test_training_stops_at_the_first_non_finite_loss(tmp_path, mini_data):
    exp = tmp_path / "exp"
    proc = _train(exp, mini_data, "optim.lr=1.0e+30", "epochs=2", check=False)
    assert proc.returncode == 1 and "non-finite loss" in proc.stderr and "last good checkpoint is" in proc.stderr
    assert not (exp / "models" / "model_2.pt").exists()


def test_non_finite_weights_and_embeddings_are_refused(tmp_path):
    import kaldiio
    from sv.score.embeddings import load_embeddings
    state = {"model": {"w": torch.tensor([1.0, float("nan")])}, "head": {}, "config": {}}
    save_checkpoint(state, tmp_path / "models" / "model_1.pt")
    proc = run_tool("-m", "sv.bin.average_model", str(tmp_path), "--num", "1", check=False)
    assert proc.returncode == 1 and "model_1.pt: model.w holds non-finite values" in proc.stderr
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/e.ark,{tmp_path}/e.scp") as w:
        w["a"] = np.ones(4, np.float32)
        w["b"] = np.array([1, np.inf, 0, 0], np.float32)
    with pytest.raises(ValueError, match=r"e.scp: 1 embedding\(s\) hold NaN or inf, the first 'b'"):
        load_embeddings(tmp_path / "e.scp")


def test_a_failed_training_stage_prints_the_workers_error(tmp_path, mini_data):
    proc = run_tool("bash", "steps/train.sh", "conf/ecapa_tdnn_small.yaml", str(tmp_path / "exp"),
                    f"data.train_dir={mini_data / 'vox1_dev'}", "data.mode=raw", "data.batch_size=500",
                    cwd=REPO / "egs/mini", check=False)
    assert proc.returncode == 1
    assert "training failed: " in proc.stderr and "lower data.batch_size" in proc.stderr
    assert f"see {tmp_path}/exp/log/torchrun.log" in proc.stderr


def test_two_data_dirs_of_one_name_cannot_share_an_fbank_dir(tmp_path, mini_data):
    import shutil
    for parent in ("a", "b"):
        shutil.copytree(mini_data / "vox1_test", tmp_path / parent / "test")
    fbank = tmp_path / "fbank"

    def make(parent):
        return run_tool("bash", "steps/make_fbank.sh", "--nj", "2", str(tmp_path / parent / "test"),
                        str(tmp_path / parent / "log"), str(fbank), cwd=REPO / "egs/mini", check=False)
    assert make("a").returncode == 0
    before = {p.name: p.read_bytes() for p in fbank.iterdir()}
    proc = make("b")
    assert proc.returncode == 1 and f"already holds the archives raw_fbank_test.* of {tmp_path}/a/test" in proc.stderr
    assert {p.name: p.read_bytes() for p in fbank.iterdir()} == before
    assert not (tmp_path / "b" / "test" / "feats.scp").exists()
    assert make("a").returncode == 0  # the owner itself may rerun


def test_init_that_leaves_tensors_untrained_is_an_error(tmp_path, mini_data):
    _train(tmp_path / "a", mini_data)
    init = f"init={tmp_path / 'a' / 'models' / 'model_1.pt'}"
    proc = _train(tmp_path / "b", mini_data, init, "model.channels=32", check=False)
    assert proc.returncode == 1 and "tensors of the model would stay untrained, e.g. model." in proc.stderr
    assert not (tmp_path / "b" / "config.yaml").exists()
    _train(tmp_path / "c", mini_data, init)  # the same network: everything loads
    _train(tmp_path / "d", mini_data, init, "model.channels=32", "init_new=['^model\\.']")


def test_a_corrupt_latest_checkpoint_is_named_and_skipped(tmp_path, mini_data):
    from sv.train.checkpoint import CheckpointError, load_checkpoint
    exp = tmp_path / "exp"
    _train(exp, mini_data, "epochs=2")
    latest = exp / "models" / "model_2.pt"
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match="model_2.pt: not a readable checkpoint"):
        load_checkpoint(latest)
    proc = _train(exp, mini_data, "epochs=2")  # resumes from epoch 1, redoes epoch 2
    assert f"skipping {latest}" in proc.stderr and "resuming from" in proc.stderr and "model_1.pt" in proc.stderr
    assert load_checkpoint(latest)["position"]["epoch"] == 3
    # corruption inside a tensor's bytes: the checksum catches it
    state = torch.load(latest, weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first].view(-1)[0] += 1
    torch.save(state, latest)
    with pytest.raises(CheckpointError, match="do not match their checksum"):
        load_checkpoint(latest)


def _pids(pattern: str) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if pattern in cmdline and "sv.bin.train" in cmdline:
                out.add(int(entry))
    return out


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="Linux only")
def test_killing_the_runner_stops_the_training_workers(tmp_path, mini_data):
    import signal
    import subprocess
    import sys
    import time
    exp = tmp_path / "exp"
    torchrun = str(REPO / "tools/venv/bin/torchrun") if (REPO / "tools/venv/bin/torchrun").exists() else "torchrun"
    runner = subprocess.Popen(
        [sys.executable, RUN_PL, str(tmp_path / "torchrun.log"), torchrun, "--standalone", "--nproc-per-node", "1",
         "-m", "sv.bin.train", "--config", str(TRAIN_CFG), "--exp-dir", str(exp),
         f"data.train_dir={mini_data / 'vox1_dev'}", *TINY, "epochs=200"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (exp / "models" / "model_1.pt").exists():
        time.sleep(0.5)
    workers = _pids(f"--exp-dir {exp}")
    assert (exp / "models" / "model_1.pt").exists() and workers
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    deadline = time.time() + 30
    while time.time() < deadline and _pids(f"--exp-dir {exp}"):
        time.sleep(0.5)
    assert not _pids(f"--exp-dir {exp}"), "training processes outlived run.pl"


def test_a_split_jobs_error_names_the_users_file_and_line(tmp_path, mini_data):
    import shutil
    data = tmp_path / "dev"
    shutil.copytree(mini_data / "vox1_test", data)
    lines = (data / "wav.scp").read_text().splitlines()
    key = lines[-2].split()[0]
    lines[-2] = f"{key} {tmp_path}/gone.wav"
    (data / "wav.scp").write_text("\n".join(lines) + "\n")
    # a missing file is caught before the jobs; a file that is there but not audio fails inside a job
    (tmp_path / "gone.wav").write_bytes(b"not audio at all")
    proc = run_tool("bash", "steps/make_fbank.sh", "--nj", "3", str(data), str(tmp_path / "log"),
                    str(tmp_path / "fbank"), cwd=REPO / "egs/mini", check=False)
    assert proc.returncode != 0
    logs = "".join(p.read_text() for p in (tmp_path / "log").glob("make_fbank_dev.*.log"))
    assert f"{data}/wav.scp:{len(lines) - 1}: utterance {key}" in logs


@pytest.mark.parametrize("override, message", [
    ("+model.chanels=32", "model.chanels: unknown key (did you mean 'channels'?)"),
    ("model.channels=-4", "model.channels: must not be negative"),
    ("+head.margn=0.3", "head.margn: unknown key (did you mean 'margin'?)"),
    ("head.scale=big", "head.scale: expected float"),
    ("+margin_scheduler.initial_margin=0.0", "margin_scheduler.initial_margin: unknown key"),
    ("grad_clip=-1", "grad_clip: must be a number >= 0"),
    ("accum_steps=0", "accum_steps: must be a whole number >= 1"),
    ("epochs=2.5", "epochs: must be a whole number >= 1"),
    ("device=gpu", "device: must be auto, cpu or cuda"),
    ("+optim.bettas=[0.9,0.99]", "optim.bettas: unknown key for adam (did you mean 'betas'?)"),
    ("+scheduler.warmup_epoch=1", "scheduler.warmup_epoch: unknown key for exponential (did you mean 'warmup_epochs'?)"),
])
def test_every_config_section_is_checked_by_key(tmp_path, mini_data, override, message):
    proc = run_tool("-m", "sv.bin.train", "--config", str(TRAIN_CFG), "--exp-dir", str(tmp_path / "exp"),
                    f"data.train_dir={mini_data / 'vox1_dev'}", override, check=False)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    assert "model ecapa_tdnn" not in proc.stderr  # before anything is built
    assert not (tmp_path / "exp" / "config.yaml").exists()
