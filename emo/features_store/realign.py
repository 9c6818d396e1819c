"""``emo store realign``: put a store written before the common time grid (store format 1) on it.

Format 1 aligned each modality on its own (audio averaged into T segments of its frames, faces copied one per
step), so step i of two modalities described different moments. ``values`` + ``offsets`` hold every frame, and
the groups' attributes their frame rates, so ``aligned`` + ``mask`` can be recomputed exactly as extraction now
computes them (``sequences.align_on_grid``), block by block of clips and under the writer lock. Sampled frames
of format 1 stores have no recorded times: ``video/faces/times`` is written as k / fps (the first decoded frame
at or after k / fps, so within one source frame; exact unless frames were lost in decoding) and marked so.
"""

from __future__ import annotations

import datetime as _dt
import logging
from typing import Any

import numpy as np
import zarr

from emo.errors import UsageError
from emo.features_store.checksums import record_checksums
from emo.features_store.layout import FRAME_CHUNK_BYTES, compressors_for
from emo.features_store.location import StoreLocation, parse_location, storage_errors
from emo.features_store.lock import StoreLock
from emo.features_store.schema import GRID_STORE_VERSION
from emo.features_store.sequences import align_on_grid, grid_description
from emo.features_store.store import ROWS_ATTR, check_version, members

log = logging.getLogger(__name__)

#: Groups without timing keep their positional aligned view.
POSITIONAL = ("text/tokens",)
FACES, FACE = "video/faces", "video/face"


def _sequence_groups(group: zarr.Group) -> list[str]:
    arrays = {path for path, node in members(group) if isinstance(node, zarr.Array)}
    return sorted(
        p.rsplit("/", 1)[0]
        for p in arrays
        if p.endswith("/aligned") and p.rsplit("/", 1)[0] + "/offsets" in arrays and not p.startswith(POSITIONAL)
    )


def _face_times(group: zarr.Group, rows: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(times of every sampled frame [sum_F], offsets [N+1], approximate?) of ``video/faces``."""
    offsets = np.asarray(group[f"{FACES}/offsets"][: rows + 1])
    if f"{FACES}/times" in group:
        return np.asarray(group[f"{FACES}/times"][: int(offsets[-1])]), offsets, False
    fps = float(group[FACES].attrs.get("fps") or group[f"{FACES}/probs"].attrs["fps"])
    times = np.concatenate([np.arange(b - a) / fps for a, b in zip(offsets[:-1], offsets[1:], strict=True)])
    return times.astype(np.float32), offsets, True


def _write_face_times(group: zarr.Group, times: np.ndarray, chunk_rows: int) -> None:
    """``video/faces/times`` for a store that had none: k / fps per sampled frame, marked approximate."""
    sub = group[FACES]
    frames = 1 << max(10, (FRAME_CHUNK_BYTES // 4).bit_length() - 1)
    arr = sub.create_array(
        "times",
        shape=(len(times),),
        dtype="float32",
        chunks=(frames,),
        compressors=compressors_for(np.float32),
        fill_value=np.nan,
        dimension_names=["frame"],
        attributes={
            **dict(sub.attrs),
            "ragged": True,
            "description": f"time of each sampled frame (s); clip i is rows offsets[i]:offsets[i+1] of {FACES}/offsets",
            "approximate": "k / fps, written by emo store realign for a store extracted before frame times were "
            "stored: the k-th sampled frame is the first decoded frame at or after k / fps",
        },
    )
    if len(times):
        arr[:] = times
    record_checksums(arr, 0, arr.shape[0])


def realign_store(store: str | StoreLocation, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Recompute every time-based ``aligned`` + ``mask`` of a format-1 store on the common time grid and raise
    its format to 2; returns what was done. A store already on the grid is left as it is."""
    location = parse_location(store, storage_options)
    if location.read_only or location.is_zip:
        raise UsageError(f"cannot realign {location.display}: it is read-only; copy it to a directory first")
    with storage_errors(location, action="cannot realign the store"), StoreLock(location):
        group = zarr.open_group(location.zarr_store(read_only=False), mode="r+")
        attrs = dict(group.attrs)
        check_version(attrs, location.display)
        version = int(attrs["emo_store_version"])
        if version >= GRID_STORE_VERSION:
            return {"store": location.display, "realigned": [], "already": True}
        rows = int(attrs.get(ROWS_ATTR, 0))
        chunk_rows = int(attrs["chunk_rows"])
        steps = int(attrs.get("extraction", {}).get("config", {}).get("align_steps", 32))
        durations = np.asarray(group["clips/duration_s"][:rows], dtype=np.float64)
        trim_start = np.zeros(rows)  # where each clip's audio frames start (a store with trimmed silence)
        if "clips/trim_start_s" in group:
            trim_start = np.nan_to_num(np.asarray(group["clips/trim_start_s"][:rows], dtype=np.float64))
        decoded = np.full(rows, np.nan)  # the stream's own length, the grid's when the container's is unknown
        if "clips/decoded_s_audio" in group:
            decoded = np.asarray(group["clips/decoded_s_audio"][:rows], dtype=np.float64)
        approximate = False
        face_times = face_offsets = None
        if f"{FACES}/offsets" in group:
            face_times, face_offsets, approximate = _face_times(group, rows)
            if approximate:
                _write_face_times(group, face_times, chunk_rows)
        done = []
        for path in _sequence_groups(group):
            _realign_group(
                group, path, rows, steps, chunk_rows, durations, trim_start, decoded, face_times, face_offsets
            )
            done.append(path)
            log.info("realigned %s (%d clips)", path, rows)
        group.attrs.update(
            {
                "emo_store_version": GRID_STORE_VERSION,
                "updated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "realigned": {"from_store_version": version, "groups": done, "face_times_approximate": approximate},
            }
        )
    return {"store": location.display, "realigned": done, "already": False, "face_times_approximate": approximate}


def _realign_group(
    group: zarr.Group,
    path: str,
    rows: int,
    steps: int,
    chunk_rows: int,
    durations: np.ndarray,
    trim_start: np.ndarray,
    decoded: np.ndarray,
    face_times: np.ndarray | None,
    face_offsets: np.ndarray | None,
) -> None:
    sub = group[path]
    aligned, mask = group[f"{path}/aligned"], group[f"{path}/mask"]
    offsets = np.asarray(group[f"{path}/offsets"][: rows + 1])
    values = group[f"{path}/values"]
    if path == FACE:
        if face_times is None or face_offsets is None:
            raise UsageError(f"{path} cannot be put on the time grid without {FACES} (its frames' times)")
        fps = float(sub.attrs.get("fps") or values.attrs.get("fps"))
        probs = group[f"{FACES}/probs"]
    else:
        rate = float(sub.attrs.get("frame_rate_hz") or values.attrs["frame_rate_hz"])
        offset_s = float(sub.attrs.get("frame_offset_s", values.attrs.get("frame_offset_s", _default_offset(path))))
    for start in range(0, rows, chunk_rows):
        stop = min(rows, start + chunk_rows)
        block = np.asarray(values[int(offsets[start]) : int(offsets[stop])])
        out = np.zeros((stop - start, steps, block.shape[-1] if block.ndim > 1 else 1), dtype=aligned.dtype)
        out_mask = np.zeros((stop - start, steps), dtype=bool)
        if path == FACE:
            f0, f1 = int(face_offsets[start]), int(face_offsets[stop])
            found_block = np.isfinite(np.asarray(probs[f0:f1]))
        for i in range(start, stop):
            frames = block[int(offsets[i] - offsets[start]) : int(offsets[i + 1] - offsets[start])]
            if path == FACE:
                a, b = int(face_offsets[i] - face_offsets[start]), int(face_offsets[i + 1] - face_offsets[start])
                times = face_times[int(face_offsets[i]) : int(face_offsets[i + 1])][found_block[a:b]]
                own = float(face_times[int(face_offsets[i + 1]) - 1]) + 1 / fps if b > a else 0.0
            else:
                times = np.arange(len(frames)) / rate + offset_s + trim_start[i]
                own = decoded[i] if np.isfinite(decoded[i]) else trim_start[i] + len(frames) / rate
            duration = durations[i] if np.isfinite(durations[i]) and durations[i] > 0 else own
            out[i - start], out_mask[i - start] = align_on_grid(frames, times, duration, steps)
        aligned[start:stop] = out.reshape(aligned[start:stop].shape)
        mask[start:stop] = out_mask
    record_checksums(aligned, 0, rows)
    record_checksums(mask, 0, rows)
    grid = grid_description(steps)
    for node in (sub, aligned, mask, values, group[f"{path}/pooled"], group[f"{path}/offsets"]):
        node.attrs.update({"time_grid": grid})
    if path != FACE:
        for node in (sub, values, aligned, mask):
            node.attrs.update({"frame_offset_s": offset_s})


def _default_offset(path: str) -> float:
    """Centre of a group's first frame when its attributes do not say: openSMILE's 20 ms frames, or librosa's
    centred ones."""
    return 0.01 if path.endswith("egemaps_lld") else 0.0
