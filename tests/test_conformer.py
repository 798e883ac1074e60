"""Conformer encoder (NeMo layout) and MFA-Conformer: shapes, masking, relative positions, gradients,
and parameter counts against NeMo and Cai & Li (asr-conformer-transfer-kd-adaptor, Tables II-VI).
"""
import math
from pathlib import Path

import pytest
import torch

from sv.config import load_config
from sv.models.conformer import ConformerEncoder, RelPositionMultiHeadAttention, rel_shift, sinusoids
from sv.models.registry import build_model

CONF = Path(__file__).resolve().parents[1] / "egs" / "voxceleb" / "conf"
TINY = {"feat_dim": 80, "d_model": 32, "num_layers": 3, "num_heads": 4, "conv_kernel": 7}


def count_params(cfg: dict) -> float:
    """Millions of parameters, built on the meta device: no memory, no initialisation."""
    with torch.device("meta"):
        model = build_model(cfg)
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize("cfg, millions", [
    # NeMo stt_en_conformer_ctc_{small,medium,large} encoders (pre-encode included, CTC decoder not)
    ({"name": "conformer", "size": "small"}, 12.97),
    ({"name": "conformer", "size": "medium"}, 30.51),
    ({"name": "conformer", "size": "large"}, 121.44),
    # Tables IV-VI: the encoder truncated to its first L blocks
    ({"name": "conformer", "size": "small", "num_layers_to_keep": 4}, 3.92),
    ({"name": "conformer", "size": "medium", "num_layers_to_keep": 10}, 17.79),
    ({"name": "conformer", "size": "large", "num_layers_to_keep": 14}, 96.14),
    # Table II
    ({"name": "mfa_conformer", "size": "small"}, 15.88),
    ({"name": "mfa_conformer", "size": "medium"}, 35.26),
    ({"name": "mfa_conformer", "size": "large"}, 130.94),
    ({"name": "mfa_conformer", "size": "large", "num_layers_to_keep": 4}, 35.02),
    ({"name": "mfa_conformer", "size": "large", "num_layers_to_keep": 6}, 48.72),
    ({"name": "mfa_conformer", "size": "large", "num_layers_to_keep": 8}, 62.42),
    # Table III: "Half" models, half the blocks at x2 subsampling
    ({"name": "mfa_conformer", "size": "small", "num_layers_to_keep": 8, "subsampling_factor": 2}, 8.73),
    ({"name": "mfa_conformer", "size": "medium", "num_layers_to_keep": 9, "subsampling_factor": 2}, 19.30),
    ({"name": "mfa_conformer", "size": "large", "num_layers_to_keep": 9, "subsampling_factor": 2}, 72.16),
])
def test_parameter_counts(cfg, millions):
    assert count_params(cfg) == pytest.approx(millions, rel=5e-3)


@pytest.mark.parametrize("name, millions", [
    ("mfa_conformer_small", 15.88), ("mfa_conformer_medium", 35.26),
    ("mfa_conformer_large", 130.94), ("mfa_conformer_large_6l", 48.72),
])
def test_recipe_configs(name, millions):
    assert count_params(load_config(CONF / f"{name}.yaml")["model"]) == pytest.approx(millions, rel=5e-3)


def test_size_preset_and_overrides():
    enc = ConformerEncoder(size="small", num_heads=8, num_layers_to_keep=2)
    assert (enc.d_model, enc.num_layers, enc.layers[0].self_attn.h) == (176, 2, 8)
    with pytest.raises(ValueError, match="missing"):
        ConformerEncoder(d_model=64)
    with pytest.raises(ValueError, match="num_layers_to_keep"):
        ConformerEncoder(size="small", num_layers_to_keep=17)


@pytest.mark.parametrize("factor, frames", [(4, [51, 38]), (2, [102, 75])])
def test_encoder_outputs(factor, frames):
    enc = ConformerEncoder(**TINY, subsampling_factor=factor).eval()
    with torch.no_grad():
        outputs, lengths = enc(torch.randn(2, 203, 80), torch.tensor([203, 150]))
    assert len(outputs) == TINY["num_layers"]
    assert all(o.shape == (2, frames[0], TINY["d_model"]) for o in outputs)
    assert lengths.tolist() == frames


def test_embedding_shape():
    model = build_model({"name": "mfa_conformer", **TINY, "embed_dim": 48}).eval()
    with torch.no_grad():
        emb = model(torch.randn(3, 120, 80))
    assert model.embed_dim == 48 and emb.shape == (3, 48)


@pytest.mark.parametrize("factor", [4, 2])
def test_padding_does_not_change_an_utterance(factor):
    torch.manual_seed(0)
    model = build_model({"name": "mfa_conformer", **TINY, "subsampling_factor": factor}).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    short, long = torch.randn(1, 37, 80), torch.randn(1, 90, 80)
    batch = torch.cat([torch.cat([short, 100 * torch.randn(1, 53, 80)], dim=1), long])  # loud garbage padding
    with torch.no_grad():
        alone = model(short)
        batched = model(batch, torch.tensor([37, 90]))
        layers_alone, n = model.encoder(short)
        layers_batched, _ = model.encoder(batch, torch.tensor([37, 90]))
    assert (alone - batched[:1]).abs().max() < 1e-4
    for a, b in zip(layers_alone, layers_batched):
        assert (a - b[:1, :n[0]]).abs().max() < 1e-4


def test_rel_shift_against_index():
    t = 5
    x = torch.randn(2, 3, t, 2 * t - 1)
    shifted = rel_shift(x)
    # column k of x is relative position t-1-k; out[i, j] must be position i - j
    expected = torch.stack([torch.stack([x[..., i, t - 1 - (i - j)] for j in range(t)], -1) for i in range(t)], -2)
    assert torch.equal(shifted, expected)


def test_rel_position_attention_against_direct_computation():
    torch.manual_seed(0)
    d, h, t = 16, 2, 6
    att = RelPositionMultiHeadAttention(d, h, dropout=0.0).eval()
    torch.nn.init.normal_(att.pos_bias_u)
    torch.nn.init.normal_(att.pos_bias_v)
    x = torch.randn(2, t, d)
    valid = torch.tensor([[True] * t, [True] * 4 + [False] * 2])
    pos_emb = sinusoids(torch.arange(t - 1, -t, -1), d).unsqueeze(0)
    with torch.no_grad():
        out = att(x, pos_emb, valid)
        d_k = d // h
        q, k, v = (lin(x).view(2, t, h, d_k) for lin in (att.linear_q, att.linear_k, att.linear_v))
        expected = torch.zeros(2, t, h, d_k)
        for b in range(2):
            for i in range(t):
                for hd in range(h):
                    scores = []
                    for j in range(t):
                        r = att.linear_pos(sinusoids(torch.tensor([i - j]), d)).view(h, d_k)[hd]
                        s = (q[b, i, hd] + att.pos_bias_u[hd]) @ k[b, j, hd] + (q[b, i, hd] + att.pos_bias_v[hd]) @ r
                        scores.append(s / math.sqrt(d_k) if valid[b, j] else torch.tensor(float("-inf")))
                    w = torch.softmax(torch.stack(scores), 0)
                    expected[b, i, hd] = (w[:, None] * v[b, :, hd]).sum(0)
        expected = att.linear_out(expected.reshape(2, t, d))
    assert (out - expected).abs().max() < 1e-5


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = build_model({"name": "mfa_conformer", **TINY}).train()
    model(torch.randn(3, 64, 80), torch.tensor([64, 50, 41])).pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
