#!/usr/bin/env python3
"""Save a tiny randomly initialised transformers speech encoder, loadable with from_pretrained(OUT_DIR).

The mini recipe (egs/mini/run_ssl.sh) and the tests stand it in for a real pre-trained model such as
microsoft/wavlm-base-plus: same code path (config.json, weights, preprocessor_config.json), no download.
It is not pre-trained, so the systems built on it learn everything from the mini corpus.

  python local/make_tiny_ssl_model.py [--type wavlm] [--hidden-size 64] [--num-layers 3] OUT_DIR
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)

TYPES = ("wavlm", "hubert", "wav2vec2", "data2vec-audio", "w2v-bert")


def tiny_config(model_type: str, hidden_size: int, num_layers: int, num_heads: int) -> Any:
    """A small config of model_type; waveform models get a 2-layer CNN front end downsampling 320x (20 ms
    frames, as the real ones), layer-normalised so that padded batches can use an attention mask."""
    from transformers import (Data2VecAudioConfig, HubertConfig, Wav2Vec2BertConfig, Wav2Vec2Config,
                              WavLMConfig)

    common = dict(hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
                  intermediate_size=2 * hidden_size)
    conv = dict(conv_dim=(32, 32), conv_stride=(20, 16), conv_kernel=(40, 32), feat_extract_norm="layer")
    if model_type == "w2v-bert":
        return Wav2Vec2BertConfig(**common, output_hidden_size=hidden_size, conv_depthwise_kernel_size=5)
    if model_type == "data2vec-audio":
        return Data2VecAudioConfig(**common, conv_dim=(32, 32), conv_stride=(20, 16), conv_kernel=(40, 32),
                                   num_conv_pos_embeddings=2, conv_pos_kernel_size=5)
    pos = dict(num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    if model_type == "wavlm":
        return WavLMConfig(**common, **conv, **pos, num_buckets=32, max_bucket_distance=128)
    return {"hubert": HubertConfig, "wav2vec2": Wav2Vec2Config}[model_type](**common, **conv, **pos)


def save_tiny_model(out_dir: str, model_type: str = "wavlm", hidden_size: int = 64, num_layers: int = 3,
                    num_heads: int = 4, seed: int = 0) -> None:
    import torch
    from transformers import AutoModel, SeamlessM4TFeatureExtractor, Wav2Vec2FeatureExtractor

    if model_type not in TYPES:
        raise ValueError(f"unknown model type {model_type!r}; choose from {', '.join(TYPES)}")
    torch.manual_seed(seed)
    AutoModel.from_config(tiny_config(model_type, hidden_size, num_layers, num_heads)).save_pretrained(out_dir)
    extractor = (SeamlessM4TFeatureExtractor() if model_type == "w2v-bert"
                 else Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True))
    extractor.save_pretrained(out_dir)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", help="output: directory for config.json, model.safetensors, preprocessor_config.json")
    p.add_argument("--type", default="wavlm", choices=TYPES, help="model family (default: %(default)s)")
    p.add_argument("--hidden-size", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--num-layers", type=int, default=3, help="transformer layers (default: %(default)s)")
    p.add_argument("--num-heads", type=int, default=4, help="attention heads (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    save_tiny_model(args.out_dir, args.type, args.hidden_size, args.num_layers, args.num_heads, args.seed)
    log.info("saved a tiny random %s (%d layers of %d) to %s", args.type, args.num_layers, args.hidden_size,
             args.out_dir)


if __name__ == "__main__":
    main()
