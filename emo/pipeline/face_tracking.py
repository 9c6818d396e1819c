"""Face tracking between MTCNN keyframes: the full cascade (P-Net over the image pyramid, most of MTCNN's cost)
runs on one sampled frame in ``keyframe_every``; in between, the face is followed from the previous frame's
box by MTCNN's last stage (O-Net) on a full-resolution crop around it, which also gives the landmarks for
alignment. A frame whose O-Net probability falls below the last threshold has lost the face: it, and the
frames after it until a face is found, get the full cascade.

``keyframe_every = 1`` is per-frame detection, exactly :meth:`FaceDetector.detect`. ``benchmarks/faces.py``
measures the agreement of every K with per-frame detection and the face stage's speed-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emo.errors import UsageError
from emo.pipeline.face_detection import FaceDetections, FaceDetector

__all__ = ["TRACK_PASSES", "FaceTracker", "tracking_config"]

#: O-Net passes per tracked frame: the first on the previous frame's box, each next one on the box the one
#: before regressed to, so that the crop the landmarks come from sits on the face as a detection's crop would.
#: ``benchmarks/face_tracking.py``: 3 passes put the landmarks as close to per-frame detection as 2 or closer
#: (fast motion 1.0 vs 1.4% of the inter-ocular distance), 1 pass 2-5x further.
TRACK_PASSES = 3


def tracking_config(keyframe_every: int) -> dict[str, Any]:
    """Provenance of the tracking, JSON-able (part of the detector's description)."""
    if keyframe_every == 1:
        return {"keyframe_every": 1, "method": "full MTCNN cascade on every sampled frame"}
    return {
        "keyframe_every": int(keyframe_every),
        "method": f"full MTCNN cascade on every {keyframe_every}th sampled frame and whenever the face is lost; "
        f"in between, O-Net ({TRACK_PASSES} passes) on a full-resolution crop around the previous frame's box",
        "lost_when": "O-Net's probability falls below the last threshold",
    }


class FaceTracker:
    """Follows the most confident face through the sampled frames of one clip.

    Call it with consecutive batches of the clip's frames; how the frames are split into batches does not
    change the result. :meth:`reset` before the next clip. ``keyframes`` counts the frames that got the full
    cascade since the tracker was made.
    """

    def __init__(self, detector: FaceDetector, keyframe_every: int = 1) -> None:
        if keyframe_every < 1:
            raise UsageError(f"--face-track must be at least 1 (1 = detect in every frame), got {keyframe_every}")
        self.detector = detector
        self.keyframe_every = int(keyframe_every)
        self.keyframes = 0
        self.reset()

    def reset(self) -> None:
        """Forget the face followed so far: the next frame is a keyframe."""
        self._box: np.ndarray | None = None
        self._since_keyframe = 0

    def __call__(self, frames: Sequence[np.ndarray]) -> FaceDetections:
        """The most confident face of each frame (per :class:`FaceDetections`), continuing the clip's track."""
        frames = list(frames)
        if self.keyframe_every == 1:
            self.keyframes += len(frames)
            return self.detector.detect(frames)
        result = FaceDetections.empty(len(frames))
        for i, frame in enumerate(frames):
            keyframe = self._box is None or self._since_keyframe >= self.keyframe_every
            tracked = None if keyframe else self._follow(frame)
            if tracked is None:
                tracked = self.detector.detect([frame])
                self.keyframes += 1
                self._since_keyframe = 0
            self._since_keyframe += 1
            self._box = tracked.boxes[0].astype(np.float64) if tracked.found[0] else None
            result.boxes[i], result.probs[i] = tracked.boxes[0], tracked.probs[0]
            result.landmarks[i], result.found[i] = tracked.landmarks[0], tracked.found[0]
        return result

    def _follow(self, frame: np.ndarray) -> FaceDetections | None:
        """O-Net from the previous box; None when the face is lost."""
        box = self._box
        step = None
        for _ in range(TRACK_PASSES):
            step = self.detector.onet([frame], box[None])
            if not step.found[0]:
                return None
            box = step.boxes[0].astype(np.float64)
        return step
