"""The audio autoencoder of seed 001 (§2.2, §3.2.1): an undercomplete autoencoder trained with MSE on the
store's log-mel frames of the training clips; its bottleneck, averaged over each clip's frames, is stored as
``audio/ae`` [N, d] with its provenance and weights, so heads can use it and ``emo predict`` can recompute it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import emo
from emo.errors import UsageError
from emo.features_store import FeatureStore
from emo.features_store.derived import write_derived
from emo.fusion.data import load_fusion_data
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


def model_from_arrays(
    arrays: dict[str, np.ndarray], attrs: dict[str, Any]
) -> tuple[FrameAutoencoder, np.ndarray, np.ndarray]:
    """Rebuild the autoencoder (and its input standardisation) from the arrays stored beside ``audio/ae``."""
    cfg = attrs["params"]
    model = FrameAutoencoder(int(attrs["input_dim"]), int(cfg["bottleneck"]), int(cfg["hidden"]))
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items() if not k.startswith("norm_")})
    return model, np.asarray(arrays["norm_mean"]), np.asarray(arrays["norm_std"])


def load_from_store(fs: FeatureStore) -> tuple[FrameAutoencoder, np.ndarray, np.ndarray, dict[str, Any]]:
    attrs = dict(fs.array(TARGET).attrs)
    names = [p.split("/")[-1] for p in fs.array_paths() if p.startswith(f"{TARGET}_model/")]
    arrays = {n: fs.group[f"{TARGET}_model/{n}"][...] for n in names}
    return (*model_from_arrays(arrays, attrs), attrs)


def train_autoencoder(
    store: str, config: AutoencoderConfig | None = None, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train on the training clips' log-mel frames and write ``audio/ae``; returns the provenance written."""
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
    frames = _frames(sequences, train_rows)
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
    codes = encode_clips(model, mean, std, sequences)
    arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    arrays |= {"norm_mean": mean.astype(np.float32), "norm_std": std.astype(np.float32)}
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    train_ids = sorted(str(c) for c in data.clip_ids[train_rows])
    provenance = {
        "extractor": "emo.fusion.autoencoder.FrameAutoencoder (seed 001 undercomplete autoencoder, MSE)",
        "extractor_version": f"emo {emo.__version__}",
        "source": SOURCE,
        "input_dim": int(frames.shape[1]),
        "params": asdict(config),
        "pooling": "mean of the per-frame bottleneck codes",
        "trained_on": {
            "split_protocol": protocol,
            "seed": config.seed,
            "n_clips": len(train_ids),
            "n_frames": int(frames.shape[0]),
            "clip_ids_sha256": hashlib.sha256("\n".join(train_ids).encode()).hexdigest(),
        },
        "train_mse": history,
        "weights": {"sha256": digest.hexdigest(), "stored_at": f"{TARGET}_model/"},
        "note": "fitted on the training clips of the split above; fusion runs with the same protocol and seed "
        "see no test clip in the autoencoder's training data",
    }
    write_derived(store, TARGET, codes, provenance, arrays, storage_options)
    log.info("wrote %s [%d x %d] (final MSE %.4f)", TARGET, codes.shape[0], codes.shape[1], history[-1])
    return provenance
