#!/usr/bin/env python3
"""Swap in the archives of a parallel stage only once all its jobs succeeded, so that a failed rerun leaves the
previous outputs as they were (steps/make_fbank.sh, steps/extract_embeddings.sh).

Job n of N writes PREFIX.n.new.{ark,scp}, whose scp points into PREFIX.n.new.ark. Then:

  utils/job_archives.py clean PREFIX           remove PREFIX.<n>.new.* left by a failed or killed run
  utils/job_archives.py merge PREFIX N OUT     point each PREFIX.n.new.scp at PREFIX.n.ark (the name the ark
                                               will have) and write their union, sorted by key, to OUT
  utils/job_archives.py install PREFIX N       rename PREFIX.n.new.{ark,scp} to PREFIX.n.{ark,scp}, then delete
                                               PREFIX.m.{ark,scp} of m > N (a previous run with more jobs)

Between `install` and moving OUT into place the previous table may point into a new archive: the caller
moves it right after, and both are renames within a directory, so that window is short.
"""
import argparse
import os
import re

from sv.cli import run_main
from sv.data.table import DataError, iter_lines


def job_files(prefix: str) -> list[tuple[str, int, str]]:
    """(path, job, rest) of PREFIX.<job>.<rest> in PREFIX's directory."""
    directory, base = os.path.split(prefix)
    pattern = re.compile(re.escape(base) + r"\.([1-9][0-9]*)\.(.+)$")
    found = []
    for name in os.listdir(directory or "."):
        m = pattern.match(name)
        if m:
            found.append((os.path.join(directory, name), int(m.group(1)), m.group(2)))
    return found


def clean(prefix: str) -> None:
    for path, _, rest in job_files(prefix):
        if re.fullmatch(r"new\.(ark|scp)(\.tmp)?", rest):
            os.unlink(path)


def merge(prefix: str, num_jobs: int, out: str) -> None:
    lines = []
    for n in range(1, num_jobs + 1):
        scp, new_ark, ark = f"{prefix}.{n}.new.scp", f"{prefix}.{n}.new.ark", f"{prefix}.{n}.ark"
        job_lines = []
        for lineno, line in iter_lines(scp):
            fields = line.split()
            path, _, offset = fields[-1].rpartition(":")
            if len(fields) != 2 or path != new_ark or not offset.isdigit():
                raise DataError(f"{scp}:{lineno}: expected 'key {new_ark}:offset', got {line!r}")
            job_lines.append(f"{fields[0]} {ark}:{offset}\n")
        with open(f"{scp}.tmp", "w", encoding="utf-8") as f:
            f.writelines(job_lines)
        os.replace(f"{scp}.tmp", scp)
        lines += job_lines
    with open(f"{out}.tmp", "w", encoding="utf-8") as f:
        f.writelines(sorted(lines, key=lambda line: line.split(maxsplit=1)[0].encode()))
    os.replace(f"{out}.tmp", out)


def install(prefix: str, num_jobs: int) -> None:
    for n in range(1, num_jobs + 1):
        os.replace(f"{prefix}.{n}.new.ark", f"{prefix}.{n}.ark")
    for n in range(1, num_jobs + 1):
        os.replace(f"{prefix}.{n}.new.scp", f"{prefix}.{n}.scp")
    for path, job, rest in job_files(prefix):
        if job > num_jobs and rest in ("ark", "scp"):
            os.unlink(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("clean").add_argument("prefix")
    for name in ("merge", "install"):
        cmd = sub.add_parser(name)
        cmd.add_argument("prefix")
        cmd.add_argument("num_jobs", type=int)
        if name == "merge":
            cmd.add_argument("out", help="output: the union of the jobs' scp files, sorted by key")
    args = p.parse_args(argv)
    if args.command == "clean":
        clean(args.prefix)
    elif args.command == "merge":
        merge(args.prefix, args.num_jobs, args.out)
    else:
        install(args.prefix, args.num_jobs)


if __name__ == "__main__":
    run_main(main)
