#!/usr/bin/env python3
"""Make the NeMo Conformer-CTC test fixture in tests/fixtures/nemo_conformer_ctc/ (needs NVIDIA NeMo).

sv re-implements NeMo's Conformer-CTC (AudioToMelSpectrogramPreprocessor + ConformerEncoder + ConvASRDecoder)
without depending on NeMo. This script builds a tiny, randomly initialised nemo.collections.asr EncDecCTCModel
whose config mirrors NeMo's examples/asr/conf/conformer/conformer_ctc_char.yaml (the stt_en_conformer_ctc_*
recipe, shrunk: 2 layers, d_model 32, 4 heads, conv kernel 9), saves it as a .nemo archive and records NeMo's
own outputs on a few deterministic waveforms, so that sv's tests can check equivalence with NeMo absent:

  tiny_conformer_ctc.nemo  the model (model_config.yaml + model_weights.ckpt, a tar archive)
  reference.npz            float32 arrays; for each waveform i alone (batch of 1, no padding):
                             wave_{i}, feats_{i} (n_mels, T), feat_len_{i}, layer{j}_{i} (T', d_model) for every
                             Conformer layer j, enc_len_{i}, logprobs_{i} (T', vocab + 1; blank is last)
                           and for the batch of all waveforms, zero-padded to the longest (wave_{i} padded):
                             batch_wave_len, batch_feats (B, n_mels, T), batch_feat_len, batch_layer{j} (B, T', d_model),
                             batch_enc_len, batch_logprobs (B, T', vocab + 1)
                           T' may exceed enc_len by one frame (feature frames = feat_len + 1); compare [:enc_len].
  versions.json            nemo / torch / torchaudio / numpy / librosa versions and the command

NeMo is not a dependency of sv (nor of its CI); run this by hand in a separate environment, e.g.

  python3.11 -m venv /work/scratch/nemo_venv
  /work/scratch/nemo_venv/bin/pip install torch==2.14.1 torchaudio==2.11.0
  /work/scratch/nemo_venv/bin/pip install "nemo-toolkit[asr]==2.7.3" torch==2.14.1 torchaudio==2.11.0
  /work/scratch/nemo_venv/bin/python local/make_nemo_fixture.py [--out-dir tests/fixtures/nemo_conformer_ctc]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

LABELS = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]  # 28 labels; CTC blank = index 28
SAMPLE_RATE = 16000
# Seconds. 1.02 s gives 102 feature frames (102 % 4 == 2) and 0.65 s gives 65 (65 % 4 == 1): their first
# subsampling conv yields an odd number of valid frames (51, 33), so the second conv's last valid output reads one
# frame past the valid length. NeMo >= 2.5.0 masks it to zero (MaskedConvSequential); an unmasked re-implementation
# (or NeMo <= 2.4) would differ there: for 1.02 s even alone (STFT center padding yields one extra frame), for
# 0.65 s in the padded batch. 1.37 s is the longest, unpadded in the batch.
DURATIONS = (1.02, 1.37, 0.65)
N_LAYERS, D_MODEL, N_HEADS = 2, 32, 4
MAX_NEMO_BYTES = 2 * 1024 * 1024


def model_config() -> dict:
    """conformer_ctc_char.yaml's model section, shrunk; no spec augment, no datasets (no manifests needed)."""
    return {
        "sample_rate": SAMPLE_RATE,
        "labels": list(LABELS),
        "log_prediction": True,
        "ctc_reduction": "mean_batch",
        "skip_nan_grad": False,
        "train_ds": None,
        "validation_ds": None,
        "test_ds": None,
        "preprocessor": {  # exactly conformer_ctc_char.yaml's (and stt_en_conformer_ctc_*'s)
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": SAMPLE_RATE,
            "normalize": "per_feature",
            "window_size": 0.025,
            "window_stride": 0.01,
            "window": "hann",
            "features": 80,
            "n_fft": 512,
            "log": True,
            "frame_splicing": 1,
            "dither": 1e-05,
            "pad_to": 0,
            "pad_value": 0.0,
        },
        "spec_augment": None,
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": 80,
            "feat_out": -1,
            "n_layers": N_LAYERS,
            "d_model": D_MODEL,
            "subsampling": "striding",
            "subsampling_factor": 4,
            "subsampling_conv_channels": -1,
            "causal_downsampling": False,
            "ff_expansion_factor": 4,
            "self_attention_model": "rel_pos",
            "n_heads": N_HEADS,
            "att_context_size": [-1, -1],
            "att_context_style": "regular",
            "xscaling": True,
            "untie_biases": True,
            "pos_emb_max_len": 5000,
            "conv_kernel_size": 9,
            "conv_norm_type": "batch_norm",
            "conv_context_size": None,
            "dropout": 0.1,
            "dropout_pre_encoder": 0.1,
            "dropout_emb": 0.0,
            "dropout_att": 0.1,
            "stochastic_depth_drop_prob": 0.0,
            "stochastic_depth_mode": "linear",
            "stochastic_depth_start_layer": 1,  # the yaml says 0; NeMo 2.7.3 requires >= 1 (its default)
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
            "feat_in": D_MODEL,
            "num_classes": -1,
            "vocabulary": list(LABELS),
        },
        "interctc": {"loss_weights": [], "apply_at_layers": []},
        "optim": {"name": "adamw", "lr": 2.0, "betas": [0.9, 0.98], "weight_decay": 1e-3,
                  "sched": {"name": "NoamAnnealing", "d_model": D_MODEL, "warmup_steps": 10000,
                            "warmup_ratio": None, "min_lr": 1e-6}},
    }


def randomize_(model, seed: int = 0) -> None:
    """Give every parameter and float buffer a deterministic, non-trivial random value: weights ~U(+-sqrt(3/fan_in)),
    biases ~N(0, 0.2), norm gains 1+N(0, 0.2), pos_bias_u/v ~N(0, 0.5) (zero by default in NeMo), BatchNorm
    running_mean ~N(0, 0.3) and running_var ~U(0.5, 1.5)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    norms = (torch.nn.LayerNorm, torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.GroupNorm)
    with torch.no_grad():
        for mname, module in model.named_modules():
            for pname, p in module.named_parameters(recurse=False):
                if pname in ("pos_bias_u", "pos_bias_v"):
                    new = 0.5 * torch.randn(p.shape, generator=g)
                elif isinstance(module, norms) and pname == "weight":
                    new = 1.0 + 0.2 * torch.randn(p.shape, generator=g)
                elif p.dim() >= 2:
                    bound = (3.0 / p[0].numel()) ** 0.5
                    new = (2 * torch.rand(p.shape, generator=g) - 1) * bound
                else:
                    new = 0.2 * torch.randn(p.shape, generator=g)
                p.copy_(new)
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(0.3 * torch.randn(module.running_mean.shape, generator=g))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=g))


def make_waves(seed: int = 0):
    """Deterministic test signals: a mix of sinusoids (a chirp-free chord with slow AM) and seeded noise, ~0.3 peak."""
    import numpy as np

    rng = np.random.default_rng(seed)
    waves = []
    for i, dur in enumerate(DURATIONS):
        n = int(round(dur * SAMPLE_RATE))
        t = np.arange(n) / SAMPLE_RATE
        f0 = 150.0 + 70.0 * i
        x = sum(np.sin(2 * np.pi * f0 * k * t + 0.3 * k) / k for k in (1, 2, 3, 5))
        x *= 0.6 + 0.4 * np.sin(2 * np.pi * (2.0 + i) * t)
        x += 0.3 * rng.standard_normal(n)
        x = 0.3 * x / np.max(np.abs(x))
        waves.append(x.astype(np.float32))
    return waves


def run_model(model, wave_batch, lengths):
    """NeMo's own forward in eval mode; also capture every Conformer layer's output with forward hooks."""
    import torch

    layer_out = {}
    hooks = [layer.register_forward_hook(lambda m, inp, out, j=j: layer_out.__setitem__(j, out))
             for j, layer in enumerate(model.encoder.layers)]
    try:
        with torch.no_grad():
            feats, feat_len = model.preprocessor(input_signal=wave_batch, length=lengths)
            logprobs, enc_len, _ = model.forward(input_signal=wave_batch, input_signal_length=lengths)
    finally:
        for h in hooks:
            h.remove()
    return feats, feat_len, [layer_out[j] for j in range(len(model.encoder.layers))], enc_len, logprobs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default="tests/fixtures/nemo_conformer_ctc")
    args = ap.parse_args()

    try:
        import nemo
        from nemo.collections.asr.models import EncDecCTCModel
    except Exception as e:  # ImportError, or a broken dependency of NeMo's ASR collection
        print(f"make_nemo_fixture.py: NVIDIA NeMo's ASR collection is not importable ({type(e).__name__}: {e}).\n"
              "Run this with a Python that has nemo-toolkit[asr] installed, e.g.\n"
              "  python3.11 -m venv /work/scratch/nemo_venv\n"
              "  /work/scratch/nemo_venv/bin/pip install torch==2.14.1 torchaudio==2.11.0\n"
              "  /work/scratch/nemo_venv/bin/pip install 'nemo-toolkit[asr]==2.7.3' torch==2.14.1 torchaudio==2.11.0\n"
              "  /work/scratch/nemo_venv/bin/python local/make_nemo_fixture.py", file=sys.stderr)
        return 2
    import librosa
    import numpy as np
    import torch
    import torchaudio
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out_dir, exist_ok=True)

    cfg = OmegaConf.create(model_config())
    print("preprocessor config (as conformer_ctc_char.yaml / stt_en_conformer_ctc_*):")
    print(OmegaConf.to_yaml(cfg.preprocessor))
    model = EncDecCTCModel(cfg=cfg, trainer=None).cpu()
    randomize_(model, seed=0)
    model.eval()
    fb = model.preprocessor.featurizer
    print(f"featurizer: n_fft={fb.n_fft} win_length={fb.win_length} hop_length={fb.hop_length} "
          f"preemph={fb.preemph} dither={fb.dither} (applied only when training: {fb.training}) "
          f"log_zero_guard={fb.log_zero_guard_type}:{fb.log_zero_guard_value} mag_power={fb.mag_power} "
          f"pad_to={fb.pad_to} pad_value={fb.pad_value} normalize={fb.normalize}")

    nemo_path = os.path.join(args.out_dir, "tiny_conformer_ctc.nemo")
    model.save_to(nemo_path)
    size = os.path.getsize(nemo_path)
    print(f"saved {nemo_path}: {size} bytes")
    if size >= MAX_NEMO_BYTES:
        print(f"make_nemo_fixture.py: {nemo_path} is {size} bytes, over {MAX_NEMO_BYTES}", file=sys.stderr)
        return 1

    # Dither must be off in eval mode: two runs on the same input must agree bit for bit.
    waves = make_waves(seed=0)
    x0 = torch.from_numpy(waves[0])[None]
    l0 = torch.tensor([x0.shape[1]])
    with torch.no_grad():
        a, _ = model.preprocessor(input_signal=x0.clone(), length=l0)
        b, _ = model.preprocessor(input_signal=x0.clone(), length=l0)
    print(f"eval-mode preprocessor deterministic (no dither): {torch.equal(a, b)}")
    if not torch.equal(a, b):
        return 1

    out: dict[str, np.ndarray] = {}
    f32 = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    singles = []
    for i, w in enumerate(waves):
        x = torch.from_numpy(w)[None]
        feats, feat_len, layers, enc_len, logprobs = run_model(model, x, torch.tensor([len(w)]))
        singles.append((feats, feat_len, layers, enc_len, logprobs))
        out[f"wave_{i}"] = w
        out[f"feats_{i}"] = f32(feats[0])
        out[f"feat_len_{i}"] = f32(feat_len)
        for j, h in enumerate(layers):
            out[f"layer{j}_{i}"] = f32(h[0])
        out[f"enc_len_{i}"] = f32(enc_len)
        out[f"logprobs_{i}"] = f32(logprobs[0])
        print(f"wave {i}: {len(w)} samples -> feats {tuple(feats.shape[1:])} (len {int(feat_len)}), "
              f"enc {tuple(layers[-1].shape[1:])} (len {int(enc_len)}), logprobs {tuple(logprobs.shape[1:])}")

    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    feats, feat_len, layers, enc_len, logprobs = run_model(model, batch, lengths)
    out["batch_wave_len"] = f32(lengths)
    out["batch_feats"] = f32(feats)
    out["batch_feat_len"] = f32(feat_len)
    for j, h in enumerate(layers):
        out[f"batch_layer{j}"] = f32(h)
    out["batch_enc_len"] = f32(enc_len)
    out["batch_logprobs"] = f32(logprobs)

    print("padded batch vs. each utterance alone, max |diff| over valid frames:")
    for i, (s_feats, s_flen, s_layers, s_elen, s_lp) in enumerate(singles):
        fl, el = int(s_flen), int(s_elen)
        assert int(feat_len[i]) == fl and int(enc_len[i]) == el
        d = {"feats": (feats[i, :, :fl] - s_feats[0, :, :fl]).abs().max().item()}
        for j in range(len(layers)):
            d[f"layer{j}"] = (layers[j][i, :el] - s_layers[j][0, :el]).abs().max().item()
        d["logprobs"] = (logprobs[i, :el] - s_lp[0, :el]).abs().max().item()
        print(f"  utt {i}: " + ", ".join(f"{k} {v:.3g}" for k, v in d.items()))

    # The archive must reproduce these outputs when restored.
    restored = EncDecCTCModel.restore_from(nemo_path, map_location="cpu")
    restored.eval()
    r = run_model(restored, batch, lengths)
    same = torch.equal(r[4], logprobs) and all(torch.equal(p, q) for p, q in zip(r[2], layers))
    print(f"restored .nemo reproduces the batch outputs exactly: {same}")
    if not same:
        return 1

    npz_path = os.path.join(args.out_dir, "reference.npz")
    np.savez_compressed(npz_path, **out)
    print(f"saved {npz_path}: {os.path.getsize(npz_path)} bytes, {len(out)} arrays")

    versions = {
        "nemo_toolkit": nemo.__version__,
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "numpy": np.__version__,
        "librosa": librosa.__version__,
        "python": platform.python_version(),
        "command": " ".join([os.path.relpath(sys.executable) if not os.path.isabs(sys.executable)
                             else sys.executable, "local/make_nemo_fixture.py"] + sys.argv[1:]),
        "install": ["python3.11 -m venv /work/scratch/nemo_venv",
                    "/work/scratch/nemo_venv/bin/pip install torch==2.14.1 torchaudio==2.11.0",
                    "/work/scratch/nemo_venv/bin/pip install 'nemo-toolkit[asr]==2.7.3' torch==2.14.1 "
                    "torchaudio==2.11.0"],
        "seed": 0,
        "durations_s": list(DURATIONS),
        "sample_rate": SAMPLE_RATE,
        "labels": LABELS,
        "blank_index": len(LABELS),
    }
    with open(os.path.join(args.out_dir, "versions.json"), "w") as f:
        json.dump(versions, f, indent=2)
        f.write("\n")
    print(json.dumps(versions, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
