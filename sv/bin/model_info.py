"""Print the size and cost of the model a config describes: its name, total and trainable parameters, and
the multiply-accumulates (MACs) of embedding one second of input, i.e. 100 frames (10 ms shift) of
feat_dim features, or 16000 samples for a model that reads audio, counted by
torch.utils.flop_counter (matrix products and convolutions; MACs = FLOPs / 2). For an `ssl_speaker` model
the encoder, LoRA and back-end parameters are also given apart, and for a pruned encoder (sv.bin.prune_encoder)
the heads, FFN units and convolution channels each layer kept.

Input: a YAML config (plus KEY=VALUE overrides); the model is built from its `model:` section through the
model registry, as training builds it. With --random-init a pre-trained encoder is built from its config.json
alone (model.encoder.from_config), so counting needs no weights: point model.encoder.pretrained at a directory
holding that config.json, e.g. conf/ssl_arch/w2v-bert-2.0. Output: a table on stdout, or one JSON object
with --json.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from sv.cli import run_main
from sv.config import load_config
from sv.data.table import DataError
from sv.models.pruning import layer_sizes
from sv.models.registry import build_model

FRAMES_PER_SECOND = 100
SAMPLES_PER_SECOND = 16000


def _count(params: Any) -> int:
    return sum(p.numel() for p in params)


def model_info(model: nn.Module, feat_dim: int | None = None) -> dict[str, Any]:
    """params, trainable_params, macs_per_second and input_shape of a model taking feat_dim features or, with
    input_kind "waveform", audio; plus encoder_params, lora_params and backend_params for an ssl_speaker."""
    takes_audio = getattr(model, "input_kind", "features") == "waveform"
    shape = [1, SAMPLES_PER_SECOND] if takes_audio else [1, FRAMES_PER_SECOND, feat_dim]
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(shape))
    info = {
        "params": _count(model.parameters()),
        "trainable_params": _count(p for p in model.parameters() if p.requires_grad),
        "macs_per_second": counter.get_total_flops() // 2,
        "input_shape": shape,
    }
    if hasattr(model, "backend"):  # ssl_speaker
        encoder = dict(model.encoder.named_parameters())
        info["lora_params"] = _count(p for n, p in encoder.items() if "lora_" in n)
        info["encoder_params"] = _count(encoder.values()) - info["lora_params"]
        info["backend_params"] = _count(model.backend.parameters())
        config = model.encoder.model.config
        if getattr(config, "sv_pruned", False):
            info["pruned_layers"] = layer_sizes(model.encoder.model)
            info["unpruned_layer"] = {"heads": config.num_attention_heads, "ffn": config.intermediate_size,
                                      "conv": config.hidden_size}
    return info


def format_table(info: dict[str, Any]) -> str:
    shape = " x ".join(map(str, info["input_shape"]))
    rows = [
        ("model", info["name"]),
        ("parameters", f"{info['params']:,} ({info['params'] / 1e6:.2f} M)"),
        ("trainable parameters", f"{info['trainable_params']:,} ({info['trainable_params'] / 1e6:.2f} M)"),
        ("MACs per second", f"{info['macs_per_second']:,} ({info['macs_per_second'] / 1e9:.2f} G, input {shape})"),
    ]
    for part in ("encoder", "lora", "backend"):
        if f"{part}_params" in info:
            n = info[f"{part}_params"]
            rows.append((f"  {part}", f"{n:,} ({n / 1e6:.2f} M)"))
    text = "\n".join(f"{key:<22}{value}" for key, value in rows)
    if "pruned_layers" in info:
        full = info["unpruned_layer"]
        names = list(info["pruned_layers"][0])
        lines = ["", "pruned encoder, kept per layer (of " + ", ".join(
            f"{full['ffn' if n.startswith('ffn') else n]} {n}" for n in names) + "):",
            "layer  " + "  ".join(f"{n:>6}" for n in names)]
        lines += [f"{i:>5}  " + "  ".join(f"{row[n]:>6}" for n in names) for i, row in enumerate(info["pruned_layers"])]
        text += "\n".join(lines)
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sv.bin.model_info", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m sv.bin.model_info --config conf/ecapa_tdnn_c512.yaml model.channels=1024 --json")
    p.add_argument("--config", required=True,
                   help="input: YAML config; its `model:` section holds `name`, `feat_dim` (fbank models) and the "
                        "model's arguments")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. model.embed_dim=256 (+key=value adds a key)")
    p.add_argument("--random-init", action="store_true",
                   help="build a pre-trained encoder from its config.json with random weights (sets "
                        "model.encoder.from_config)")
    p.add_argument("--json", action="store_true",
                   help="output: one JSON object on stdout (name, params, trainable_params, macs_per_second, "
                        "input_shape) instead of the default table")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    model_cfg = cfg.get("model")
    if not isinstance(model_cfg, dict) or "name" not in model_cfg:
        raise DataError(f"{args.config}: needs a `model:` section with `name`")
    if args.random_init:
        if isinstance(model_cfg.get("encoder"), dict):  # ssl_speaker
            model_cfg["encoder"]["from_config"] = True
        elif model_cfg.get("pretrained") or model_cfg.get("asr"):  # on an imported ASR model
            model_cfg["from_config"] = True
        else:
            raise DataError(f"{args.config}: --random-init is for models on a pre-trained encoder (an `encoder:` "
                            "section, or `pretrained:` / `asr:` naming an imported ASR model)")
    try:
        model = build_model(model_cfg)
    except (ValueError, OSError) as e:
        raise DataError(f"{args.config}: {e}") from e
    if getattr(model, "input_kind", "features") != "waveform" and "feat_dim" not in model_cfg:
        raise DataError(f"{args.config}: the `model:` section needs `feat_dim`")
    info = {"name": model_cfg["name"], **model_info(model, model_cfg.get("feat_dim"))}
    print(json.dumps(info) if args.json else format_table(info))


if __name__ == "__main__":
    run_main(main)
