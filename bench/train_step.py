"""Training throughput: forward+backward samples/s of each registered model, and the data pipeline's
samples/s in raw-waveform mode with every augmentation on.

  python bench/train_step.py [--batch 16] [--crop 2.0] [--steps 5] [--models ecapa_tdnn ...]
                             [--device auto|cpu|cuda] [--amp none|bf16] [--data DIR] [--skip-data]

Models are built from egs/voxceleb/conf/<config>.yaml (real sizes). On the GPU, peak memory is printed
too. The pipeline part needs the data dirs of the mini recipe (egs/mini/data by default: run
`bash egs/mini/run.sh --stop-stage 1` first): vox1_dev, musan and rirs.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sv.config import load_yaml
from sv.data.train_loader import build_train_loader
from sv.models.margin_heads import build_head
from sv.models.registry import build_model

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["xvector", "ecapa_tdnn_c512", "ecapa_tdnn_c1024", "resnet34",
           "mfa_conformer_small", "mfa_conformer_medium", "mfa_conformer_large"]


def bench_model(name: str, batch: int, crop: float, steps: int, device: torch.device, amp: str) -> tuple[float, float]:
    """(samples/s, peak GiB or nan) of forward + AAM loss + backward + SGD step."""
    cfg = load_yaml(REPO / "egs/voxceleb/conf" / f"{name}.yaml")
    model = build_model(cfg["model"]).to(device)
    head = build_head({"name": "aam_softmax"}, model.embed_dim, 1000).to(device)
    opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.01)
    feats = torch.randn(batch, int(crop * 100), cfg["model"].get("feat_dim", 80), device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = F.cross_entropy(head(model(feats), labels).float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up: allocator, kernels
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return steps * batch / elapsed, peak


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=float, default=2.0, help="seconds (100 frames a second)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--models", nargs="+", default=CONFIGS, help="configs of egs/voxceleb/conf to time")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="none", choices=["none", "bf16"])
    p.add_argument("--data", type=Path, default=REPO / "egs/mini/data")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--skip-data", action="store_true")
    args = p.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    print(f"forward+backward, batch {args.batch}, crop {args.crop} s, {device}, amp {args.amp}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'model':<24}{'samples/s':>12}{'peak GiB':>10}")
    for name in args.models:
        rate, peak = bench_model(name, args.batch, args.crop, args.steps, device, args.amp)
        print(f"{name:<24}{rate:>12.1f}{'-' if device.type == 'cpu' else f'{peak:.2f}':>10}")
    if not args.skip_data:
        rate = bench_pipeline(args.data, 32, args.crop, args.workers, batches=10)
        print(f"\ndata pipeline, raw mode, speed+MUSAN+RIR+SpecAugment, batch 32, {args.workers} workers: "
              f"{rate:.1f} samples/s")


if __name__ == "__main__":
    main()
