"""The audio autoencoder of seed 001 (§2.2, §3.2.1): an undercomplete autoencoder trained with MSE on the
log-mel frames of the training clips; its bottleneck, averaged over each clip's frames, is the ``audio/ae``
feature [N, d].

``emo fuse --features audio/ae`` fits it inside every training split of every seed and fold
(:func:`fit_autoencoder` on the store's ``audio/mel`` frames), like the normaliser and the selectors, so no
statistic of a test clip reaches training; the run's checkpoint keeps the reference run's autoencoder so that
``emo predict`` computes the same codes. ``emo features autoencoder`` still writes one split's codes into the
store as ``audio/ae`` for use outside emo (its provenance names that split); fusion does not read them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

import emo
from emo.errors import UsageError
from emo.features_store import FeatureStore
from emo.features_store.derived import write_derived
from emo.fusion.data import load_fusion_data
from emo.fusion.fitted import arrays_sha256, model_arrays
from emo.fusion.splits import make_splits, resolve_protocol

log = logging.getLogger(__name__)

SOURCE = "audio/mel"
TARGET = "audio/ae"


class FrameAutoencoder(nn.Module):
    """Undercomplete MLP autoencoder on single frames: D -> hidden -> d -> hidden -> D (ReLU, linear code)."""

    def __init__(self, in_dim: int, bottleneck: int = 64, hidden: int = 256) -> None:
        super().__init__()
        if bottleneck >= in_dim:
            raise UsageError(f"the bottleneck ({bottleneck}) must be smaller than the input ({in_dim}): undercomplete")
        self.encoder = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, bottleneck))
        self.decoder = nn.Sequential(nn.Linear(bottleneck, hidden), nn.ReLU(), nn.Linear(hidden, in_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@dataclass
class AutoencoderConfig:
    bottleneck: int = 64
    hidden: int = 256
    epochs: int = 30
    batch_size: int = 512
    lr: float = 1e-3
    max_frames: int = 200_000  # frames sampled from the training clips per epoch
    split: str = "auto"
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any], seed: int = 0) -> AutoencoderConfig:
        """A config from ``--autoencoder KEY=VALUE`` pairs (unknown keys are a usage error)."""
        known = {f.name for f in fields(cls)} - {"split", "seed"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise UsageError(
                f"unknown autoencoder parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**{k: type(getattr(cls, k))(v) for k, v in params.items()}, seed=seed)


def _frames(sequences: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    parts = [sequences[i] for i in rows if len(sequences[i])]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32)


def encode_clips(model: FrameAutoencoder, mean: np.ndarray, std: np.ndarray, sequences: list[np.ndarray]) -> np.ndarray:
    """[N, d]: the mean bottleneck code of each clip's frames (NaN for a clip without frames)."""
    model.eval()
    out = np.full((len(sequences), model.encoder[-1].out_features), np.nan, np.float32)
    with torch.inference_mode():
        for i, seq in enumerate(sequences):
            if len(seq):
                codes = model.encoder(torch.from_numpy(((seq - mean) / std).astype(np.float32)))
                out[i] = codes.mean(0).numpy()
    return out


@dataclass
class FittedAutoencoder:
    """An autoencoder fitted on some clips' frames, with the standardisation of its input."""

    model: FrameAutoencoder
    mean: np.ndarray
    std: np.ndarray
    config: AutoencoderConfig
    history: list[float]
    n_frames: int
    n_clips: int

    def encode(self, sequences: list[np.ndarray]) -> np.ndarray:
        """[N, d]: the mean bottleneck code of each clip's frames (NaN for a clip without frames)."""
        return encode_clips(self.model, self.mean, self.std, sequences)

    def arrays(self) -> dict[str, np.ndarray]:
        """Weights and input standardisation as named arrays (checkpoints, the store's ``audio/ae_model``)."""
        return model_arrays(self.model, self.mean, self.std)

    def describe(self) -> dict[str, Any]:
        """What :func:`model_from_arrays` needs besides the arrays, and what the model was trained on."""
        return {
            "source": SOURCE,
            "input_dim": int(self.mean.size),
            "params": asdict(self.config),
            "n_clips": self.n_clips,
            "n_frames": self.n_frames,
            "train_mse": self.history,
            "weights_sha256": arrays_sha256(self.arrays()),
        }


def fit_autoencoder(sequences: list[np.ndarray], rows: np.ndarray, config: AutoencoderConfig) -> FittedAutoencoder:
    """Train on the frames of the clips ``rows`` only (the training clips of one split)."""
    frames = _frames(sequences, rows)
    if frames.shape[0] < 100:
        raise UsageError(f"only {frames.shape[0]} {SOURCE} frames in the training clips: too few for an autoencoder")
    mean, std = frames.mean(0), np.maximum(frames.std(0), 1e-6)
    normed = (frames - mean) / std
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = FrameAutoencoder(frames.shape[1], config.bottleneck, config.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    history = []
    for epoch in range(config.epochs):
        take = rng.permutation(normed.shape[0])[: config.max_frames]
        total = 0.0
        for start in range(0, take.size, config.batch_size):
            x = torch.from_numpy(normed[take[start : start + config.batch_size]])
            loss = nn.functional.mse_loss(model(x), x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * x.shape[0]
        history.append(total / take.size)
        log.debug("autoencoder epoch %d: MSE %.4f", epoch + 1, history[-1])
    n_clips = sum(1 for i in rows if len(sequences[i]))
    return FittedAutoencoder(model, mean, std, config, history, int(frames.shape[0]), n_clips)


def model_from_arrays(
    arrays: dict[str, np.ndarray], attrs: dict[str, Any]
) -> tuple[FrameAutoencoder, np.ndarray, np.ndarray]:
    """Rebuild the autoencoder (and its input standardisation) from its arrays and :meth:`describe` (or the
    attributes of a stored ``audio/ae``)."""
    cfg = attrs["params"]
    model = FrameAutoencoder(int(attrs["input_dim"]), int(cfg["bottleneck"]), int(cfg["hidden"]))
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items() if not k.startswith("norm_")})
    return model, np.asarray(arrays["norm_mean"]), np.asarray(arrays["norm_std"])


def train_autoencoder(
    store: str, config: AutoencoderConfig | None = None, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train on one split's training clips and write ``audio/ae`` into the store (for use outside emo; fusion
    fits its own in every split); returns the provenance written."""
    config = config or AutoencoderConfig()
    fs = FeatureStore.open(store, storage_options)
    if f"{SOURCE}/values" not in fs.array_paths():
        raise UsageError(f"{fs.location.display} has no {SOURCE} frames: extract with --features including mel")
    data = load_fusion_data(fs, {"audio": [SOURCE]}, {"audio": "vector"})
    sequences = fs.sequences(f"{SOURCE}/values")
    protocol = resolve_protocol(data, config.split) if (data.y >= 0).sum() >= 4 else "all"
    if protocol == "all":
        train_rows = np.arange(fs.n_clips)
    else:
        split = next(make_splits(data.subset(data.labelled), protocol, 1, config.seed))
        train_rows = data.labelled[split.train]
    fitted = fit_autoencoder(sequences, train_rows, config)
    codes = fitted.encode(sequences)
    described = fitted.describe()
    train_ids = sorted(str(c) for c in data.clip_ids[train_rows])
    provenance = {
        "extractor": "emo.fusion.autoencoder.FrameAutoencoder (seed 001 undercomplete autoencoder, MSE)",
        "extractor_version": f"emo {emo.__version__}",
        "source": SOURCE,
        "input_dim": described["input_dim"],
        "params": asdict(config),
        "pooling": "mean of the per-frame bottleneck codes",
        "trained_on": {
            "split_protocol": protocol,
            "seed": config.seed,
            "n_clips": len(train_ids),
            "n_frames": described["n_frames"],
            "clip_ids_sha256": hashlib.sha256("\n".join(train_ids).encode()).hexdigest(),
        },
        "train_mse": fitted.history,
        "weights": {"sha256": described["weights_sha256"], "stored_at": f"{TARGET}_model/"},
        "note": "fitted on the training clips of the split above, for use outside emo; emo fuse does not read "
        "these codes: it fits the autoencoder inside every training split of every seed and fold",
    }
    write_derived(store, TARGET, codes, provenance, fitted.arrays(), storage_options)
    log.info("wrote %s [%d x %d] (final MSE %.4f)", TARGET, codes.shape[0], codes.shape[1], fitted.history[-1])
    return provenance
