"""utils/run.pl: job substitution, log format, parallelism limit and failure reporting."""
from pathlib import Path

from conftest import REPO, max_overlap, run_stamped_jobs, run_tool

RUN_PL = str(REPO / "utils" / "run.pl")


def run_jobs(tmp_path: Path, n: int, *opts: str, fail: int = 0):
    return run_stamped_jobs(RUN_PL, tmp_path, n, *opts, fail=fail)


def test_logs_and_substitution(tmp_path):
    proc = run_jobs(tmp_path, 3)
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "log" / "t.2.log").read_text().splitlines()
    assert log[0].startswith("# bash -c ") and "stamp.2" in log[0]
    assert "job 2 says hi" in log
    assert log[-1].startswith("# Ended (code 0)")


def test_max_jobs_run_limits_parallelism(tmp_path):
    assert run_jobs(tmp_path, 4, "--max-jobs-run", "2").returncode == 0
    assert max_overlap(tmp_path, 4) == 2


def test_unlimited_runs_all_at_once(tmp_path):
    assert run_jobs(tmp_path, 4).returncode == 0
    assert max_overlap(tmp_path, 4) == 4


def test_failure_lists_failed_jobs(tmp_path):
    proc = run_jobs(tmp_path, 3, fail=2)
    assert proc.returncode != 0
    assert "1 / 3 job(s) failed" in proc.stderr
    assert f"job 2 (exit 1): see {tmp_path}/log/t.2.log" in proc.stderr
    assert "job 1 " not in proc.stderr and "job 3 " not in proc.stderr
    tail = proc.stderr.split(f"the end of {tmp_path}/log/t.2.log:\n")[1]  # the cause, without a look
    assert "job 2 says hi" in tail and tail.rstrip().splitlines()[-1].startswith("# Ended (code 1)")
    assert (tmp_path / "log" / "t.2.log").read_text().splitlines()[-1].startswith("# Ended (code 1)")


def test_single_job_and_pipes(tmp_path):
    proc = run_tool(RUN_PL, f"{tmp_path}/one.log", "echo", "a b", "|", "tr", "a", "x", check=False)
    assert proc.returncode == 0
    assert "x b" in (tmp_path / "one.log").read_text()
