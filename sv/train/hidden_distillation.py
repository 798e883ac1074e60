"""Distillation-guided structured pruning (w2v-bert2-lora-adapter-mfa-pruning.txt, section 2.6, eq. 5-9): the
student's encoder, gated (model.encoder.gates), learns to reproduce every hidden state of the frozen, unpruned
teacher encoder, while an augmented Lagrangian pulls the gates' expected sparsity to a target:

    L = weight * sum_l mean_t [ |h - h^|_1 / D - cos(h, h^) ]  +  lambda_1 (s - t) + lambda_2 (s - t)^2

s is the expected sparsity of the student's encoder, 1 - E[parameters] / parameters, from the gates' P(open)
(sv/models/pruning.py); t rises linearly from 0 to target_sparsity over the first warmup_steps batches (the
paper: 10,000). The multipliers are trained by gradient ascent (their gradients are negated), so the min-max of
eq. 9 is one optimizer step. Give the gates and multipliers their own learning rate with optim.param_groups
(pattern "log_alpha|lambda_"; the paper: 2e-2 against 2e-4). With target_sparsity null there is no Lagrangian:
the further distillation of an already pruned student.

    teacher: {loss: hidden_distill, model: exp/x/s2/models/avg_model.pt, weight: 1.0, target_sparsity: 0.8,
              warmup_steps: 10000}

`model` is a checkpoint of the unpruned speaker model (an ssl_speaker, LoRA merged); its encoder is the teacher.
The student's hidden states must match the teacher's in number and width.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sv.models.pruning import expected_params, layer_gates
from sv.models.ssl_encoder import valid_mask
from sv.models.ssl_speaker import load_ssl_speaker
from sv.train.auxiliary import AuxiliaryLoss
from sv.train.checkpoint import load_checkpoint

log = logging.getLogger(__name__)
LOG_EVERY = 100  # batches between the log lines on sparsity


def load_teacher_encoder(path: str) -> nn.Module:
    """The encoder of a trained ssl_speaker checkpoint, weights from the checkpoint, without gates."""
    ckpt = load_checkpoint(path)
    if ((ckpt.get("config") or {}).get("model") or {}).get("lora"):
        raise ValueError(f"teacher.model {path}: has LoRA; merge it first (python -m sv.bin.merge_lora)")
    return load_ssl_speaker(ckpt, f"teacher.model {path}", gates=None).encoder


class HiddenStateDistillation(AuxiliaryLoss):
    def __init__(self, student: nn.Module, data_cfg: dict[str, Any], model: str, weight: float = 1.0,
                 target_sparsity: float | None = None, warmup_steps: int = 10000):
        super().__init__(load_teacher_encoder(model), weight)
        encoder = getattr(student, "encoder", None)
        if encoder is None or not hasattr(encoder, "hidden_size"):
            raise ValueError("teacher (hidden_distill): the student must be an ssl_speaker model")
        shapes = [(m.num_layers + 1, m.hidden_size) for m in (self.teacher, encoder)]
        if shapes[0] != shapes[1]:
            raise ValueError(f"teacher (hidden_distill): the teacher gives {shapes[0][0]} hidden states of width "
                             f"{shapes[0][1]}, the student {shapes[1][0]} of width {shapes[1][1]}")
        self.__dict__["student_encoder"] = encoder.model  # for the gates; trained as part of the model
        self.target = target_sparsity
        if target_sparsity is not None:
            if not (isinstance(target_sparsity, (int, float)) and 0 <= target_sparsity < 1):
                raise ValueError(f"teacher.target_sparsity must be in [0, 1), got {target_sparsity!r}")
            if not any(layer_gates(encoder.model)[0]):
                raise ValueError("teacher.target_sparsity needs gates on the student: model.encoder.gates: {}")
            if int(warmup_steps) < 1:
                raise ValueError(f"teacher.warmup_steps must be >= 1, got {warmup_steps!r}")
            self.warmup_steps = int(warmup_steps)
            self.lambda_1 = nn.Parameter(torch.zeros(()))
            self.lambda_2 = nn.Parameter(torch.zeros(()))
            for p in (self.lambda_1, self.lambda_2):
                p.register_hook(torch.neg)  # gradient ascent on the multipliers
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def distillation(self, student: list[torch.Tensor], teacher: list[torch.Tensor],
                     lengths: torch.Tensor) -> torch.Tensor:
        valid = valid_mask(lengths, teacher[0].shape[1]).to(teacher[0].dtype)
        n = valid.sum()
        total = torch.zeros((), device=teacher[0].device)
        for s, t in zip(student, teacher):
            s, t = s.float(), t.float()
            l1 = (s - t).abs().mean(-1)
            cos = F.cosine_similarity(s, t, dim=-1)
            total = total + ((l1 - cos) * valid).sum() / n
        return total

    def sparsity(self) -> torch.Tensor:
        expected, total = expected_params(self.student_encoder)
        return 1 - expected / total

    def forward(self, inputs: torch.Tensor, outputs: dict[str, Any]) -> torch.Tensor:
        with torch.no_grad():
            teacher_states, lengths = self.teacher(inputs)
        loss = self.weight * self.distillation(outputs["hidden_states"], teacher_states, lengths)
        if self.target is not None:
            target = self.target * min(1.0, self.step.item() / self.warmup_steps)
            gap = self.sparsity() - target
            loss = loss + self.lambda_1 * gap + self.lambda_2 * gap ** 2
            if self.training and self.step.item() % LOG_EVERY == 0:
                log.info("pruning: expected sparsity %.4f, target %.4f, lambda %.4f %.4f", gap.item() + target,
                         target, self.lambda_1.item(), self.lambda_2.item())
        if self.training:
            self.step += 1
        return loss
