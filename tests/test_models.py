"""x-vector, ECAPA-TDNN and ResNet34 built from the recipe configs: shapes, published sizes, padding
invariance, gradients, bf16 autocast; and the model_info tool."""
import json

import pytest
import torch

from conftest import REPO, run_tool
from sv.bin import model_info
from sv.config import load_config
from sv.data.table import DataError
from sv.models.registry import build_model, registered_models

CONF = REPO / "egs/voxceleb/conf"
# Config -> published parameter count (WeSpeaker's VoxCeleb v2 results table).
PUBLISHED = {
    "xvector.yaml": 4.61e6,
    "ecapa_tdnn_c512.yaml": 6.19e6,
    "ecapa_tdnn_c1024.yaml": 14.65e6,
    "resnet34.yaml": 6.63e6,
}
FEAT_DIM = 80


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny batches: threads only add synchronisation, which stalls badly on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(config: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(load_config(CONF / config)["model"])


def test_all_registered():
    assert {"xvector", "ecapa_tdnn", "resnet34"} <= set(registered_models())


@pytest.mark.parametrize("config", PUBLISHED)
def test_parameter_count(config):
    n = sum(p.numel() for p in build(config).parameters())
    assert abs(n - PUBLISHED[config]) / PUBLISHED[config] < 0.005, n


@pytest.mark.parametrize("config", PUBLISHED)
def test_output_shape(config):
    model = build(config).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 200, FEAT_DIM))
    assert out.shape == (2, model.embed_dim)


@pytest.mark.parametrize("config", PUBLISHED)
def test_padding_invariance(config):
    """An utterance embeds the same alone as padded (with garbage) in a batch beside a longer one."""
    model = build(config).eval()
    short, long = torch.randn(1, 37, FEAT_DIM), torch.randn(1, 64, FEAT_DIM)  # odd length: ResNet rounds up
    batch = 10 * torch.randn(2, 64, FEAT_DIM)
    batch[0, :37], batch[1] = short[0], long[0]
    with torch.no_grad():
        batched = model(batch, torch.tensor([37, 64]))
        assert (model(short)[0] - batched[0]).abs().max() < 1e-4
        assert (model(long)[0] - batched[1]).abs().max() < 1e-4


@pytest.mark.parametrize("config", PUBLISHED)
def test_gradients_reach_every_parameter(config):
    model = build(config).train()
    model(torch.randn(2, 50, FEAT_DIM), torch.tensor([50, 31])).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("config", PUBLISHED)
def test_bf16_autocast(config):
    model = build(config).eval()
    feats = torch.randn(2, 24, FEAT_DIM)
    with torch.no_grad():
        ref = model(feats)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(feats)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    # bf16 keeps ~3 significant digits; the embedding should still point the same way.
    assert torch.nn.functional.cosine_similarity(out.float(), ref).min() > 0.99


def test_model_info(capsys):
    model_info.main(["--config", str(CONF / "ecapa_tdnn_c512.yaml")])
    out = capsys.readouterr().out
    assert "ecapa_tdnn" in out and "6,190,720" in out

    model_info.main(["--config", str(CONF / "ecapa_tdnn_c512.yaml"), "model.channels=1024", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "ecapa_tdnn"
    assert info["params"] == info["trainable_params"] == sum(
        p.numel() for p in build("ecapa_tdnn_c1024.yaml").parameters())
    assert info["input_shape"] == [1, 100, FEAT_DIM] and info["macs_per_second"] > 1e9


def test_model_info_bad_override():
    proc = run_tool("-m", "sv.bin.model_info", "--config", str(CONF / "ecapa_tdnn_c512.yaml"), "model.chanels=1024",
                    check=False)
    assert proc.returncode != 0
    assert "no key 'model.chanels' in the config" in proc.stderr and "Traceback" not in proc.stderr
    # An added key the model does not take fails as bad input too, which run_main reports without a traceback.
    with pytest.raises(DataError, match=r"model.chanels: unknown key \(did you mean 'channels'\?\)"):
        model_info.main(["--config", str(CONF / "ecapa_tdnn_c512.yaml"), "+model.chanels=1024"])
