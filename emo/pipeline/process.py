"""Processing clips on a worker: decode, clean up, run every extractor, record per-modality statuses.

A task's clips are processed together so that extractors with models can batch across clips (the video
pass, the text encoder); audio is decoded and processed one clip at a time, so a task never holds the audio
of all its clips. A clip never raises out of here: whatever goes wrong is written into its statuses and
``error`` column, and its feature rows are left empty (NaN, zero frames, mask False).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from time import perf_counter

import numpy as np

from emo.features_store.clip_result import ClipResult
from emo.features_store.schema import STATUS_FAILED, STATUS_MISSING, STATUS_OK, empty_row
from emo.pipeline.audio import preprocess
from emo.pipeline.clip_row import ClipRow
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.datasets import ClipRecord
from emo.pipeline.decode import MediaError, MissingStream, decode_audio, probe, sha256_file
from emo.pipeline.extractors import Clip, Extractor, Unavailable
from emo.pipeline.heap import release_free_memory
from emo.pipeline.timing import add, share, take_pending

log = logging.getLogger(__name__)

#: Modalities that come from the media file (text comes from the dataset's transcript).
_MEDIA = ("audio", "video")
#: Stage (``emo.pipeline.timing``) of an extractor's time not already attributed to a finer stage inside it.
_STAGE = {"audio": "audio features", "video": "video other", "text": "text"}


class _Job:
    """One clip of the task on its way through the stages: its row (:class:`ClipRow`) and its feature arrays."""

    def __init__(self, record: ClipRecord, extractors: Sequence[Extractor], config: ExtractionConfig) -> None:
        self.record = record
        self.row = ClipRow(record)
        self.arrays = _empty_arrays(extractors)
        self.clip = Clip(record=record, audio=None, sample_rate=config.sample_rate, decoded=self.row.decoded)
        self.readable = False

    def probe(self, modalities: Sequence[str]) -> None:
        started = perf_counter()
        try:
            self.row.source_sha256 = sha256_file(self.record.path)
            self.row.duration_s = self.clip.duration_s = probe(self.record.path).duration_s
        except (MediaError, OSError) as exc:
            reason = exc.reason if isinstance(exc, MediaError) else f"unreadable file: {exc.strerror or exc}"
            for modality in modalities:
                self.row.set_status(modality, STATUS_FAILED, reason)
        else:
            self.readable = True
        add(self.clip.timings, "hash + probe", perf_counter() - started)

    def take(self, modality: str, token: str, result: dict[str, np.ndarray] | BaseException) -> None:
        """Record one extractor's result for this clip."""
        if isinstance(result, Unavailable):
            self.row.set_status(modality, result.status, result.reason)
            self.arrays |= result.arrays
        elif isinstance(result, BaseException):
            self.row.set_status(modality, STATUS_FAILED, f"{token} failed: {type(result).__name__}: {result}")
        else:
            self.row.set_status(modality, STATUS_OK)
            self.arrays |= result

    def result(self) -> ClipResult:
        return ClipResult(columns=self.row.columns(), arrays=self.arrays, timings=self.clip.timings)


def _empty_arrays(extractors: Sequence[Extractor]) -> dict[str, np.ndarray]:
    """The feature rows of a clip nothing was extracted for (NaN, zero frames, mask False)."""
    arrays: dict[str, np.ndarray] = {}
    for ex in extractors:
        for spec in ex.array_specs:
            arrays |= empty_row(spec)
    return arrays


def _run(modality: str, jobs: Sequence[_Job], extractors: Sequence[Extractor]) -> None:
    """Run a modality's extractors on the clips of ``jobs`` (each extractor sees them all at once)."""
    if not jobs:
        return
    clips = [job.clip for job in jobs]
    for ex in extractors:
        attributed = sum(sum(c.timings.values()) for c in clips)
        started = perf_counter()
        try:
            results = ex.extract_batch(clips)
        except Exception as exc:  # noqa: BLE001 - an extractor failing as a whole fails its clips, not the task
            log.debug("%s failed on a batch of %d clips", ex.token, len(clips), exc_info=True)
            results = [exc] * len(clips)
        # what the extractor did not attribute to a finer stage itself, shared equally among the clips
        rest = perf_counter() - started - (sum(sum(c.timings.values()) for c in clips) - attributed)
        share(((c.timings, 1.0) for c in clips), _STAGE[modality], max(rest, 0.0))
        for job, result in zip(jobs, results, strict=True):
            job.take(modality, ex.token, result)


def process_clips(
    records: Sequence[ClipRecord], extractors: Sequence[Extractor], config: ExtractionConfig
) -> list[ClipResult]:
    """Extract every requested feature of the clips of one task (see module docstring for failures)."""
    jobs = [_Job(record, extractors, config) for record in records]
    if jobs:  # model loading of this process (first task of a worker) goes with its first clip
        for stage, seconds in take_pending().items():
            add(jobs[0].clip.timings, stage, seconds)
    by_modality: dict[str, list[Extractor]] = {}
    for ex in extractors:
        by_modality.setdefault(ex.modality, []).append(ex)
    for job in jobs:
        job.probe([m for m in _MEDIA if m in by_modality])
    readable = [job for job in jobs if job.readable]
    if "audio" in by_modality:
        for job in readable:
            if _decode_audio(job, config):
                _run("audio", [job], by_modality["audio"])
                job.clip.audio = None  # free it before the next clip
                job.clip.cache.clear()
                release_free_memory()
    if "video" in by_modality:
        _run("video", readable, by_modality["video"])
        release_free_memory()
    if "text" in by_modality:
        _run("text", jobs, by_modality["text"])
    return [job.result() for job in jobs]


def process_clip(record: ClipRecord, extractors: Sequence[Extractor], config: ExtractionConfig) -> ClipResult:
    """Extract every requested feature of one clip."""
    return process_clips([record], extractors, config)[0]


def failure_result(record: ClipRecord, extractors: Sequence[Extractor], reason: str) -> ClipResult:
    """The row of a clip that could not be processed at all (every requested modality failed)."""
    row = ClipRow(record)
    for modality in dict.fromkeys(ex.modality for ex in extractors):
        row.set_status(modality, STATUS_FAILED)
    row.reasons.append(reason)
    return ClipResult(columns=row.columns(), arrays=_empty_arrays(extractors))


def _decode_audio(job: _Job, config: ExtractionConfig) -> bool:
    """Decode and clean up the clip's audio into ``job.clip``; False (status recorded) if there is none."""
    started = perf_counter()
    try:
        decoded = decode_audio(job.record.path, config.sample_rate)
    except MissingStream as exc:
        job.row.set_status("audio", STATUS_MISSING, exc.reason)
        return False
    except MediaError as exc:
        if exc.stats is not None:
            job.clip.decoded["audio"] = exc.stats
        job.row.set_status("audio", STATUS_FAILED, exc.reason)
        return False
    finally:
        add(job.clip.timings, "decode audio", perf_counter() - started)
    started = perf_counter()
    job.clip.decoded["audio"] = decoded.stats
    if decoded.stats.errors:
        log.info(
            "%s: %d audio packets could not be decoded and were skipped (%s); %.2f s decoded",
            job.record.clip_id, decoded.stats.errors, decoded.stats.first_error, decoded.stats.seconds,
        )
    rate = config.sample_rate
    audio, start = preprocess(decoded.samples, config.denoise, config.normalize, config.n_fft, config.trim_silence_db)
    job.clip.audio, job.clip.audio_start_s = audio, start / rate
    job.row.trim_s = (start / rate, (start + audio.size) / rate)
    add(job.clip.timings, "audio features", perf_counter() - started)
    return True
