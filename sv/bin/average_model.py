"""Average the weights of the last N epoch checkpoints (WeSpeaker's average_model).

  python -m sv.bin.average_model EXP_DIR [OUT] [--num N | --epochs E1 E2 ...]

Reads:  EXP_DIR/models/model_<epoch>.pt (the last N epochs, or exactly --epochs).
Writes: OUT (default EXP_DIR/models/avg_model.pt) holding {model, head, config, epochs}: extraction
        reads `model`; large-margin fine-tuning (`init:`) also starts its classifier from `head`.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from sv.cli import run_main
from sv.data.table import DataError
from sv.train.checkpoint import epoch_checkpoints, load_checkpoint, save_checkpoint

log = logging.getLogger("sv.bin.average_model")


def average_checkpoints(paths: list[Path], part: str) -> dict[str, torch.Tensor]:
    """Mean of each float tensor of checkpoint[part]; integer buffers (BatchNorm's num_batches_tracked)
    come from the last."""
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        weights = load_checkpoint(path)[part]
        if total and weights.keys() != total.keys():
            raise DataError(f"{path}: its {part} tensors differ from {paths[0]}'s")
        for k, v in weights.items():
            if v.is_floating_point() and not torch.isfinite(v).all():
                raise DataError(f"{path}: {part}.{k} holds non-finite values (NaN or inf): training diverged")
            if v.is_floating_point():
                total[k] = total[k] + v.double() if k in total else v.double()
            else:
                total[k] = v
    return {k: (v / len(paths)).to(torch.float32) if v.is_floating_point() else v for k, v in total.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=5, help="average the last N epochs (default 5)")
    p.add_argument("--epochs", type=int, nargs="+", help="average exactly these epochs")
    p.add_argument("exp_dir")
    p.add_argument("out", nargs="?")
    args = p.parse_args(argv)
    model_dir = Path(args.exp_dir) / "models"
    found = epoch_checkpoints(model_dir)
    if not found:
        raise DataError(f"{model_dir}: no model_<epoch>.pt checkpoints")
    epochs = args.epochs or sorted(found)[-args.num:]
    missing = [e for e in epochs if e not in found]
    if missing:
        raise DataError(f"{model_dir}: no checkpoint for epochs {missing}; found {sorted(found)}")
    paths = [found[e] for e in epochs]
    out = Path(args.out) if args.out else model_dir / "avg_model.pt"
    config = load_checkpoint(paths[-1])["config"]
    averaged = {part: average_checkpoints(paths, part) for part in ("model", "head")}
    save_checkpoint({**averaged, "config": config, "epochs": epochs}, out)
    log.info("averaged epochs %s into %s", epochs, out)


if __name__ == "__main__":
    run_main(main)
