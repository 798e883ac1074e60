"""Models by name: `@register("ecapa_tdnn")` on a class, then `build_model({"name": ..., **kwargs})`.

The modules that define models are imported lazily by `build_model`, so importing the registry
stays cheap and a model file only needs its decorator to be found.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    def add(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = cls
        return cls
    return add


def _import_all() -> None:
    import sv.models
    for mod in pkgutil.iter_modules(sv.models.__path__):
        importlib.import_module(f"sv.models.{mod.name}")


def registered_models() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def build_model(cfg: dict[str, Any]) -> nn.Module:
    """cfg is the config's `model:` section: `name` plus the constructor's keyword arguments."""
    _import_all()
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**cfg)
    except TypeError as e:
        raise ValueError(f"model {name!r}: bad arguments {sorted(cfg)}: {e}") from e
