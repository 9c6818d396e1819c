"""Seed 002's speech features: MFCC frames through a CNN (Joshi & Khare §3, "MFCC features coupled with CNN-based
deep representations, followed by tree-based feature importance selection").

The paper does not say how its CNN is trained or built. emo trains it as an emotion classifier on the MFCC
frames of each run's training clips (inside every split of every seed and fold, like the normaliser, so no test
clip shapes it) and takes the clip's penultimate activation as the ``audio/mfcc-cnn`` feature [N, dim], which
the run then standardises, tree-selects and fuses like any stored vector. The checkpoint keeps the reference
run's CNN so ``emo predict`` computes the same features.

Architecture (our choice): three 1-D convolutions over time (kernel 5, 5, 3; channels 64, 128, 128; batch
norm, ReLU; max-pool 2 after the first two), masked global average over time, FC to ``dim=128`` + ReLU (the
feature), dropout 0.3, FC to the classes. Input: the clip's first ``max_frames=400`` frames (4 s), each
coefficient standardised on the training frames.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emo.errors import UsageError
from emo.fusion.data import frames_view
from emo.fusion.fitted import arrays_sha256, model_arrays
from emo.fusion.heads._common import FrameInput

log = logging.getLogger(__name__)

SOURCE = "audio/mfcc"
TARGET = "audio/mfcc-cnn"


class MfccCNN(nn.Module):
    """1-D CNN over MFCC frames [N, T, D] with a frame mask; ``embed`` gives the ``dim`` feature per clip."""

    def __init__(self, in_dim: int, n_classes: int, dim: int = 128, channels: tuple[int, ...] = (64, 128, 128)) -> None:
        super().__init__()
        kernels = (5, 5, 3)
        if len(channels) != len(kernels):
            raise UsageError(f"mfcc-cnn: channels needs {len(kernels)} widths, got {channels!r}")
        widths = (in_dim, *channels)
        self.convs = nn.ModuleList(
            nn.Conv1d(widths[i], widths[i + 1], k, padding=k // 2) for i, k in enumerate(kernels)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(c) for c in channels)
        self.fc = nn.Linear(channels[-1], dim)
        self.dropout = nn.Dropout(0.3)
        self.out = nn.Linear(dim, n_classes)

    def embed(self, x: Tensor, mask: Tensor) -> Tensor:
        if mask.any():  # frames after the batch's last valid one are padding for every clip: not convolved
            last = int(mask.any(0).nonzero().max().item()) + 1
            x, mask = x[:, :last], mask[:, :last]
        h = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype)).transpose(1, 2)  # [N, D, T]
        m = mask[:, None].to(x.dtype)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = F.relu(norm(conv(h))) * m
            if i < 2:
                h = F.max_pool1d(h, 2, ceil_mode=True)
                m = F.max_pool1d(m, 2, ceil_mode=True)
        pooled = (h * m).sum(-1) / m.sum(-1).clamp(min=1)
        return F.relu(self.fc(pooled))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.out(self.dropout(self.embed(x, mask)))


@dataclass
class MfccCnnConfig:
    dim: int = 128
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    max_frames: int = 400
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any], seed: int = 0) -> MfccCnnConfig:
        """A config from ``--mfcc-cnn KEY=VALUE`` pairs (unknown keys are a usage error)."""
        known = {f.name for f in fields(cls)} - {"seed"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise UsageError(f"unknown mfcc-cnn parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{k: type(getattr(cls, k))(v) for k, v in params.items()}, seed=seed)


def _batch(sequences: list[np.ndarray], rows: np.ndarray, length: int, mean: np.ndarray, std: np.ndarray):
    views = [frames_view((sequences[i] - mean) / std if len(sequences[i]) else sequences[i], FrameInput(length))
             for i in rows]
    x = torch.from_numpy(np.stack([v for v, _ in views]))
    return x, torch.from_numpy(np.stack([m for _, m in views]))


@dataclass
class FittedMfccCnn:
    """An MFCC CNN trained on some clips, with the standardisation of its input."""

    model: MfccCNN
    mean: np.ndarray
    std: np.ndarray
    config: MfccCnnConfig
    n_classes: int
    history: list[float]
    n_clips: int
    n_frames: int

    def encode(self, sequences: list[np.ndarray]) -> np.ndarray:
        """[N, dim]: each clip's feature (NaN for a clip without frames)."""
        self.model.eval()
        out = np.full((len(sequences), self.config.dim), np.nan, np.float32)
        rows = np.array([i for i, s in enumerate(sequences) if len(s)], dtype=np.int64)
        with torch.inference_mode():
            for start in range(0, rows.size, 256):
                idx = rows[start : start + 256]
                x, mask = _batch(sequences, idx, self.config.max_frames, self.mean, self.std)
                out[idx] = self.model.embed(x, mask).numpy()
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return model_arrays(self.model, self.mean, self.std)

    def describe(self) -> dict[str, Any]:
        return {
            "source": SOURCE,
            "input_dim": int(self.mean.size),
            "n_classes": self.n_classes,
            "params": asdict(self.config),
            "n_clips": self.n_clips,
            "n_frames": self.n_frames,
            "train_loss": self.history,
            "weights_sha256": arrays_sha256(self.arrays()),
        }


def fit_mfcc_cnn(
    sequences: list[np.ndarray], rows: np.ndarray, y: np.ndarray, n_classes: int, config: MfccCnnConfig
) -> FittedMfccCnn:
    """Train the CNN as a classifier on the training clips ``rows`` (labels ``y``) only."""
    rows = np.array([i for i in rows if len(sequences[i]) and y[i] >= 0], dtype=np.int64)
    if rows.size < 4:
        raise UsageError(f"only {rows.size} training clips with {SOURCE} frames: too few to train the MFCC CNN")
    frames = np.concatenate([sequences[i][: config.max_frames] for i in rows]).astype(np.float32)
    mean, std = frames.mean(0), np.maximum(frames.std(0), 1e-6)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = MfccCNN(frames.shape[1], n_classes, config.dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    targets = torch.from_numpy(y.astype(np.int64))
    history = []
    for _ in range(config.epochs):
        model.train()
        total = 0.0
        order = rng.permutation(rows)
        for start in range(0, order.size, config.batch_size):
            idx = order[start : start + config.batch_size]
            if idx.size < 2:  # batch norm needs two clips
                continue
            x, mask = _batch(sequences, idx, config.max_frames, mean, std)
            loss = F.cross_entropy(model(x, mask), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * idx.size
        history.append(total / order.size)
    return FittedMfccCnn(model, mean, std, config, n_classes, history, int(rows.size), int(frames.shape[0]))


def model_from_arrays(arrays: dict[str, np.ndarray], description: dict[str, Any]) -> FittedMfccCnn:
    """Rebuild the fitted CNN from its arrays and :meth:`FittedMfccCnn.describe`."""
    config = MfccCnnConfig(**description["params"])
    model = MfccCNN(int(description["input_dim"]), int(description["n_classes"]), config.dim)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items() if not k.startswith("norm_")})
    return FittedMfccCnn(
        model, np.asarray(arrays["norm_mean"]), np.asarray(arrays["norm_std"]), config,
        int(description["n_classes"]), list(description.get("train_loss", [])),
        int(description.get("n_clips", 0)), int(description.get("n_frames", 0)),
    )
