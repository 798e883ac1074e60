"""Reading a NeMo Conformer-CTC checkpoint (`.nemo`) without NeMo, into sv's ASR model layout.

A `.nemo` file is a tar archive of `model_config.yaml` (the Hydra config of the model) and
`model_weights.ckpt` (a torch-saved state dict), plus tokenizer files for BPE models. `convert_nemo` checks
that the config describes what sv's ConformerEncoder + CTC decoder compute (NeMo's striding subsampling,
relative-position attention, batch-norm convolution module, full context, no output projection) and maps
the weights to sv's names. Anything else is a ValueError naming the config key or weight, raised before
anything is written.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml

NEMO_CONFIG = "model_config.yaml"
NEMO_WEIGHTS = "model_weights.ckpt"

# encoder options sv's ConformerEncoder takes, NeMo name -> sv name
_ENCODER_MAP = {"feat_in": "feat_dim", "n_layers": "num_layers", "d_model": "d_model", "n_heads": "num_heads",
                "ff_expansion_factor": "ff_expansion", "conv_kernel_size": "conv_kernel",
                "subsampling_factor": "subsampling_factor", "dropout": "dropout", "dropout_att": "dropout_att",
                "dropout_pre_encoder": "dropout_pre_encoder", "xscaling": "xscaling"}
# encoder options that must hold one of these values for sv's computation to be NeMo's
_ENCODER_FIXED: dict[str, tuple] = {
    "subsampling": ("striding",), "self_attention_model": ("rel_pos",), "untie_biases": (True,),
    "conv_norm_type": ("batch_norm",), "feat_out": (-1,), "causal_downsampling": (False,),
    "reduction": (None,), "reduction_position": (None,), "reduction_factor": (1,), "use_bias": (True,),
    "att_context_size": (None, [-1, -1]), "att_context_probs": (None,), "att_context_style": ("regular",),
    "conv_context_size": (None,), "global_tokens": (0,), "global_attn_separate": (False,),
    "subsampling_conv_chunking_factor": (1, -1),
}
# options that only affect training, speed or memory
_ENCODER_INERT = {"_target_", "pos_emb_max_len", "dropout_emb", "stochastic_depth_drop_prob", "stochastic_depth_mode",
                  "stochastic_depth_start_layer", "global_tokens_spacing", "use_pytorch_sdpa",
                  "use_pytorch_sdpa_backends", "sync_max_audio_length"}


@dataclass
class ImportedASR:
    config: dict[str, Any]                      # sv's config.yaml for the model directory
    weights: dict[str, torch.Tensor]            # sv's state dict
    files: dict[str, bytes] = field(default_factory=dict)  # tokenizer files, by archive name
    nemo_config_text: str = ""


def _member(tar: tarfile.TarFile, name: str) -> bytes | None:
    for m in tar.getmembers():
        if m.isfile() and os.path.basename(m.name) == name:
            return tar.extractfile(m).read()
    return None


def _encoder_config(enc: dict[str, Any], source: str) -> dict[str, Any]:
    target = str(enc.get("_target_", ""))
    if not target.endswith("ConformerEncoder"):
        raise ValueError(f"{source}: encoder._target_ is {target or 'missing'!r}; only NeMo's ConformerEncoder "
                         "(Conformer-CTC models) can be imported")
    out: dict[str, Any] = {}
    for key, value in enc.items():
        if key in _ENCODER_MAP:
            out[_ENCODER_MAP[key]] = value
        elif key in _ENCODER_FIXED:
            if value not in _ENCODER_FIXED[key]:
                raise ValueError(f"{source}: encoder.{key} is {value!r}; sv supports only "
                                 f"{' or '.join(map(repr, _ENCODER_FIXED[key]))}")
        elif key == "subsampling_conv_channels":
            if value not in (-1, None):
                out["subsampling_channels"] = value
        elif key not in _ENCODER_INERT:
            raise ValueError(f"{source}: encoder.{key} is an option sv does not know; it cannot tell whether it "
                             "changes the model")
    for key in ("feat_in", "n_layers", "d_model"):
        if key not in enc:
            raise ValueError(f"{source}: encoder.{key} is missing")
    out.setdefault("num_heads", 4)
    return out


def _map_weights(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if key.startswith("encoder."):
            if key.endswith("pos_enc.pe"):
                continue  # a cache of sinusoids that sv computes
            out[key] = value
        elif key == "decoder.decoder_layers.0.weight":
            out["decoder.weight"] = value.squeeze(-1)
        elif key == "decoder.decoder_layers.0.bias":
            out["decoder.bias"] = value
        elif not key.startswith("preprocessor."):  # the window and filterbank, which sv computes
            raise ValueError(f"{source}: weight {key!r} belongs to no part sv imports (encoder, CTC decoder)")
    return out


def convert_nemo(path: str | os.PathLike) -> ImportedASR:
    """Read and check a .nemo archive; see the module docstring."""
    source = str(path)
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise ValueError(f"{source}: not a .nemo archive (tar): {e}") from e
    with tar:
        text = _member(tar, NEMO_CONFIG)
        blob = _member(tar, NEMO_WEIGHTS)
        if text is None or blob is None:
            raise ValueError(f"{source}: lacks {NEMO_CONFIG if text is None else NEMO_WEIGHTS}")
        cfg = yaml.safe_load(text)
        for section in ("preprocessor", "encoder", "decoder"):
            if not isinstance(cfg.get(section), dict):
                raise ValueError(f"{source}: {NEMO_CONFIG} lacks the {section!r} section")
        encoder = _encoder_config(cfg["encoder"], source)
        decoder = cfg["decoder"]
        if not str(decoder.get("_target_", "")).endswith("ConvASRDecoder"):
            raise ValueError(f"{source}: decoder._target_ is {decoder.get('_target_')!r}; only the CTC "
                             "ConvASRDecoder is supported")
        vocabulary = decoder.get("vocabulary")
        if not vocabulary:
            raise ValueError(f"{source}: decoder.vocabulary is missing or empty")
        if decoder.get("num_classes", len(vocabulary)) not in (len(vocabulary), -1):
            raise ValueError(f"{source}: decoder.num_classes {decoder['num_classes']} differs from the "
                             f"vocabulary's {len(vocabulary)} tokens")
        preprocessor = {k: v for k, v in cfg["preprocessor"].items() if k != "_target_"}
        if not str(cfg["preprocessor"].get("_target_", "")).endswith("AudioToMelSpectrogramPreprocessor"):
            raise ValueError(f"{source}: preprocessor._target_ is {cfg['preprocessor'].get('_target_')!r}; only "
                             "AudioToMelSpectrogramPreprocessor is supported")
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        files = {}
        tokenizer = cfg.get("tokenizer") or {}
        for value in tokenizer.values():
            if isinstance(value, str) and value.startswith("nemo:"):
                data = _member(tar, value[len("nemo:"):])
                if data is not None:
                    files[value[len("nemo:"):]] = data
    weights = _map_weights(state, source)
    config = {
        "preprocessor": preprocessor,
        "encoder": encoder,
        "vocabulary": [str(v) for v in vocabulary],
        "source": {"file": os.path.basename(source), "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
                   "nemo_target": cfg.get("target")},
    }
    _check_shapes(config, weights, state, source)
    return ImportedASR(config, weights, files, text.decode("utf-8"))


def _check_shapes(config: dict[str, Any], weights: dict[str, torch.Tensor], nemo_state: dict[str, torch.Tensor],
                  source: str) -> None:
    """The weights must fill sv's model exactly; and the front end must be NeMo's saved filterbank."""
    from sv.models.asr_conformer import ASRConformerCTC
    try:
        model = ASRConformerCTC(config["preprocessor"], config["encoder"], config["vocabulary"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: {e}") from e
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    if missing:
        raise ValueError(f"{source}: model_weights.ckpt lacks {len(missing)} weights sv's model needs, e.g. "
                         f"{missing[0]!r} (NeMo name {_nemo_name(missing[0])!r})")
    for key, value in weights.items():
        if key not in own:
            raise ValueError(f"{source}: weight {_nemo_name(key)!r} has no place in sv's model")
        if own[key].shape != value.shape:
            raise ValueError(f"{source}: weight {_nemo_name(key)!r} has shape {tuple(value.shape)}, the config "
                             f"implies {tuple(own[key].shape)}")
    fb = nemo_state.get("preprocessor.featurizer.fb")
    if fb is not None:
        fb = fb.squeeze(0).float()
        diff = (fb - model.frontend.fb).abs().max().item() if fb.shape == model.frontend.fb.shape else float("inf")
        if diff > 1e-5:
            raise ValueError(f"{source}: the saved mel filterbank (shape {tuple(fb.shape)}) differs from the one sv "
                             f"builds from the preprocessor config ({tuple(model.frontend.fb.shape)}, max diff "
                             f"{diff:.2g})")


def _nemo_name(sv_key: str) -> str:
    return {"decoder.weight": "decoder.decoder_layers.0.weight",
            "decoder.bias": "decoder.decoder_layers.0.bias"}.get(sv_key, sv_key)
