"""The training loop, run once per torchrun process.

DDP over the ranks (gloo on CPU, nccl on GPU), bf16/fp16 autocast, gradient accumulation and clipping,
per-step learning-rate and margin schedules, epoch-based freezing, checkpoints every epoch (and every
`save_every_steps` optimizer steps), and exact resume: a killed run continued from its last checkpoint
ends with the same weights as one never interrupted, because the data pipeline draws every batch's
randomness from (seed, epoch, batch) and the checkpoint holds each rank's RNG states.
Epochs count from 1.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from sv.config import check_options, load_yaml, save_config
from sv.data.train_loader import build_train_loader, num_classes, steps_per_epoch
from sv.data.train_loader import resolve_config as resolve_data_config
from sv.models.margin_heads import HEADS, build_head
from sv.models.registry import build_model, check_model_config
from sv.train.auxiliary import AuxiliaryLoss, build_auxiliary
from sv.train.checkpoint import latest_checkpoint, load_checkpoint, load_weights, save_checkpoint
from sv.train.lr_schedule import build_scheduler, check_scheduler_config
from sv.train.margin_scheduler import MarginScheduler
from sv.train.optim import apply_grad_multipliers, build_optimizer, check_optim_config, set_frozen

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "seed": 42,
    "epochs": 10,
    "device": "auto",          # auto | cpu | cuda
    "amp": "none",             # none | bf16 | fp16
    "accum_steps": 1,
    "grad_clip": None,         # max gradient norm, or null
    "log_interval": 20,        # optimizer steps between log lines
    "save_every_steps": 0,     # 0: epoch checkpoints only
    "init": None,              # checkpoint to start from (weights only), e.g. for large-margin fine-tuning
    "init_new": [],            # patterns of model.X / head.X tensors that init may leave new (e.g. "^head\\.")
    "margin_scheduler": None,  # {initial, final, increase_start_epoch, fix_start_epoch, mode}
    "teacher": None,           # {loss, model, weight, ...}: an auxiliary loss (sv/train/auxiliary.py)
    "speaker_loss_weight": 1.0,  # 0: train on the auxiliary loss alone (distillation-guided pruning)
}
REQUIRED = ("data", "model", "head", "optim", "scheduler")


def _check_top_level(cfg: dict[str, Any]) -> None:
    def whole(key: str, low: int) -> None:
        value = cfg.get(key, DEFAULTS.get(key))
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{key}: must be a whole number >= {low}, got {value!r}")
    whole("epochs", 1)
    whole("accum_steps", 1)
    whole("log_interval", 1)
    whole("save_every_steps", 0)
    whole("seed", 0)
    clip = cfg.get("grad_clip")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip < 0):
        raise ValueError(f"grad_clip: must be a number >= 0 or null, got {clip!r}")
    if cfg.get("device", "auto") not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: must be auto, cpu or cuda, got {cfg['device']!r}")


def resolve_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults (top level and `data:`) and reject unknown or missing keys. Idempotent, so overrides
    can be applied to a resolved config (every default key exists there) and resolved again."""
    unknown = set(cfg) - set(DEFAULTS) - set(REQUIRED)
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise ValueError(f"config lacks the sections: {', '.join(missing)}")
    if cfg.get("amp", "none") not in ("none", "bf16", "fp16"):
        raise ValueError(f"amp must be none, bf16 or fp16, got {cfg['amp']!r}")
    _check_top_level(cfg)
    check_model_config(cfg["model"])
    if not isinstance(cfg["head"], dict) or cfg["head"].get("name") not in HEADS:
        raise ValueError(f"head.name: one of {', '.join(sorted(HEADS))}, got {(cfg['head'] or {}).get('name')!r}")
    check_options(HEADS[cfg["head"]["name"]], {k: v for k, v in cfg["head"].items() if k != "name"}, "head")
    if cfg.get("margin_scheduler"):
        check_options(MarginScheduler, cfg["margin_scheduler"], "margin_scheduler")
    check_optim_config(cfg["optim"])
    check_scheduler_config(cfg["scheduler"])
    weight = cfg.get("speaker_loss_weight", 1.0)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
        raise ValueError(f"speaker_loss_weight must be a number >= 0, got {weight!r}")
    if weight == 0 and not cfg.get("teacher"):
        raise ValueError("speaker_loss_weight 0 leaves nothing to train without a teacher (auxiliary loss)")
    return {**DEFAULTS, **cfg, "data": resolve_data_config(cfg["data"])}


@dataclass
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Rank and device from torchrun's environment; a plain `python` run is a world of one."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank, dev)


class SpeakerClassifier(nn.Module):
    """Embedding model + margin head (+ auxiliary loss): the one module DDP wraps. Only `model` is kept for
    extraction. forward returns the head's logits and the auxiliary loss (None without one)."""

    def __init__(self, model: nn.Module, head: nn.Module, auxiliary: AuxiliaryLoss | None = None):
        super().__init__()
        self.model = model
        self.head = head
        self.auxiliary = auxiliary

    def forward(self, feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.auxiliary is None:
            return self.head(self.model(feats), labels), None
        outputs = self.model.forward_outputs(feats)
        return self.head(outputs["embedding"], labels), self.auxiliary(feats, outputs)


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _gather(obj: Any, world: Dist) -> list[Any]:
    if world.world_size == 1:
        return [obj]
    out: list[Any] = [None] * world.world_size
    dist.all_gather_object(out, obj)
    return out


def _check_ranks_agree(net: nn.Module, world: Dist) -> None:
    """DDP must leave every rank with the same parameters; a per-tensor checksum catches any drift early.
    Buffers are left out: DDP broadcasts them from rank 0 before each forward, so BatchNorm's running
    statistics differ after the last step, and the checkpoint keeps rank 0's."""
    if world.world_size == 1:
        return
    sums = torch.stack([p.detach().double().sum() for p in net.parameters()])
    gathered = _gather(sums.cpu(), world)
    if any(not torch.equal(gathered[0], g) for g in gathered[1:]):
        raise RuntimeError("the ranks' weights differ after the epoch: DDP is out of sync")
    log.info("weights agree across %d ranks", world.world_size)


def _init_from(net: SpeakerClassifier, path: str, allow_new: list[str]) -> None:
    """Start from another experiment's weights. A head trained with speed-perturbed classes (k × S rows)
    is cut to the real speakers, which come first. Every tensor of model and head must come from the checkpoint
    unless its name (model.X / head.X) matches a pattern of allow_new (`init_new`)."""
    ckpt = load_checkpoint(path)
    left = [f"model.{k}" for k in load_weights(net.model, ckpt["model"], f"init {path} (model)")]
    head_weights = dict(ckpt.get("head", {}))
    rows = head_weights.get("weight")
    if rows is not None and rows.shape[0] > net.head.weight.shape[0] and rows.shape[0] % net.head.weight.shape[0] == 0:
        log.info("init: keeping the first %d of %d classifier rows", net.head.weight.shape[0], rows.shape[0])
        head_weights = {k: v[: net.head.weight.shape[0]] if v.dim() and v.shape[0] == rows.shape[0] else v
                        for k, v in head_weights.items()}
    left += [f"head.{k}" for k in load_weights(net.head, head_weights, f"init {path} (head)")]
    patterns = [re.compile(p) for p in allow_new]
    new = [k for k in left if not any(p.search(k) for p in patterns)]
    if new:
        raise ValueError(f"init {path}: {len(new)} tensors of the model would stay untrained, e.g. "
                         f"{', '.join(new[:4])}; list the parts that may start new in init_new (patterns, e.g. "
                         "'^head\\.' for a new speaker set)")


def _stop_on_non_finite(what: str, epoch: int, step: int, batch: int, model_dir: Path) -> None:
    """Training never goes on, or ends "successfully", on NaN or infinite values."""
    last = latest_checkpoint(model_dir)
    raise ValueError(f"non-finite {what} at epoch {epoch}, batch {batch} (after {step} optimizer steps); the last good "
                     f"checkpoint is {last or 'none yet'}. Lower optim.lr, set grad_clip, or check the data")


def _flatten(d: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}"))
    return out


def _check_same_network(saved: dict[str, Any], cfg: dict[str, Any], path: Path) -> None:
    """A checkpoint resumes only the network it was written for: its model and head config must be this run's."""
    old = {**_flatten(saved.get("model"), "model"), **_flatten(saved.get("head"), "head")}
    new = {**_flatten(cfg["model"], "model"), **_flatten(cfg["head"], "head")}
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        shown = ", ".join(f"{k} ({old.get(k, '-')!r} in the checkpoint, {new.get(k, '-')!r} now)" for k in diff[:5])
        raise ValueError(f"{path} was written for another network: {shown}{' ...' if len(diff) > 5 else ''}; "
                         "start afresh (--no-resume, which sets the old models aside) or use another exp dir")


def _set_aside_old_run(model_dir: Path) -> None:
    """A fresh start moves an earlier run's checkpoints to models.old.N, so that a later resume can only find
    this run's."""
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        return
    n = 1
    while model_dir.with_name(f"{model_dir.name}.old.{n}").exists():
        n += 1
    target = model_dir.with_name(f"{model_dir.name}.old.{n}")
    model_dir.rename(target)
    log.warning("fresh start: the earlier run's checkpoints in %s moved to %s", model_dir, target)


def _make_ddp(net: nn.Module, world: Dist) -> nn.Module:
    if world.world_size == 1:
        return net
    ids = [world.local_rank] if world.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids)


def _file_logger(exp_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(exp_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    logging.getLogger().addHandler(handler)
    return handler


def _tensorboard(exp_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(exp_dir / "tensorboard"))


def train(cfg: dict[str, Any], exp_dir: str | os.PathLike, resume: bool = True) -> None:
    """Train per the resolved config into exp_dir/models/; see the module docstring."""
    cfg = resolve_config(cfg)
    exp_dir = Path(exp_dir)
    model_dir = exp_dir / "models"
    world = setup_distributed(cfg["device"])
    handler = _file_logger(exp_dir) if world.is_main else None
    writer = _tensorboard(exp_dir) if world.is_main else None

    torch.manual_seed(cfg["seed"])  # identical initial weights on every rank
    n_classes = num_classes(cfg["data"])
    model = build_model(cfg["model"])
    head = build_head(cfg["head"], model.embed_dim, n_classes)
    auxiliary = build_auxiliary(cfg["teacher"], model, cfg["data"]) if cfg["teacher"] else None
    net = SpeakerClassifier(model, head, auxiliary).to(world.device)

    accum = int(cfg["accum_steps"])
    batches = steps_per_epoch(cfg["data"], world.world_size)
    steps = batches // accum
    if steps == 0:
        raise ValueError(f"an epoch has {batches} batches per rank, fewer than accum_steps={accum}")
    optimizer = build_optimizer(net, cfg["optim"])
    scheduler = build_scheduler(optimizer, cfg["scheduler"], steps, int(cfg["epochs"]))
    margin = None
    if cfg["margin_scheduler"]:
        margin = MarginScheduler(net.head, steps_per_epoch=steps, **cfg["margin_scheduler"])
    scaler = torch.amp.GradScaler(world.device.type, enabled=cfg["amp"] == "fp16")
    apply_grad_multipliers(net, cfg["optim"].get("grad_mult", []))
    freeze_rules = cfg["optim"].get("freeze", [])

    epoch, start_batch, global_step = 1, 0, 0
    ckpt_path = latest_checkpoint(model_dir) if resume else None
    if not resume and world.is_main:
        _set_aside_old_run(model_dir)
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path)
        _check_same_network(ckpt.get("config") or {}, cfg, ckpt_path)
        net.model.load_state_dict(ckpt["model"])
        net.head.load_state_dict(ckpt["head"])
        if auxiliary is not None:
            auxiliary.load_state_dict(ckpt["auxiliary"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        epoch, start_batch, global_step = (ckpt["position"][k] for k in ("epoch", "batch", "global_step"))
        rngs = ckpt["rng"]
        if len(rngs) == world.world_size:
            _set_rng_state(rngs[world.rank], world.device)
        else:
            log.warning("checkpoint was written by %d ranks, this run has %d: RNG states not restored, "
                        "so dropout masks will differ from an uninterrupted run", len(rngs), world.world_size)
        log.info("resuming from %s: epoch %d, batch %d, step %d", ckpt_path, epoch, start_batch, global_step)
    else:
        if cfg["init"]:
            _init_from(net, cfg["init"], cfg["init_new"])
        torch.manual_seed(cfg["seed"] + world.rank)  # dropout differs across ranks

    if world.is_main:  # only now: a resume that failed above leaves the config of the checkpoints in place
        saved = exp_dir / "config.yaml"
        if saved.is_file() and load_yaml(saved) != cfg:
            log.warning("%s differs from the config of this run; it is replaced", saved)
        save_config(cfg, saved)
        n_params = sum(p.numel() for p in net.model.parameters())
        log.info("model %s: %.2fM parameters; %d classes; %d ranks on %s; %d optimizer steps per epoch",
                 cfg["model"]["name"], n_params / 1e6, n_classes, world.world_size, world.device, steps)

    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg["amp"])
    ddp = None

    def position_state(next_epoch: int, next_batch: int) -> dict[str, Any]:
        return {
            "model": net.model.state_dict(),
            "head": net.head.state_dict(),
            **({"auxiliary": auxiliary.state_dict()} if auxiliary is not None else {}),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "position": {"epoch": next_epoch, "batch": next_batch, "global_step": global_step},
            "rng": _gather(_rng_state(world.device), world),
            "config": cfg,
        }

    while epoch <= cfg["epochs"]:
        if set_frozen(net, freeze_rules, epoch) or ddp is None:
            ddp = _make_ddp(net, world)  # DDP fixes its parameter set when built
        net.train()
        loader = build_train_loader(cfg["data"], world.rank, world.world_size, epoch, start_batch)
        bar = tqdm(total=steps * accum, initial=start_batch, desc=f"epoch {epoch}", disable=not world.is_main,
                   dynamic_ncols=True, leave=False)
        window_loss, window_aux, window_acc, window_n, t0 = 0.0, 0.0, 0.0, 0, time.time()
        for batch_idx, (feats, labels) in enumerate(loader, start=start_batch):
            if batch_idx >= steps * accum:
                break
            if margin is not None:
                margin.step(global_step)
            feats, labels = feats.to(world.device, non_blocking=True), labels.to(world.device, non_blocking=True)
            last_micro = (batch_idx + 1) % accum == 0
            sync = contextlib.nullcontext() if last_micro or world.world_size == 1 else ddp.no_sync()
            with sync:
                with torch.autocast(world.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits, aux_loss = ddp(feats, labels)
                    loss = float(cfg["speaker_loss_weight"]) * F.cross_entropy(logits.float(), labels)
                    if aux_loss is not None:
                        window_aux += aux_loss.item()
                        loss = loss + aux_loss
                scaler.scale(loss / accum).backward()
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                _stop_on_non_finite(f"loss {loss_value}", epoch, global_step, batch_idx, model_dir)
            window_loss += loss_value
            window_acc += (logits.argmax(-1) == labels).float().mean().item()
            window_n += 1
            bar.update(1)
            if not last_micro:
                continue
            if cfg["grad_clip"]:
                scaler.unscale_(optimizer)
                norm = nn.utils.clip_grad_norm_(net.parameters(), float(cfg["grad_clip"]))
                if not scaler.is_enabled() and not torch.isfinite(norm):  # fp16's scaler skips such steps itself
                    _stop_on_non_finite(f"gradient norm {norm.item()}", epoch, global_step, batch_idx, model_dir)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            global_step += 1

            if global_step % int(cfg["log_interval"]) == 0 and world.is_main:
                elapsed = time.time() - t0
                lr = optimizer.param_groups[0]["lr"]
                rate = window_n * feats.shape[0] * world.world_size / max(elapsed, 1e-9)
                stats = {"loss": window_loss / window_n, "acc": window_acc / window_n, "lr": lr}
                if auxiliary is not None:
                    stats["aux_loss"] = window_aux / window_n
                log.info("epoch %d step %d: loss %.4f%s acc %.3f lr %.3g margin %s %.1f samples/s",
                         epoch, global_step, stats["loss"],
                         f" (auxiliary {stats['aux_loss']:.4f})" if auxiliary is not None else "", stats["acc"], lr,
                         f"{net.head.margin:.3f}" if hasattr(net.head, "margin") else "-", rate)
                bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['acc']:.3f}")
                if writer is not None:
                    for k, v in stats.items():
                        writer.add_scalar(f"train/{k}", v, global_step)
                window_loss, window_aux, window_acc, window_n, t0 = 0.0, 0.0, 0.0, 0, time.time()
            if cfg["save_every_steps"] and global_step % int(cfg["save_every_steps"]) == 0 \
                    and batch_idx + 1 < steps * accum:
                state = position_state(epoch, batch_idx + 1)
                if world.is_main:
                    save_checkpoint(state, model_dir / "checkpoint.pt")
        bar.close()
        _check_ranks_agree(net, world)
        state = position_state(epoch + 1, 0)
        if world.is_main:
            save_checkpoint(state, model_dir / f"model_{epoch}.pt")
            log.info("epoch %d done: wrote %s", epoch, model_dir / f"model_{epoch}.pt")
        epoch, start_batch = epoch + 1, 0

    if writer is not None:
        writer.close()
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()
    if world.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
