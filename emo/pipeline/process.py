"""Processing clips on a worker: decode, clean up, run every extractor, record per-modality statuses.

A clip never raises out of here: whatever goes wrong is written into its statuses and ``error`` column,
and its feature rows are left empty (NaN, zero frames, mask False).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import numpy as np

from emo.features_store.schema import (
    MODALITIES,
    STATUS_FAILED,
    STATUS_MISSING,
    STATUS_OK,
    STATUS_SKIPPED,
    empty_row,
)
from emo.features_store.writer import ClipResult
from emo.pipeline.audio import preprocess
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.datasets import ClipRecord
from emo.pipeline.decode import MediaError, MissingStream, decode_audio, probe, sha256_file
from emo.pipeline.extractors import Clip, Extractor

log = logging.getLogger(__name__)


def _columns(record: ClipRecord) -> dict[str, object]:
    return {
        "clip_id": record.clip_id,
        "label_name": record.label,
        "speaker": record.speaker,
        "text": record.text,
        "split": record.split,
        "dialogue_id": record.dialogue_id,
        "utterance_idx": record.utterance_idx,
        "metadata": json.dumps(record.metadata, sort_keys=True, ensure_ascii=False),
    }


class _Outcome:
    """Statuses, reasons and arrays accumulated for one clip."""

    def __init__(self, extractors: Sequence[Extractor]) -> None:
        self.status = {m: STATUS_SKIPPED for m in MODALITIES}
        self.reasons: list[str] = []
        self.arrays: dict[str, np.ndarray] = {}
        for ex in extractors:
            for spec in ex.array_specs:
                self.arrays |= empty_row(spec)

    def fail(self, modality: str, status: str, reason: str) -> None:
        self.status[modality] = status
        self.reasons.append(reason)


def process_clip(record: ClipRecord, extractors: Sequence[Extractor], config: ExtractionConfig) -> ClipResult:
    """Extract every requested feature of one clip (see module docstring for failure handling)."""
    columns = _columns(record)
    outcome = _Outcome(extractors)
    by_modality: dict[str, list[Extractor]] = {}
    for ex in extractors:
        by_modality.setdefault(ex.modality, []).append(ex)
    try:
        columns["source_sha256"] = sha256_file(record.path)
        columns["duration_s"] = probe(record.path).duration_s
    except (MediaError, OSError) as exc:
        reason = exc.reason if isinstance(exc, MediaError) else f"unreadable file: {exc.strerror or exc}"
        for modality in by_modality:
            outcome.status[modality] = STATUS_FAILED
        outcome.reasons.append(reason)
    else:
        if "audio" in by_modality:
            _audio(record, by_modality["audio"], config, outcome)
    columns.update({f"status_{m}": s for m, s in outcome.status.items()})
    columns["error"] = "; ".join(dict.fromkeys(outcome.reasons))
    return ClipResult(columns=columns, arrays=outcome.arrays)


def failure_result(record: ClipRecord, extractors: Sequence[Extractor], reason: str) -> ClipResult:
    """The row of a clip that could not be processed at all (every requested modality failed)."""
    outcome = _Outcome(extractors)
    columns = _columns(record)
    for ex in extractors:
        outcome.status[ex.modality] = STATUS_FAILED
    columns.update({f"status_{m}": s for m, s in outcome.status.items()})
    columns["error"] = reason
    return ClipResult(columns=columns, arrays=outcome.arrays)


def _audio(record: ClipRecord, extractors: list[Extractor], config: ExtractionConfig, outcome: _Outcome) -> None:
    try:
        samples = decode_audio(record.path, config.sample_rate)
    except MissingStream as exc:
        return outcome.fail("audio", STATUS_MISSING, exc.reason)
    except MediaError as exc:
        return outcome.fail("audio", STATUS_FAILED, exc.reason)
    samples = preprocess(samples, config.denoise, config.normalize, config.n_fft)
    clip = Clip(record=record, audio=samples, sample_rate=config.sample_rate)
    outcome.status["audio"] = STATUS_OK
    for ex in extractors:
        try:
            outcome.arrays |= ex.extract(clip)
        except Exception as exc:  # noqa: BLE001 - one extractor's failure must not lose the clip
            log.debug("%s failed on %s", ex.token, record.clip_id, exc_info=True)
            outcome.fail("audio", STATUS_FAILED, f"{ex.token} failed: {type(exc).__name__}: {exc}")
