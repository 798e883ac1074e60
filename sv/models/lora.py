"""LoRA (Hu et al. 2022) on a transformers encoder with peft: W' = W + (alpha / r) B A on the chosen linear
layers, by default the attention query and value projections, as the w2v-BERT 2.0 paper does (r=64, alpha=128).

`add_lora` wraps the target layers in place; parameter names gain `.base_layer.` and `.lora_A/B.default.`.
`merge_lora` folds the update into the base weights and puts the plain layers back, so the merged model has
the parameter names (and the state dict) of the encoder without LoRA; sv.bin.merge_lora does it on a checkpoint.
"""
from __future__ import annotations

import logging
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)

# Attention query/value projections by transformers model type: w2v-BERT's conformer names them linear_q/v.
QUERY_VALUE = {"wav2vec2-bert": ["linear_q", "linear_v"]}
DEFAULT_QUERY_VALUE = ["q_proj", "v_proj"]


def _attention_through_projections(self: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None,
                                   gated_position_bias: torch.Tensor) -> tuple[torch.Tensor, None]:
    """WavLMAttention.torch_multi_head_self_attention, with q/k/v/out computed by calling the projection
    modules. transformers passes their raw weights to F.multi_head_attention_forward, so a LoRA wrapper around
    q_proj would never run; the arithmetic is otherwise the same (scaled dot product plus the gated relative
    position bias, padded keys masked)."""
    bsz, tgt_len, _ = hidden_states.shape

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.view(bsz, tgt_len, self.num_heads, self.head_dim).transpose(1, 2)

    q, k, v = heads(self.q_proj(hidden_states)), heads(self.k_proj(hidden_states)), heads(self.v_proj(hidden_states))
    bias = gated_position_bias.view(bsz, self.num_heads, tgt_len, tgt_len).to(q.dtype)
    if attention_mask is not None:
        bias = bias.masked_fill(attention_mask.ne(1)[:, None, None, :], float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
    return self.out_proj(out.transpose(1, 2).reshape(bsz, tgt_len, self.embed_dim)), None


def _route_wavlm_attention(model: nn.Module) -> None:
    from transformers.models.wavlm.modeling_wavlm import WavLMAttention

    for module in model.modules():
        if isinstance(module, WavLMAttention):
            module.torch_multi_head_self_attention = types.MethodType(_attention_through_projections, module)


def add_lora(model: nn.Module, r: int, alpha: float, dropout: float = 0.0,
             target_modules: list[str] | None = None) -> None:
    """LoRA on `model` (a transformers PreTrainedModel), in place. target_modules: module name suffixes
    (peft's matching); None: the query and value projections of the model's attention.

    Leaves requires_grad of the other parameters as it found them (peft would freeze them all); the caller
    decides what trains."""
    from peft import LoraConfig, inject_adapter_in_model  # peft imports transformers: seconds

    if r < 1:
        raise ValueError(f"lora.r must be >= 1, got {r}")
    if target_modules is None:
        target_modules = QUERY_VALUE.get(model.config.model_type, DEFAULT_QUERY_VALUE)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    if model.config.model_type == "wavlm":
        _route_wavlm_attention(model)
    try:
        inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                           target_modules=list(target_modules), bias="none"), model)
    except ValueError as e:  # peft: "Target modules {...} not found in the base model"
        if getattr(model.config, "sv_pruned", False):  # pruning may have removed every attention
            log.warning("lora: the pruned encoder has none of %s left: no LoRA", target_modules)
            return
        raise ValueError(f"lora.target_modules {target_modules}: {e}") from e
    for name, p in model.named_parameters():
        if "lora_" not in name:
            p.requires_grad_(name.replace(".base_layer", "") in trainable)


def lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from peft.tuners.lora import LoraLayer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA layer of `model` into its base layer and replace it by that layer; returns how many."""
    layers = lora_layers(model)
    for name, layer in layers:
        layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.get_base_layer())
    return len(layers)
