"""Face tracking between MTCNN keyframes (``--face-track K``), real MTCNN on real photos: a tracked face agrees
with per-frame detection, a cut to another face and a face that leaves are detected anew, and how a clip's
frames are split into batches does not change the track."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from conftest import iou
from PIL import Image

from emo.errors import UsageError
from emo.pipeline.config import ExtractionConfig
from emo.pipeline.extractors.faces import DEFAULT_FACE_TRACK, FacesExtractor, VisualOptions
from emo.pipeline.face_detection import FaceDetections, FaceDetector
from emo.pipeline.face_tracking import FaceTracker
from emo.pipeline.synthetic import face_frames


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def moving() -> list[np.ndarray]:
    """12 sampled frames (5 fps) of the astronaut moving over a background, 640x480."""
    return list(face_frames("angry", seconds=2.4, fps=5.0, size=(640, 480), face_width=300, seed=3))


def paste(photo: np.ndarray, x: int, y: int, side: int, hw: tuple[int, int] = (480, 640)) -> np.ndarray:
    canvas = np.full((*hw, 3), 120, dtype=np.uint8)
    canvas[y : y + side, x : x + side] = np.asarray(Image.fromarray(photo).resize((side, side)))
    return canvas


def assert_agrees(tracked: FaceDetections, reference: FaceDetections, landmarks: float = 0.05) -> None:
    """Same frames with a face, IoU >= 0.5 on each, landmarks within ``landmarks`` of the inter-ocular distance."""
    np.testing.assert_array_equal(tracked.found, reference.found)
    for i in np.flatnonzero(reference.found):
        assert iou(tracked.boxes[i], reference.boxes[i]) >= 0.5, i
        iod = np.linalg.norm(reference.landmarks[i, 1] - reference.landmarks[i, 0])
        assert np.linalg.norm(tracked.landmarks[i] - reference.landmarks[i], axis=1).mean() < landmarks * iod, i


def test_keyframe_every_frame_is_per_frame_detection(detector: FaceDetector, moving: list[np.ndarray]) -> None:
    tracker = FaceTracker(detector, 1)
    got, want = tracker(moving), detector.detect(moving)
    for name in ("boxes", "probs", "landmarks", "found"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    assert tracker.keyframes == len(moving)


def test_a_moving_face_is_tracked_between_keyframes(detector: FaceDetector, moving: list[np.ndarray]) -> None:
    tracker = FaceTracker(detector, 5)
    tracked = tracker(moving)
    assert tracked.found.all()
    assert_agrees(tracked, detector.detect(moving))
    assert tracker.keyframes == 3  # frames 0, 5 and 10: the face was never lost


def test_batches_do_not_change_the_track(detector: FaceDetector, moving: list[np.ndarray]) -> None:
    tracker = FaceTracker(detector, 4)
    whole = tracker(moving)
    for size in (1, 5):
        tracker.reset()
        parts = FaceDetections.concat([tracker(moving[i : i + size]) for i in range(0, len(moving), size)])
        for name in ("boxes", "probs", "landmarks", "found"):
            np.testing.assert_array_equal(getattr(parts, name), getattr(whole, name))


def test_a_cut_to_another_face_and_a_face_that_leaves_are_detected_anew(detector: FaceDetector) -> None:
    astronaut = skimage.data.astronaut()
    cameraman = np.repeat(skimage.data.camera()[60:260, 125:325, None], 3, axis=2)  # his head and shoulders
    frames = (
        [paste(astronaut, 20 + 4 * i, 40, 400) for i in range(4)]
        + [paste(cameraman, 300 + 3 * i, 60, 320) for i in range(4)]  # a cut: another face, elsewhere
        + [np.full((480, 640, 3), 120, dtype=np.uint8)] * 2  # nobody
        + [paste(astronaut, 220, 60, 380)] * 2  # back
    )
    tracker = FaceTracker(detector, 50)
    tracked = tracker(frames)
    reference = detector.detect(frames)
    assert reference.found.tolist() == [True] * 8 + [False] * 2 + [True] * 2
    # the cameraman's face is turned: per-frame MTCNN's own box stays put while the image moves 3 px between frames
    assert_agrees(tracked, reference, landmarks=0.08)
    # the first frame, the cut, the two empty frames and the face's return got the full cascade
    assert tracker.keyframes == 5


def test_option_is_validated_recorded_and_absent_from_older_configs() -> None:
    with pytest.raises(UsageError, match="--face-track"):
        ExtractionConfig(face_track=0)
    with pytest.raises(UsageError, match="--face-track"):
        FaceTracker(FaceDetector.__new__(FaceDetector), 0)
    with pytest.raises(UsageError, match="--face-track"):
        ExtractionConfig(face_track="often")
    default = ExtractionConfig()  # --face-track auto, recorded as the K it stands for
    assert default.section(VisualOptions).face_track == DEFAULT_FACE_TRACK > 1
    assert ExtractionConfig(face_track="auto").hash() == ExtractionConfig(face_track=DEFAULT_FACE_TRACK).hash()
    recorded = default.to_dict()
    assert recorded["face_track"] == DEFAULT_FACE_TRACK
    # and in the provenance every video array carries
    assert FacesExtractor(default).attrs()["tracking"]["keyframe_every"] == DEFAULT_FACE_TRACK
    assert "O-Net" in FacesExtractor(default).attrs()["tracking"]["method"]
    # stores written before tracking existed detected in every frame: their configs read as --face-track 1, and
    # a run asking for --face-track 1 records what they recorded (same hash)
    del recorded["face_track"]
    assert ExtractionConfig.from_dict(recorded).section(VisualOptions).face_track == 1
    per_frame = ExtractionConfig(face_track=1)
    assert "face_track" not in per_frame.to_dict()
    assert ExtractionConfig.from_dict(recorded).hash() == per_frame.hash()
