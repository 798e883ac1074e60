"""ASR-to-speaker distillation (Cai & Li, section III-D, eq. 4-5): the student speaker model, coupled with a
linear CTC head on its last Conformer block, learns the frame-level CTC posteriors of a frozen ASR
Conformer-CTC teacher. L_distill is KL(teacher || student) per frame, averaged over the teacher's valid frames.

Students at half the teacher's frame rate (subsampling 2 against 4) get the paper's extra stride-2
convolution (kernel 3, padding 1) before the CTC head, so that their frames align with the teacher's; any
other mismatch of frame rates or counts is an error. The head (and that convolution) train with the student
and serve only this loss: extraction and model_info see the speaker model alone.

    teacher: {loss: ctc_kl, model: <imported ASR model dir>, weight: 1.0}   # alpha = 1, as in the paper
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from sv.models.asr_conformer import load_asr_model
from sv.models.conformer import conv_out_length, valid_frames
from sv.train.auxiliary import AuxiliaryLoss


class CTCDistillation(AuxiliaryLoss):
    def __init__(self, student: nn.Module, data_cfg: dict[str, Any], model: str, weight: float = 1.0):
        super().__init__(load_asr_model(model), weight)
        if getattr(student, "input_kind", "features") != "waveform" or data_cfg["mode"] != "waveform":
            raise ValueError("teacher (ctc_kl): the ASR teacher reads waveforms, so the student must too: "
                             "data.mode: waveform, and model.frontend or model.pretrained on the student")
        sample_rate = self.teacher.frontend.sample_rate
        if data_cfg["sample_rate"] != sample_rate:
            raise ValueError(f"teacher (ctc_kl): data.sample_rate {data_cfg['sample_rate']} differs from the "
                             f"teacher's {sample_rate} Hz")
        encoder = getattr(student, "encoder", None)
        if encoder is None or not hasattr(encoder, "pre_encode"):
            raise ValueError("teacher (ctc_kl): the student needs a Conformer encoder (mfa_conformer)")
        ratio = self.teacher.encoder.pre_encode.factor / encoder.pre_encode.factor
        if ratio not in (1, 2):
            raise ValueError(f"teacher (ctc_kl): student subsampling {encoder.pre_encode.factor} against the "
                             f"teacher's {self.teacher.encoder.pre_encode.factor}: only equal or half-rate "
                             "students can be aligned frame by frame")
        d = encoder.d_model
        self.downsample = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1) if ratio == 2 else None
        self.ctc_head = nn.Linear(d, len(self.teacher.vocabulary) + 1)

    def forward(self, inputs: torch.Tensor, outputs: dict[str, Any]) -> torch.Tensor:
        with torch.no_grad():
            teacher_log_probs, teacher_frames = self.teacher(inputs)
        x, frames = outputs["layers"][-1], outputs["lengths"]
        if self.downsample is not None:
            x = x.masked_fill(~valid_frames(frames, x.shape[1])[..., None], 0.0)
            x = self.downsample(x.transpose(1, 2)).transpose(1, 2)
            frames = conv_out_length(frames)
        if x.shape[1] != teacher_log_probs.shape[1] or not torch.equal(frames, teacher_frames):
            raise ValueError(f"teacher (ctc_kl): the student has {x.shape[1]} frames per utterance, the teacher "
                             f"{teacher_log_probs.shape[1]}: their front ends or subsampling differ")
        student_log_probs = torch.log_softmax(self.ctc_head(x).float(), dim=-1)
        kl = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(-1)
        valid = valid_frames(teacher_frames, kl.shape[1]).to(kl.dtype)
        return self.weight * (kl * valid).sum() / valid.sum()
