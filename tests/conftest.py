import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_tool(*args: str, cwd: Path | str = REPO, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a repo script (`utils/x.py`, `local/x.py`) or `-m sv.bin.x` with the test's Python."""
    cmd = [sys.executable, *args] if args[0] == "-m" or args[0].endswith(".py") else list(args)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def max_overlap(stamp_dir: Path, n: int) -> int:
    """Most jobs running at once, from the start/end stamps each job of run_stamped_jobs wrote."""
    events = []
    for j in range(1, n + 1):
        start, end = (float(x) for x in (stamp_dir / f"stamp.{j}").read_text().split())
        events += [(start, 1), (end, -1)]
    running = best = 0
    for _, delta in sorted(events):
        running += delta
        best = max(best, running)
    return best


def run_stamped_jobs(runner: str, tmp_path: Path, n: int, *opts: str, fail: int = 0) -> subprocess.CompletedProcess:
    """N jobs through a job runner (run.pl, slurm.pl), each stamping its start and end; job `fail` exits 1."""
    cmd = (f"s=$(date +%s.%N); sleep 0.4; echo $s $(date +%s.%N) > {tmp_path}/stamp.JOB; "
           f"echo job JOB says hi; [ JOB -ne {fail} ]")
    return run_tool(runner, *opts, f"JOB=1:{n}", f"{tmp_path}/log/t.JOB.log", "bash", "-c", cmd, check=False)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory) -> Path:
    """A small synthetic VoxCeleb1 corpus as Kaldi data dirs (egs/mini's stages 0 and 1)."""
    root = tmp_path_factory.mktemp("mini")
    run_tool("local/make_synthetic_corpus.py", "--seed", "0", "--num-speakers", "12", "--num-test-speakers", "4",
             "--utts-per-video", "2", str(root / "corpus"))
    run_tool("local/prepare_voxceleb1.py", str(root / "corpus" / "voxceleb1"), str(root / "data"))
    return root / "data"
