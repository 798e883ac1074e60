"""Physically prune a gated encoder: remove the heads, FFN units and convolution channels whose gates closed
during distillation-guided pruning, and write the smaller encoder as a model directory.

  python -m sv.bin.prune_encoder exp/w2vbert2/prune/models/avg_model.pt exp/w2vbert2/pruned_encoder \
      exp/w2vbert2/prune/models/pruned_model.pt

Reads:  IN, a checkpoint (sv.bin.average_model's output or an epoch checkpoint) of an ssl_speaker whose config has
        model.encoder.gates (trained with teacher.loss hidden_distill and a target_sparsity); or of one on an
        already pruned encoder (trained further, e.g. distilled again), whose weights are then written out as
        they are, in its encoder's structure.
Writes: ENCODER_DIR, the pruned encoder: config.json, model.safetensors, sv_pruned_structure.json (per layer: the
        kept heads and the FFN / convolution sizes) and preprocessor_config.json; any later config loads it as
        model.encoder.pretrained, with from_pretrained-style loading, no gates.
        OUT, {model, head, config, epochs}: the same speaker model on the pruned encoder (config:
        model.encoder.pretrained = ENCODER_DIR, no gates), for the next stage's `init:` or for extraction.
The deterministic gates' values are folded into the weights that follow them, so the pruned model computes what
the gated one computes at evaluation (tested to 1e-5). A table of the kept sizes and the parameter counts goes
to the log.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os

from sv.cli import run_main
from sv.data.table import DataError
from sv.models.pruning import layer_sizes, prune, read_structure, save_pruned
from sv.models.ssl_speaker import load_ssl_speaker
from sv.train.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sv.bin.prune_encoder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="input: checkpoint of an ssl_speaker with gates on its encoder")
    p.add_argument("encoder_dir", metavar="ENCODER_DIR", help="output: the pruned encoder's directory")
    p.add_argument("output", metavar="OUT", help="output: checkpoint of the speaker model on the pruned encoder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ckpt = load_checkpoint(args.input)
    model = load_ssl_speaker(ckpt, args.input)
    config = ckpt["config"]
    model_cfg = config["model"]
    source = model_cfg["encoder"]["pretrained"]
    gated = model_cfg["encoder"].get("gates") is not None
    exported = read_structure(source)
    if not gated and exported is None:
        raise DataError(f"{args.input}: its encoder has no gates (model.encoder.gates) and is not a pruned one: "
                        "nothing to prune")
    before = sum(p.numel() for n, p in model.encoder.named_parameters() if "log_alpha" not in n)
    model.eval()
    structure = prune(model.encoder.model) if gated else exported
    after = sum(p.numel() for p in model.encoder.parameters())
    save_pruned(model.encoder.model, structure, args.encoder_dir, source)

    out_config = copy.deepcopy(config)
    encoder_cfg = out_config["model"]["encoder"]
    encoder_cfg.pop("gates", None)
    encoder_cfg.pop("from_config", None)
    encoder_cfg["pretrained"] = os.path.abspath(args.encoder_dir)
    state = {"model": model.state_dict(), "config": out_config}
    for key in ("head", "epochs"):
        if key in ckpt:
            state[key] = ckpt[key]
    save_checkpoint(state, args.output)
    for i, sizes in enumerate(layer_sizes(model.encoder.model)):
        log.info("layer %2d: %s", i, ", ".join(f"{k} {v}" for k, v in sizes.items()))
    log.info("pruned the encoder of %s from %.2fM to %.2fM parameters (sparsity %.1f%%) -> %s, %s", args.input,
             before / 1e6, after / 1e6, 100 * (1 - after / before), args.encoder_dir, args.output)


if __name__ == "__main__":
    run_main(main)
