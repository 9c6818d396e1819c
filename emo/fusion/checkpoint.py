"""Saving and loading a trained model without pickle: ``model.safetensors`` + ``config.json``.

The safetensors file holds the head's parameters (``head.*``), the standardisation statistics
(``norm.<modality>.mean|std``), the feature-selection masks (``select.<modality>``) and arrays that
compute inputs (``ae.*``, the audio autoencoder); ``config.json`` says
how to rebuild everything (method, hyper-parameters, dimensions, class names, feature paths, the store's
extraction config and hash).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from emo.errors import UsageError
from emo.fusion.heads import FusionHead, build_head
from emo.fusion.preprocessing import Preprocessing

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded model with everything needed to apply it to new features."""

    head: FusionHead
    preprocessing: Preprocessing
    config: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])


def save_checkpoint(
    run_dir: Path,
    head: FusionHead,
    preprocessing: Preprocessing,
    config: dict[str, Any],
) -> None:
    """Write the head's weights and the run's fitted preprocessing (safetensors) and ``config`` (JSON)."""
    tensors = {f"head.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    tensors |= {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in preprocessing.state_arrays().items()}
    save_file(tensors, str(run_dir / MODEL_FILE), metadata={"format": "emo-fusion", "version": str(FORMAT_VERSION)})
    full = {
        "format_version": FORMAT_VERSION,
        "method": config["method"],
        "hparams": head.hparams,
        "dims": head.dims,
        "steps": head.steps,
        **config,
    }
    (run_dir / CONFIG_FILE).write_text(json.dumps(full, indent=2, default=str))


def load_checkpoint(run_dir: str | Path) -> Checkpoint:
    run_dir = Path(run_dir)
    config_path, model_path = run_dir / CONFIG_FILE, run_dir / MODEL_FILE
    if not config_path.is_file() or not model_path.is_file():
        raise UsageError(f"{run_dir} is not a run directory (needs {CONFIG_FILE} and {MODEL_FILE})")
    config = json.loads(config_path.read_text())
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise UsageError(f"{run_dir} was written by a newer emo (checkpoint format {config['format_version']})")
    tensors = load_file(str(model_path))
    if config["method"] == "cross-tucker" and "audio_frontend" not in config["hparams"]:
        config["hparams"]["audio_frontend"] = "none"  # written before seed 003's mel CNN: aligned audio steps
    head = build_head(
        config["method"], config["dims"], len(config["class_names"]), steps=config["steps"], **config["hparams"]
    )
    head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
    head.eval()
    arrays = {k: v.numpy() for k, v in tensors.items() if not k.startswith("head.")}
    preprocessing = Preprocessing.from_state(arrays, config.get("fitted", {}), list(config["dims"]))
    return Checkpoint(head, preprocessing, config)
