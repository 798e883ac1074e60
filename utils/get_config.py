#!/usr/bin/env python3
"""Print one value of a YAML config by its dotted key, for shell scripts (e.g. a stage that branches on how
a model was trained).

  utils/get_config.py [--default VALUE] CONFIG KEY      e.g. utils/get_config.py exp/x/config.yaml data.mode

Reads CONFIG. Writes the value to stdout (a mapping or list as one line of YAML flow style). A missing key is
an error naming it, unless --default is given.
"""
import argparse
import sys

import yaml

from sv.cli import run_main
from sv.config import load_yaml
from sv.data.table import DataError


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--default", help="printed when the key is missing")
    p.add_argument("config", help="input: YAML file")
    p.add_argument("key", help="dotted key, e.g. data.mode")
    args = p.parse_args(argv)
    value = load_yaml(args.config)
    for i, part in enumerate(args.key.split(".")):
        if not isinstance(value, dict) or part not in value:
            if args.default is not None:
                value = args.default
                break
            where = ".".join(args.key.split(".")[:i + 1])
            raise DataError(f"{args.config}: no key {where!r}")
        value = value[part]
    if isinstance(value, (dict, list)):
        value = yaml.safe_dump(value, default_flow_style=True).strip()
    elif isinstance(value, bool) or value is None:
        value = yaml.safe_dump(value).splitlines()[0]
    sys.stdout.write(f"{value}\n")


if __name__ == "__main__":
    run_main(main)
