"""The visual pass of a task's clips, shared by the video extractors: sampled frames -> MTCNN -> aligned faces ->
backbone, in bounded memory.

One pass per clip serves the three video tokens (``faces``, ``face``, ``summary``): faces are detected (or
tracked between keyframes, ``--face-track``) and aligned once, whichever of them asks first. Frames are
decoded as a stream at the configured fps and go through detection ``FRAME_BATCH`` at a time; only what the
store needs is kept (the detections, one embedding per found face, a running sum of the aligned crops for the
summary image), so a long video never sits in memory. Aligned crops wait in one queue shared by all clips of
the task and go through the backbone ``embed_batch(device)`` at a time, so the tail of one clip and the head
of the next share a forward pass. The summary images of the task (each clip's mean aligned face, seed 001) are
embedded together at the end.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import numpy as np

from emo.errors import UsageError
from emo.features_store.schema import STATUS_FAILED, STATUS_MISSING
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.datasets import VIDEO_EXTENSIONS
from emo.pipeline.decode import FrameStream, MediaError, MissingStream
from emo.pipeline.extractors.base import Clip, Unavailable, worker_resource
from emo.pipeline.extractors.faces import VisualOptions
from emo.pipeline.face_detection import DEFAULT_BATCH_SIZE, FaceDetections, FaceDetector, align_face
from emo.pipeline.face_tracking import FaceTracker
from emo.pipeline.models import VisualModel, check_faces, load_visual_model
from emo.pipeline.timing import add, share

log = logging.getLogger(__name__)

#: Sampled frames held at once: the unit of detection (one MTCNN batch with --face-track 1) and of the memory
#: bound. 16 took the same time with the default tracking and held 43 MB more (a 3-minute 720p clip).
FRAME_BATCH = DEFAULT_BATCH_SIZE
#: Aligned crops per backbone forward pass, across frames and clips. On a CPU a small batch is as fast per
#: crop and holds a quarter of the activations (ResNet-18 at 8: ~60 MB above the model, at 32: ~250 MB;
#: EfficientNet-Lite0 at 8 is even faster per crop); a GPU wants larger batches.
EMBED_BATCH_CPU = 8
EMBED_BATCH_GPU = 32


def embed_batch(device: str) -> int:
    """Crops per backbone forward pass on ``device``."""
    return EMBED_BATCH_CPU if str(device) == "cpu" else EMBED_BATCH_GPU


#: Key of a clip's :class:`FaceTrack` (or :class:`Unavailable`) in ``Clip.cache``.
CACHE_KEY = "visual_pass"


@dataclass
class FaceTrack:
    """What the pass keeps of one clip.

    ``detections``: the most confident face of every sampled frame (NaN rows and ``found`` False where none).
    ``embeddings`` [n_faces, D]: the backbone embedding of each found face, in frame order (None when the
    ``face`` token is not requested). ``mean_crop`` [S, S, 3] float32 in 0-255: the mean aligned face, and
    ``summary`` [D] its embedding (None without ``summary``, or without faces). ``error`` is set when the
    backbone failed on this clip's faces, ``summary_error`` when it failed on its summary image (the
    detections are valid either way).
    """

    detections: FaceDetections
    times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # [F] s, of each sampled frame
    embeddings: np.ndarray | None = None
    mean_crop: np.ndarray | None = None
    summary: np.ndarray | None = None
    error: BaseException | None = None
    summary_error: BaseException | None = None

    @property
    def n_frames(self) -> int:
        return len(self.detections)

    @property
    def n_faces(self) -> int:
        return int(self.detections.found.sum())


@dataclass
class _Accumulator:
    """One clip's state while its frames stream through."""

    detections: list[FaceDetections] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    crop_sum: np.ndarray | None = None
    n_faces: int = 0
    error: BaseException | None = None
    timings: dict[str, float] = field(default_factory=dict)  # the clip's (``Clip.timings``)


class _EmbedQueue:
    """Aligned crops of any clips of the task, embedded ``batch`` at a time in arrival order."""

    def __init__(self, model: VisualModel, batch: int) -> None:
        self.model = model
        self.batch = batch
        self.pending: list[tuple[_Accumulator, np.ndarray]] = []
        self.size = 0

    def add(self, owner: _Accumulator, crops: np.ndarray) -> None:
        if len(crops):
            self.pending.append((owner, crops))
            self.size += len(crops)
        if self.size >= self.batch:
            self.flush()

    def discard(self, owner: _Accumulator) -> None:
        """Drop a failed clip's waiting crops."""
        self.pending = [(o, c) for o, c in self.pending if o is not owner]
        self.size = sum(len(c) for _, c in self.pending)

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending, self.size = self.pending, [], 0
        started = perf_counter()
        try:
            embeddings = self.model.embed(np.concatenate([c for _, c in pending]), batch_size=self.batch)
        except Exception as exc:  # noqa: BLE001 - fails the clips whose faces were in this batch, not the task
            log.debug("backbone failed on a batch of faces", exc_info=True)
            for owner, _ in pending:
                owner.error = exc
            return
        finally:
            share(((o.timings, len(c)) for o, c in pending), "face embeddings", perf_counter() - started)
        start = 0
        for owner, crops in pending:
            owner.embeddings.append(embeddings[start : start + len(crops)])
            start += len(crops)


class VisualPass:
    """Runs the visual pass of a configuration on this worker's ``device``, with models shared per process."""

    def __init__(self, config: ExtractionConfig, device: str = "cpu") -> None:
        self.config = config
        self.device = device
        self.embed_faces = "face" in config.features
        self.summarise = "summary" in config.features

    @property
    def needs_backbone(self) -> bool:
        return self.embed_faces or self.summarise

    def detector(self) -> FaceDetector:
        c = self.config.section(VisualOptions)
        detect_size = c.face_detect_size or None
        key = ("mtcnn", c.face_min_size, c.face_thresholds, detect_size, self.device)
        return worker_resource(
            key,
            lambda: FaceDetector(
                min_face_size=c.face_min_size,
                thresholds=c.face_thresholds,
                detect_size=detect_size,
                batch_size=DEFAULT_BATCH_SIZE,
                device=self.device,
            ),
        )

    def model(self) -> VisualModel:
        """The backbone, checked against the weights identity pinned in the config."""
        c = self.config.section(VisualOptions)
        model = worker_resource(  # the pinned sha in the key: a file replaced since is loaded anew
            (
                "backbone",
                c.visual_model,
                c.visual_weights,
                c.visual_weights_sha256,
                c.visual_precision,
                c.visual_runtime,
                self.device,
            ),
            lambda: _checked(
                load_visual_model(
                    c.visual_model,
                    c.visual_weights,
                    device=self.device,
                    batch_size=embed_batch(self.device),
                    precision=c.visual_precision,
                    runtime=c.visual_runtime,
                )
            ),
        )
        sha = model.weights_identity["sha256"]
        if c.visual_weights_sha256 is not None and sha != c.visual_weights_sha256:
            raise UsageError(
                f"the visual weights {model.weights_identity['file']} on {socket.gethostname()} have sha256 {sha}, "
                f"the extraction config records {c.visual_weights_sha256}: every worker needs the same file"
            )
        return model

    def setup(self) -> None:
        """Load MTCNN (and the backbone when embeddings are requested) once per process."""
        self.detector()
        if self.needs_backbone:
            self.model()

    def run(self, clips: Sequence[Clip]) -> None:
        """Process the clips not yet processed; each gets a :class:`FaceTrack` or an :class:`Unavailable`."""
        todo = [clip for clip in clips if CACHE_KEY not in clip.cache]
        if not todo:
            return
        detector = self.detector()
        model = self.model() if self.needs_backbone else None
        queue = _EmbedQueue(model, model.batch_size) if model is not None and self.embed_faces else None
        states: list[tuple[Clip, _Accumulator]] = []
        for clip in todo:
            acc = _Accumulator(timings=clip.timings)
            try:
                self._stream(clip, acc, detector, queue)
            except Unavailable as exc:
                clip.cache[CACHE_KEY] = exc
            except MediaError as exc:
                if exc.stats is None:  # the stream was never decoded (no video stream, unreadable container)
                    clip.decoded.pop("video", None)
                clip.cache[CACHE_KEY] = _media_unavailable(clip, exc)
            except Exception as exc:  # noqa: BLE001 - a bug or a model crash on this clip fails this clip only
                log.debug("visual pass failed on %s", clip.record.clip_id, exc_info=True)
                clip.cache[CACHE_KEY] = Unavailable(
                    STATUS_FAILED, f"video processing failed: {type(exc).__name__}: {exc}"
                )
            else:
                states.append((clip, acc))
                continue
            if queue is not None:
                queue.discard(acc)
        if queue is not None:
            queue.flush()
        tracks = [(clip, self._track(acc)) for clip, acc in states]
        if model is not None and self.summarise:
            summarised = [(clip, t) for clip, t in tracks if t.mean_crop is not None]
            started = perf_counter()
            self._summaries(model, [t for _, t in summarised])
            share(((clip.timings, 1.0) for clip, _ in summarised), "face embeddings", perf_counter() - started)
        for clip, track in tracks:
            clip.cache[CACHE_KEY] = track

    @staticmethod
    def track(clip: Clip) -> FaceTrack:
        """The clip's :class:`FaceTrack` after :meth:`run`; raises its :class:`Unavailable` otherwise."""
        result = clip.cache[CACHE_KEY]
        if isinstance(result, BaseException):
            raise result
        return result

    def _stream(
        self, clip: Clip, acc: _Accumulator, detector: FaceDetector, queue: _EmbedQueue | None
    ) -> None:
        frames: list[np.ndarray] = []
        decoding = 0.0
        options = self.config.section(VisualOptions)
        tracker = FaceTracker(detector, options.face_track)  # one track per clip
        stream = FrameStream(clip.record.path, options.fps)
        clip.decoded["video"] = stream.stats
        started = perf_counter()
        try:
            for t, frame in stream:
                decoding += perf_counter() - started
                frames.append(frame)
                acc.times.append(t)
                if len(frames) == FRAME_BATCH:
                    self._frames(frames, acc, tracker, queue)
                    frames = []
                started = perf_counter()
            decoding += perf_counter() - started
        finally:
            add(acc.timings, "decode video", decoding)
        if frames:
            self._frames(frames, acc, tracker, queue)
        if stream.stats.errors:
            log.info(
                "%s: %d video packets could not be decoded and were skipped (%s); %.2f s decoded",
                clip.record.clip_id, stream.stats.errors, stream.stats.first_error, stream.stats.seconds,
            )
        if not acc.detections:
            raise Unavailable(STATUS_FAILED, "empty video stream: no frames decoded")

    def _frames(
        self, frames: list[np.ndarray], acc: _Accumulator, tracker: FaceTracker, queue: _EmbedQueue | None
    ) -> None:
        started = perf_counter()
        det = tracker(frames)
        add(acc.timings, "face detection", perf_counter() - started)
        acc.detections.append(det)
        found = np.flatnonzero(det.found)
        if not found.size or not (queue is not None or self.summarise):
            return
        started = perf_counter()
        size = self.config.section(VisualOptions).face_size
        crops = np.stack([align_face(frames[i], det.landmarks[i], size) for i in found])
        acc.n_faces += len(crops)
        if self.summarise:
            batch_sum = crops.sum(axis=0, dtype=np.float64)
            acc.crop_sum = batch_sum if acc.crop_sum is None else acc.crop_sum + batch_sum
        add(acc.timings, "face alignment", perf_counter() - started)
        if queue is not None:
            queue.add(acc, crops)

    def _track(self, acc: _Accumulator) -> FaceTrack:
        track = FaceTrack(
            detections=FaceDetections.concat(acc.detections),
            times=np.asarray(acc.times, dtype=np.float32),
            error=acc.error,
        )
        if self.embed_faces and acc.error is None:
            dim = self.model().dim
            track.embeddings = (
                np.concatenate(acc.embeddings) if acc.embeddings else np.zeros((0, dim), dtype=np.float32)
            )
            if len(track.embeddings) != track.n_faces:  # the queue hands back what it took: never expected
                track.error = RuntimeError(f"{len(track.embeddings)} embeddings for {track.n_faces} faces")
        if acc.crop_sum is not None:
            track.mean_crop = (acc.crop_sum / acc.n_faces).astype(np.float32)
        return track

    def _summaries(self, model: VisualModel, tracks: list[FaceTrack]) -> None:
        if not tracks:
            return
        try:
            embeddings = model.embed(np.stack([t.mean_crop for t in tracks]))
        except Exception as exc:  # noqa: BLE001 - recorded on each clip of the batch
            log.debug("backbone failed on a batch of summary images", exc_info=True)
            for track in tracks:
                track.summary_error = exc
            return
        for track, embedding in zip(tracks, embeddings, strict=True):
            track.summary = embedding


def _checked(model: VisualModel) -> VisualModel:
    """The model, once its numerics (bf16, ONNX Runtime) have been shown to keep its embeddings of real faces
    (raises otherwise)."""
    cosine = model.check_numerics(check_faces(model.input_size))
    if model.precision != "fp32" or model.runtime != "torch":
        log.debug(
            "%s in %s (%s): cosine %.6f to fp32 on the check faces", model.name, model.precision, model.runtime, cosine
        )
    return model


def _media_unavailable(clip: Clip, exc: MediaError) -> Unavailable:
    if isinstance(exc, MissingStream):
        # an audio file has no video by nature; a video container without one is worth reporting
        expected = clip.record.path.suffix.lower() in VIDEO_EXTENSIONS
        return Unavailable(STATUS_MISSING, exc.reason if expected else "")
    return Unavailable(STATUS_FAILED, exc.reason)


def describe_sampling(config: ExtractionConfig) -> dict[str, Any]:
    """Provenance of the frame sampling and face alignment (attributes of every video array)."""
    from emo.pipeline.face_detection import TEMPLATE

    options = config.section(VisualOptions)
    return {
        "fps": options.fps,
        "frame_rate_hz": options.fps,
        "sampling": "the first decoded frame at or after each k / fps seconds (FFmpeg through PyAV), RGB",
        "alignment": {
            "method": "least-squares similarity (Umeyama: rotation, uniform scale, translation) from the 5 "
            "MTCNN landmarks to the template",
            "template": "ArcFace/InsightFace 5-point template scaled by size/112 (eyes level)",
            "template_points": TEMPLATE(options.face_size).round(4).tolist(),
            "crop_size": options.face_size,
            "interpolation": "bilinear (PIL), box-reduced first when shrinking more than 2x; black outside",
        },
    }
