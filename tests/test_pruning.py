"""Structured pruning of pre-trained encoders (w2v-bert2-lora-adapter-mfa-pruning.txt, section 2.6): Hard Concrete
gates, the distillation + Lagrangian objective, physical pruning that keeps the gated model's outputs, the pruned
model directory, and the paper's sizes at real scale."""
import importlib.util
import json
import math

import pytest
import torch
import yaml

from conftest import REPO, run_tool
from sv.models.pruning import (BETA, GAMMA, STRUCTURE_FILE, ZETA, HardConcreteGate, expected_params, layer_gates,
                               layer_sizes, prune, save_pruned)
from sv.models.registry import build_model
from sv.models.ssl_encoder import SSLEncoder
from sv.train.auxiliary import build_auxiliary
from sv.train.checkpoint import load_checkpoint, save_checkpoint

TYPES = ("w2v-bert", "wavlm", "hubert")
SR = 16000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("make_tiny_ssl_model", REPO / "local/make_tiny_ssl_model.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    root = tmp_path_factory.mktemp("tiny_prune")
    paths = {}
    for kind in TYPES:
        paths[kind] = str(root / kind)
        make.save_tiny_model(paths[kind], kind, hidden_size=32, num_layers=3)
    return paths


def _randomise_gates(encoder: SSLEncoder, dead_layer: int | None = None, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i, gates in enumerate(layer_gates(encoder.model)):
            for gate in gates.values():
                if i == dead_layer:
                    gate.log_alpha.fill_(-20.0)
                else:  # a mix of closed, fractional and fully open gates
                    gate.log_alpha.copy_(3 * torch.randn(gate.log_alpha.shape, generator=gen))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(3, SR, generator=gen), torch.tensor([SR, 11000, 7000])


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor], lengths: torch.Tensor) -> float:
    return max((x[i, :n] - y[i, :n]).abs().max().item() for x, y in zip(a, b) for i, n in enumerate(lengths.tolist()))


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("dead_layer", [None, 0, 1])
def test_pruned_encoder_equals_the_gated_one(tiny, tmp_path, kind, dead_layer):
    """Closed groups removed, gate values folded in, whole layers' attention/FFN/convolution gone: every hidden
    state of a padded batch unchanged (1e-5); then saved and loaded back as a model directory, bit for bit."""
    encoder = SSLEncoder(tiny[kind], gates={})
    _randomise_gates(encoder, dead_layer)
    encoder.eval()
    waves, lengths = _batch()
    with torch.no_grad():
        gated, frames = encoder(waves, lengths)
        before = sum(p.numel() for n, p in encoder.named_parameters() if "log_alpha" not in n)
        structure = prune(encoder.model)
        pruned, _ = encoder(waves, lengths)
    after = sum(p.numel() for p in encoder.parameters())
    assert _max_diff(gated, pruned, frames) < 1e-5
    assert after < before and not layer_gates(encoder.model)[0]
    assert all(s["heads"] == sorted(s["heads"]) for s in structure)  # original head indices, in order
    if dead_layer is not None:
        assert layer_sizes(encoder.model)[dead_layer] == {k: 0 for k in layer_sizes(encoder.model)[dead_layer]}
    save_pruned(encoder.model, structure, tmp_path / "pruned", tiny[kind])
    assert json.loads((tmp_path / "pruned" / STRUCTURE_FILE).read_text())["layers"] == structure
    reloaded = SSLEncoder(str(tmp_path / "pruned")).eval()
    with torch.no_grad():
        again, _ = reloaded(waves, lengths)
    assert _max_diff(pruned, again, frames) == 0.0
    assert sum(p.numel() for p in reloaded.parameters()) == after


def test_a_pruned_directory_without_its_sizes_is_refused(tiny, tmp_path):
    encoder = SSLEncoder(tiny["w2v-bert"], gates={})
    _randomise_gates(encoder)
    save_pruned(encoder.model, prune(encoder.model), tmp_path / "pruned", tiny["w2v-bert"])
    (tmp_path / "pruned" / STRUCTURE_FILE).unlink()
    with pytest.raises(ValueError, match="per-layer sizes .sv_pruned_structure.json. are missing"):
        SSLEncoder(str(tmp_path / "pruned"))


def test_hard_concrete_gates():
    torch.manual_seed(0)
    gate = HardConcreteGate(4000, init=0.0)
    gate.log_alpha.data.zero_()  # without the init's small noise
    gate.train()
    z = gate.sample()
    assert z.min() == 0 and z.max() == 1 and ((z > 0) & (z < 1)).any()  # stretched and clipped
    # P(z > 0) of eq. 8 against the sampled frequency
    p_open = gate.expected_open()[0].item()
    assert p_open == pytest.approx(1 / (1 + math.exp(BETA * math.log(-GAMMA / ZETA))))
    assert (z > 0).float().mean().item() == pytest.approx(p_open, abs=0.03)
    gate.eval()
    assert torch.equal(gate.sample(), gate.deterministic())
    assert gate.deterministic()[0].item() == pytest.approx(0.5 * (ZETA - GAMMA) + GAMMA)


def test_expected_parameters_follow_the_gates(tiny):
    encoder = SSLEncoder(tiny["w2v-bert"], gates={"init": 20.0})
    expected, total = expected_params(encoder.model)
    assert expected.item() == pytest.approx(total, rel=1e-6)
    with torch.no_grad():
        for gates in layer_gates(encoder.model):
            for gate in gates.values():
                gate.log_alpha.fill_(-20.0)
    closed, _ = expected_params(encoder.model)
    # Whole sub-modules go with their last group, and with them parts no gate counts: the relative-position
    # table of the attention and the convolution module's input LayerNorm.
    uncounted = sum(p.numel() for n, p in encoder.named_parameters()
                    if "distance_embedding" in n or "conv_module.layer_norm" in n)
    encoder.eval()
    prune(encoder.model)
    left = sum(p.numel() for p in encoder.parameters()) + sum(
        b.numel() for n, b in encoder.named_buffers() if n.endswith(".bias"))  # output biases become constants
    assert closed.item() == pytest.approx(left + uncounted, abs=1.0) and closed.item() < 0.3 * total


# ------------------------------------------------------------------------------------------------ objective

@pytest.fixture(scope="module")
def teacher_ckpt(tiny, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    cfg = {"name": "ssl_speaker", "encoder": {"pretrained": tiny["wavlm"]},
           "backend": {"name": "adapter_mfa", "adapter_dim": 8, "embed_dim": 16}}
    torch.manual_seed(0)
    save_checkpoint({"model": build_model(cfg).state_dict(), "config": {"model": cfg}}, path)
    return str(path)


def _student(tiny: dict, **encoder) -> torch.nn.Module:
    return build_model({"name": "ssl_speaker", "encoder": {"pretrained": tiny["wavlm"], **encoder},
                        "backend": {"name": "adapter_mfa", "adapter_dim": 8, "embed_dim": 16}})


def test_distillation_is_zero_for_the_teacher_itself(tiny, teacher_ckpt):
    student = _student(tiny, gates={"init": 20.0})
    missing, unexpected = student.load_state_dict(load_checkpoint(teacher_ckpt)["model"], strict=False)
    assert not unexpected and all("log_alpha" in k for k in missing)  # gates keep the parameter names
    aux = build_auxiliary({"loss": "hidden_distill", "model": teacher_ckpt}, student, {})
    student.eval()
    aux.eval()
    waves, _ = _batch()
    with torch.no_grad():
        assert aux(waves, student.forward_outputs(waves)).item() == pytest.approx(-len(student.encoder.model.encoder.layers) - 1, abs=1e-4)


def test_lagrangian_ramps_the_target_and_ascends_the_multipliers(tiny, teacher_ckpt):
    student = _student(tiny, gates={})
    aux = build_auxiliary({"loss": "hidden_distill", "model": teacher_ckpt, "target_sparsity": 0.5,
                           "warmup_steps": 4}, student, {})
    waves, _ = _batch()
    student.train()
    aux.train()
    with torch.no_grad():
        aux.lambda_1.fill_(1.0)
    loss = aux(waves, student.forward_outputs(waves))
    loss.backward()
    sparsity = aux.sparsity().item()
    assert aux.step.item() == 1 and sparsity < 0.1
    # d/d lambda_1 of lambda_1 (s - t) is s - t with t = 0 at step 0; ascent negates it
    assert aux.lambda_1.grad.item() == pytest.approx(-sparsity, abs=1e-6)
    gate = layer_gates(student.encoder.model)[0]["heads"]
    assert gate.log_alpha.grad is not None and gate.log_alpha.grad.abs().sum() > 0
    assert set(aux.state_dict()) == {"lambda_1", "lambda_2", "step"}


def test_pruning_objective_errors(tiny, teacher_ckpt):
    cfg = {"loss": "hidden_distill", "model": teacher_ckpt}
    with pytest.raises(ValueError, match=r"target_sparsity must be in \[0, 1\)"):
        build_auxiliary({**cfg, "target_sparsity": 1.0}, _student(tiny, gates={}), {})
    with pytest.raises(ValueError, match="needs gates"):
        build_auxiliary({**cfg, "target_sparsity": 0.5}, _student(tiny), {})
    with pytest.raises(ValueError, match="teacher gives 4 hidden states of width 32, the student 3"):
        build_auxiliary(cfg, _student(tiny, num_layers=2), {})


# --------------------------------------------------------------------------- the paper's sizes at real scale

def test_w2v_bert_sizes_and_macs_unpruned_and_pruned():
    """Table 3: 580M + 6.2M and 28.75 GMACs unpruned; about 124M + 6.2M and 6.31 GMACs at about 80% sparsity
    (conf/ssl_arch/w2v-bert-2.0-pruned80 holds a uniform structure of that size: its config and sizes, no weights)."""
    def info(arch: str) -> dict:
        return json.loads(run_tool("-m", "sv.bin.model_info", "--config", "conf/w2vbert2_lora_adapter_mfa_ft.yaml",
                                   "--random-init", f"model.encoder.pretrained=conf/ssl_arch/{arch}", "--json",
                                   cwd=REPO / "egs/voxceleb").stdout)
    full, pruned = info("w2v-bert-2.0"), info("w2v-bert-2.0-pruned80")
    assert full["macs_per_second"] / 1e9 == pytest.approx(28.75, rel=0.01)
    assert pruned["encoder_params"] / 1e6 == pytest.approx(124, rel=0.01)
    assert pruned["macs_per_second"] / 1e9 == pytest.approx(6.31, rel=0.01)
    assert len(pruned["pruned_layers"]) == 24 and pruned["pruned_layers"][0] == {"heads": 3, "ffn1": 896,
                                                                               "ffn2": 896, "conv": 220}


def test_prune_configs_of_the_recipe():
    for name in ("w2vbert2_prune80", "w2vbert2_prune80_distill"):
        cfg = yaml.safe_load((REPO / "egs/voxceleb/conf" / f"{name}.yaml").read_text())
        assert cfg["teacher"]["loss"] == "hidden_distill" and cfg["speaker_loss_weight"] == 0.0
        assert cfg["epochs"] == 20
    prune_cfg = yaml.safe_load((REPO / "egs/voxceleb/conf/w2vbert2_prune80.yaml").read_text())
    assert prune_cfg["teacher"]["target_sparsity"] == 0.8 and prune_cfg["teacher"]["warmup_steps"] == 10000
    assert prune_cfg["optim"]["lr"] == 2.0e-4 and prune_cfg["optim"]["param_groups"][0]["lr_mult"] == 100


def test_prune_encoder_cli(tiny, tmp_path, teacher_ckpt):
    """A gated checkpoint becomes a pruned encoder directory plus a checkpoint on it that builds and loads; a
    checkpoint with neither gates nor a pruned encoder, or of another model, is refused by name."""
    student = _student(tiny, gates={})
    _randomise_gates(student.encoder)
    cfg = {"name": "ssl_speaker", "encoder": {"pretrained": tiny["wavlm"], "gates": {}},
           "backend": {"name": "adapter_mfa", "adapter_dim": 8, "embed_dim": 16}}
    save_checkpoint({"model": student.state_dict(), "config": {"model": cfg}}, tmp_path / "gated.pt")
    run_tool("-m", "sv.bin.prune_encoder", str(tmp_path / "gated.pt"), str(tmp_path / "enc"), str(tmp_path / "out.pt"))
    out = load_checkpoint(tmp_path / "out.pt")
    assert out["config"]["model"]["encoder"] == {"pretrained": str(tmp_path / "enc")}
    model = build_model(out["config"]["model"])
    model.load_state_dict(out["model"])
    student.eval()
    model.eval()
    waves, lengths = _batch()
    with torch.no_grad():
        assert torch.allclose(student(waves, lengths), model(waves, lengths), atol=1e-5)
    proc = run_tool("-m", "sv.bin.prune_encoder", teacher_ckpt, str(tmp_path / "e2"), str(tmp_path / "o2.pt"),
                    check=False)
    assert proc.returncode == 1 and "has no gates" in proc.stderr and not (tmp_path / "e2").exists()
    save_checkpoint({"model": {}, "config": {"model": {"name": "ecapa_tdnn"}}}, tmp_path / "ecapa.pt")
    proc = run_tool("-m", "sv.bin.prune_encoder", str(tmp_path / "ecapa.pt"), str(tmp_path / "e3"),
                    str(tmp_path / "o3.pt"), check=False)
    assert proc.returncode == 1 and "expected a checkpoint of an ssl_speaker" in proc.stderr
