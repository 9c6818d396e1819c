"""The store's schema: format version, the clip table's columns, and the shapes of feature arrays.

Everything that names an array path or a column lives here, so that writer, reader, `info` and `verify`
agree on one description of DESIGN.md §5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Bumped when a store written by this version cannot be read correctly by an older emo.
STORE_VERSION = 1

#: Per-modality clip status values (``clips/status_*``).
STATUS_OK = "ok"
STATUS_MISSING = "missing"  # the clip has no such stream (e.g. a .wav has no video, no transcript)
STATUS_NO_FACE = "no_face"  # video decoded, but no sampled frame had a face
STATUS_FAILED = "failed"  # the stream exists but could not be decoded or processed (see clips/error)
STATUS_SKIPPED = "skipped"  # no feature of this modality was requested in the extraction config
STATUSES = (STATUS_OK, STATUS_MISSING, STATUS_NO_FACE, STATUS_FAILED, STATUS_SKIPPED)
MODALITIES = ("audio", "video", "text")


@dataclass(frozen=True)
class Column:
    """One column of the ``clips/`` table: a 1-D array along the clip axis."""

    name: str
    dtype: Any  # numpy dtype, or ``str`` for Zarr's variable-length UTF-8
    fill: Any
    description: str


CLIP_COLUMNS: tuple[Column, ...] = (
    Column("clip_id", str, "", "unique id of the clip within the dataset; the row order of every array"),
    Column("label", np.int16, -1, "index into the root attribute 'labels'; -1 = unknown"),
    Column("label_name", str, "", "the label as a string (empty = unknown)"),
    Column("speaker", str, "", "speaker / actor id (empty = unknown)"),
    Column("text", str, "", "transcript (empty = none)"),
    Column("split", str, "", "predefined split of the dataset (train/dev/test), empty if none"),
    Column("dialogue_id", str, "", "conversation id for dialogue datasets such as MELD, empty otherwise"),
    Column("utterance_idx", np.int32, -1, "position of the utterance in its dialogue, -1 otherwise"),
    Column("duration_s", np.float32, np.nan, "media duration in seconds (NaN if it could not be read)"),
    Column("source_path", str, "", "media path relative to the dataset root"),
    Column("source_sha256", str, "", "sha256 of the media file's bytes"),
    Column("status_audio", str, "", "ok | missing | failed | skipped"),
    Column("status_video", str, "", "ok | missing | no_face | failed | skipped"),
    Column("status_text", str, "", "ok | missing | failed | skipped"),
    Column("error", str, "", "reason of any failure, 'category: detail'; empty when ok"),
    Column("metadata", str, "{}", "adapter-specific metadata as a JSON object"),
)
CLIP_COLUMN_NAMES = tuple(c.name for c in CLIP_COLUMNS)


@dataclass(frozen=True)
class VectorSpec:
    """A fixed-size feature per clip: one array ``path`` of shape [N, *shape]."""

    path: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    attrs: dict[str, Any] = field(default_factory=dict)

    def arrays(self) -> dict[str, tuple[tuple[int, ...], str, bool]]:
        """Array path -> (per-row shape, dtype, ragged?)."""
        return {self.path: (self.shape, self.dtype, False)}


@dataclass(frozen=True)
class SequenceSpec:
    """A variable-length sequence per clip, stored ragged (``fields`` + ``offsets``).

    With ``derived=True`` (frame features such as MFCC) the group also holds ``aligned`` [N, T, D] +
    ``mask`` [N, T], the sequence resampled to ``steps`` steps, and ``pooled`` [N, 2D] (mean, std), computed
    from the single field ``values``.
    """

    path: str
    fields: dict[str, tuple[int, ...]]  # field name -> per-frame shape, e.g. {"values": (80,)}
    steps: int = 0
    derived: bool = True
    dtype: str = "float32"
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        (shape,) = self.fields.values()
        return int(np.prod(shape))

    def arrays(self) -> dict[str, tuple[tuple[int, ...], str, bool]]:
        out: dict[str, tuple[tuple[int, ...], str, bool]] = {
            f"{self.path}/{name}": (shape, self.dtype, True) for name, shape in self.fields.items()
        }
        if self.derived:
            d = self.dim
            out[f"{self.path}/aligned"] = ((self.steps, d), self.dtype, False)
            out[f"{self.path}/mask"] = ((self.steps,), "bool", False)
            out[f"{self.path}/pooled"] = ((2 * d,), self.dtype, False)
        return out


FeatureSpec = VectorSpec | SequenceSpec


def empty_row(spec: FeatureSpec) -> dict[str, np.ndarray]:
    """The arrays of a clip for which this feature could not be computed (NaN, zero frames, mask False)."""
    if isinstance(spec, VectorSpec):
        return {spec.path: np.full(spec.shape, np.nan, dtype=spec.dtype)}
    out = {f"{spec.path}/{k}": np.zeros((0, *shape), dtype=spec.dtype) for k, shape in spec.fields.items()}
    if spec.derived:
        out[f"{spec.path}/aligned"] = np.zeros((spec.steps, spec.dim), dtype=spec.dtype)
        out[f"{spec.path}/mask"] = np.zeros(spec.steps, dtype=bool)
        out[f"{spec.path}/pooled"] = np.full(2 * spec.dim, np.nan, dtype=spec.dtype)
    return out
