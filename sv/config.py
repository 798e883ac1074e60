"""YAML configs with dotted command-line overrides; the resolved copy saved in exp/<name>/config.yaml
is what every later stage reads.
"""
from __future__ import annotations

import copy
import difflib
import inspect
import os
from typing import Any, Callable, Mapping

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


def check_options(fn: Callable, options: Mapping[str, Any], section: str) -> None:
    """The keys of a config section against the arguments of the function or class it is passed to: an unknown
    key (with a close match to suggest) or a value of another type than the argument's default is a DataError
    naming the dotted key, before anything is built."""
    params = {n: p for n, p in inspect.signature(fn).parameters.items()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_more = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    for key, value in options.items():
        if key not in params:
            if takes_more:
                continue
            close = difflib.get_close_matches(str(key), list(params), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(f"{section}.{key}: unknown key{hint}; valid keys: {', '.join(params)}")
        default = params[key].default
        if default is inspect.Parameter.empty or default is None or value is None:
            continue
        numbers = (int, float)
        same = (isinstance(value, bool) == isinstance(default, bool)
                and (isinstance(value, type(default)) or (isinstance(default, numbers) and isinstance(value, numbers)
                                                          and not isinstance(default, bool))))
        if not same:
            raise DataError(f"{section}.{key}: expected {type(default).__name__} like the default "
                            f"{default!r}, got {value!r}")

