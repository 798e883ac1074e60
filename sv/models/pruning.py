"""Structured pruning of a pre-trained speech encoder (w2v-bert2-lora-adapter-mfa-pruning.txt, section 2.6; the
method of Han et al. and the L0 relaxation of Louizos et al.): Hard Concrete gates on each layer's attention
heads, FFN intermediate units and (w2v-BERT's Conformer layers) convolution-module channels, then physical
removal of what the gates closed.

Gates scale the input of the linear map that consumes a group (the attention output projection, the FFN output
layer, the convolution module's last pointwise convolution), through a forward pre-hook on that module, which keeps
its parameter names (so unpruned checkpoints load into the gated model): transformers' code is neither copied nor
patched. The convolution module's depthwise LayerNorm normalises over channels, so a closed
channel would still count in its statistics; the gated model computes them over the open channels only, which
is what the pruned model, without those channels, computes. A layer's gates are sampled once per forward pass
while training and deterministic at evaluation: z = clamp(sigmoid(log_alpha) (zeta - gamma) + gamma, 0, 1), whose
clamp at 0 closes a group for good. `prune` folds the deterministic gates into the next layer's weights and
removes the closed groups, so the pruned encoder computes what the gated one does.

Supported: w2v-BERT 2.0 (heads, FFN 1 and 2, convolution channels), WavLM (heads, FFN), HuBERT, wav2vec 2.0 and
data2vec-audio (heads, FFN). A pruned model keeps its per-layer sizes in STRUCTURE_FILE beside config.json, which
`apply_structure` reads back before the weights are loaded.
"""
from __future__ import annotations

import json
import math
import shutil
import types
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from sv.data.table import atomic_dir

STRUCTURE_FILE = "sv_pruned_structure.json"
WEIGHTS_FILE = "model.safetensors"
BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1  # the paper's temperature and stretch (Louizos et al.)
GROUPS = ("heads", "ffn1", "ffn2", "conv")


class HardConcreteGate(nn.Module):
    """n stochastic gates in [0, 1] with learnable log_alpha; `sample()` draws this pass's gates into `z`."""

    def __init__(self, n: int, init: float = 3.0):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((n,), float(init)) + 0.01 * torch.randn(n))
        self.z: torch.Tensor | None = None

    def deterministic(self) -> torch.Tensor:
        return (torch.sigmoid(self.log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def sample(self) -> torch.Tensor:
        if self.training:
            u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / BETA)
            self.z = (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)
        else:
            self.z = self.deterministic()
        return self.z

    def expected_open(self) -> torch.Tensor:
        """P(z_j > 0) for each gate: the expected L0 norm's terms (the paper's eq. 8)."""
        return torch.sigmoid(self.log_alpha - BETA * math.log(-GAMMA / ZETA))


def gate_input(module: nn.Module, gate: HardConcreteGate, group: int = 1, dim: int = -1) -> None:
    """Scale the input of `module` (groups of `group` features along `dim`) by the gate's z, with a forward pre-hook;
    the gate becomes `module.gate`, so the module and its parameter names stay what they were."""
    module.gate = gate

    def hook(mod: nn.Module, args: tuple) -> tuple:
        x = args[0]
        shape = [1] * x.dim()
        shape[dim] = -1
        return (x * mod.gate.z.to(x.dtype).repeat_interleave(group).view(shape), *args[1:])

    module._sv_gate_hook = module.register_forward_pre_hook(hook)


def _gate_of(module: nn.Module) -> HardConcreteGate | None:
    return getattr(module, "gate", None)


class OpenChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels whose gate is open (z > 0); the closed ones are normalised with the same
    statistics (their output is scaled by zero downstream). It keeps the LayerNorm's parameters and their names."""

    def __init__(self, norm: nn.LayerNorm, gate: HardConcreteGate):
        super().__init__(norm.normalized_shape, eps=norm.eps)
        self.weight, self.bias = norm.weight, norm.bias
        self.__dict__["gate"] = gate  # registered on the convolution that consumes these channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        open_ = (self.gate.z > 0).to(x.dtype)
        n = open_.sum().clamp(min=1)
        mean = (x * open_).sum(-1, keepdim=True) / n
        var = ((x - mean) ** 2 * open_).sum(-1, keepdim=True) / n
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class Zeros(nn.Module):
    """Stands in for a sub-module all of whose groups were pruned: its output is constant (`bias`, or zero)."""

    def __init__(self, bias: torch.Tensor | None = None, returns_tuple: bool = False):
        super().__init__()
        self.register_buffer("bias", bias.detach().clone() if bias is not None else None)
        self.returns_tuple = returns_tuple

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = torch.zeros_like(hidden_states)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return (out, None) if self.returns_tuple else out


# -------------------------------------------------------------------------------------- per-family layout

def _attention(layer: nn.Module) -> nn.Module:
    return layer.self_attn if hasattr(layer, "self_attn") else layer.attention


def _attn_parts(attn: nn.Module) -> tuple[list[str], str, int, int]:
    """(query/key/value names, output name, heads, head size)."""
    if hasattr(attn, "linear_q"):  # w2v-BERT
        return ["linear_q", "linear_k", "linear_v"], "linear_out", attn.num_heads, attn.head_size
    return ["q_proj", "k_proj", "v_proj"], "out_proj", attn.num_heads, attn.head_dim


# the FFN groups and the layer attribute holding each: w2v-BERT's macaron pair, or the single feed-forward
def _ffn_names(layer: nn.Module) -> dict[str, str]:
    return {"ffn1": "ffn1", "ffn2": "ffn2"} if hasattr(layer, "ffn1") else {"ffn1": "feed_forward"}


def _ffns(layer: nn.Module) -> dict[str, nn.Module]:
    return {name: getattr(layer, attr) for name, attr in _ffn_names(layer).items()}


def layer_size(layer: nn.Module) -> dict[str, int]:
    """The heads, FFN units and convolution channels one encoder layer has now (pruned or not)."""
    attn = _attention(layer)
    row = {"heads": 0 if isinstance(attn, (Zeros, _EmptyWavLMAttention)) else attn.num_heads}
    for name, ffn in _ffns(layer).items():
        row[name] = 0 if isinstance(ffn, Zeros) else ffn.intermediate_dense.out_features
    if hasattr(layer, "conv_module"):
        row["conv"] = 0 if isinstance(layer.conv_module, Zeros) else layer.conv_module.depthwise_conv.out_channels
    return row


def layer_sizes(model: nn.Module) -> list[dict[str, int]]:
    return [layer_size(layer) for layer in model.encoder.layers]


def group_params(layer: nn.Module) -> dict[str, int]:
    """Parameters one member of each group holds (what closing it removes)."""
    attn = _attention(layer)
    qkv, _, heads, head_size = _attn_parts(attn)
    d = getattr(attn, qkv[0]).in_features
    out = {"heads": 4 * d * head_size + 3 * head_size}  # q, k, v rows with biases; the output's columns
    out.update({name: 2 * d + 1 for name in _ffns(layer)})  # a unit's input row, bias, output column
    if hasattr(layer, "conv_module"):
        k = layer.conv_module.depthwise_conv.kernel_size[0]
        out["conv"] = 2 * d + k + 2 + d  # GLU's two rows, its depthwise kernel, LayerNorm, the last column
    return out


# -------------------------------------------------------------------------------------------------- gates

def add_gates(model: nn.Module, init: float = 3.0) -> list[dict[str, HardConcreteGate]]:
    """Wrap every layer's prunable groups with Hard Concrete gates, in place; returns them per layer."""
    if model.config.model_type == "wavlm":
        from sv.models.lora import _route_wavlm_attention  # its out_proj must be a module call to be wrapped
        _route_wavlm_attention(model)
    all_gates = []
    for layer in model.encoder.layers:
        sizes = layer_size(layer)
        gates = {name: HardConcreteGate(n, init) for name, n in sizes.items()}
        attn = _attention(layer)
        _, out_name, _, head_size = _attn_parts(attn)
        gate_input(getattr(attn, out_name), gates["heads"], head_size)
        for name, ffn in _ffns(layer).items():
            gate_input(ffn.output_dense, gates[name])
        if "conv" in gates:
            conv = layer.conv_module
            gate_input(conv.pointwise_conv2, gates["conv"], dim=1)
            conv.depthwise_layer_norm = OpenChannelLayerNorm(conv.depthwise_layer_norm, gates["conv"])
        layer._sv_gate_sampler = layer.register_forward_pre_hook(_sampler(tuple(gates.values())))
        all_gates.append(gates)
    return all_gates


def _sampler(gates: tuple[HardConcreteGate, ...]):
    """A forward pre-hook drawing all of a layer's gates once per pass (returns None: the inputs stay)."""
    def hook(module: nn.Module, args: Any) -> None:
        for gate in gates:
            gate.sample()
    return hook


def layer_gates(model: nn.Module) -> list[dict[str, HardConcreteGate]]:
    """The gates add_gates put on each layer (empty dicts when the model has none)."""
    out = []
    for layer in model.encoder.layers:
        attn = _attention(layer)
        consumers = {}
        if not isinstance(attn, (Zeros, _EmptyWavLMAttention)):
            consumers["heads"] = getattr(attn, _attn_parts(attn)[1])
        consumers.update({name: ffn.output_dense for name, ffn in _ffns(layer).items() if not isinstance(ffn, Zeros)})
        if hasattr(layer, "conv_module") and not isinstance(layer.conv_module, Zeros):
            consumers["conv"] = layer.conv_module.pointwise_conv2
        out.append({name: _gate_of(m) for name, m in consumers.items() if _gate_of(m) is not None})
    return out


def expected_params(model: nn.Module) -> tuple[torch.Tensor, int]:
    """(expected parameters of the gated encoder, its unpruned parameter count), from the gates' P(open)."""
    total = sum(p.numel() for n, p in model.named_parameters() if "log_alpha" not in n)
    expected = torch.zeros((), device=next(model.parameters()).device)
    for layer, gates in zip(model.encoder.layers, layer_gates(model)):
        per = group_params(layer)
        for name, gate in gates.items():
            expected = expected + per[name] * (gate.expected_open().sum() - gate.log_alpha.numel())
    return expected + total, total


# ---------------------------------------------------------------------------------------- physical pruning

def _rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = nn.Linear(linear.in_features, len(index), bias=linear.bias is not None)
    new.weight.data = linear.weight.data[index].clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data[index].clone()
    return new


def _cols(linear: nn.Linear, index: torch.Tensor, scale: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(index), linear.out_features, bias=linear.bias is not None)
    new.weight.data = (linear.weight.data[:, index] * scale[None, :]).clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data.clone()
    return new


def _head_index(kept: torch.Tensor, head_size: int) -> torch.Tensor:
    return (kept[:, None] * head_size + torch.arange(head_size)[None, :]).reshape(-1)


@torch.no_grad()
def prune(model: nn.Module) -> list[dict[str, Any]]:
    """Remove what the deterministic gates close and fold their values into the next layer; drop the gates.
    Returns the structure: per layer, the kept heads (original indices) and the sizes of the other groups.
    A sub-module with no group left computes a constant and is replaced by one (Zeros)."""
    structure = []
    for layer, gates in zip(model.encoder.layers, layer_gates(model)):
        if not gates:
            raise ValueError("prune: the model has no gates (add_gates)")
        z = {name: gate.deterministic().detach() for name, gate in gates.items()}
        kept = {name: torch.nonzero(v > 0).squeeze(1) for name, v in z.items()}
        _prune_attention(layer, kept["heads"], z["heads"])
        for name, ffn in _ffns(layer).items():
            if len(kept[name]):
                ffn.intermediate_dense = _rows(ffn.intermediate_dense, kept[name])
                ffn.output_dense = _cols(ffn.output_dense, kept[name], z[name][kept[name]])
            else:
                setattr(layer, _ffn_names(layer)[name], Zeros(ffn.output_dense.bias))
        if "conv" in z:
            if len(kept["conv"]):
                _prune_conv(layer.conv_module, kept["conv"], z["conv"][kept["conv"]])
            else:
                layer.conv_module = Zeros()
        structure.append({"heads": kept["heads"].tolist(),
                          **{name: len(kept[name]) for name in z if name != "heads"}})
        layer._sv_gate_sampler.remove()
        del layer._sv_gate_sampler
    model.config.sv_pruned = True  # so that config.json alone says its weights need STRUCTURE_FILE
    return structure


def _prune_attention(layer: nn.Module, kept: torch.Tensor, z: torch.Tensor) -> None:
    attn = _attention(layer)
    qkv, out_name, _, head_size = _attn_parts(attn)
    out = getattr(attn, out_name)
    if not len(kept):
        replacement = _EmptyWavLMAttention(attn, out.bias) if hasattr(attn, "gru_rel_pos_const") \
            else Zeros(out.bias, returns_tuple=True)
        setattr(layer, "self_attn" if hasattr(layer, "self_attn") else "attention", replacement)
        return
    index = _head_index(kept, head_size)
    for name in qkv:
        setattr(attn, name, _rows(getattr(attn, name), index))
    setattr(attn, out_name, _cols(out, index, z[kept].repeat_interleave(head_size)))
    _set_heads(attn, kept)


def _prune_conv(conv: nn.Module, kept: torch.Tensor, scale: torch.Tensor) -> None:
    channels = conv.depthwise_conv.out_channels
    pw1 = conv.pointwise_conv1
    new1 = nn.Conv1d(pw1.in_channels, 2 * len(kept), 1, bias=pw1.bias is not None)
    rows = torch.cat([kept, kept + channels])  # GLU: value half, then gate half
    new1.weight.data = pw1.weight.data[rows].clone()
    if pw1.bias is not None:
        new1.bias.data = pw1.bias.data[rows].clone()
    dw = conv.depthwise_conv
    new_dw = nn.Conv1d(len(kept), len(kept), dw.kernel_size, stride=dw.stride, padding=dw.padding,
                       groups=len(kept), bias=dw.bias is not None)
    new_dw.weight.data = dw.weight.data[kept].clone()
    if dw.bias is not None:
        new_dw.bias.data = dw.bias.data[kept].clone()
    norm = conv.depthwise_layer_norm
    new_norm = nn.LayerNorm(len(kept), eps=norm.eps)
    new_norm.weight.data, new_norm.bias.data = norm.weight.data[kept].clone(), norm.bias.data[kept].clone()
    pw2 = conv.pointwise_conv2
    new2 = nn.Conv1d(len(kept), pw2.out_channels, 1, bias=pw2.bias is not None)
    new2.weight.data = (pw2.weight.data[:, kept] * scale[None, :, None]).clone()
    if pw2.bias is not None:
        new2.bias.data = pw2.bias.data.clone()
    conv.pointwise_conv1, conv.depthwise_conv, conv.depthwise_layer_norm, conv.pointwise_conv2 = new1, new_dw, new_norm, new2


def _set_heads(attn: nn.Module, kept: torch.Tensor) -> None:
    attn.num_heads = len(kept)
    if hasattr(attn, "embed_dim"):  # wav2vec 2.0 family: reshapes use embed_dim
        attn.embed_dim = len(kept) * attn.head_dim
    if hasattr(attn, "gru_rel_pos_const"):  # WavLM: per-head position-bias gates, indexed by original head
        attn.gru_rel_pos_const = nn.Parameter(attn.gru_rel_pos_const.data[:, kept].clone())
        attn.register_buffer("kept_heads", kept.clone())
        attn.forward = types.MethodType(_pruned_wavlm_attention, attn)


class _EmptyWavLMAttention(nn.Module):
    """A WavLM attention with no head left: the output bias, and the position bias passed on to later layers
    (computed here when this is the first layer, which owns the position embedding)."""

    def __init__(self, attn: nn.Module, bias: torch.Tensor | None):
        super().__init__()
        self.zeros = Zeros(bias)
        if hasattr(attn, "rel_attn_embed"):
            self.rel_attn_embed = attn.rel_attn_embed
            self.num_buckets, self.max_distance = attn.num_buckets, attn.max_distance
            self.compute_bias = types.MethodType(type(attn).compute_bias, self)
            self._relative_positions_bucket = types.MethodType(type(attn)._relative_positions_bucket, self)

    def forward(self, hidden_states, attention_mask=None, position_bias=None, index=0, **kwargs):
        if position_bias is None:
            t = hidden_states.shape[1]
            position_bias = self.compute_bias(t, t).unsqueeze(0).repeat(hidden_states.shape[0], 1, 1, 1)
            position_bias = position_bias.view(-1, t, t)
        return self.zeros(hidden_states), None, position_bias


def _pruned_wavlm_attention(self: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                            position_bias: torch.Tensor | None = None, index: int = 0, **kwargs: Any):
    """WavLMAttention.forward with a subset of its heads (`kept_heads`, original indices): the relative position
    bias is computed (first layer) and handed on for all original heads, and each kept head's bias gate reads its
    original slice of the input, as in the full model."""
    bsz, tgt_len, d = hidden_states.shape
    if position_bias is None:
        position_bias = self.compute_bias(tgt_len, tgt_len)
        position_bias = position_bias.unsqueeze(0).repeat(bsz, 1, 1, 1).view(-1, tgt_len, tgt_len)
    total_heads = position_bias.shape[0] // bsz
    head_dim = d // total_heads
    kept = self.kept_heads
    bias = position_bias.view(bsz, total_heads, tgt_len, tgt_len)[:, kept]
    gated = hidden_states.view(bsz, tgt_len, total_heads, head_dim)[:, :, kept].permute(0, 2, 1, 3)
    proj = self.gru_rel_pos_linear(gated).view(gated.shape[:-1] + (2, 4)).sum(-1)
    gate_a, gate_b = torch.sigmoid(proj).chunk(2, dim=-1)
    gate_output = gate_a * (gate_b * self.gru_rel_pos_const - 1.0) + 2.0
    gated_bias = (gate_output * bias).reshape(-1, tgt_len, tgt_len)
    out, _ = self.torch_multi_head_self_attention(hidden_states, attention_mask, gated_bias)
    return out, None, position_bias


@torch.no_grad()
def apply_structure(model: nn.Module, structure: list[dict[str, Any]]) -> None:
    """Give a freshly built (unpruned) model the per-layer sizes of a pruned one, ready for its weights."""
    if len(structure) != len(model.encoder.layers):
        raise ValueError(f"the pruned structure has {len(structure)} layers, the model {len(model.encoder.layers)}")
    for gates, sizes in zip(add_gates(model), structure):
        missing = set(gates) - set(sizes)
        if missing:
            raise ValueError(f"the pruned structure lacks the sizes of {sorted(missing)}")
        for name, gate in gates.items():
            n = gate.log_alpha.numel()
            keep = torch.zeros(n, dtype=torch.bool)
            keep[sizes[name] if name == "heads" else slice(0, sizes[name])] = True
            gate.log_alpha.copy_(torch.where(keep, 20.0, -20.0))  # deterministic z: 1 kept, 0 removed
    prune(model)


def read_structure(model_dir: str) -> list[dict[str, Any]] | None:
    """The per-layer sizes of a pruned encoder directory; None for anything else (a hub id included)."""
    path = Path(model_dir) / STRUCTURE_FILE
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    layers = data.get("layers") if isinstance(data, dict) else None
    if not isinstance(layers, list) or not all(isinstance(x, dict) and "heads" in x for x in layers):
        raise ValueError(f"{path}: expected {{'layers': [{{'heads': [...], 'ffn1': n, ...}}, ...]}}")
    return layers


def read_pruned_weights(model_dir: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    path = Path(model_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the pruned encoder's weights are missing")
    return load_file(str(path))


def save_pruned(model: nn.Module, structure: list[dict[str, Any]], out_dir: str | Path, source: str) -> None:
    """Write a pruned transformers model as a directory SSLEncoder loads: config.json, model.safetensors,
    STRUCTURE_FILE and the source's preprocessor_config.json; complete or not at all."""
    from safetensors.torch import save_file
    from transformers.utils import cached_file

    with atomic_dir(out_dir) as tmp:
        model.config.save_pretrained(tmp)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS_FILE))
        with open(tmp / STRUCTURE_FILE, "w", encoding="utf-8") as f:
            json.dump({"source": source, "layers": structure}, f)
        extractor = cached_file(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
        if extractor is not None:
            shutil.copy(extractor, tmp / "preprocessor_config.json")
