"""Features a run fits inside every training split from the store's frames (never read as stored): seed 001's
audio autoencoder (``audio/ae``) and seed 002's MFCC CNN (``audio/mfcc-cnn``). One entry per feature: how to fit
it on the training clips, its width, its checkpoint arrays' prefix and how ``emo predict`` restores it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


def model_arrays(model: Any, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
    """A fitted model's weights and its input standardisation as named arrays (checkpoints, the store)."""
    out = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return out | {"norm_mean": mean.astype(np.float32), "norm_std": std.astype(np.float32)}


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """One digest over named arrays (names and bytes, in name order): which weights a run used."""
    digest = hashlib.sha256()
    for name, value in sorted(arrays.items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class FittedFeature:
    """``fit(frames, train_rows, y, n_classes, params, seed)`` -> a model with ``encode(frames) -> [N, width]``,
    ``arrays()`` and ``describe()``; ``restore(arrays, description)`` -> a model with ``encode``."""

    path: str
    prefix: str
    fit: Callable[..., Any]
    restore: Callable[[dict[str, np.ndarray], dict[str, Any]], Any]
    width: Callable[[Mapping[str, Any]], int]


def _fit_ae(frames: list[np.ndarray], rows: np.ndarray, y: np.ndarray, n_classes: int, params: Mapping[str, Any],
            seed: int) -> Any:
    from emo.fusion.autoencoder import AutoencoderConfig, fit_autoencoder

    return fit_autoencoder(frames, rows, AutoencoderConfig.from_params(dict(params), seed=seed))


class _RestoredAE:
    def __init__(self, arrays: dict[str, np.ndarray], description: dict[str, Any]) -> None:
        from emo.fusion.autoencoder import model_from_arrays

        self.model, self.mean, self.std = model_from_arrays(arrays, description)

    def encode(self, frames: list[np.ndarray]) -> np.ndarray:
        from emo.fusion.autoencoder import encode_clips

        return encode_clips(self.model, self.mean, self.std, frames)


def _ae_width(params: Mapping[str, Any]) -> int:
    from emo.fusion.autoencoder import AutoencoderConfig

    return int(params.get("bottleneck", AutoencoderConfig.bottleneck))


def _fit_cnn(frames: list[np.ndarray], rows: np.ndarray, y: np.ndarray, n_classes: int, params: Mapping[str, Any],
             seed: int) -> Any:
    from emo.fusion.mfcc_cnn import MfccCnnConfig, fit_mfcc_cnn

    return fit_mfcc_cnn(frames, rows, y, n_classes, MfccCnnConfig.from_params(dict(params), seed=seed))


def _restore_cnn(arrays: dict[str, np.ndarray], description: dict[str, Any]) -> Any:
    from emo.fusion.mfcc_cnn import model_from_arrays

    return model_from_arrays(arrays, description)


def _cnn_width(params: Mapping[str, Any]) -> int:
    from emo.fusion.mfcc_cnn import MfccCnnConfig

    return int(params.get("dim", MfccCnnConfig.dim))


FITTED: dict[str, FittedFeature] = {
    "audio/ae": FittedFeature("audio/ae", "ae", _fit_ae, _RestoredAE, _ae_width),
    "audio/mfcc-cnn": FittedFeature("audio/mfcc-cnn", "mfcc-cnn", _fit_cnn, _restore_cnn, _cnn_width),
}
