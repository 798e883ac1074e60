"""SSLEncoder on tiny random transformers models saved to and loaded from local directories."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (Data2VecAudioConfig, HubertConfig, SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig,
                          Wav2Vec2Config, Wav2Vec2FeatureExtractor, WavLMConfig, AutoModel)

from sv.models.registry import build_model
from sv.models.ssl_encoder import SSLEncoder, w2vbert_features

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
# two convs, 20x downsampling (16 kHz -> 800 frames/s), so a few thousand samples make enough frames
TINY_CONV = dict(conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                 num_conv_pos_embedding_groups=2)

CONFIGS = {
    "wavlm": lambda: WavLMConfig(**TINY, **TINY_CONV, feat_extract_norm="layer", num_buckets=16, max_bucket_distance=64),
    "hubert": lambda: HubertConfig(**TINY, **TINY_CONV, feat_extract_norm="layer"),
    "wav2vec2": lambda: Wav2Vec2Config(**TINY, **TINY_CONV, feat_extract_norm="layer"),
    "wav2vec2_stable_ln": lambda: Wav2Vec2Config(**TINY, **TINY_CONV, feat_extract_norm="layer", do_stable_layer_norm=True),
    "data2vec_audio": lambda: Data2VecAudioConfig(**TINY, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
                                                  num_conv_pos_embeddings=2, conv_pos_kernel_size=5),
    "w2vbert": lambda: Wav2Vec2BertConfig(**TINY, output_hidden_size=32, conv_depthwise_kernel_size=5),
}


def save_tiny(name: str, root: Path, **overrides) -> str:
    config = CONFIGS[name]()
    for key, value in overrides.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    path = root / name
    AutoModel.from_config(config).save_pretrained(path)
    if name != "w2vbert":
        # as the hub's models: those with a layer-normalised CNN were trained with attention masks
        layer_norm = getattr(config, "feat_extract_norm", "layer") == "layer"
        Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=layer_norm).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ssl")
    return {name: save_tiny(name, root) for name in CONFIGS}


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_hidden_states_and_lengths(tiny_models, name):
    enc = SSLEncoder(pretrained=tiny_models[name]).eval()
    lengths = torch.tensor([4000, 2500])
    with torch.no_grad():
        hidden, out_lengths = enc(torch.randn(2, 4000), lengths)
    assert len(hidden) == enc.num_layers + 1 == 3
    assert all(h.shape[0] == 2 and h.shape[2] == 32 and h.shape[1] == hidden[0].shape[1] for h in hidden)
    assert out_lengths[1] < out_lengths[0] <= hidden[0].shape[1]
    if name == "w2vbert":
        assert out_lengths.tolist() == [(1 + (n - 400) // 160) // 2 for n in lengths.tolist()]
    else:
        frames = ((lengths - 10) // 5 + 1 - 8) // 4 + 1
        assert out_lengths.tolist() == frames.tolist()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_padding_does_not_change_valid_frames(tiny_models, name):
    enc = SSLEncoder(pretrained=tiny_models[name]).eval()
    torch.manual_seed(1)
    short, long = torch.randn(2700), torch.randn(4000)
    batch = torch.zeros(2, 4000)
    batch[0], batch[1, :2700] = long, short
    with torch.no_grad():
        alone, alone_len = enc(short[None])
        padded, padded_len = enc(batch, torch.tensor([4000, 2700]))
    assert padded_len[1] == alone_len[0]
    n = int(alone_len[0])
    for a, p in zip(alone, padded):
        torch.testing.assert_close(p[1, :n], a[0, :n], atol=1e-4, rtol=1e-4)


def test_group_norm_model_zeroes_padding_without_mask(tmp_path):
    """Group-norm models see the padding, as transformers recommends: zeros after normalisation."""
    enc = SSLEncoder(pretrained=save_tiny("wav2vec2", tmp_path, feat_extract_norm="group")).eval()
    assert not enc.use_attention_mask
    torch.manual_seed(1)
    short = torch.randn(2500)
    normalised = (short - short.mean()) / torch.sqrt(short.var(unbiased=False) + 1e-7)
    batch = torch.randn(2, 4000)  # garbage after the valid samples must not matter
    batch[1, :2500] = short
    with torch.no_grad():
        padded, _ = enc(batch, torch.tensor([4000, 2500]))
        enc.normalize = False
        reference, _ = enc(torch.cat([normalised, torch.zeros(1500)])[None])
    for r, p in zip(reference, padded):
        torch.testing.assert_close(p[1], r[0], atol=1e-4, rtol=1e-4)


def test_attention_mask_follows_preprocessor_config(tmp_path):
    """WavLM Base+ style: a group-normalised CNN, but return_attention_mask in its preprocessor config."""
    path = save_tiny("wavlm", tmp_path, feat_extract_norm="group")
    assert not SSLEncoder(pretrained=path).use_attention_mask
    Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True).save_pretrained(path)
    enc = SSLEncoder(pretrained=path).eval()
    assert enc.use_attention_mask
    x = torch.randn(2, 4000)
    with torch.no_grad():
        masked, _ = enc(x, torch.tensor([4000, 2500]))
        enc.use_attention_mask = False
        unmasked, _ = enc(x, torch.tensor([4000, 2500]))
    assert (masked[-1][1] - unmasked[-1][1]).abs().max() > 1e-4  # the mask reaches the attention
    assert torch.equal(masked[-1][0], unmasked[-1][0])  # nothing to mask in the full-length one


def test_normalize_follows_preprocessor_config(tiny_models, tmp_path):
    enc = SSLEncoder(pretrained=tiny_models["wavlm"]).eval()
    assert enc.normalize
    x = torch.randn(1, 3000)
    with torch.no_grad():
        a, _ = enc(x)
        b, _ = enc(3.0 * x + 0.5)
    torch.testing.assert_close(a[-1], b[-1], atol=1e-4, rtol=1e-4)

    path = tmp_path / "no_preprocessor"
    AutoModel.from_config(CONFIGS["hubert"]()).save_pretrained(path)
    with pytest.raises(ValueError, match="normalize"):
        SSLEncoder(pretrained=str(path))
    assert not SSLEncoder(pretrained=str(path), normalize=False).normalize


@pytest.mark.parametrize("name", ["wavlm", "w2vbert"])
def test_num_layers_truncates(tiny_models, name):
    full = SSLEncoder(pretrained=tiny_models[name]).eval()
    cut = SSLEncoder(pretrained=tiny_models[name], num_layers=1).eval()
    assert cut.num_layers == 1 and cut.model.config.num_hidden_layers == 1
    assert num_params(cut) < num_params(full)
    x = torch.randn(1, 3000)
    with torch.no_grad():
        full_hidden, _ = full(x)
        cut_hidden, _ = cut(x)
    assert len(cut_hidden) == 2
    torch.testing.assert_close(cut_hidden[0], full_hidden[0])
    with pytest.raises(ValueError, match="num_layers"):
        SSLEncoder(pretrained=tiny_models[name], num_layers=3)


def test_max_input_seconds_crops(tiny_models):
    enc = SSLEncoder(pretrained=tiny_models["hubert"], max_input_seconds=0.2).eval()
    x = torch.randn(1, 5000)
    with torch.no_grad():
        cropped, lengths = enc(x)
        reference, _ = enc(x[:, :3200])
    assert lengths.tolist() == [reference[0].shape[1]]
    torch.testing.assert_close(cropped[-1], reference[-1])


def test_from_config_and_registry(tiny_models):
    built = build_model({"name": "ssl_encoder", "pretrained": tiny_models["w2vbert"], "from_config": True})
    loaded = SSLEncoder(pretrained=tiny_models["w2vbert"])
    assert isinstance(built, SSLEncoder)
    assert num_params(built) == num_params(loaded)
    weight = "model.encoder.layers.0.self_attn.linear_q.weight"
    assert not torch.equal(built.state_dict()[weight], loaded.state_dict()[weight])
    assert built.model.config.layerdrop == 0.0


def test_w2vbert_features_match_seamless_m4t_extractor():
    rng = np.random.default_rng(0)
    waves = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (16000, 12345, 7777)]
    reference = SeamlessM4TFeatureExtractor()(waves, sampling_rate=16000, return_tensors="pt")
    batch = torch.zeros(3, 16000)
    for i, w in enumerate(waves):
        batch[i, :len(w)] = torch.from_numpy(w)
    feats, lengths = w2vbert_features(batch, torch.tensor([len(w) for w in waves]))
    assert feats.shape == reference["input_features"].shape
    assert lengths.tolist() == reference["attention_mask"].sum(1).tolist()
    valid = reference["attention_mask"].bool()
    torch.testing.assert_close(feats[valid], reference["input_features"][valid].float(), atol=1e-3, rtol=1e-3)
