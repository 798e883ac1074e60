"""Train a speaker-embedding network; run under torchrun (steps/train.sh does) or plain python for one process.

  python -m sv.bin.train --config conf/X.yaml --exp-dir exp/X [--no-resume] [key.path=value ...]

Reads:  the YAML config (with dotted overrides), the data dirs it names (data.train_dir, and
        data.musan.data_dir / data.rir.data_dir when augmenting).
Writes: exp/X/config.yaml (the resolved config, which later stages read), exp/X/train.log,
        exp/X/models/model_<epoch>.pt each epoch, exp/X/models/checkpoint.pt every save_every_steps,
        exp/X/tensorboard/ when tensorboard is installed.
By default a run continues from the latest checkpoint in exp/X/models/, which must have been written for the same
model and head config (an error names the keys that differ); --no-resume starts afresh and moves an earlier run's
checkpoints to exp/X/models.old.N. config.yaml is written once the checkpoint (or `init`) has loaded.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sv.cli import die_with_parent, run_main
from sv.config import apply_overrides, load_yaml
from sv.train.trainer import resolve_config, train


def main(argv: list[str] | None = None) -> None:
    die_with_parent()  # a worker must not outlive torchrun's agent (killed with SIGKILL, it cannot stop us)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training config (YAML)")
    p.add_argument("--exp-dir", required=True, help="experiment dir")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="ignore existing checkpoints")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=0.05 data.batch_size=32")
    args = p.parse_args(argv)

    cfg = resolve_config(apply_overrides(resolve_config(load_yaml(args.config)), args.overrides))
    exp_dir = Path(args.exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    train(cfg, exp_dir, resume=args.resume)


if __name__ == "__main__":
    run_main(main)
