"""Import a NeMo Conformer-CTC checkpoint (e.g. stt_en_conformer_ctc_large.nemo) as an sv ASR model directory,
without NeMo installed.

  python -m sv.bin.import_nemo stt_en_conformer_ctc_large.nemo exp/asr/stt_en_conformer_ctc_large

Reads:  MODEL.nemo, a tar of model_config.yaml and model_weights.ckpt (+ tokenizer files).
Writes: OUT_DIR/config.yaml          preprocessor (NeMo's options, computed by sv on torchaudio), encoder
                                     (sv ConformerEncoder arguments), vocabulary, source (file name, sha256)
        OUT_DIR/model.safetensors    encoder.* and decoder.{weight,bias} (the CTC layer, blank last)
        OUT_DIR/vocab.txt            one output token per line, in CTC index order (blank not listed)
        OUT_DIR/nemo_model_config.yaml  the archive's own config, for reference
        OUT_DIR/tokenizer/*          the archive's tokenizer files, if any
The archive is checked completely (encoder type, subsampling, attention, every weight's name and shape, the
saved mel filterbank against sv's) before anything is written, and OUT_DIR appears whole or not at all.
Speaker models start from OUT_DIR: `model.pretrained` of mfa_conformer (transfer learning), `model.asr` of
asr_adaptor, and `teacher.model` (ASR distillation).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import yaml

from sv.cli import run_main
from sv.data.table import DataError, atomic_dir
from sv.models.asr_conformer import CONFIG, WEIGHTS
from sv.models.nemo_checkpoint import convert_nemo

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sv.bin.import_nemo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("nemo", metavar="MODEL.nemo", help="input: NeMo Conformer-CTC checkpoint")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output: sv ASR model directory")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not os.path.isfile(args.nemo):
        raise DataError(f"{args.nemo}: no such file")
    out = Path(args.out_dir)
    if out.exists() and not args.force:
        raise DataError(f"{out} exists; use --force to replace it")
    imported = convert_nemo(args.nemo)
    from safetensors.torch import save_file

    with atomic_dir(out) as tmp:
        with open(tmp / CONFIG, "w", encoding="utf-8") as f:
            yaml.safe_dump(imported.config, f, sort_keys=False, allow_unicode=True)
        save_file({k: v.contiguous() for k, v in imported.weights.items()}, str(tmp / WEIGHTS))
        (tmp / "vocab.txt").write_text("".join(f"{t}\n" for t in imported.config["vocabulary"]), encoding="utf-8")
        (tmp / "nemo_model_config.yaml").write_text(imported.nemo_config_text, encoding="utf-8")
        for name, data in imported.files.items():
            (tmp / "tokenizer").mkdir(exist_ok=True)
            (tmp / "tokenizer" / name).write_bytes(data)
    enc = imported.config["encoder"]
    log.info("imported %s: %d layers, d_model %d, %d heads, subsampling %d, %d tokens + blank -> %s",
             args.nemo, enc["num_layers"], enc["d_model"], enc.get("num_heads", 4), enc.get("subsampling_factor", 4),
             len(imported.config["vocabulary"]), out)


if __name__ == "__main__":
    run_main(main)
