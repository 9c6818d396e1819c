"""The store's schema: format version, the clip table's columns, and the shapes of feature arrays.

Everything that names an array path or a column lives here, so that writer, reader, `info` and `verify`
agree on one description of DESIGN.md §5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Bumped when a store written by this version cannot be read correctly by an older emo.
#: 2: every time-based ``aligned`` view is on one time grid (T equal segments of the clip's duration), and
#: ``video/faces/times`` holds the time of each sampled frame. Version 1 aligned each modality on its own.
STORE_VERSION = 2
#: The first version whose ``aligned`` views of all modalities share one time grid.
GRID_STORE_VERSION = 2

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
    required: bool = True  # False for columns added after stores existed: older stores lack them


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
    Column(
        "decoded_s_audio",
        np.float32,
        np.nan,
        "seconds of audio decoded (samples / rate); below duration_s when packets could not be decoded and were "
        "skipped, as the ffmpeg CLI skips them; 0 when nothing decoded; NaN when the audio was not decoded",
        required=False,
    ),
    Column(
        "decoded_s_video",
        np.float32,
        np.nan,
        "seconds of video decoded (decoded frames x frame duration); below duration_s when packets could not be "
        "decoded and were skipped; 0 when nothing decoded; NaN when the video was not decoded",
        required=False,
    ),
    Column(
        "decode_errors_audio",
        np.int32,
        -1,
        "audio packets that failed to decode and were skipped (a read error that ended the stream counts as "
        "one); -1 when the audio was not decoded",
        required=False,
    ),
    Column(
        "decode_errors_video",
        np.int32,
        -1,
        "video packets that failed to decode and were skipped; -1 when the video was not decoded",
        required=False,
    ),
    Column(
        "trim_start_s",
        np.float64,  # float64: the frame times derived from it must be exactly those extraction used
        np.nan,
        "clip time (s) where the audio the audio features were computed from starts: after the leading silence "
        "that --trim-silence removed, 0 when none was; NaN when the audio was not decoded or in older stores",
        required=False,
    ),
    Column(
        "trim_end_s",
        np.float64,
        np.nan,
        "clip time (s) where that audio ends: before the trailing silence --trim-silence removed, decoded_s_audio "
        "when none was; NaN when the audio was not decoded or in older stores",
        required=False,
    ),
    Column("source_path", str, "", "media path relative to the dataset root"),
    Column("source_sha256", str, "", "sha256 of the media file's bytes"),
    Column("status_audio", str, "", "ok | missing | failed | skipped"),
    Column("status_video", str, "", "ok | missing | no_face | failed | skipped"),
    Column("status_text", str, "", "ok | missing | failed | skipped"),
    Column("error", str, "", "reason of any failure, 'category: detail'; empty when ok"),
    Column("metadata", str, "{}", "adapter-specific metadata as a JSON object"),
)
CLIP_COLUMN_NAMES = tuple(c.name for c in CLIP_COLUMNS)

#: A media stream counts as partly decoded when packets were skipped or it decoded less than the container's
#: duration by more than this many seconds or this fraction of it, whichever is larger (the streams of a sound
#: file differ by a frame or two; a cut file loses far more).
PARTIAL_TOLERANCE_S = 0.25
PARTIAL_TOLERANCE = 0.01


def partly_decoded(status: Any, duration_s: Any, decoded_s: Any, errors: Any) -> Any:
    """Whether a media stream with status ``status`` decoded only partly: packets were skipped, or it is shorter
    than ``duration_s`` beyond the tolerances above. Works on scalars and on arrays (columns of the clip table);
    unknown values (NaN, -1: older stores, streams not decoded) are never partial."""
    duration = np.asarray(duration_s, dtype=np.float64)
    tolerance = np.maximum(PARTIAL_TOLERANCE_S, PARTIAL_TOLERANCE * duration)
    short = np.asarray(decoded_s, dtype=np.float64) < duration - tolerance
    return (np.asarray(status) == STATUS_OK) & ((np.asarray(errors) > 0) | short)


def partly_decoded_clips(clips: Any, modality: str) -> Any:
    """Boolean mask over the clip table ``clips`` (a DataFrame): clips whose ``modality`` ("audio" or "video")
    decoded only partly (:func:`partly_decoded`); all False for stores written before the decode columns."""
    seconds, errors = f"decoded_s_{modality}", f"decode_errors_{modality}"
    if seconds not in clips or errors not in clips:
        return np.zeros(len(clips), dtype=bool)
    return partly_decoded(clips[f"status_{modality}"], clips["duration_s"], clips[seconds], clips[errors])


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
