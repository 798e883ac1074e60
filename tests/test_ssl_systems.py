"""Speaker systems on a pre-trained speech encoder (ssl_speaker): every back-end over tiny random encoders saved
with save_pretrained and loaded with from_pretrained, LoRA and its merging, extraction from audio, the paper
configs, and the paper's parameter counts at real size (random weights)."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from conftest import REPO, run_tool
from sv.bin import extract, merge_lora as merge_lora_bin
from sv.config import load_yaml
from sv.data.data_dir import write_data_dir
from sv.data.table import DataError
from sv.data.train_loader import build_train_loader, num_classes
from sv.models.lora import merge_lora
from sv.models.margin_heads import build_head
from sv.models.registry import build_model
from sv.train.checkpoint import load_checkpoint, save_checkpoint
from sv.train.optim import apply_grad_multipliers, build_optimizer, set_frozen
from sv.train.trainer import SpeakerClassifier

SR = 16000
BACKENDS = {
    "mfa": {"name": "mfa"},
    "adapter_mfa": {"name": "adapter_mfa", "adapter_dim": 16},
    "weighted_sum_ecapa": {"name": "weighted_sum", "downstream": {"name": "ecapa_tdnn", "channels": 32}},
    "weighted_sum_xvector": {"name": "weighted_sum", "downstream": {"name": "xvector"}},
    "mhfa": {"name": "mhfa", "heads": 4, "compression_dim": 16},
    "ca_mhfa": {"name": "ca_mhfa", "heads": 4, "compression_dim": 16, "context": 3},
    "ltdnn": {"name": "ltdnn", "channels": 32, "agg_dim": 64, "heads": 2, "scale": 4, "se_bottleneck_dim": 16,
              "attention_dim": 16},
    "last_layer_mean": {"name": "last_layer_mean"},
    "cls_token": {"name": "cls_token"},
}
EMBED_DIM = {"last_layer_mean": None, "cls_token": None}  # the paper's baselines embed without a projection
TINY_HIDDEN, TINY_LAYERS = 64, 3


def _load_local(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "local" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, str]:
    """Tiny random WavLM and w2v-BERT, saved like hub models (config, weights, preprocessor config)."""
    root = tmp_path_factory.mktemp("tiny_ssl")
    make = _load_local("make_tiny_ssl_model")
    paths = {}
    for kind in ("wavlm", "w2v-bert"):
        paths[kind] = str(root / kind)
        make.save_tiny_model(paths[kind], kind, hidden_size=TINY_HIDDEN, num_layers=TINY_LAYERS)
    return paths


def speaker_model(pretrained: str, backend: str | dict, **kw) -> torch.nn.Module:
    cfg = backend if isinstance(backend, dict) else BACKENDS[backend]
    embed = {"embed_dim": EMBED_DIM.get(backend, 32)} if isinstance(backend, str) else {}
    torch.manual_seed(0)
    return build_model({"name": "ssl_speaker", "encoder": {"pretrained": pretrained},
                        "backend": {**cfg, **embed}, **kw})


def waves(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        x[i, :n] = 0.1 * torch.randn(n, generator=g)
    return x, torch.tensor(lengths)


# -------------------------------------------------------------------------------------- the model

@pytest.mark.parametrize("backend", list(BACKENDS))
def test_backend_shapes_and_padding(tiny, backend):
    """An utterance padded into a batch with a longer one embeds as it does alone (layer-normalised CNN
    front end, so the encoder gets an attention mask)."""
    model = speaker_model(tiny["wavlm"], backend).eval()
    x, lengths = waves([16000, 11000, 7000])
    with torch.no_grad():
        batch = model(x, lengths)
        alone = model(x[2:, :7000])
    expected = TINY_HIDDEN if EMBED_DIM.get(backend, 32) is None else 32
    assert batch.shape == (3, expected) and model.embed_dim == expected
    assert (batch[2] - alone[0]).abs().max() < 1e-4
    assert (batch[0] - batch[1]).abs().max() > 1e-5  # different inputs, different embeddings


def test_w2vbert_padding(tiny):
    model = speaker_model(tiny["w2v-bert"], "adapter_mfa").eval()
    x, lengths = waves([16000, 9000])
    with torch.no_grad():
        assert (model(x, lengths)[1] - model(x[1:, :9000])[0]).abs().max() < 1e-4


@pytest.mark.parametrize("kind,targets", [("wavlm", "q_proj v_proj"), ("w2v-bert", "linear_q linear_v")])
def test_lora_trainable_parameters_and_merge(tiny, kind, targets):
    r = 4
    model = speaker_model(tiny[kind], "adapter_mfa", lora={"r": r, "alpha": 8}, freeze_encoder=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if n.startswith("encoder.")}
    assert all("lora_" in n for n in lora)
    assert {n.split(".")[-4] for n in lora} == set(targets.split())  # ...<target>.lora_A.default.weight
    # A (r x D) and B (D x r) on two projections of each layer: q/v are D x D
    assert sum(model.get_parameter(n).numel() for n in lora) == TINY_LAYERS * 2 * 2 * r * TINY_HIDDEN
    assert all(n in trainable for n, _ in model.backend.named_parameters(prefix="backend"))

    model.eval()
    x, lengths = waves([16000, 12000])
    with torch.no_grad():
        untrained = model(x, lengths)  # B starts at zero: LoRA changes nothing yet
        for n in lora:
            if "lora_B" in n:
                model.get_parameter(n).normal_(0, 0.5)
        before = model(x, lengths)
        assert (before - untrained).abs().max() > 1e-3  # the update reaches the output
        assert merge_lora(model.encoder.model) == TINY_LAYERS * 2
        after = model(x, lengths)
    assert (before - after).abs().max() < 1e-5
    assert set(model.state_dict()) == set(speaker_model(tiny[kind], "adapter_mfa").state_dict())


def test_lora_bad_target(tiny):
    with pytest.raises(ValueError, match="target_modules"):
        speaker_model(tiny["wavlm"], "mfa", lora={"r": 4, "alpha": 8, "target_modules": ["nope"]})
    with pytest.raises(ValueError, match="unknown keys"):
        speaker_model(tiny["wavlm"], "mfa", lora={"r": 4, "alpha": 8, "rank": 2})


def test_freeze_encoder_without_lora(tiny):
    model = speaker_model(tiny["wavlm"], "mhfa", freeze_encoder=True)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.backend.parameters())


def test_merge_lora_entry_point(tiny, tmp_path):
    model_cfg = {"name": "ssl_speaker", "encoder": {"pretrained": tiny["wavlm"]},
                 "backend": {"name": "adapter_mfa", "adapter_dim": 16, "embed_dim": 32},
                 "lora": {"r": 4, "alpha": 8}, "freeze_encoder": True}
    torch.manual_seed(1)
    model = build_model(copy.deepcopy(model_cfg))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    head = {"weight": torch.randn(5, 32)}
    config = {"model": model_cfg, "data": {"mode": "waveform"}}
    save_checkpoint({"model": model.state_dict(), "head": head, "config": config, "epochs": [3, 4]},
                    tmp_path / "avg.pt")
    merge_lora_bin.main([str(tmp_path / "avg.pt"), str(tmp_path / "merged.pt")])

    merged = load_checkpoint(tmp_path / "merged.pt")
    assert "lora" not in merged["config"]["model"] and merged["config"]["data"] == {"mode": "waveform"}
    assert torch.equal(merged["head"]["weight"], head["weight"]) and merged["epochs"] == [3, 4]
    rebuilt = build_model(merged["config"]["model"])
    rebuilt.load_state_dict(merged["model"], strict=True)
    x, lengths = waves([16000, 10000])
    with torch.no_grad():
        assert (model.eval()(x, lengths) - rebuilt.eval()(x, lengths)).abs().max() < 1e-5

    with pytest.raises(DataError, match="no model.lora"):
        merge_lora_bin.main([str(tmp_path / "merged.pt"), str(tmp_path / "again.pt")])
    merge_lora_bin.main(["--allow-no-lora", str(tmp_path / "merged.pt"), str(tmp_path / "merged.pt")])
    assert load_checkpoint(tmp_path / "merged.pt")["config"] == merged["config"]


# ---------------------------------------------------------------------------------------- training

@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_backend_lowers_the_loss_on_the_mini_corpus(tiny, mini_data, backend):
    data_cfg = {"train_dir": str(mini_data / "vox1_dev"), "mode": "waveform", "batch_size": 8, "num_workers": 0,
                "crop": 1.0}
    waves_batch, labels = next(iter(build_train_loader(data_cfg, rank=0, world_size=1, epoch=1)))
    assert waves_batch.shape == (8, SR)
    model = speaker_model(tiny["wavlm"], backend).train()
    head = build_head({"name": "softmax"}, model.embed_dim, num_classes(data_cfg))
    net = SpeakerClassifier(model, head)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss = F.cross_entropy(net(waves_batch, labels)[0], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


# -------------------------------------------------------------------------------------- extraction

def test_extract_from_audio_and_segments(tiny, tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    wav = {}
    for reco, seconds in (("r1", 1.5), ("r2", 2.2)):
        path = tmp_path / f"{reco}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * 8000))).astype(np.float32), 8000)  # resampled
        wav[reco] = str(path)
    write_data_dir(data, wav, {"r1": "a", "r2": "b"})
    (data / "segments").write_text("r1-0 r1 0.0 1.0\nr1-1 r1 0.5 1.5\nr2-0 r2 0.2 -1\n")

    model_cfg = {"name": "ssl_speaker", "encoder": {"pretrained": tiny["wavlm"]},
                 "backend": {"name": "mhfa", "heads": 4, "compression_dim": 16, "embed_dim": 32}}
    model = build_model(model_cfg).eval()
    save_checkpoint({"model": model.state_dict(), "config": {"model": model_cfg, "data": {"mode": "waveform"}}},
                    tmp_path / "avg.pt")
    extract.main(["--model", str(tmp_path / "avg.pt"), "--device", "cpu", "--segments", str(data / "segments"),
                  str(data / "wav.scp"), str(tmp_path / "x.ark"), str(tmp_path / "x.scp")])
    got = dict(kaldiio.load_scp(str(tmp_path / "x.scp")))
    assert list(got) == ["r1-0", "r1-1", "r2-0"]

    for utt, (reco, start, end) in {"r1-0": ("r1", 0.0, 1.0), "r1-1": ("r1", 0.5, 1.5), "r2-0": ("r2", 0.2, None)}.items():
        audio, sr = sf.read(wav[reco], dtype="float32")
        audio = audio[int(start * sr):None if end is None else int(end * sr)]
        x = AF.resample(torch.from_numpy(audio), sr, SR)
        with torch.no_grad():
            np.testing.assert_allclose(got[utt], model(x[None])[0].numpy(), atol=1e-4)

    # Without segments wav.scp is indexed by utterance; chunking works in 10 ms frames of audio.
    extract.main(["--model", str(tmp_path / "avg.pt"), "--device", "cpu", "--max-frames", "50",
                  str(data / "wav.scp"), str(tmp_path / "y.ark"), str(tmp_path / "y.scp")])
    assert set(dict(kaldiio.load_scp(str(tmp_path / "y.scp")))) == {"r1", "r2"}
    with pytest.raises(DataError, match="no recording"):
        (data / "bad_segments").write_text("u r3 0.0 1.0\n")
        extract.main(["--model", str(tmp_path / "avg.pt"), "--device", "cpu", "--segments",
                      str(data / "bad_segments"), str(data / "wav.scp"), str(tmp_path / "z.ark"),
                      str(tmp_path / "z.scp")])


# ----------------------------------------------------------------------------- configs and counts

SSL_CONFIGS = sorted(p.name for p in (REPO / "egs/voxceleb/conf").glob("*.yaml")
                     if load_yaml(p).get("model", {}).get("name") == "ssl_speaker")


@pytest.mark.parametrize("name", SSL_CONFIGS)
def test_paper_configs_build_and_their_rules_match(tiny, name):
    """Each recipe config, on a tiny encoder of its family: builds, and its optimizer, gradient-multiplier and
    freeze rules all match parameters (a pattern that matches none is an error)."""
    cfg = load_yaml(REPO / "egs/voxceleb/conf" / name)
    assert cfg["data"]["mode"] == "waveform"
    kind = "w2v-bert" if "w2v-bert" in cfg["model"]["encoder"]["pretrained"] else "wavlm"
    cfg["model"]["encoder"]["pretrained"] = tiny[kind]
    model = build_model(cfg["model"])
    net = SpeakerClassifier(model, build_head(cfg["head"], model.embed_dim, 10))
    apply_grad_multipliers(net, cfg["optim"].get("grad_mult", []))
    set_frozen(net, cfg["optim"].get("freeze", []), 1)
    build_optimizer(net, cfg["optim"])
    assert any(p.requires_grad for p in model.backend.parameters())
    encoder_trains = any(p.requires_grad for n, p in model.encoder.named_parameters() if "lora_" not in n)
    assert encoder_trains == (not cfg["model"].get("freeze_encoder", False))


def test_paper_parameter_counts_at_real_size():
    """w2v-BERT 2.0 (random weights from its config.json): encoder 580.49M, Adapter-MFA 6.16M, LoRA r=64 on
    q/v 6.29M, as in w2v-bert2-lora-adapter-mfa-pruning.txt."""
    out = run_tool("-m", "sv.bin.model_info", "--config", "egs/voxceleb/conf/w2vbert2_lora_adapter_mfa.yaml",
                   "--random-init", "model.encoder.pretrained=egs/voxceleb/conf/ssl_arch/w2v-bert-2.0", "--json")
    info = json.loads(out.stdout)
    assert info["encoder_params"] == 580_492_096
    assert info["backend_params"] == 6_160_384
    assert info["lora_params"] == 6_291_456
    assert info["trainable_params"] == info["backend_params"] + info["lora_params"]
    assert info["input_shape"] == [1, SR]


def test_mhfa_counts_on_wavlm_base_plus_dims():
    """ca-mhfa.txt Table I: MHFA on WavLM Base+ (13 x 768) with 16 / 32 / 64 heads: 0.72M / 1.25M / 2.30M;
    CA-MHFA with 64 heads about 2.3M."""
    def count(**kw):
        return sum(p.numel() for p in build_model({"num_layers": 13, "hidden_size": 768, **kw}).parameters())
    for heads, paper in ((16, 0.72e6), (32, 1.25e6), (64, 2.30e6)):
        assert abs(count(name="mhfa", heads=heads) - paper) / paper < 0.005
    assert abs(count(name="ca_mhfa", heads=64, context=3) - 2.30e6) / 2.30e6 < 0.01
