"""The optimizer from the config's `optim:` section, with per-module learning rates, gradient multipliers and
epoch-based freezing for pretrained parts.

    optim:
      name: sgd            # sgd (momentum, nesterov) | adam | adamw (betas)
      lr: 0.1
      weight_decay: 1.0e-4
      momentum: 0.9
      nesterov: true
      param_groups: [{pattern: "encoder\\.", lr_mult: 0.1}]  # read by build_optimizer
      no_decay: ["bias", "norm"]                             # read by build_optimizer
      grad_mult: [{pattern: "encoder\\.", mult: 0.1}]        # read by apply_grad_multipliers
      freeze: [{pattern: "encoder\\.", epochs: 2}]           # read by frozen_params / set_frozen

Patterns are regular expressions searched in parameter names (`re.search`). In a list of rules the first
matching rule wins, and a rule that gets no parameter is an error: it is a typo or shadowed by an earlier rule.
Numbers may be strings, since YAML reads `1e-4` (no dot) as one.
"""
from __future__ import annotations

import difflib
import re
from typing import Any, NamedTuple

import torch
import torch.nn as nn
from torch.utils.hooks import RemovableHandle

_OPTIMIZERS = {
    "sgd": (torch.optim.SGD, {"momentum", "nesterov"}),
    "adam": (torch.optim.Adam, {"betas"}),
    "adamw": (torch.optim.AdamW, {"betas"}),
}
_COMMON_KEYS = {"name", "lr", "weight_decay", "param_groups", "no_decay", "grad_mult", "freeze"}


class _Rule(NamedTuple):
    pattern: str
    regex: re.Pattern
    value: float


def _number(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}") from None


def _compile(pattern: Any, where: str) -> re.Pattern:
    if not isinstance(pattern, str):
        raise ValueError(f"{where}: pattern must be a string, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{where}: bad pattern {pattern!r}: {e}") from None


def _parse_rules(rules: Any, where: str, value_key: str) -> list[_Rule]:
    """`[{pattern: ..., <value_key>: ...}, ...]`, every rule with exactly those two keys."""
    if not isinstance(rules, list):
        raise ValueError(f"{where}: expected a list of {{pattern, {value_key}}}, got {rules!r}")
    parsed = []
    for rule in rules:
        if not isinstance(rule, dict):
            raise ValueError(f"{where}: expected {{pattern, {value_key}}}, got {rule!r}")
        for key in rule:
            if key not in ("pattern", value_key):
                raise ValueError(f"{where}: unknown key {key!r} (expected pattern and {value_key})")
        for key in ("pattern", value_key):
            if key not in rule:
                raise ValueError(f"{where}: rule {rule!r} has no {key!r}")
        parsed.append(_Rule(rule["pattern"], _compile(rule["pattern"], where),
                            _number(rule[value_key], f"{where}: {value_key} of {rule['pattern']!r}")))
    return parsed


def _first_match(names: list[str], rules: list[_Rule], where: str) -> dict[str, int | None]:
    """Parameter name -> index of the first rule whose pattern it matches (None: no rule)."""
    owner = {name: next((i for i, r in enumerate(rules) if r.regex.search(name)), None) for name in names}
    claimed = set(owner.values())
    for i, rule in enumerate(rules):
        if i not in claimed:
            raise ValueError(f"{where}: pattern {rule.pattern!r} matches no parameter "
                             "(none at all, or all taken by an earlier pattern)")
    return owner


def check_optim_config(cfg: dict[str, Any]) -> None:
    """The `optim:` section's name and keys, before anything is built; errors name the dotted key."""
    name = cfg.get("name")
    if name not in _OPTIMIZERS:
        raise ValueError(f"optim.name: unknown optimizer {name!r}; known: {', '.join(sorted(_OPTIMIZERS))}")
    known = _COMMON_KEYS | _OPTIMIZERS[name][1]
    for key in cfg:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            raise ValueError(f"optim.{key}: unknown key for {name}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                             f"known: {', '.join(sorted(known))}")
    if "lr" not in cfg:
        raise ValueError("optim.lr: missing")


def build_optimizer(model: nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """One parameter group per (lr rule, decay or not) that has parameters; each group's lr is lr·lr_mult.

    Every parameter goes in, trainable now or not: set_frozen may unfreeze some later, and the optimizers skip
    parameters without a gradient (no update, no weight decay).
    """
    check_optim_config(cfg)
    cls, own_keys = _OPTIMIZERS[cfg["name"]]
    lr = _number(cfg["lr"], "optim.lr")
    weight_decay = _number(cfg.get("weight_decay", 0.0), "optim.weight_decay")
    options: dict[str, Any] = {}
    if "momentum" in cfg:
        options["momentum"] = _number(cfg["momentum"], "optim.momentum")
    if "nesterov" in cfg:
        options["nesterov"] = bool(cfg["nesterov"])
    if "betas" in cfg:
        betas = cfg["betas"]
        if not isinstance(betas, list) or len(betas) != 2:
            raise ValueError(f"optim.betas: expected [beta1, beta2], got {betas!r}")
        options["betas"] = tuple(_number(b, "optim.betas") for b in betas)

    params = dict(model.named_parameters())
    names = list(params)
    lr_rules = _parse_rules(cfg.get("param_groups", []), "optim.param_groups", "lr_mult")
    owner = _first_match(names, lr_rules, "optim.param_groups")
    no_decay = cfg.get("no_decay", [])
    if not isinstance(no_decay, list):
        raise ValueError(f"optim.no_decay: expected a list of patterns, got {no_decay!r}")
    no_decay_res = [_compile(p, "optim.no_decay") for p in no_decay]
    for pattern, regex in zip(no_decay, no_decay_res):
        if not any(regex.search(n) for n in names):
            raise ValueError(f"optim.no_decay: pattern {pattern!r} matches no parameter")

    # Rule groups first, in config order, then the rest; decayed before undecayed.
    groups: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for n in names:
        rule = owner[n] if owner[n] is not None else len(lr_rules)
        undecayed = any(regex.search(n) for regex in no_decay_res)
        groups.setdefault((rule, undecayed), []).append(params[n])
    param_groups = []
    for (rule, undecayed), group_params in sorted(groups.items()):
        lr_mult = lr_rules[rule].value if rule < len(lr_rules) else 1.0
        param_groups.append({"params": group_params, "lr": lr * lr_mult,
                             "weight_decay": 0.0 if undecayed else weight_decay})
    return cls(param_groups, lr=lr, weight_decay=weight_decay, **options)


def apply_grad_multipliers(model: nn.Module, rules: list[dict[str, Any]]) -> list[RemovableHandle]:
    """Multiply the gradients of matching parameters by `mult` as they are computed (`p.register_hook`).

    With SGD this is the same as lr_mult on those parameters. Adam and AdamW divide the gradient's scale
    away, so there it mostly shrinks those parameters' share of the norm in gradient clipping; use lr_mult
    for smaller steps. The hooks run before DDP's all-reduce (a linear operation, so the order does not
    matter) and before clipping. Parameters frozen at the time still get their hook, which fires once they
    are unfrozen. Remove with `handle.remove()`.
    """
    parsed = _parse_rules(rules, "grad_mult", "mult")
    owner = _first_match([n for n, _ in model.named_parameters()], parsed, "grad_mult")
    handles = []
    for name, p in model.named_parameters():
        if owner[name] is None:
            continue
        mult = parsed[owner[name]].value
        # Only a tensor that requires grad takes a hook; the hook stays when it is frozen again.
        requires_grad = p.requires_grad
        p.requires_grad_(True)
        handles.append(p.register_hook(lambda g, mult=mult: g * mult))
        p.requires_grad_(requires_grad)
    return handles


def _freeze_plan(model: nn.Module, rules: list[dict[str, Any]], epoch: int) -> dict[str, bool]:
    """Name -> frozen at `epoch`, for the parameters some freeze rule matches."""
    if epoch < 1:
        raise ValueError(f"epochs are numbered from 1, got {epoch}")
    parsed = _parse_rules(rules, "freeze", "epochs")
    for rule in parsed:
        if rule.value < 0 or rule.value != int(rule.value):
            raise ValueError(f"freeze: epochs of {rule.pattern!r} must be a whole number >= 0, got {rule.value}")
    owner = _first_match([n for n, _ in model.named_parameters()], parsed, "freeze")
    return {name: epoch <= parsed[i].value for name, i in owner.items() if i is not None}


def frozen_params(model: nn.Module, rules: list[dict[str, Any]], epoch: int) -> set[str]:
    """Names of the parameters the freeze rules hold frozen in `epoch` (numbered from 1): a rule
    `{pattern, epochs: 2}` freezes its parameters in epochs 1 and 2."""
    return {name for name, frozen in _freeze_plan(model, rules, epoch).items() if frozen}


def set_frozen(model: nn.Module, rules: list[dict[str, Any]], epoch: int) -> set[str]:
    """Set requires_grad of the parameters the freeze rules match, for `epoch` (numbered from 1); returns the
    names whose requires_grad changed. Parameters no rule matches are left as they are (a model may freeze
    some itself, such as LoRA's base weights), but a rule governs all it matches: once its epochs are over,
    all of them train.

    DDP decides at construction which parameters it all-reduces (those requiring grad then), so when this
    returns a non-empty set the trainer must wrap the model in a new DistributedDataParallel. Building DDP
    once with everything trainable and find_unused_parameters=True works too, at the cost of a graph
    traversal every step. Call it before building the epoch's DDP wrapper and at resume.
    """
    params = dict(model.named_parameters())
    changed = set()
    for name, frozen in _freeze_plan(model, rules, epoch).items():
        if params[name].requires_grad == frozen:
            params[name].requires_grad_(not frozen)
            changed.add(name)
    return changed
