"""YAML configs with dotted command-line overrides; the resolved copy saved in exp/<name>/config.yaml
is what every later stage reads.
"""
from __future__ import annotations

import copy
import os
from typing import Any

import yaml

from sv.data.table import DataError, atomic_open


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such config file")
    with open(path, encoding="utf-8") as f:
        try:
            cfg = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise DataError(f"{path}: not valid YAML: {e}") from e
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise DataError(f"{path}: the top level must be a mapping, got {type(cfg).__name__}")
    return cfg


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`model.channels=1024` style overrides; values are parsed as YAML (`1e-3`, `[1, 2]`, `null`).

    A key that does not exist yet is an error unless it is written `+key=value`, so typos surface.
    """
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise DataError(f"override {item!r}: expected key.path=value")
        add = key.startswith("+")
        parts = key.lstrip("+").split(".")
        node = cfg
        for i, part in enumerate(parts[:-1]):
            if part not in node:
                if not add:
                    raise DataError(f"override {item!r}: no key {'.'.join(parts[:i + 1])!r} in the config")
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise DataError(f"override {item!r}: {'.'.join(parts[:i + 1])!r} is not a mapping")
        if parts[-1] not in node and not add:
            raise DataError(f"override {item!r}: no key {key!r} in the config (write +{key}=... to add it)")
        node[parts[-1]] = yaml.safe_load(raw)
    return cfg


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> dict[str, Any]:
    return apply_overrides(load_yaml(path), overrides or [])


def save_config(cfg: dict[str, Any], path: str | os.PathLike) -> None:
    with atomic_open(path) as f:
        yaml.safe_dump(cfg, f, sort_keys=False, default_flow_style=None)
