#!/usr/bin/env python3
"""Print the lines of a table whose key is (or, with --exclude, is not) in an id list
(Kaldi's filter_scp.pl). Output keeps the table's order.

  utils/filter_scp.py [--exclude] [-f FIELD] ID_LIST IN > OUT

-f picks which field of IN is matched (1-based; default 1).
"""
import argparse
import sys

from sv.cli import run_main
from sv.data.table import DataError, iter_lines, read_list


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exclude", action="store_true")
    p.add_argument("-f", "--field", type=int, default=1)
    p.add_argument("id_list")
    p.add_argument("input")
    args = p.parse_args(argv)
    ids = set(read_list(args.id_list))
    for lineno, line in iter_lines(args.input):
        fields = line.split()
        if len(fields) < args.field:
            raise DataError(f"{args.input}:{lineno}: has no field {args.field}: {line!r}")
        if (fields[args.field - 1] in ids) != args.exclude:
            sys.stdout.write(line + "\n")


if __name__ == "__main__":
    run_main(main)
