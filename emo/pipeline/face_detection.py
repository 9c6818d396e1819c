"""Face detection (MTCNN from facenet-pytorch) and 5-point similarity alignment to a canonical template.

Coordinates everywhere are pixel-index coordinates: the centre of pixel (row r, column c) is the point
(x=c, y=r), the convention of MTCNN's landmarks, scikit-image and OpenCV's ``warpAffine``.

Detection works on any batch of frames independently, so a caller can stream a long video through it
batch by batch and concatenate the results with :meth:`FaceDetections.concat`.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from emo.errors import UsageError

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_DETECT_SIZE",
    "FaceDetections",
    "FaceDetector",
    "TEMPLATE",
    "align_face",
    "align_faces",
    "alignment_matrix",
    "detector_config",
]

#: Longer side (pixels) frames are downscaled to before detection. From ``benchmarks/faces.py`` (one torch
#: thread), with the O-Net refinement: 2.0x faster than full resolution on 640x480 and 6.4x on 1280x720,
#: finds every face full resolution finds (down to ~30 px wide), same landmark error; 320 was faster still
#: but missed 38-40 px faces in 1280x720 frames.
DEFAULT_DETECT_SIZE = 480
#: Frames per MTCNN call: 1, 8 and 16 timed the same at 480 px (full-resolution batches were slower); 8 keeps
#: per-call overhead low without large intermediate tensors.
DEFAULT_BATCH_SIZE = 8

#: The standard 5-point face template of ArcFace/InsightFace for a 112x112 crop, in the order MTCNN
#: reports landmarks: left eye, right eye, nose tip, left mouth corner, right mouth corner ("left" = smaller
#: x in the image, i.e. the subject's right). Eyes are level to within 0.2 px and 35.2 px apart (31% of the
#: crop width); the eye midpoint sits at (50.3%, 46.1%) of the crop.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def TEMPLATE(size: int = 224) -> np.ndarray:  # noqa: N802 - reads like the constant it computes
    """The canonical 5-point template for a ``size`` x ``size`` crop: ArcFace's 112 template x size/112.

    Scaling is about the pixel-index origin, so ``TEMPLATE(112)`` is exactly :data:`ARCFACE_TEMPLATE_112`.
    """
    if size < 8:
        raise ValueError(f"crop size must be at least 8 pixels, got {size}")
    return ARCFACE_TEMPLATE_112 * (size / 112.0)


# ---------------------------------------------------------------------------------------------------------
# Detection


@dataclass(frozen=True)
class FaceDetections:
    """Per-frame detection of the most confident face; NaN rows (and ``found`` False) where there is none.

    ``boxes`` [F, 4] float32 (x1, y1, x2, y2); ``probs`` [F] float32; ``landmarks`` [F, 5, 2] float32 (x, y)
    in MTCNN's order (left eye, right eye, nose, mouth left, mouth right); ``found`` [F] bool.
    """

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray

    def __len__(self) -> int:
        return int(self.found.shape[0])

    @classmethod
    def empty(cls, n: int = 0) -> FaceDetections:
        """``n`` frames with no face."""
        return cls(
            boxes=np.full((n, 4), np.nan, dtype=np.float32),
            probs=np.full((n,), np.nan, dtype=np.float32),
            landmarks=np.full((n, 5, 2), np.nan, dtype=np.float32),
            found=np.zeros((n,), dtype=bool),
        )

    @classmethod
    def concat(cls, parts: Sequence[FaceDetections]) -> FaceDetections:
        """Join the detections of consecutive batches of frames (streaming a long video)."""
        if not parts:
            return cls.empty(0)
        return cls(
            boxes=np.concatenate([p.boxes for p in parts]),
            probs=np.concatenate([p.probs for p in parts]),
            landmarks=np.concatenate([p.landmarks for p in parts]),
            found=np.concatenate([p.found for p in parts]),
        )


def _package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def detector_config(
    min_face_size: int = 20,
    thresholds: Sequence[float] = (0.6, 0.7, 0.7),
    factor: float = 0.709,
    detect_size: int | None = DEFAULT_DETECT_SIZE,
    refine: bool = True,
) -> dict[str, Any]:
    """What :meth:`FaceDetector.config` reports about the results of a detector with these parameters,
    without building one (the driver describes the store's arrays before any worker loads MTCNN)."""
    return {
        "detector": "mtcnn",
        "implementation": "facenet-pytorch",
        "facenet_pytorch_version": _package_version("facenet-pytorch"),
        "min_face_size": int(min_face_size),
        "thresholds": [float(t) for t in thresholds],
        "factor": float(factor),
        "detect_size": None if detect_size is None else int(detect_size),
        "downscale": "torch bilinear, antialias (uint8 on a CPU)" if detect_size is not None else None,
        "refine": "O-Net on full-resolution crops of downscaled detections" if refine else None,
        "selection": "most confident face per frame",
        "landmark_order": ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"],
        "coordinates": "full-resolution pixel-index (x, y)",
    }


def _check_frame(i: int, frame: Any) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        desc = f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}".strip()
        raise ValueError(f"frame {i} must be an HxWx3 uint8 RGB numpy array, got {desc}")


class FaceDetector:
    """MTCNN face detector keeping the most confident face of each frame.

    Frames are downscaled (antialiased bilinear) so that their longer side is at most ``detect_size`` pixels
    before detection, and boxes/landmarks are mapped back to full resolution; ``detect_size=None`` detects at
    full resolution. ``min_face_size`` is measured in the downscaled image, so the smallest face found in a
    frame is about ``min_face_size * max(H, W) / detect_size`` full-resolution pixels (MTCNN also finds
    somewhat smaller ones). With ``refine`` (default), each kept face of a downscaled frame goes once more
    through MTCNN's last stage (O-Net) on a crop of the full-resolution frame, so its box, landmarks and
    probability are as precise as full-resolution detection (``benchmarks/faces.py``: landmark error back to
    the full-resolution level, ~1.5 ms per face); a face whose refined probability falls below the last
    threshold keeps its downscaled detection. ``thresholds`` are the P-, R- and O-Net score thresholds,
    ``factor`` the image-pyramid scale step. Frames of equal size go through MTCNN together, ``batch_size``
    at a time.
    """

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        detect_size: int | None = DEFAULT_DETECT_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: str = "cpu",
        refine: bool = True,
    ) -> None:
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0.0 < t < 1.0 for t in thresholds):
            raise UsageError(f"MTCNN thresholds must be three numbers in (0, 1), got {list(thresholds)}")
        if not 0.0 < factor < 1.0:
            raise UsageError(f"MTCNN pyramid factor must be in (0, 1), got {factor}")
        if min_face_size < 1:
            raise UsageError(f"min_face_size must be a positive number of pixels, got {min_face_size}")
        if detect_size is not None and detect_size < min_face_size:
            raise UsageError(
                f"detect_size {detect_size} is smaller than min_face_size {min_face_size}: no face could be "
                "found (use a larger detect_size, or None for full resolution)"
            )
        if batch_size < 1:
            raise UsageError(f"batch_size must be positive, got {batch_size}")
        import torch  # here, not at module level: the driver uses this module's geometry without torch
        from facenet_pytorch import MTCNN

        self.min_face_size = int(min_face_size)
        self.thresholds = thresholds
        self.factor = float(factor)
        self.detect_size = None if detect_size is None else int(detect_size)
        self.batch_size = int(batch_size)
        self.device = str(device)
        self.refine = bool(refine)
        self._mtcnn = MTCNN(
            min_face_size=self.min_face_size,
            thresholds=list(self.thresholds),
            factor=self.factor,
            keep_all=True,
            select_largest=False,
            post_process=False,
            device=torch.device(self.device),
        )
        # channels-last convolutions: ~30% faster on a CPU (oneDNN), the same detections to float rounding
        self._mtcnn.eval().to(memory_format=torch.channels_last)

    def config(self) -> dict[str, Any]:
        """Every parameter, JSON-able, for provenance (``batch_size`` and ``device`` leave results alone)."""
        return {
            **detector_config(self.min_face_size, self.thresholds, self.factor, self.detect_size, self.refine),
            "batch_size": self.batch_size,
            "device": self.device,
        }

    def _scale(self, h: int, w: int) -> float:
        if self.detect_size is None or max(h, w) <= self.detect_size:
            return 1.0
        return self.detect_size / max(h, w)

    def detect(self, frames: Sequence[np.ndarray]) -> FaceDetections:
        """Detect the most confident face in each HxWx3 uint8 RGB frame (frames may differ in size)."""
        frames = list(frames)
        for i, frame in enumerate(frames):
            _check_frame(i, frame)
        result = FaceDetections.empty(len(frames))
        groups: dict[tuple[int, int], list[int]] = {}
        for i, frame in enumerate(frames):
            groups.setdefault(frame.shape[:2], []).append(i)
        for (h, w), indices in groups.items():
            scale = self._scale(h, w)
            dh, dw = (h, w) if scale == 1.0 else (max(1, round(h * scale)), max(1, round(w * scale)))
            if min(dh, dw) < self.min_face_size:
                continue  # MTCNN's pyramid is empty: no face of the minimum size fits
            sx, sy = dw / w, dh / h
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                self._detect_chunk([frames[i] for i in chunk], chunk, (dh, dw), (sx, sy), result)
        return result

    def _detect_chunk(
        self,
        frames: list[np.ndarray],
        indices: list[int],
        size: tuple[int, int],
        scale: tuple[float, float],
        result: FaceDetections,
    ) -> None:
        import torch
        import torch.nn.functional as F

        if frames[0].shape[:2] != size:
            # frame by frame: a float copy of a whole batch of full-resolution frames would be the largest buffer
            # of the visual pass (8 frames of 720p: 88 MB); the downscaled frames are the same either way
            # On a CPU uint8 in, uint8 out (rounded, as the frames themselves are): torch's vectorised kernel for
            # channels-last uint8 images, ~7x faster than resampling a float copy (1.3 vs 8.8 ms per 720p frame).
            # CUDA has no uint8 kernel for this: there the frame is resampled as float.
            dtype = torch.uint8 if torch.device(self.device).type == "cpu" else torch.float32
            small = [
                F.interpolate(
                    # (torch warns on read-only arrays, e.g. frames of a memory-mapped file: copy those)
                    torch.from_numpy(frame if frame.flags.writeable else frame.copy())
                    .to(self.device)
                    .permute(2, 0, 1)[None]  # a channels-last view of the HxWx3 frame
                    .to(dtype),
                    size=size,
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
                for frame in frames
            ]
            batch = torch.cat(small).permute(0, 2, 3, 1)  # MTCNN takes NHWC and permutes back
        else:
            batch = torch.from_numpy(np.stack(frames)).to(self.device)
        boxes, probs, points = self._mtcnn.detect(batch, landmarks=True)
        sx, sy = scale
        for j, i in enumerate(indices):
            if boxes[j] is None:
                continue
            b = np.asarray(boxes[j], dtype=np.float32).reshape(-1, 4)
            p = np.asarray(probs[j], dtype=np.float32).reshape(-1)
            lm = np.asarray(points[j], dtype=np.float32).reshape(-1, 5, 2)
            k = int(np.argmax(p))
            b, lm = b[k].copy(), lm[k].copy()
            if (sx, sy) != (1.0, 1.0):
                # pixel-index coordinates: x_full = (x_small + 0.5) / s - 0.5
                b[0::2] = (b[0::2] + 0.5) / sx - 0.5
                b[1::2] = (b[1::2] + 0.5) / sy - 0.5
                lm[:, 0] = (lm[:, 0] + 0.5) / sx - 0.5
                lm[:, 1] = (lm[:, 1] + 0.5) / sy - 0.5
            result.boxes[i] = b
            result.probs[i] = p[k]
            result.landmarks[i] = lm
            result.found[i] = True
        if self.refine and (sx, sy) != (1.0, 1.0):
            self._refine(frames, indices, result)

    def _refine(self, frames: list[np.ndarray], indices: list[int], result: FaceDetections) -> None:
        """O-Net once more on full-resolution crops of the faces found in downscaled frames; a face whose refined
        probability falls below the last threshold keeps its downscaled detection."""
        kept = [i for i in indices if result.found[i]]
        if not kept:
            return
        by_index = dict(zip(indices, frames, strict=True))
        refined = self.onet([by_index[i] for i in kept], result.boxes[kept])
        for j, i in enumerate(kept):
            if refined.found[j]:
                result.boxes[i] = refined.boxes[j]
                result.probs[i] = refined.probs[j]
                result.landmarks[i] = refined.landmarks[j]

    def onet(self, frames: Sequence[np.ndarray], boxes: np.ndarray) -> FaceDetections:
        """MTCNN's last stage (O-Net) on a full-resolution crop of each frame around its box [n, 4], cropped the
        way MTCNN crops for its third stage: the box squared, clipped to the frame, resized to 48x48.

        Returns O-Net's regressed box, probability and landmarks for every crop; ``found`` is False where the
        probability is below the last threshold or the box lies outside its frame (NaN rows there). This is the
        refinement of downscaled detections and the step that follows a face between keyframes.
        """
        import torch
        import torch.nn.functional as F

        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(frames) != len(boxes):
            raise ValueError(f"{len(frames)} frames but {len(boxes)} boxes")
        result = FaceDetections.empty(len(boxes))
        crops, squares, kept = [], [], []
        for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
            if not np.isfinite(box).all():
                continue
            x1, y1, x2, y2 = box
            cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) / 2
            sq = np.array([cx - half, cy - half, cx + half, cy + half])  # MTCNN's rerec: squared box
            h, w = frame.shape[:2]
            # MTCNN's crop rule (1-based, clipped to the frame, then resized to 48x48 by area averaging)
            x, y, ex, ey = np.trunc(sq).astype(int)
            x, y, ex, ey = max(x, 1), max(y, 1), min(ex, w), min(ey, h)
            if ex < x or ey < y:
                continue
            patch = torch.from_numpy(np.ascontiguousarray(frame[y - 1 : ey, x - 1 : ex])).to(self.device)
            crops.append(F.interpolate(patch.permute(2, 0, 1)[None].float(), size=(48, 48), mode="area"))
            squares.append(sq)
            kept.append(i)
        if not crops:
            return result
        with torch.inference_mode():
            reg, points, prob = self._mtcnn.onet((torch.cat(crops) - 127.5) * 0.0078125)
        reg, points, prob = reg.cpu().numpy(), points.cpu().numpy(), prob[:, 1].cpu().numpy()
        for j, i in enumerate(kept):
            if prob[j] < self.thresholds[2]:
                continue
            sq = squares[j]
            side_w, side_h = sq[2] - sq[0] + 1, sq[3] - sq[1] + 1
            result.landmarks[i, :, 0] = side_w * points[j, :5] + sq[0] - 1
            result.landmarks[i, :, 1] = side_h * points[j, 5:] + sq[1] - 1
            result.boxes[i] = sq + reg[j] * np.array([side_w, side_h, side_w, side_h])
            result.probs[i] = prob[j]
            result.found[i] = True
        return result


# ---------------------------------------------------------------------------------------------------------
# Alignment


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) src -> dst, 3x3."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = float((sc**2).sum()) / len(src)
    if not var_s > 1e-12:
        raise ValueError("landmarks are degenerate (all at one point): cannot estimate an alignment")
    cov = dc.T @ sc / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = float((s * d).sum()) / var_s
    m = np.eye(3)
    m[:2, :2] = scale * rot
    m[:2, 2] = mu_d - scale * rot @ mu_s
    return m


def alignment_matrix(landmarks: np.ndarray, size: int = 224) -> np.ndarray:
    """2x3 similarity matrix mapping image pixel coordinates to crop coordinates, fitted by least squares
    (Umeyama) from the 5 landmarks [5, 2] to :func:`TEMPLATE` (size)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2), got {lm.shape}")
    if not np.isfinite(lm).all():
        raise ValueError("landmarks contain NaN/inf (no face detected in this frame?)")
    return _umeyama(lm, TEMPLATE(size))[:2]


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 224) -> np.ndarray:
    """Warp ``image`` (HxWx3 uint8) into a ``size`` x ``size`` uint8 crop whose landmarks sit on the template.

    Bilinear sampling with PIL (5-7x faster than ``skimage.transform.warp``); when the face is more than twice
    the crop's scale the source is first box-reduced by an integer factor so the crop is not aliased. Pixels
    outside the image are black.
    """
    _check_frame(0, image)
    forward = np.vstack([alignment_matrix(landmarks, size), [0.0, 0.0, 1.0]])
    # PIL's affine maps output to input in pixel-corner coordinates (pixel i spans [i, i+1]).
    inv = _translate(0.5, 0.5) @ np.linalg.inv(forward) @ _translate(-0.5, -0.5)
    corners = inv @ np.array([[0, size, 0, size], [0, 0, size, size], [1, 1, 1, 1]], dtype=np.float64)
    h, w = image.shape[:2]
    x0 = max(0, int(np.floor(corners[0].min())) - 2)
    y0 = max(0, int(np.floor(corners[1].min())) - 2)
    x1 = min(w, int(np.ceil(corners[0].max())) + 2)
    y1 = min(h, int(np.ceil(corners[1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, 3), dtype=np.uint8)
    src = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
    inv = _translate(-x0, -y0) @ inv
    crop_per_image_px = float(np.sqrt(abs(np.linalg.det(forward[:2, :2]))))
    factor = int(1.0 / crop_per_image_px) if crop_per_image_px < 0.5 else 1
    if factor >= 2:
        src = src.reduce(factor)
        inv = np.diag([1.0 / factor, 1.0 / factor, 1.0]) @ inv
    out = src.transform(
        (size, size),
        Image.Transform.AFFINE,
        data=tuple(inv[:2].ravel().tolist()),
        resample=Image.Resampling.BILINEAR,
        fillcolor=(0, 0, 0),
    )
    return np.asarray(out, dtype=np.uint8)


def align_faces(frames: Sequence[np.ndarray], detections: FaceDetections, size: int = 224) -> np.ndarray:
    """Aligned crops [F, size, size, 3] uint8 for a batch of frames; all-zero crops where ``found`` is False
    (use ``detections.found`` as the mask)."""
    if len(frames) != len(detections):
        raise ValueError(f"{len(frames)} frames but {len(detections)} detections")
    out = np.zeros((len(frames), size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        if detections.found[i]:
            out[i] = align_face(frame, detections.landmarks[i], size)
    return out
