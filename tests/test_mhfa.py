"""MHFA / CA-MHFA back-ends: parameter counts, eq. (2) against a loop over the context, padding invariance,
gradients, training, bf16 autocast, registry and argument checks."""
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO
from sv.models.mhfa import CAMHFA, MHFA
from sv.models.registry import build_model

BASE_PLUS = dict(num_layers=13, hidden_size=768, compression_dim=128, embed_dim=256)
SMALL = dict(num_layers=4, hidden_size=24, compression_dim=8, embed_dim=16, heads=6)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: threads only add synchronisation on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def hidden(batch: int, frames: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return list(torch.randn(SMALL["num_layers"], batch, frames, SMALL["hidden_size"], generator=g).unbind(0))


def small(context: int, seed: int = 0) -> CAMHFA:
    torch.manual_seed(seed)
    return MHFA(**SMALL) if context == 1 else CAMHFA(**SMALL, context=context)


@pytest.mark.parametrize("heads, expected", [(16, 723_498), (32, 1_249_850), (64, 2_302_554)])
def test_mhfa_parameter_count(heads, expected):
    assert count(MHFA(**BASE_PLUS, heads=heads)) == expected


@pytest.mark.parametrize("context", [3, 5, 9, 17])
def test_ca_mhfa_parameter_count(context):
    # MHFA-64 with its Linear(128, 64) queries replaced by 64 groups of `context` 128-dim queries (+ bias).
    assert count(CAMHFA(**BASE_PLUS, heads=64, context=context)) == 2_302_554 - 128 * 64 + 128 * 64 * context


def test_shape_and_default_context():
    model = CAMHFA(**SMALL)
    assert model.context == 5
    assert model(hidden(3, 11), torch.tensor([11, 7, 2])).shape == (3, SMALL["embed_dim"])


def test_mhfa_is_ca_mhfa_with_context_one():
    mhfa, ca = small(1), CAMHFA(**SMALL, context=1)
    ca.load_state_dict(mhfa.state_dict())
    hs, lengths = hidden(2, 9), torch.tensor([9, 5])
    assert torch.allclose(mhfa(hs, lengths), ca(hs, lengths), atol=1e-6, rtol=0)


@pytest.mark.parametrize("context", [1, 3, 5])
def test_matches_equations(context):
    """Eqs. (1)-(3) written out for one utterance: q_j^g meets k_{t+j}, keys outside the utterance are 0."""
    model = small(context)
    with torch.no_grad():  # distinct layer weightings, so swapping keys' and values' would show
        model.layer_weights_k.normal_()
        model.layer_weights_v.normal_()
    hs = hidden(1, 7)
    r = context // 2
    wk, wv = model.layer_weights_k.softmax(0), model.layer_weights_v.softmax(0)
    k = model.compress_k(sum(w * h[0] for w, h in zip(wk, hs)))
    v = model.compress_v(sum(w * h[0] for w, h in zip(wv, hs)))
    q, bias = model.queries.weight, model.queries.bias             # (G, D, L), (G,)
    logits = torch.stack([
        sum(q[:, :, j + r] @ k[t + j] for j in range(-r, r + 1) if 0 <= t + j < len(k)) / context + bias
        for t in range(len(k))], dim=1)                           # (G, T)
    expected = model.out((logits.softmax(-1) @ v).flatten())
    assert torch.allclose(model(hs, None)[0], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("context", [1, 3, 5, 17])
def test_padding_invariance(context):
    """Each utterance alone equals the same utterance padded with garbage in a batch; two are shorter than 5."""
    model = small(context).eval()
    lengths = torch.tensor([20, 7, 3, 1])
    batch = hidden(4, 20, seed=1)  # random frames past each length: they must not reach the output
    with torch.no_grad():
        batched = model(batch, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = model([h[i:i + 1, :n] for h in batch], None)
            assert (batched[i] - alone[0]).abs().max() < 1e-4, f"utterance {i} ({n} frames) depends on padding"
        assert torch.allclose(model(batch, torch.full((4,), 20)), model(batch, None))


@pytest.mark.parametrize("context", [1, 5])
def test_gradients_reach_layer_weights_and_queries(context):
    model = small(context)
    model(hidden(2, 10), torch.tensor([10, 6])).pow(2).sum().backward()
    for p in (model.layer_weights_k, model.layer_weights_v, model.queries.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("context", [1, 5])
def test_adam_lowers_loss(context):
    model = small(context)
    classifier = torch.nn.Linear(SMALL["embed_dim"], 4)
    hs, lengths, labels = hidden(8, 12, seed=2), torch.tensor([12, 9, 5, 12, 3, 8, 12, 10]), torch.arange(8) % 4
    opt = torch.optim.Adam([*model.parameters(), *classifier.parameters()], lr=1e-2)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(classifier(model(hs, lengths)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_bf16_autocast():
    model = small(5)
    hs, lengths = hidden(2, 10), torch.tensor([10, 4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(hs, lengths)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert F.cosine_similarity(out.float(), model(hs, lengths)).min() > 0.99


def test_registry_names():
    mhfa = build_model({"name": "mhfa", "num_layers": 13, "hidden_size": 768})
    ca = build_model({"name": "ca_mhfa", "num_layers": 13, "hidden_size": 768, "context": 9})
    assert type(mhfa) is MHFA and mhfa.context == 1 and count(mhfa) == 2_302_554
    assert type(ca) is CAMHFA and ca.context == 9
    with pytest.raises(ValueError, match="context"):
        build_model({"name": "mhfa", "num_layers": 13, "hidden_size": 768, "context": 3})


@pytest.mark.parametrize("kwargs, message", [
    (dict(context=2), "context must be odd"),
    (dict(context=0), "context must be odd"),
    (dict(context=-3), "context must be odd"),
    (dict(heads=0), "heads must be >= 1"),
    (dict(compression_dim=0), "compression_dim must be >= 1"),
    (dict(num_layers=0), "num_layers must be >= 1"),
])
def test_bad_args(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CAMHFA(**{**SMALL, **kwargs})


def test_wrong_number_of_layers():
    with pytest.raises(ValueError, match="expected 4 hidden states, got 3"):
        small(3)(hidden(1, 5)[:3], None)


def test_import_is_cheap():
    code = "import sys, sv.models.mhfa; assert 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
