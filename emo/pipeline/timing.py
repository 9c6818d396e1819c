"""Per-stage compute time, measured on the workers and returned with each clip's result.

Every clip's :class:`~emo.features_store.writer.ClipResult` carries ``timings``: seconds of compute by stage
(:data:`STAGES`). Work done for several clips at once (a backbone batch mixing the faces of two clips, a text
batch) is shared out among them in proportion to their part of it, so the sum over clips is exact and each
clip's share is close. The run's totals are in :class:`~emo.pipeline.extract.ExtractionReport`
(``stage_seconds``); whatever a run's wall time holds beyond them is orchestration: scheduling, moving results,
the store writer, start-up. Timing costs two ``perf_counter`` calls per stage and batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, MutableMapping

#: Stage names, in pipeline order, with what each covers.
STAGES = {
    "model load": "building and warming up the extractors' models, once per worker process",
    "hash + probe": "sha256 of the media file and opening its container",
    "decode audio": "FFmpeg decode and resample to mono float at the configured rate",
    "audio features": "denoise, silence trimming, normalise, MFCC, log-mel, eGeMAPS",
    "decode video": "FFmpeg decode of every frame, RGB conversion of the sampled ones",
    "face detection": "MTCNN on the sampled frames (downscale, detect, refine)",
    "face alignment": "similarity warp of each found face to the template",
    "face embeddings": "backbone on the aligned faces and on the summary image",
    "video other": "the rest of the visual pass (bookkeeping, per-clip arrays)",
    "text": "tokenizer and text encoder",
}

_pending_lock = threading.Lock()
_pending: dict[str, float] = {}


def add(timings: MutableMapping[str, float], stage: str, seconds: float) -> None:
    """Add ``seconds`` to ``stage`` in one clip's ``timings``."""
    timings[stage] = timings.get(stage, 0.0) + seconds


def share(targets: Iterable[tuple[MutableMapping[str, float], float]], stage: str, seconds: float) -> None:
    """Split ``seconds`` of ``stage`` among clips' ``timings`` in proportion to their weights."""
    targets = list(targets)
    total = sum(weight for _, weight in targets)
    if total <= 0:
        return
    for timings, weight in targets:
        add(timings, stage, seconds * weight / total)


def record_pending(stage: str, seconds: float) -> None:
    """Time spent in this process outside any clip (model loading): handed to the next clip processed."""
    with _pending_lock:
        _pending[stage] = _pending.get(stage, 0.0) + seconds


def take_pending() -> dict[str, float]:
    """The times recorded by :func:`record_pending` since the last call (and forget them)."""
    with _pending_lock:
        out = dict(_pending)
        _pending.clear()
    return out


def total(timings: Iterable[MutableMapping[str, float]]) -> dict[str, float]:
    """Sum per stage over many clips, in :data:`STAGES` order (unknown stages last)."""
    sums: dict[str, float] = {}
    for t in timings:
        for stage, seconds in t.items():
            add(sums, stage, seconds)
    order = {s: i for i, s in enumerate(STAGES)}
    return dict(sorted(sums.items(), key=lambda kv: order.get(kv[0], len(order))))
