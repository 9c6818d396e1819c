"""Feature standardisation fitted on the training clips only (and saved with the model)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emo.fusion.data import ModalityInput


@dataclass
class Standardizer:
    """Per-dimension mean and standard deviation of one modality over its present training rows / steps.

    Values of absent rows or steps are left at zero after transform (heads mask them anyway); a NaN inside a
    present row (e.g. an openSMILE descriptor undefined for that clip) becomes the training mean, i.e. 0.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, modality: ModalityInput, rows: np.ndarray) -> Standardizer:
        values = modality.x[rows][modality.mask[rows]]  # [n_valid, D] for vectors ([N] mask) and sequences ([N, T])
        if values.size == 0:
            return cls(np.zeros(modality.dim, np.float32), np.ones(modality.dim, np.float32))
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def transform(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.std
        z = np.where(np.isfinite(z) & mask[..., None], z, 0.0)
        return z.astype(np.float32)
