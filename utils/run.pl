#!/usr/bin/env python3
"""Kaldi-style local job runner (the interface of Kaldi's utils/run.pl), in Python.

  utils/run.pl [--max-jobs-run N] [JOB=1:N] log/name.JOB.log command args...

Runs the command once per job with every `JOB` in the log path and arguments replaced by the job
number. Each log starts with the command and ends with its exit status. Exits 1 if any job failed,
listing the failed jobs and their logs, followed by the end of the first failed log. Options of other runners (--mem, --gpu, --num-threads,
--time, --config) are accepted and ignored here, so recipes switch runners by changing $cmd alone.
Standard library only: it runs with any python3.
"""
import os
import signal
import subprocess
import sys
import time

import job_args  # utils/job_args.py, beside this script

USAGE = __doc__.split("\n\n")[1]
IGNORED_OPTIONS = ("--mem", "--gpu", "--num-threads", "--time", "--config")
TAIL_LINES = 8  # of the first failed job's log, printed on failure so the cause shows without a look


def parse_args(argv):
    max_jobs = 0  # 0: no limit, as Kaldi's default
    options, var, first, last, log, cmd = job_args.parse(argv, "run.pl", USAGE)
    for opt, val in options:
        if opt == "--max-jobs-run":
            max_jobs = job_args.max_jobs_run(val, "run.pl")
        elif opt not in IGNORED_OPTIONS:
            sys.exit(f"run.pl: unknown option {opt}\n{USAGE}")
    return max_jobs, var, first, last, log, cmd


def _die_with_run_pl():
    # In the child, before exec: SIGTERM it when run.pl dies, even of SIGKILL, which no handler of ours sees
    # (torchrun's agent then stops its workers). Linux only; elsewhere nothing.
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG


def start_job(cmd, log):
    os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
    f = open(log, "w")
    f.write(f"# {cmd}\n# Started at {time.ctime()}\n#\n")
    f.flush()
    proc = subprocess.Popen(["bash", "-c", cmd], stdout=f, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_run_pl)
    return proc, f, time.time()


def finish_job(proc, f, t0):
    f.write(f"# Accounting: time={int(time.time() - t0)} threads=1\n")
    f.write(f"# Ended (code {proc.returncode}) at {time.ctime()}\n")
    f.close()


def main(argv):
    max_jobs, var, first, last, log_tmpl, cmd_words = parse_args(argv)
    cmd_tmpl = " ".join(job_args.quote(w) for w in cmd_words)
    pending = list(range(first, last + 1))
    running = {}
    failed = []

    def stop_all(signum, _frame):
        for proc, *_ in running.values():
            os.killpg(proc.pid, signal.SIGTERM)
        sys.exit(f"run.pl: interrupted (signal {signum}); killed {len(running)} running job(s)")

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    while pending or running:
        while pending and (max_jobs <= 0 or len(running) < max_jobs):
            job = pending.pop(0)
            log = job_args.substitute(log_tmpl, var, job)
            proc, f, t0 = start_job(job_args.substitute(cmd_tmpl, var, job), log)
            running[job] = (proc, f, t0, log)
        pid, status = os.wait()
        for job, (proc, f, t0, log) in list(running.items()):
            if proc.pid == pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                finish_job(proc, f, t0)
                if proc.returncode != 0:
                    failed.append((job, log, proc.returncode))
                del running[job]
    if failed:
        n = last - first + 1
        lines = [f"run.pl: {len(failed)} / {n} job(s) failed:"]
        lines += [f"  job {job} (exit {code}): see {log}" for job, log, code in sorted(failed)]
        first_log = sorted(failed)[0][1]
        with open(first_log, errors="replace") as f:
            tail = f.read().splitlines()[-TAIL_LINES:]
        lines += [f"run.pl: the end of {first_log}:", *tail]
        sys.exit("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
