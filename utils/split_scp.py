#!/usr/bin/env python3
"""Split a table into N contiguous parts of near-equal size (Kaldi's split_scp.pl).

  utils/split_scp.py [--utt2spk UTT2SPK] IN OUT_1 ... OUT_N

With --utt2spk, a speaker's lines never straddle two parts. Every part must get at least one line.
"""
import argparse

from sv.cli import run_main
from sv.data.table import DataError, iter_lines, read_scp, write_lines


def split_even(lines: list[str], n: int) -> list[list[str]]:
    size, extra = divmod(len(lines), n)
    parts, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        parts.append(lines[start:end])
        start = end
    return parts


def split_by_speaker(lines: list[str], utt2spk: dict[str, str], n: int) -> list[list[str]]:
    groups: list[list[str]] = []
    for line in lines:
        spk = utt2spk[line.split()[0]]
        if groups and utt2spk[groups[-1][0].split()[0]] == spk:
            groups[-1].append(line)
        else:
            groups.append([line])
    if len(groups) < n:
        raise DataError(f"cannot split {len(groups)} speakers into {n} parts")
    # Greedy: close a part once it reaches its share of the remaining lines.
    parts: list[list[str]] = [[] for _ in range(n)]
    remaining, part = len(lines), 0
    for gi, group in enumerate(groups):
        parts[part].extend(group)
        left_parts = n - part - 1
        share = remaining / (n - part)
        if left_parts and (len(parts[part]) >= share or len(groups) - gi - 1 == left_parts):
            remaining -= len(parts[part])
            part += 1
    return parts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utt2spk", help="keep each speaker's lines in one part")
    p.add_argument("input")
    p.add_argument("outputs", nargs="+")
    args = p.parse_args(argv)
    lines = [line for _, line in iter_lines(args.input)]
    n = len(args.outputs)
    if len(lines) < n:
        raise DataError(f"{args.input}: {len(lines)} lines cannot be split into {n} parts")
    if args.utt2spk:
        utt2spk = read_scp(args.utt2spk)
        for lineno, line in iter_lines(args.input):
            if line.split()[0] not in utt2spk:
                raise DataError(f"{args.input}:{lineno}: {line.split()[0]!r} is not in {args.utt2spk}")
        parts = split_by_speaker(lines, utt2spk, n)
    else:
        parts = split_even(lines, n)
    for out, part in zip(args.outputs, parts):
        write_lines(out, part)


if __name__ == "__main__":
    run_main(main)
