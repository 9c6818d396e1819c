"""One clip's row of the clip table (``clips/``, DESIGN.md §5): the one place its columns are filled.

A row's values come from the dataset's record (identity, label, transcript), the media probe (hash, duration),
the decoders (how much decoded, the trimmed span) and the extractors (status per modality, errors). They are
gathered here as the clip goes through a worker, and :meth:`ClipRow.columns` turns them into the row the writer
stores, with the names and fills of ``schema.CLIP_COLUMNS``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from emo.features_store.schema import (
    MODALITIES,
    STATUS_FAILED,
    STATUS_MISSING,
    STATUS_NO_FACE,
    STATUS_OK,
    STATUS_SKIPPED,
)
from emo.pipeline.datasets import ClipRecord
from emo.pipeline.decode import DecodeStats

#: When extractors of one modality disagree, the clip's status is the most severe.
_SEVERITY = {STATUS_SKIPPED: 0, STATUS_OK: 1, STATUS_NO_FACE: 2, STATUS_MISSING: 3, STATUS_FAILED: 4}


@dataclass
class ClipRow:
    """The values of one clip's row, gathered while the clip is processed (see the module docstring)."""

    record: ClipRecord
    source_sha256: str = ""
    duration_s: float = math.nan
    status: dict[str, str] = field(default_factory=lambda: dict.fromkeys(MODALITIES, STATUS_SKIPPED))
    #: per decoded stream ("audio", "video"): how much decoded and how many packets were skipped
    decoded: dict[str, DecodeStats] = field(default_factory=dict)
    #: clip times (s) of the audio the audio features were computed from (after --trim-silence)
    trim_s: tuple[float, float] | None = None
    reasons: list[str] = field(default_factory=list)

    def set_status(self, modality: str, status: str, reason: str = "") -> None:
        """Record a modality's status (of several, the most severe stays) and, if given, why."""
        if _SEVERITY[status] >= _SEVERITY[self.status[modality]]:
            self.status[modality] = status
        if reason:
            self.reasons.append(reason)

    def columns(self) -> dict[str, object]:
        """The row as ``{column: value}``; a column left out takes its schema fill (e.g. NaN when not decoded)."""
        rec = self.record
        row: dict[str, object] = {
            "clip_id": rec.clip_id,
            "label": rec.label_index,
            "label_name": rec.label,
            "speaker": rec.speaker,
            "text": rec.text,
            "split": rec.split,
            "dialogue_id": rec.dialogue_id,
            "utterance_idx": rec.utterance_idx,
            "duration_s": self.duration_s,
            "source_path": rec.source_path,
            "source_sha256": self.source_sha256,
            "error": "; ".join(dict.fromkeys(self.reasons)),
            "metadata": json.dumps(rec.metadata, sort_keys=True, ensure_ascii=False),
        }
        row.update({f"status_{m}": s for m, s in self.status.items()})
        for modality, stats in self.decoded.items():
            row[f"decoded_s_{modality}"] = stats.seconds
            row[f"decode_errors_{modality}"] = stats.errors
        if self.trim_s is not None:
            row["trim_start_s"], row["trim_end_s"] = self.trim_s
        return row
