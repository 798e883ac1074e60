"""Margin heads against hand-computed logits, the margin scheduler, the optimizer's parameter groups,
gradient multipliers and freezing, and the learning-rate schedules."""
import copy
import io
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from sv.models.margin_heads import build_head, truncate_classes
from sv.train.lr_schedule import build_scheduler
from sv.train.margin_scheduler import MarginScheduler
from sv.train.optim import apply_grad_multipliers, build_optimizer, frozen_params, set_frozen

S = 32.0
# Three classes in 2-D at these angles; their rows have different norms, which normalisation must remove.
CLASS_ANGLES = [0.0, 2 * math.pi / 3, 4 * math.pi / 3]


def unit(angle: float, norm: float = 1.0) -> list[float]:
    return [norm * math.cos(angle), norm * math.sin(angle)]


def margin_head(name: str, margin: float, **kw) -> nn.Module:
    head = build_head({"name": name, "scale": S, "margin": margin, **kw}, embed_dim=2, num_classes=3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([unit(a, n) for a, n in zip(CLASS_ANGLES, [2.0, 0.5, 3.0])]))
    return head


def angle_case(thetas: list[float], labels: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings at angle θ from their label's class (norm 5), their labels, and all (B, C) cosines."""
    angles = [CLASS_ANGLES[y] + t for t, y in zip(thetas, labels)]
    x = torch.tensor([unit(a, 5.0) for a in angles])
    cos = torch.tensor([[math.cos(a - c) for c in CLASS_ANGLES] for a in angles])
    return x, torch.tensor(labels), cos


def expected_logits(cos: torch.Tensor, labels: torch.Tensor, target: list[float]) -> torch.Tensor:
    out = S * cos.clone()
    out[torch.arange(len(labels)), labels] = S * torch.tensor(target)
    return out


def test_aam_softmax_logits_and_loss():
    m = 0.2
    head = margin_head("aam_softmax", m)
    # θ + m < π for the first three; θ = 3.0 > π − m takes the fallback cosθ − (1 + cos(π − m)).
    thetas, labels = [0.5, 1.2, 2.5, 3.0], [0, 1, 2, 1]
    x, y, cos = angle_case(thetas, labels)
    target = [math.cos(t + m) for t in thetas[:3]] + [math.cos(3.0) - 1 - math.cos(math.pi - m)]
    want = expected_logits(cos, y, target)
    logits = head(x, y)
    torch.testing.assert_close(logits, want, atol=1e-4, rtol=1e-5)
    by_hand = -torch.stack([w[c] - torch.logsumexp(w, 0) for w, c in zip(want, y)]).mean()
    torch.testing.assert_close(F.cross_entropy(logits, y), by_hand, atol=1e-4, rtol=1e-5)


def test_aam_fallback_is_continuous_and_decreasing():
    m = 0.3
    head = margin_head("aam_softmax", m)
    thetas = [math.pi - m - 1e-3, math.pi - m + 1e-3, math.pi - m + 0.1, math.pi - 0.01]
    x, y, _ = angle_case(thetas, [0] * 4)
    target = head(x, y)[:, 0] / S
    assert abs(target[0] + 1) < 1e-3 and abs(target[1] + 1) < 1e-3
    assert (target.diff() < 0).all()


def test_aam_easy_margin():
    head = margin_head("aam_softmax", 0.2, easy_margin=True)
    thetas, labels = [0.5, 2.0, 3.0], [0, 1, 2]  # cosθ > 0, then < 0 twice: no margin there
    x, y, cos = angle_case(thetas, labels)
    want = expected_logits(cos, y, [math.cos(0.7), math.cos(2.0), math.cos(3.0)])
    torch.testing.assert_close(head(x, y), want, atol=1e-4, rtol=1e-5)


def test_am_softmax():
    head = margin_head("am_softmax", 0.25)
    thetas, labels = [0.5, 2.0, 3.0], [2, 0, 1]
    x, y, cos = angle_case(thetas, labels)
    want = expected_logits(cos, y, [math.cos(t) - 0.25 for t in thetas])
    torch.testing.assert_close(head(x, y), want, atol=1e-4, rtol=1e-5)


def test_margin_attribute_drives_the_logits():
    head = margin_head("aam_softmax", 0.2)
    x, y, cos = angle_case([0.5, 1.0], [0, 2])
    head.margin = 0.0
    torch.testing.assert_close(head(x, y), S * cos, atol=1e-4, rtol=1e-5)


def test_softmax_head_is_linear_plus_ce():
    torch.manual_seed(0)
    head = build_head({"name": "softmax"}, embed_dim=8, num_classes=5)
    linear = nn.Linear(8, 5)
    linear.load_state_dict({"weight": head.weight, "bias": head.bias})
    x, y = torch.randn(4, 8), torch.tensor([0, 4, 2, 2])
    assert torch.equal(head(x, y), linear(x))
    torch.testing.assert_close(F.cross_entropy(head(x, y), y), F.cross_entropy(linear(x), y))


def test_gradients_finite_at_zero_angle():
    head = margin_head("aam_softmax", 0.2)
    x = torch.tensor([unit(0.0, 5.0), unit(math.pi, 5.0)], requires_grad=True)  # cosθ = 1 and −1
    F.cross_entropy(head(x, torch.tensor([0, 0])), torch.tensor([0, 0])).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


def test_margin_head_fp32_under_autocast():
    torch.manual_seed(0)
    head = build_head({"name": "aam_softmax"}, embed_dim=16, num_classes=10)
    x, y = torch.randn(4, 16), torch.tensor([1, 2, 3, 4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x.bfloat16(), y)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, head(x.bfloat16().float(), y))


@pytest.mark.parametrize("name", ["softmax", "am_softmax", "aam_softmax"])
def test_truncate_classes(name):
    torch.manual_seed(0)
    head = build_head({"name": name}, embed_dim=8, num_classes=6)
    rows = head.weight.detach().clone()
    x, y = torch.randn(5, 8), torch.tensor([0, 1, 1, 0, 1])
    before = head(x, y)
    truncate_classes(head, 2)
    assert head.weight.shape == (2, 8) and head.num_classes == 2
    assert torch.equal(head.weight, rows[:2])
    torch.testing.assert_close(head(x, y), before[:, :2])
    with pytest.raises(ValueError):
        truncate_classes(head, 3)


def test_build_head_errors():
    with pytest.raises(ValueError, match="sphere"):
        build_head({"name": "sphere"}, 4, 3)
    with pytest.raises(ValueError, match="easy_margin"):
        build_head({"name": "am_softmax", "easy_margin": True}, 4, 3)


# --- margin scheduler ---

@pytest.mark.parametrize("mode, want", [
    ("linear", {0: 0.0, 9: 0.0, 10: 0.0, 20: 0.1, 25: 0.15, 29: 0.19, 30: 0.2, 500: 0.2}),
    ("exp", {0: 0.0, 10: 0.0, 20: 0.2 * (1 - 1e-3 ** 0.5), 25: 0.2 * (1 - 1e-3 ** 0.75), 30: 0.2, 500: 0.2}),
])
def test_margin_scheduler(mode, want):
    head = build_head({"name": "aam_softmax", "margin": 0.5}, 4, 3)
    # Epochs 1..: increase during epochs 2 and 3 (steps 10..29), fixed from epoch 4 (step 30).
    sched = MarginScheduler(head, initial=0.0, final=0.2, increase_start_epoch=2, fix_start_epoch=4,
                            steps_per_epoch=10, mode=mode)
    assert head.margin == 0.0
    for step, margin in want.items():
        sched.step(step)
        assert head.margin == pytest.approx(margin, abs=1e-12)
    resumed = MarginScheduler(head, 0.0, 0.2, 2, 4, 10, mode)
    resumed.load_state_dict(sched.state_dict())
    resumed.step(25)
    assert head.margin == pytest.approx(want[25])


def test_margin_scheduler_needs_a_margin():
    with pytest.raises(ValueError, match="margin"):
        MarginScheduler(build_head({"name": "softmax"}, 4, 3), 0.0, 0.2, 1, 2, 10)


# --- optimizer ---

class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        return self.norm(self.proj(x))


class Toy(nn.Module):
    """encoder.{proj,norm}.{weight,bias}, backend.{weight,bias}"""

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.backend = nn.Linear(4, 3)

    def forward(self, x):
        return self.backend(self.encoder(x))


OPTIM_YAML = r"""
optim:
  name: sgd
  lr: 0.1
  weight_decay: 1e-4
  momentum: 0.9
  nesterov: true
  param_groups: [{pattern: "encoder\\.", lr_mult: 0.1}]
  no_decay: ["bias", "norm"]
"""


def toy() -> Toy:
    torch.manual_seed(0)
    return Toy()


def group_of(opt: torch.optim.Optimizer, model: nn.Module) -> dict[str, dict]:
    by_id = {id(p): g for g in opt.param_groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters()}


def test_optimizer_param_groups():
    model = toy()
    opt = build_optimizer(model, yaml.safe_load(OPTIM_YAML)["optim"])
    assert isinstance(opt, torch.optim.SGD) and len(opt.param_groups) == 4
    groups = group_of(opt, model)
    want = {  # name: (lr, weight_decay)
        "encoder.proj.weight": (0.01, 1e-4), "encoder.proj.bias": (0.01, 0.0),
        "encoder.norm.weight": (0.01, 0.0), "encoder.norm.bias": (0.01, 0.0),
        "backend.weight": (0.1, 1e-4), "backend.bias": (0.1, 0.0),
    }
    for name, (lr, wd) in want.items():
        assert groups[name]["lr"] == pytest.approx(lr) and groups[name]["weight_decay"] == wd, name
        assert groups[name]["momentum"] == 0.9 and groups[name]["nesterov"]


def test_optimizer_adamw_and_frozen_params_untouched():
    model = toy()
    opt = build_optimizer(model, {"name": "adamw", "lr": 0.01, "weight_decay": 0.1, "betas": [0.9, 0.98]})
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["betas"] == (0.9, 0.98)
    model.encoder.requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before if n.startswith("encoder."))
    assert not torch.equal(before["backend.weight"], after["backend.weight"])


@pytest.mark.parametrize("cfg, word", [
    ({"name": "adam", "lr": 0.1, "momentum": 0.9}, "momentum"),
    ({"name": "sgd", "lr": 0.1, "lr_decay": 0.9}, "lr_decay"),
    ({"name": "rmsprop", "lr": 0.1}, "rmsprop"),
    ({"name": "sgd"}, "lr"),
    ({"name": "sgd", "lr": 0.1, "param_groups": [{"pattern": "encoder", "lr_mul": 0.1}]}, "lr_mul"),
    ({"name": "sgd", "lr": 0.1, "param_groups": [{"pattern": "decoder\\.", "lr_mult": 0.1}]}, "decoder"),
    # Shadowed by the first rule, so it gets nothing.
    ({"name": "sgd", "lr": 0.1, "param_groups": [{"pattern": "encoder", "lr_mult": 0.1},
                                                 {"pattern": "encoder\\.proj", "lr_mult": 0.5}]}, "proj"),
    ({"name": "sgd", "lr": 0.1, "no_decay": ["gamma"]}, "gamma"),
])
def test_optimizer_errors(cfg, word):
    with pytest.raises(ValueError, match=word):
        build_optimizer(toy(), cfg)


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    model.zero_grad()
    torch.manual_seed(1)
    model(torch.randn(3, 4)).pow(2).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_grad_multiplier_scales_gradients_exactly():
    model = toy()
    plain = grads(model)
    scaled_model = copy.deepcopy(model)
    scaled_model.encoder.requires_grad_(False)  # a hook registered while frozen fires once unfrozen
    handles = apply_grad_multipliers(scaled_model, [{"pattern": "encoder\\.", "mult": 0.1}])
    assert len(handles) == 4 and not scaled_model.encoder.proj.weight.requires_grad
    scaled_model.encoder.requires_grad_(True)
    scaled = grads(scaled_model)
    for name in plain:
        assert torch.equal(scaled[name], plain[name] * 0.1 if name.startswith("encoder.") else plain[name]), name
    for h in handles:
        h.remove()
    assert all(torch.equal(g, plain[n]) for n, g in grads(scaled_model).items())
    with pytest.raises(ValueError, match="decoder"):
        apply_grad_multipliers(model, [{"pattern": "decoder", "mult": 0.1}])
    with pytest.raises(ValueError, match="scale"):
        apply_grad_multipliers(model, [{"pattern": "encoder", "scale": 0.1}])


def test_freeze_rules():
    model = toy()
    rules = [{"pattern": "encoder\\.", "epochs": 2}]
    encoder = {n for n, _ in model.named_parameters() if n.startswith("encoder.")}
    assert frozen_params(model, rules, 1) == frozen_params(model, rules, 2) == encoder
    assert frozen_params(model, rules, 3) == set()
    model.backend.bias.requires_grad_(False)  # frozen outside the rules: left alone
    assert set_frozen(model, rules, 1) == encoder
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert set_frozen(model, rules, 2) == set()
    assert set_frozen(model, rules, 3) == encoder
    assert all(p.requires_grad for p in model.encoder.parameters())
    assert model.backend.weight.requires_grad and not model.backend.bias.requires_grad
    with pytest.raises(ValueError, match="decoder"):
        frozen_params(model, [{"pattern": "decoder", "epochs": 1}], 1)
    with pytest.raises(ValueError, match="epoch"):
        set_frozen(model, [{"pattern": "encoder", "epoch": 1}], 1)


# --- learning-rate schedules ---

SPE, EPOCHS = 10, 5
SGD_TWO_GROUPS = {"name": "sgd", "lr": 0.1, "param_groups": [{"pattern": "encoder\\.", "lr_mult": 0.1}]}


def scheduled(cfg: dict, model: nn.Module | None = None):
    model = model or toy()
    opt = build_optimizer(model, SGD_TWO_GROUPS)
    return opt, build_scheduler(opt, cfg, SPE, EPOCHS)


def run(opt, sched, steps: int) -> list[list[float]]:
    """The lr of every group for each of `steps` training steps."""
    lrs = []
    for _ in range(steps):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return lrs


def base_lrs(cfg: dict) -> list[float]:
    """The base group's lr for every step, checking the encoder group's is a tenth of it throughout."""
    lrs = run(*scheduled(cfg), SPE * EPOCHS)
    for encoder_lr, base_lr in lrs:
        assert encoder_lr == pytest.approx(0.1 * base_lr, rel=1e-9)
    return [lr for _, lr in lrs]


def test_exponential_schedule():
    lr = base_lrs({"name": "exponential", "warmup_epochs": 1, "final_lr": 1e-3})
    assert lr[0] == pytest.approx(0.1 / 11) and lr[9] == pytest.approx(0.1 * 10 / 11)
    assert lr[10] == pytest.approx(0.1)  # the end of warm-up
    assert lr[-1] == pytest.approx(1e-3)  # the last step
    ratios = [b / a for a, b in zip(lr[10:], lr[11:])]
    assert ratios == pytest.approx([0.01 ** (1 / 39)] * 39)


def test_cosine_schedule():
    lr = base_lrs({"name": "cosine", "warmup_epochs": 1, "final_lr": "1e-3"})
    assert lr[10] == pytest.approx(0.1) and lr[-1] == pytest.approx(1e-3)
    assert lr[10 + 39 // 2] == pytest.approx(1e-3 + 0.099 * 0.5 * (1 + math.cos(math.pi * 19 / 39)))
    # Decay over 2 epochs after the warm-up, then hold: the paper's fine-tuning stages.
    lr = base_lrs({"name": "cosine", "warmup_epochs": 1, "final_lr": 1e-3, "decay_epochs": 2})
    assert lr[20] == pytest.approx(0.0505) and lr[30] == pytest.approx(1e-3) and lr[-1] == pytest.approx(1e-3)


def test_step_schedule():
    lr = base_lrs({"name": "step", "warmup_epochs": 1, "step_epochs": [2, 4], "gamma": 0.1})
    assert lr[10] == pytest.approx(0.1) and lr[19] == pytest.approx(0.1)
    assert lr[20] == pytest.approx(0.01) and lr[39] == pytest.approx(0.01) and lr[40] == pytest.approx(1e-3)
    no_warmup = base_lrs({"name": "step", "step_epochs": [2]})
    assert no_warmup[0] == pytest.approx(0.1) and no_warmup[20] == pytest.approx(0.01)


def test_onecycle_matches_torch():
    cfg = {"name": "onecycle", "pct_start": 0.25, "div_factor": 10, "final_div_factor": 100}
    lr = base_lrs(cfg)
    model = toy()
    opt = build_optimizer(model, SGD_TWO_GROUPS)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[0.01, 0.1], total_steps=SPE * EPOCHS, pct_start=0.25,
                                              div_factor=10, final_div_factor=100, cycle_momentum=False)
    assert lr == pytest.approx([base for _, base in run(opt, ref, SPE * EPOCHS)], rel=1e-9)


def test_scheduler_resumes_from_state_dict():
    cfg = {"name": "exponential", "warmup_epochs": 1, "final_lr": 1e-3}
    opt, sched = scheduled(cfg)
    run(opt, sched, 17)
    buf = io.BytesIO()
    torch.save({"optim": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    # Rebuild from the config, then load the optimizer and then the scheduler.
    opt2, sched2 = scheduled(cfg)
    opt2.load_state_dict(state["optim"])
    sched2.load_state_dict(state["sched"])
    assert run(opt2, sched2, 20) == run(opt, sched, 20)


@pytest.mark.parametrize("cfg, word", [
    ({"name": "exponential", "warmup_epochs": 1}, "final_lr"),
    ({"name": "cosine", "final_lr": 1e-3, "gamma": 0.1}, "gamma"),
    ({"name": "onecycle", "max_lr": 1.0}, "max_lr"),
    ({"name": "onecycle", "warmup_epochs": 1}, "warmup_epochs"),
    ({"name": "exponential", "final_lr": 1e-3, "warmup_epochs": 5}, "warmup_epochs"),
    ({"name": "step", "step_epochs": [3, 2]}, "step_epochs"),
    ({"name": "step", "warmup_epochs": 2, "step_epochs": [2]}, "step_epochs"),
    ({"name": "cosine", "final_lr": 1e-3, "warmup_epochs": 1, "decay_epochs": 5}, "decay_epochs"),
    ({"name": "plateau"}, "plateau"),
])
def test_scheduler_errors(cfg, word):
    opt = build_optimizer(toy(), {"name": "sgd", "lr": 0.1})
    with pytest.raises(ValueError, match=word):
        build_scheduler(opt, cfg, SPE, EPOCHS)
