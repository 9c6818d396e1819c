"""Fixed-length views of variable-length sequences: the ``aligned`` + ``mask`` and ``pooled`` arrays.

Time-based sequences (audio frames, eGeMAPS descriptors, faces) are put on one time grid shared by every
modality (:func:`align_on_grid`): step i covers the i-th of T equal segments of the clip's duration, so step i
of ``audio/mel/aligned`` and of ``video/face/aligned`` describe the same interval of the clip. Sequences
without timing (the tokens of a transcript) keep the positional view of :func:`align`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Version of the time grid written into each group's ``time_grid`` attribute.
GRID_VERSION = 1


def grid_description(steps: int) -> dict[str, Any]:
    """The ``time_grid`` attribute of a group aligned by :func:`align_on_grid`."""
    return {
        "version": GRID_VERSION,
        "steps": steps,
        "segments": "step i covers [i, i + 1) * duration / steps of the clip, duration = clips/duration_s "
        "(the stream's own decoded length where the container's is unknown)",
        "values": "mean of the frames whose time lies inside the segment; without one, the nearest frame "
        "within half a segment of its edges; else mask False and zeros",
        "frame_times": "frame k of a group at k / frame_rate_hz + frame_offset_s, plus clips/trim_start_s for audio "
        "groups whose leading silence was trimmed (faces: the k-th sampled frame, at k / fps)",
    }


def align_on_grid(
    values: np.ndarray,
    times: np.ndarray,
    duration: float,
    steps: int,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Put frames ``values`` [F, D] at ``times`` [F] (seconds) on ``steps`` equal segments of ``duration``.

    A segment takes the mean of the valid frames whose time lies inside it; a segment without one takes the
    nearest valid frame at most half a segment outside its edges; else it is masked (zeros, mask False),
    never zero-filled and unmasked. ``valid`` [F] marks frames that hold data (e.g. sampled frames with a face).
    """
    flat = values.reshape(values.shape[0], -1)
    out = np.zeros((steps, flat.shape[1]), dtype=values.dtype)
    mask = np.zeros(steps, dtype=bool)
    keep = np.ones(flat.shape[0], bool) if valid is None else np.asarray(valid, bool)
    flat, times = flat[keep], np.asarray(times, dtype=np.float64)[keep]
    if flat.shape[0] == 0 or not np.isfinite(duration) or duration <= 0:
        return out, mask
    segment = duration / steps
    edges = np.arange(steps + 1) * segment
    index = np.clip(np.searchsorted(edges, times, side="right") - 1, -1, steps)
    inside = (index >= 0) & (index < steps)
    sums = np.zeros((steps, flat.shape[1]), dtype=np.float64)
    np.add.at(sums, index[inside], flat[inside])
    counts = np.bincount(index[inside], minlength=steps)[:steps]
    filled = counts > 0
    out[filled] = (sums[filled] / counts[filled, None]).astype(values.dtype)
    mask[filled] = True
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    for i in np.flatnonzero(~filled):
        centre = (i + 0.5) * segment
        j = int(np.searchsorted(sorted_times, centre))
        candidates = [k for k in (j - 1, j) if 0 <= k < sorted_times.size]
        nearest = min(candidates, key=lambda k: abs(sorted_times[k] - centre))
        if abs(sorted_times[nearest] - centre) <= segment:  # half a segment of the centre, plus half outside
            out[i] = flat[order[nearest]]
            mask[i] = True
    return out, mask


def align(values: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample a [T, D] sequence without timing to ``steps`` rows and a mask of the rows that hold data.

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


def derive(
    path: str,
    values: np.ndarray,
    steps: int,
    times: np.ndarray | None = None,
    duration: float | None = None,
) -> dict[str, np.ndarray]:
    """All arrays of a derived sequence group for one clip, keyed by their store paths: on the time grid when
    the frames' ``times`` and the clip's ``duration`` are given (:func:`align_on_grid`), else positional."""
    if times is None:
        aligned, mask = align(values, steps)
    else:
        aligned, mask = align_on_grid(values, times, float(duration), steps)
    return {
        f"{path}/values": values,
        f"{path}/aligned": aligned,
        f"{path}/mask": mask,
        f"{path}/pooled": pool(values),
    }
