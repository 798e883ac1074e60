"""L-TDNN and the last-layer baselines (ltdnn, last_layer_mean, cls_token) on random hidden states, and
SSLEncoder's [CLS] token on a tiny random WavLM saved to and loaded from a local directory."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, Data2VecAudioConfig, Wav2Vec2Config, Wav2Vec2FeatureExtractor, WavLMConfig

from sv.models.registry import build_model
from sv.models.ssl_encoder import SSLEncoder

L, D = 13, 32  # WavLM Base+'s 13 hidden states, a tiny hidden size
SMALL = dict(channels=32, agg_dim=64, heads=8, se_bottleneck_dim=16, attention_dim=16)  # for training speed

# as tests/test_ssl_encoder.py's CONFIGS: two convs, 20x downsampling
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8))
CONFIGS = {
    "wavlm": lambda: WavLMConfig(**TINY, feat_extract_norm="layer", num_conv_pos_embeddings=16,
                                 num_conv_pos_embedding_groups=2, num_buckets=16, max_bucket_distance=64),
    "data2vec_audio": lambda: Data2VecAudioConfig(**TINY, num_conv_pos_embeddings=2, conv_pos_kernel_size=5),
    "wav2vec2_group_norm": lambda: Wav2Vec2Config(**TINY, feat_extract_norm="group", num_conv_pos_embeddings=16,
                                                  num_conv_pos_embedding_groups=2),
}


def save_tiny(name: str, root: Path) -> str:
    torch.manual_seed(0)
    path = root / name
    AutoModel.from_config(CONFIGS[name]()).save_pretrained(path)
    # as the hub's models: those with a layer-normalised CNN were trained with attention masks
    layer_norm = getattr(CONFIGS[name](), "feat_extract_norm", "layer") == "layer"
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=layer_norm).save_pretrained(path)
    return str(path)


def hidden(batch: int, frames: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, frames, D, generator=g) for _ in range(L)]


def backend(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model({"name": name, "num_layers": L, "hidden_size": D, **kwargs})


@pytest.mark.parametrize("name,kwargs,dim", [("ltdnn", {}, 192), ("ltdnn", {"embed_dim": 64}, 64),
                                             ("last_layer_mean", {}, D), ("last_layer_mean", {"embed_dim": 16}, 16),
                                             ("cls_token", {}, D), ("cls_token", {"embed_dim": 16}, 16)])
def test_output_shape(name, kwargs, dim):
    model = backend(name, **kwargs).eval()
    assert model.embed_dim == dim
    with torch.no_grad():
        assert model(hidden(3, 40), torch.tensor([40, 25, 9])).shape == (3, dim)
        assert model(hidden(2, 40)).shape == (2, dim)
    with pytest.raises(ValueError, match="hidden states"):
        model(hidden(2, 40)[1:])


@pytest.mark.parametrize("name", ["ltdnn", "last_layer_mean"])
def test_padding_does_not_change_embedding(name):
    model = backend(name).eval()
    short, long = hidden(1, 37, seed=1), hidden(1, 60, seed=2)
    # garbage, not zeros, past the short utterance's end: padding must not be read at all
    batch = [torch.cat([l, torch.cat([s, 5 * torch.randn(1, 23, D)], 1)]) for s, l in zip(short, long)]
    with torch.no_grad():
        alone = model(short, torch.tensor([37]))
        padded = model(batch, torch.tensor([60, 37]))
    assert (padded[1] - alone[0]).abs().max() < 1e-4
    assert (padded[0] - alone[0]).abs().max() > 1e-3  # the two utterances do differ


def test_cls_token_backend_reads_frame_zero():
    model = backend("cls_token").eval()
    states = hidden(2, 10)
    torch.testing.assert_close(model(states, torch.tensor([10, 4])), states[-1][:, 0])


def test_ltdnn_bf16_autocast():
    model = backend("ltdnn", **SMALL).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model([h.bfloat16() for h in hidden(2, 30)], torch.tensor([30, 20]))
    assert out.shape == (2, 192) and torch.isfinite(out.float()).all()


def test_ltdnn_learns():
    model = backend("ltdnn", embed_dim=32, **SMALL)
    classifier = torch.nn.Linear(32, 4)
    states, lengths = hidden(8, 30), torch.tensor([30, 28, 25, 30, 20, 30, 27, 22])
    labels = torch.arange(8) % 4
    opt = torch.optim.Adam([*model.parameters(), *classifier.parameters()], lr=1e-3)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(classifier(model(states, lengths)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_ltdnn_parameter_count_is_two_thirds_of_ecapa():
    """The paper's Fig. 4: L-TDNN is about two-thirds of the SUPERB ECAPA-TDNN back-end (c512, 192-dim)."""
    ltdnn = build_model({"name": "ltdnn", "num_layers": 13, "hidden_size": 768})
    ecapa = build_model({"name": "ecapa_tdnn", "feat_dim": 768, "channels": 512, "embed_dim": 192})
    ratio = sum(p.numel() for p in ltdnn.parameters()) / sum(p.numel() for p in ecapa.parameters())
    assert 0.6 < ratio < 0.8


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ssl")
    return {name: save_tiny(name, root) for name in CONFIGS}


@pytest.mark.parametrize("name", ["wavlm", "data2vec_audio"])
def test_cls_token_prepended_and_padding_free(tiny_models, name):
    enc = SSLEncoder(pretrained=tiny_models[name], cls_token=True).eval()
    plain = SSLEncoder(pretrained=tiny_models[name]).eval()
    torch.manual_seed(1)
    short, long = torch.randn(2700), torch.randn(4000)
    batch = torch.zeros(2, 4000)
    batch[0], batch[1, :2700] = long, short
    with torch.no_grad():
        alone, alone_len = enc(short[None])
        padded, padded_len = enc(batch, torch.tensor([4000, 2700]))
        reference, reference_len = plain(short[None])
    assert alone_len.tolist() == [reference_len[0] + 1] and padded_len[1] == alone_len[0]
    assert all(h.shape[1] == reference[0].shape[1] + 1 for h in alone)
    assert all(h.shape[1] == padded_len[0] for h in padded)
    assert (alone[-1][0, 0] - padded[-1][1, 0]).abs().max() < 1e-4
    n = int(alone_len[0])
    for a, p in zip(alone, padded):
        assert (a[0, :n] - p[1, :n]).abs().max() < 1e-4
    assert (alone[-1][0, 1:] - reference[-1][0]).abs().max() > 1e-3  # the frames attend to the token


def test_cls_token_without_attention_mask(tiny_models):
    enc = SSLEncoder(pretrained=tiny_models["wav2vec2_group_norm"], cls_token=True).eval()
    assert not enc.use_attention_mask
    samples = torch.tensor([4000, 3000])
    with torch.no_grad():
        states, lengths = enc(torch.randn(2, 4000), samples)
    frames = ((samples - 10) // 5 + 1 - 8) // 4 + 1
    assert lengths.tolist() == (frames + 1).tolist() and all(h.shape[:2] == (2, frames[0] + 1) for h in states)


def test_cls_token_gets_gradient(tiny_models):
    enc = SSLEncoder(pretrained=tiny_models["wavlm"], cls_token=True)
    head = build_model({"name": "cls_token", "num_layers": 3, "hidden_size": 32, "embed_dim": 8})
    states, lengths = enc(torch.randn(2, 3000), torch.tensor([3000, 2000]))
    head(states, lengths).pow(2).sum().backward()
    assert enc.cls_token.grad is not None and enc.cls_token.grad.abs().sum() > 0


def test_without_cls_token_output_is_the_models(tiny_models):
    enc = SSLEncoder(pretrained=tiny_models["wavlm"], normalize=False).eval()
    assert enc.cls_token is None and not enc.model.encoder._forward_pre_hooks
    x = torch.randn(1, 3000)
    with torch.no_grad():
        states, _ = enc(x)
        reference = enc.model(x, attention_mask=torch.ones_like(x, dtype=torch.long), output_hidden_states=True)
    for s, r in zip(states, reference.hidden_states):
        torch.testing.assert_close(s, r, atol=0, rtol=0)
