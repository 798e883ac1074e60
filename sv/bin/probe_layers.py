"""Layer probe (asr-conformer-transfer-kd-adaptor.txt, section III-E-1, Fig. 3): how much speaker information each
layer of a frozen ASR Conformer holds. One probe per layer, all trained together on the same batches:

    layer output (B, T', d) -> Linear(d, hidden) -> ReLU -> Linear(hidden, hidden) -> mean over valid frames
                            -> Linear(hidden, speakers)      (cross-entropy; the encoder never trains)

  python -m sv.bin.probe_layers --asr exp/asr/stt_en_conformer_ctc_large --data data/vox1_dev --out-dir exp/probe

Reads:  --asr, an imported ASR model directory (python -m sv.bin.import_nemo); --data, a training data dir
        (wav.scp, utt2spk, spk2utt, utt2dur; + segments), read as training reads it (random crops, no augmentation).
Writes: OUT_DIR/probe.md    per-layer table: speaker-classification accuracy over the last epoch's batches (the
                            paper's training accuracy) and over the epoch before, and the last epoch's loss
        OUT_DIR/probe.json  the same numbers
        OUT_DIR/probe.png   accuracy against layer, when matplotlib is installed
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from sv.cli import run_main
from sv.data.table import DataError, atomic_open
from sv.data.train_loader import build_train_loader, num_classes, resolve_config, steps_per_epoch
from sv.models.asr_conformer import load_asr_model, read_asr_config
from sv.models.pooling import frame_mask

log = logging.getLogger(__name__)


class LayerProbe(nn.Module):
    def __init__(self, in_dim: int, hidden: int, num_speakers: int):
        super().__init__()
        self.frames = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.classifier = nn.Linear(hidden, num_speakers)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.frames(x).transpose(1, 2)  # (B, hidden, T)
        mask = frame_mask(lengths, h)
        return self.classifier((h * mask).sum(-1) / mask.sum(-1))


def probe_layers(asr_dir: str, data_cfg: dict, epochs: int, hidden: int, lr: float, device: str) -> list[dict]:
    """Train every layer's probe for `epochs`; per layer: accuracy and loss over the last epoch's batches, and
    accuracy over the epoch before (to show whether the probe had converged)."""
    encoder = load_asr_model(asr_dir).to(device).requires_grad_(False)
    n_layers, d = encoder.encoder.num_layers, encoder.encoder.d_model
    speakers = num_classes(data_cfg)
    probes = nn.ModuleList(LayerProbe(d, hidden, speakers) for _ in range(n_layers)).to(device)
    optimizer = torch.optim.Adam(probes.parameters(), lr=lr)
    steps = steps_per_epoch(data_cfg, 1)
    history = []
    for epoch in range(1, epochs + 1):
        correct = torch.zeros(n_layers)
        loss_sum = torch.zeros(n_layers)
        seen = 0
        for waves, labels in tqdm(build_train_loader(data_cfg, 0, 1, epoch), total=steps, desc=f"probe epoch {epoch}",
                                  leave=False):
            waves, labels = waves.to(device), labels.to(device)
            with torch.no_grad():
                layers, lengths = encoder.encode(waves)
            losses = []
            for i, (probe, h) in enumerate(zip(probes, layers)):
                logits = probe(h, lengths)
                losses.append(F.cross_entropy(logits, labels))
                correct[i] += (logits.argmax(-1) == labels).sum().item()
                loss_sum[i] += losses[-1].item() * len(labels)
            optimizer.zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()  # the probes share no parameter: each learns from its own loss
            optimizer.step()
            seen += len(labels)
        history.append((correct / seen, loss_sum / seen))
        log.info("epoch %d: accuracy per layer %s", epoch, " ".join(f"{a:.3f}" for a in history[-1][0].tolist()))
    last_acc, last_loss = history[-1]
    before = history[-2][0] if len(history) > 1 else torch.full((n_layers,), float("nan"))
    return [{"layer": i + 1, "accuracy": float(last_acc[i]), "accuracy_epoch_before": float(before[i]),
             "loss": float(last_loss[i])} for i in range(n_layers)]


def write_outputs(rows: list[dict], out_dir: Path, title: str) -> None:
    lines = [f"# Layer probe: {title}", "", "| layer | accuracy % | previous epoch % | loss |", "|---|---|---|---|"]
    lines += [f"| {r['layer']} | {100 * r['accuracy']:.2f} | {100 * r['accuracy_epoch_before']:.2f} | {r['loss']:.4f} |"
              for r in rows]
    with atomic_open(out_dir / "probe.md") as f:
        f.write("\n".join(lines) + "\n")
    with atomic_open(out_dir / "probe.json") as f:
        json.dump(rows, f, indent=1)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no probe.png")
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["layer"] for r in rows], [100 * r["accuracy"] for r in rows], marker="o")
    ax.set_xlabel("Conformer layer")
    ax.set_ylabel("speaker accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_open(out_dir / "probe.png", "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sv.bin.probe_layers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr", required=True, help="input: imported ASR model directory")
    p.add_argument("--data", required=True, help="input: training data dir")
    p.add_argument("--out-dir", required=True, help="output: directory for probe.{md,json,png}")
    p.add_argument("--epochs", type=int, default=5, help="training epochs of the probes (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--crop", type=float, default=2.0, help="crop length in seconds (default: %(default)s)")
    p.add_argument("--hidden", type=int, default=256, help="the probes' width (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--num-workers", type=int, default=2, help="data loader workers (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="(default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.epochs < 1:
        raise DataError(f"--epochs must be >= 1, got {args.epochs}")
    torch.manual_seed(args.seed)
    sample_rate = read_asr_config(args.asr)["preprocessor"].get("sample_rate", 16000)
    data_cfg = resolve_config({"train_dir": args.data, "mode": "waveform", "sample_rate": sample_rate,
                               "batch_size": args.batch_size, "crop": args.crop, "num_workers": args.num_workers,
                               "seed": args.seed})
    rows = probe_layers(args.asr, data_cfg, args.epochs, args.hidden, args.lr, args.device)
    out_dir = Path(args.out_dir)
    write_outputs(rows, out_dir, f"{args.asr} on {args.data}")
    best = max(rows, key=lambda r: r["accuracy"])
    log.info("wrote %s/probe.{md,json}; best layer %d (%.2f%%)", out_dir, best["layer"], 100 * best["accuracy"])


if __name__ == "__main__":
    run_main(main)
