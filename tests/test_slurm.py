"""utils/slurm.pl and steps/train.sh under SLURM, on a one-node SLURM cluster started on localhost.

The module fixture starts munged (when no munge daemon answers), slurmctld and slurmd with a generated
slurm.conf in a tmp dir (free ports, no accounting) and stops what it started. It needs root and the
slurm-wlm and munge packages (.ci/run installs them); without them the tests are skipped.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, max_overlap, run_stamped_jobs, run_tool

SLURM_PL = str(REPO / "utils" / "slurm.pl")
DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo", "scancel", "srun", "scontrol")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def munge_works() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        return cred.returncode == 0 and subprocess.run(
            ["unmunge"], input=cred.stdout, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_munged() -> subprocess.Popen:
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    # --force: start despite a stale socket or lax permissions (root, CI containers).
    proc = subprocess.Popen(["munged", "--foreground", "--force"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(50):
        if munge_works():
            return proc
        time.sleep(0.2)
    proc.kill()
    pytest.skip("munged did not start")


SLURM_CONF = """\
ClusterName=svtest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation={tmp}/state
SlurmdSpoolDir={tmp}/spool
SlurmctldPidFile={tmp}/slurmctld.pid
SlurmdPidFile={tmp}/slurmd.pid
SlurmctldLogFile={tmp}/slurmctld.log
SlurmdLogFile={tmp}/slurmd.log
NodeName=localhost CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = [d for d in DAEMONS if not shutil.which(d, path=os.environ["PATH"] + ":/usr/sbin:/sbin")]
    if missing:
        pytest.skip(f"SLURM not installed (no {', '.join(missing)}): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd and munged needs root")
    tmp = tmp_path_factory.mktemp("slurm")
    (tmp / "state").mkdir()
    (tmp / "spool").mkdir()
    mem_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    conf = tmp / "slurm.conf"
    conf.write_text(SLURM_CONF.format(ctld_port=free_port(), slurmd_port=free_port(), tmp=tmp,
                                      cpus=os.cpu_count(), mem=max(mem_mb * 9 // 10, 1)))
    started = []
    if not munge_works():
        started.append(start_munged())
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    sbin = lambda name: shutil.which(name, path=os.environ["PATH"] + ":/usr/sbin:/sbin")  # noqa: E731
    try:
        started.append(subprocess.Popen([sbin("slurmctld"), "-D", "-i", "-f", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        started.append(subprocess.Popen([sbin("slurmd"), "-D", "-N", "localhost", "-f", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(150):
            state = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            time.sleep(0.2)
        else:
            logs = "\n".join((tmp / f).read_text()[-2000:] for f in ("slurmctld.log", "slurmd.log")
                             if (tmp / f).exists())
            pytest.fail(f"the SLURM node did not come up: {state.stdout}{state.stderr}\n{logs}")
        yield tmp
    finally:
        subprocess.run(["scancel", "--user", "root"], capture_output=True)
        for proc in reversed(started):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf


def run_jobs(tmp_path: Path, n: int, *opts: str, fail: int = 0):
    return run_stamped_jobs(SLURM_PL, tmp_path, n, *opts, fail=fail)


def test_array_with_a_failing_task(cluster, tmp_path):
    proc = run_jobs(tmp_path, 3, "--mem", "100M", "--num-threads", "1", fail=2)
    assert proc.returncode != 0
    assert "1 / 3 job(s) failed" in proc.stderr, proc.stderr
    assert f"job 2 (exit 1): see {tmp_path}/log/t.2.log" in proc.stderr
    assert "job 1 " not in proc.stderr and "job 3 " not in proc.stderr
    for j in (1, 2, 3):
        log = (tmp_path / "log" / f"t.{j}.log").read_text().splitlines()
        assert log[0].startswith("# bash -c ") and f"stamp.{j}" in log[0]
        assert log[1].startswith("# Started at")
        assert f"job {j} says hi" in log
        assert log[-2].startswith("# Accounting: ")
        assert log[-1].startswith(f"# Ended (code {int(j == 2)})")
    assert (tmp_path / "log" / "q" / "t.sh").exists()  # the batch script is kept next to the logs


def test_max_jobs_run_is_respected(cluster, tmp_path):
    proc = run_jobs(tmp_path, 3, "--max-jobs-run", "1")
    assert proc.returncode == 0, proc.stderr
    assert max_overlap(tmp_path, 3) == 1


def test_sigterm_cancels_the_array(cluster, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, SLURM_PL, "JOB=1:2", f"{tmp_path}/log/s.JOB.log", "sleep", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for _ in range(100):
        if len(list((tmp_path / "log").glob("s.*.log"))) == 2:  # both tasks started
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "cancelled SLURM job array" in err, err
    for _ in range(50):
        queue = subprocess.run(["squeue", "-h", "-n", "s"], capture_output=True, text=True).stdout
        if not queue.strip():
            break
        time.sleep(0.2)
    assert not queue.strip(), queue


def test_train_sh_runs_srun_torchrun_ddp(cluster, tmp_path):
    """steps/train.sh --cmd utils/slurm.pl: one task, srun torchrun, 2 gloo ranks on CPU."""
    run_tool("local/make_synthetic_corpus.py", "--num-speakers", "8", "--num-test-speakers", "2",
             "--utts-per-video", "2", str(tmp_path / "corpus"))
    run_tool("local/prepare_voxceleb1.py", str(tmp_path / "corpus/voxceleb1"), str(tmp_path / "data"))
    data = tmp_path / "data" / "vox1_dev"
    mini = REPO / "egs/mini"
    run_tool("bash", "steps/make_fbank.sh", "--nj", "1", str(data), str(tmp_path / "log"),
             str(tmp_path / "fbank"), cwd=mini)
    exp = tmp_path / "exp"
    run_tool("bash", "steps/train.sh", "--cmd", "utils/slurm.pl --num-threads 1", "--nproc-per-node", "2",
             "conf/ecapa_tdnn_small.yaml", str(exp), f"data.train_dir={data}", "model.channels=32",
             "model.embed_dim=32", "data.batch_size=4", "data.crop=1.0", "epochs=2", cwd=mini)
    log = (exp / "log" / "torchrun.log").read_text()
    assert "srun torchrun on 1 node(s) (localhost), rendezvous localhost:" in log
    assert "SLURM job" in log and log.splitlines()[-1].startswith("# Ended (code 0)")
    train_log = (exp / "train.log").read_text()
    assert "2 ranks on cpu" in train_log and train_log.count("weights agree across 2 ranks") == 2
    assert (exp / "models" / "model_2.pt").exists()
