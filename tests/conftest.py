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


@pytest.fixture
def repo() -> Path:
    return REPO
