"""Merge the LoRA weights of a trained model into its encoder, for the next training stage or for extraction.

  python -m sv.bin.merge_lora exp/w2vbert2/s1/models/avg_model.pt exp/w2vbert2/s1/models/avg_model_merged.pt
  python -m sv.bin.merge_lora --allow-no-lora IN IN    # in place, and a no-op for a model without LoRA

Reads:  IN, a checkpoint holding `model` (an ssl_speaker with a `model.lora` section in its `config`), and `head`
        and `epochs` if present (sv.bin.average_model's output, or an epoch checkpoint).
Writes: OUT, {model, head, config, epochs} like average_model's output: the encoder's query/value weights are
        W + (alpha / r) B A, the LoRA parameters are gone, and `model.lora` is removed from the config, so the
        next stage's config (without lora) loads it with `init:` and extraction builds it as it is.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os

from sv.cli import run_main
from sv.data.table import DataError
from sv.models.lora import merge_lora
from sv.models.ssl_speaker import load_ssl_speaker
from sv.train.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sv.bin.merge_lora", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="input: checkpoint of a model trained with LoRA")
    p.add_argument("output", metavar="OUT", help="output: checkpoint with LoRA merged into the encoder (may be IN)")
    p.add_argument("--allow-no-lora", action="store_true",
                   help="a model without LoRA is not an error: OUT becomes a copy of IN (nothing if OUT is IN)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ckpt = load_checkpoint(args.input)
    config = ckpt.get("config")
    model_cfg = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model_cfg, dict) or "model" not in ckpt:
        raise DataError(f"{args.input}: expected a checkpoint with `model` weights and a `config` with `model:`")
    if not model_cfg.get("lora"):
        if not args.allow_no_lora:
            raise DataError(f"{args.input}: its config has no model.lora section: nothing to merge")
        if os.path.abspath(args.input) != os.path.abspath(args.output):
            save_checkpoint(ckpt, args.output)
        log.info("%s has no LoRA: nothing to merge", args.input)
        return
    model = load_ssl_speaker(ckpt, args.input)
    merged = merge_lora(model.encoder.model)

    out_config = copy.deepcopy(config)
    del out_config["model"]["lora"]
    state = {"model": model.state_dict(), "config": out_config}
    for key in ("head", "epochs"):
        if key in ckpt:
            state[key] = ckpt[key]
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    save_checkpoint(state, args.output)
    log.info("merged %d LoRA layers of %s into %s", merged, args.input, args.output)


if __name__ == "__main__":
    run_main(main)
