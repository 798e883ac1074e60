"""Train a speaker-embedding network; run under torchrun (steps/train.sh does) or plain python for one process.

  python -m sv.bin.train --config conf/X.yaml --exp-dir exp/X [--no-resume] [key.path=value ...]

Reads:  the YAML config (with dotted overrides), the data dirs it names (data.train_dir, and
        data.musan.data_dir / data.rir.data_dir when augmenting).
Writes: exp/X/config.yaml (the resolved config, which later stages read), exp/X/train.log,
        exp/X/models/model_<epoch>.pt each epoch, exp/X/models/checkpoint.pt every save_every_steps,
        exp/X/tensorboard/ when tensorboard is installed.
By default a run continues from the latest checkpoint in exp/X/models/ (--no-resume starts afresh).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from sv.cli import run_main
from sv.config import apply_overrides, load_yaml, save_config
from sv.train.trainer import resolve_config, train

log = logging.getLogger("sv.bin.train")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training config (YAML)")
    p.add_argument("--exp-dir", required=True, help="experiment dir")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="ignore existing checkpoints")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=0.05 data.batch_size=32")
    args = p.parse_args(argv)

    cfg = resolve_config(apply_overrides(resolve_config(load_yaml(args.config)), args.overrides))
    exp_dir = Path(args.exp_dir)
    saved = exp_dir / "config.yaml"
    if int(os.environ.get("RANK", 0)) == 0:
        exp_dir.mkdir(parents=True, exist_ok=True)
        if args.resume and saved.is_file() and load_yaml(saved) != cfg:
            log.warning("%s differs from the config of this run; it is replaced (checkpoints are kept)", saved)
        save_config(cfg, saved)
    train(cfg, exp_dir, resume=args.resume)


if __name__ == "__main__":
    run_main(main)
