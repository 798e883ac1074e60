"""Training throughput: forward+backward samples/s, peak memory and trainable parameters of each registered
fbank model and of the systems on a pre-trained speech encoder (frozen, frozen + LoRA, fully fine-tuned), and
the data pipeline's samples/s in raw-waveform mode with every augmentation on.

  python bench/train_step.py [--batch 16] [--crop 2.0] [--steps 5] [--models ecapa_tdnn ...] [--skip-fbank]
                             [--ssl-configs wavlm_base_plus_ca_mhfa ...] [--ssl-modes frozen lora full]
                             [--ssl-batch N]
                             [--device auto|cpu|cuda] [--amp none|bf16] [--data DIR] [--skip-data]

Models are built from egs/voxceleb/conf/<config>.yaml (real sizes). One step is forward + AAM-softmax loss
(1000 classes) + backward + optimizer step; one warm-up step, then --steps timed ones.

fbank models (--models) take random (batch, crop*100, feat_dim) features and train with SGD on all parameters,
as their configs do.

SSL systems (--ssl-configs, `ssl_speaker` configs) take a random 16 kHz waveform batch (ssl_batch,
crop*16000); --ssl-batch defaults to --batch on the GPU and to min(--batch, 2) on the CPU.
The hub encoder a config names (e.g. microsoft/wavlm-base-plus) is built with random weights from its
architecture-only copy in egs/voxceleb/conf/ssl_arch/<name> (model.encoder.from_config), so nothing is
downloaded. Each config is run in each of --ssl-modes, derived from it by editing its `model:` section:
  frozen  freeze_encoder: true, no lora          (only the back-end trains)
  lora    freeze_encoder: true, lora {r: 64, alpha: 128}   (LoRA on the query/value projections + back-end)
  full    freeze_encoder: false, no lora         (everything trains)
They train as the trainer does: AdamW (the configs' optimizer) on the trainable parameters only (the model's
and the AAM head's), gradients clipped at the config's grad_clip if it sets one. optim.grad_mult is left out.
Default --ssl-configs: wavlm_base_plus_ca_mhfa and w2vbert2_lora_adapter_mfa on the GPU; on the CPU only
wavlm_base_plus_ca_mhfa (w2v-BERT 2.0 is 580M parameters: about 10 GB of RAM to fine-tune fully on the CPU
with AdamW even at batch 1). On 2 CPU cores the default SSL part takes about 4 minutes (WavLM Base+, batch 2).
`--ssl-configs` with no names skips them; --skip-fbank skips the fbank models.

Output: one line per (model, mode): samples/s, peak memory in GiB and the model's trainable parameters in M
(the AAM head's excluded). Peak memory on the GPU is torch.cuda.max_memory_allocated over the timed steps
(reset per model; weights, gradients, optimizer state and activations). On the CPU it is the growth of the
process's peak RSS (VmHWM, reset through /proc/self/clear_refs after the warm-up step) over its RSS before the
model was built, so it counts the same things plus allocator slack; nan where /proc does not allow this.
The header says which one is printed.

The pipeline part needs the data dirs of the mini recipe (egs/mini/data by default: run
`bash egs/mini/run.sh --stop-stage 1` first): vox1_dev, musan and rirs.
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sv.config import load_yaml
from sv.data.train_loader import build_train_loader
from sv.models.margin_heads import build_head
from sv.models.registry import build_model

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "egs/voxceleb/conf"
SSL_ARCH = CONF / "ssl_arch"
CONFIGS = ["xvector", "ecapa_tdnn_c512", "ecapa_tdnn_c1024", "resnet34",
           "mfa_conformer_small", "mfa_conformer_medium", "mfa_conformer_large"]
SSL_CONFIGS_GPU = ["wavlm_base_plus_ca_mhfa", "w2vbert2_lora_adapter_mfa"]
SSL_CONFIGS_CPU = ["wavlm_base_plus_ca_mhfa"]
SSL_MODES = ["frozen", "lora", "full"]
LORA = {"r": 64, "alpha": 128, "dropout": 0.0}
SAMPLE_RATE = 16000


class PeakMemory:
    """Peak memory of a benchmark: torch.cuda.max_memory_allocated on the GPU; on the CPU the growth of the
    process's peak RSS (VmHWM) over the RSS at `baseline()`, or nan where VmHWM cannot be reset."""

    def __init__(self, device: torch.device):
        self.device = device
        self.base = 0

    @property
    def description(self) -> str:
        if self.device.type == "cuda":
            return "peak GiB: torch.cuda.max_memory_allocated over the timed steps"
        return "peak GiB: growth of the process's peak RSS (VmHWM) over its RSS before the model was built"

    @staticmethod
    def _status_kib(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise OSError(f"no {key} in /proc/self/status")

    def baseline(self) -> None:
        """Before building the model: free what earlier models left, and note the RSS."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            return
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # return freed heap to the OS, so RSS is a fair baseline
        except (OSError, AttributeError):
            pass
        try:
            self.base = self._status_kib("VmRSS")
        except OSError:
            self.base = -1

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            self.base = -1

    def peak_gib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated() / 2**30
        if self.base < 0:
            return float("nan")
        try:
            return (self._status_kib("VmHWM") - self.base) / 2**20
        except OSError:
            return float("nan")


def _time_steps(step, steps: int, device: torch.device, memory: PeakMemory) -> tuple[float, float]:
    """(seconds for `steps` calls of step after one warm-up call, peak GiB)."""
    step()  # warm-up: allocator, kernels, optimizer state
    memory.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, memory.peak_gib()


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def bench_model(name: str, batch: int, crop: float, steps: int, device: torch.device, amp: str,
                memory: PeakMemory | None = None) -> tuple[float, float, float]:
    """(samples/s, peak GiB or nan, trainable M) of forward + AAM loss + backward + SGD step of an fbank model."""
    memory = memory or PeakMemory(device)
    memory.baseline()
    cfg = load_yaml(CONF / f"{name}.yaml")
    model = build_model(cfg["model"]).to(device)
    head = build_head({"name": "aam_softmax"}, model.embed_dim, 1000).to(device)
    opt = torch.optim.SGD(_trainable(model) + _trainable(head), lr=0.01)
    feats = torch.randn(batch, int(crop * 100), cfg["model"].get("feat_dim", 80), device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = F.cross_entropy(head(model(feats), labels).float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    elapsed, peak = _time_steps(step, steps, device, memory)
    return steps * batch / elapsed, peak, sum(p.numel() for p in _trainable(model)) / 1e6


def ssl_model_config(name: str, mode: str) -> dict[str, Any]:
    """The config egs/voxceleb/conf/<name>.yaml with its `model:` section set to `mode` (frozen, lora, full)
    and its encoder built with random weights from ssl_arch/<hub name>."""
    cfg = load_yaml(CONF / f"{name}.yaml")
    model_cfg = cfg.get("model", {})
    if model_cfg.get("name") != "ssl_speaker":
        raise SystemExit(f"{name}: --ssl-configs takes ssl_speaker configs, its model is {model_cfg.get('name')!r}")
    if mode not in SSL_MODES:
        raise SystemExit(f"--ssl-modes: unknown mode {mode!r} (one of {', '.join(SSL_MODES)})")
    encoder = model_cfg["encoder"] = dict(model_cfg["encoder"])
    arch = SSL_ARCH / Path(str(encoder["pretrained"])).name
    if not (arch / "config.json").is_file():
        raise SystemExit(f"{name}: no architecture copy of {encoder['pretrained']} at {arch}")
    encoder["pretrained"], encoder["from_config"] = str(arch), True
    model_cfg.pop("lora", None)
    model_cfg["freeze_encoder"] = mode != "full"
    if mode == "lora":
        model_cfg["lora"] = copy.deepcopy(LORA)
    return cfg


def bench_ssl(name: str, mode: str, batch: int, crop: float, steps: int, device: torch.device, amp: str,
              memory: PeakMemory | None = None) -> tuple[float, float, float]:
    """(samples/s, peak GiB or nan, trainable M) of forward + AAM loss + backward + AdamW step of an SSL system
    in `mode`, on a random 16 kHz waveform batch."""
    memory = memory or PeakMemory(device)
    memory.baseline()
    cfg = ssl_model_config(name, mode)
    model = build_model(cfg["model"]).to(device)
    model.train()
    head = build_head({"name": "aam_softmax"}, model.embed_dim, 1000).to(device)
    params = _trainable(model) + _trainable(head)
    optim = cfg.get("optim", {})
    opt = torch.optim.AdamW(params, lr=float(optim.get("lr", 1e-4)),
                            weight_decay=float(optim.get("weight_decay", 1e-4)))
    grad_clip = cfg.get("grad_clip")
    waves = torch.randn(batch, int(crop * SAMPLE_RATE), device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = F.cross_entropy(head(model(waves), labels).float(), labels)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(params, float(grad_clip))
        opt.step()
        opt.zero_grad(set_to_none=True)

    elapsed, peak = _time_steps(step, steps, device, memory)
    return steps * batch / elapsed, peak, sum(p.numel() for p in _trainable(model)) / 1e6


def bench_pipeline(data: Path, batch: int, crop: float, workers: int, batches: int) -> float:
    cfg = {
        "train_dir": str(data / "vox1_dev"), "mode": "raw", "batch_size": batch, "num_workers": workers,
        "crop": crop, "speed_perturb": {"prob": 0.667}, "musan": {"data_dir": str(data / "musan"), "prob": 1.0},
        "rir": {"data_dir": str(data / "rirs"), "prob": 1.0}, "specaug": {"prob": 1.0},
    }
    loader = build_train_loader(cfg, rank=0, world_size=1, epoch=1)
    n, t0 = 0, None
    for i, (feats, _) in enumerate(loader):
        if i == 0:
            t0 = time.perf_counter()  # the first batch pays for worker start-up
            continue
        n += feats.shape[0]
        if i == batches:
            break
    return n / (time.perf_counter() - t0)


def _row(name: str, rate: float, peak: float, trainable: float) -> str:
    peak_s = "nan" if math.isnan(peak) else f"{peak:.2f}"
    return f"{name:<40}{rate:>11.2f}{peak_s:>10}{trainable:>13.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=float, default=2.0, help="seconds (100 frames or 16000 samples a second)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--models", nargs="+", default=CONFIGS, help="fbank configs of egs/voxceleb/conf to time")
    p.add_argument("--skip-fbank", action="store_true", help="time no fbank model (--models ignored)")
    p.add_argument("--ssl-configs", nargs="*", default=None,
                   help="ssl_speaker configs of egs/voxceleb/conf to time (default: "
                        f"{' '.join(SSL_CONFIGS_GPU)} on the GPU, {' '.join(SSL_CONFIGS_CPU)} on the CPU; "
                        "no names: none)")
    p.add_argument("--ssl-batch", type=int, default=None,
                   help="batch of the SSL systems (default: --batch on the GPU, min(--batch, 2) on the CPU)")
    p.add_argument("--ssl-modes", nargs="+", default=SSL_MODES, choices=SSL_MODES,
                   help="encoder training modes to time each SSL config in")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="none", choices=["none", "bf16"])
    p.add_argument("--data", type=Path, default=REPO / "egs/mini/data")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--skip-data", action="store_true")
    args = p.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    ssl_configs = args.ssl_configs
    if ssl_configs is None:
        ssl_configs = SSL_CONFIGS_GPU if device.type == "cuda" else SSL_CONFIGS_CPU
    ssl_batch = args.ssl_batch or (args.batch if device.type == "cuda" else min(args.batch, 2))
    memory = PeakMemory(device)
    print(f"forward+backward, crop {args.crop} s, {device}, amp {args.amp}, {torch.get_num_threads()} threads; "
          f"fbank models: batch {args.batch}, SGD; SSL systems (config:mode): batch {ssl_batch}, 16 kHz waveform, "
          f"AdamW\n{memory.description}")
    print(f"{'model':<40}{'samples/s':>11}{'peak GiB':>10}{'trainable M':>13}")
    if not args.skip_fbank:
        for name in args.models:
            print(_row(name, *bench_model(name, args.batch, args.crop, args.steps, device, args.amp, memory)),
                  flush=True)
    for name in ssl_configs:
        for mode in args.ssl_modes:
            print(_row(f"{name}:{mode}",
                       *bench_ssl(name, mode, ssl_batch, args.crop, args.steps, device, args.amp, memory)),
                  flush=True)
    if not args.skip_data:
        rate = bench_pipeline(args.data, 32, args.crop, args.workers, batches=10)
        print(f"\ndata pipeline, raw mode, speed+MUSAN+RIR+SpecAugment, batch 32, {args.workers} workers: "
              f"{rate:.1f} samples/s")


if __name__ == "__main__":
    main()
