"""Fixed-length views of variable-length sequences: the ``aligned`` + ``mask`` and ``pooled`` arrays."""

from __future__ import annotations

import numpy as np


def align(values: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample a [T, D] sequence to ``steps`` rows and a mask of the rows that hold data.

    Longer sequences are averaged over ``steps`` contiguous segments of (almost) equal length; shorter ones
    are copied to the first T rows and zero-padded with mask False, so no frame is invented.
    """
    t = values.shape[0]
    flat = values.reshape(t, int(np.prod(values.shape[1:])))
    out = np.zeros((steps, flat.shape[1]), dtype=values.dtype)
    mask = np.zeros(steps, dtype=bool)
    if t == 0:
        return out, mask
    if t < steps:
        out[:t] = flat
        mask[:t] = True
        return out, mask
    bounds = np.linspace(0, t, steps + 1).round().astype(np.int64)
    cumsum = np.concatenate([np.zeros((1, flat.shape[1])), np.cumsum(flat, axis=0, dtype=np.float64)])
    out[:] = (cumsum[bounds[1:]] - cumsum[bounds[:-1]]) / (bounds[1:] - bounds[:-1])[:, None]
    mask[:] = True
    return out, mask


def pool(values: np.ndarray) -> np.ndarray:
    """Concatenated mean and (population) standard deviation over frames: [2D]; NaN for an empty sequence."""
    flat = values.reshape(values.shape[0], int(np.prod(values.shape[1:])))
    if flat.shape[0] == 0:
        return np.full(2 * flat.shape[1], np.nan, dtype=values.dtype)
    x = flat.astype(np.float64)
    return np.concatenate([x.mean(axis=0), x.std(axis=0)]).astype(values.dtype)


def derive(path: str, values: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """All arrays of a derived sequence group for one clip, keyed by their store paths."""
    aligned, mask = align(values, steps)
    return {
        f"{path}/values": values,
        f"{path}/aligned": aligned,
        f"{path}/mask": mask,
        f"{path}/pooled": pool(values),
    }
