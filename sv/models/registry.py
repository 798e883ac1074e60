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


def model_class(cfg: dict[str, Any]) -> Callable[..., nn.Module]:
    """The registered class a `model:` section names."""
    _import_all()
    name = cfg.get("name")
    if name not in _REGISTRY:
        raise ValueError(f"model.name: unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def check_model_config(cfg: dict[str, Any]) -> None:
    """model.X keys against the model's arguments (names, types), and no negative size; before building."""
    from sv.config import check_options
    options = {k: v for k, v in cfg.items() if k != "name"}
    check_options(model_class(cfg), options, "model")
    for key, value in options.items():
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"model.{key}: must not be negative, got {value}")


def build_model(cfg: dict[str, Any]) -> nn.Module:
    """cfg is the config's `model:` section: `name` plus the constructor's keyword arguments."""
    check_model_config(cfg)
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    try:
        return _REGISTRY[name](**cfg)
    except TypeError as e:
        raise ValueError(f"model {name!r}: bad arguments {sorted(cfg)}: {e}") from e
