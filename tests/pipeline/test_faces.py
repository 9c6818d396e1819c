"""Face detection (real MTCNN on a real photo) and similarity alignment (real photo and exact geometry)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import skimage.transform
from conftest import iou
from PIL import Image

from emo.errors import UsageError
from emo.pipeline.face_detection import (
    ARCFACE_TEMPLATE_112,
    DEFAULT_DETECT_SIZE,
    TEMPLATE,
    FaceDetections,
    FaceDetector,
    align_face,
    align_faces,
    alignment_matrix,
)

# Where MTCNN puts astronaut's face at full resolution (512x512), checked by eye once.
ASTRONAUT_BOX = np.array([181.1, 62.2, 267.7, 172.1])


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def full_res() -> FaceDetector:
    return FaceDetector(detect_size=None)


@pytest.fixture(scope="module")
def downscaled() -> FaceDetector:
    return FaceDetector(batch_size=4)  # the default detect_size


def place(img: np.ndarray, hw: tuple[int, int], x: int, y: int, scale: float) -> np.ndarray:
    """``img`` resized by ``scale`` and pasted at (x, y) on a grey canvas of size hw."""
    size = round(img.shape[0] * scale)
    small = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))
    canvas = np.full((*hw, 3), 90, dtype=np.uint8)
    canvas[y : y + size, x : x + size] = small
    return canvas


def test_finds_astronaut_face(full_res: FaceDetector, astronaut: np.ndarray) -> None:
    det = full_res.detect([astronaut])
    assert det.found.tolist() == [True]
    assert det.boxes.dtype == det.probs.dtype == det.landmarks.dtype == np.float32
    assert det.boxes.shape == (1, 4) and det.landmarks.shape == (1, 5, 2)
    assert det.probs[0] > 0.999
    assert iou(det.boxes[0], ASTRONAUT_BOX) > 0.95
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = det.landmarks[0]
    assert lex < nx < rex and mlx < mrx  # MTCNN's order: image-left eye first, then right, nose, mouths
    assert max(ley, rey) < ny < min(mly, mry)


def test_finds_face_shifted_on_larger_canvas(full_res: FaceDetector, astronaut: np.ndarray) -> None:
    frame = place(astronaut, (720, 1280), x=700, y=150, scale=1.0)
    det = full_res.detect([frame])
    assert det.found[0] and det.probs[0] > 0.99
    assert iou(det.boxes[0], ASTRONAUT_BOX + [700, 150, 700, 150]) > 0.9


def test_downscaled_detection_agrees_with_full_resolution(
    full_res: FaceDetector, downscaled: FaceDetector, astronaut: np.ndarray
) -> None:
    frames = [
        place(astronaut, (480, 640), x=0, y=0, scale=0.9),
        place(astronaut, (480, 640), x=270, y=100, scale=0.7),
        place(astronaut, (720, 1280), x=760, y=200, scale=1.0),
        place(astronaut, (720, 1280), x=40, y=0, scale=1.4),
    ]
    ref = full_res.detect(frames)
    got = downscaled.detect(frames)
    unrefined = FaceDetector(refine=False).detect(frames)
    assert ref.found.all() and got.found.all() and unrefined.found.all()

    def landmark_error(det: FaceDetections, i: int) -> float:  # mean distance / inter-ocular distance
        iod = np.linalg.norm(ref.landmarks[i, 1] - ref.landmarks[i, 0])
        return float(np.linalg.norm(det.landmarks[i] - ref.landmarks[i], axis=1).mean() / iod)

    for i in range(len(frames)):
        # MTCNN's box regression moves by a few pixels between resolutions: IoU 0.88 for the ~60 px face of
        # frame 1 (the landmarks, checked next, are the precise measure)
        assert iou(ref.boxes[i], got.boxes[i]) > 0.85, i
        assert landmark_error(got, i) < 0.06, i
    # the full-resolution O-Net pass is what brings the landmarks back to full-resolution precision
    refined_err = np.mean([landmark_error(got, i) for i in range(len(frames))])
    assert refined_err < np.mean([landmark_error(unrefined, i) for i in range(len(frames))])


def test_uniform_and_tiny_frames_have_no_face(downscaled: FaceDetector, astronaut: np.ndarray) -> None:
    frames = [np.full((480, 640, 3), 128, np.uint8), astronaut, np.zeros((8, 8, 3), np.uint8)]
    det = downscaled.detect(frames)
    assert det.found.tolist() == [False, True, False]
    for i in (0, 2):
        assert np.isnan(det.boxes[i]).all() and np.isnan(det.probs[i]) and np.isnan(det.landmarks[i]).all()
    assert np.isfinite(det.boxes[1]).all()


def test_batches_of_mixed_sizes_equal_one_by_one_and_concat(
    downscaled: FaceDetector, astronaut: np.ndarray
) -> None:
    frames = [
        place(astronaut, (480, 640), x=50, y=20, scale=0.8),
        place(astronaut, (720, 1280), x=500, y=100, scale=1.0),
        np.full((480, 640, 3), 30, np.uint8),
        place(astronaut, (480, 640), x=200, y=60, scale=0.6),
        place(astronaut, (720, 1280), x=0, y=0, scale=1.2),
        place(astronaut, (480, 640), x=10, y=10, scale=0.5),
    ]
    together = downscaled.detect(frames)  # batch_size 4: two 640x480 chunks, one 1280x720 chunk
    streamed = FaceDetections.concat([downscaled.detect(frames[:2]), downscaled.detect(frames[2:])])
    assert together.found.tolist() == [True, True, False, True, True, True]
    for other in (streamed,):
        np.testing.assert_array_equal(together.found, other.found)
        np.testing.assert_allclose(together.boxes, other.boxes, atol=0.05)
        np.testing.assert_allclose(together.landmarks, other.landmarks, atol=0.05)
    assert len(FaceDetections.concat([])) == 0 and len(downscaled.detect([])) == 0


def test_rejects_bad_input_and_parameters(downscaled: FaceDetector) -> None:
    with pytest.raises(ValueError, match="uint8"):
        downscaled.detect([np.zeros((32, 32, 3), np.float32)])
    with pytest.raises(ValueError, match="HxWx3"):
        downscaled.detect([np.zeros((32, 32), np.uint8)])
    with pytest.raises(UsageError, match="thresholds"):
        FaceDetector(thresholds=(0.6, 0.7))
    with pytest.raises(UsageError, match="detect_size"):
        FaceDetector(min_face_size=40, detect_size=30)


def test_config_is_json_and_complete(downscaled: FaceDetector) -> None:
    cfg = json.loads(json.dumps(downscaled.config()))
    assert cfg["detector"] == "mtcnn" and cfg["facenet_pytorch_version"] == "2.5.3"
    assert cfg["thresholds"] == [0.6, 0.7, 0.7] and cfg["min_face_size"] == 20
    assert cfg["detect_size"] == DEFAULT_DETECT_SIZE and cfg["factor"] == pytest.approx(0.709)


# --- alignment ------------------------------------------------------------------------------------------


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array(
        [
            [scale * np.cos(a), -scale * np.sin(a), tx],
            [scale * np.sin(a), scale * np.cos(a), ty],
            [0.0, 0.0, 1.0],
        ]
    )


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:2, :2].T + m[:2, 2]


def test_template_is_arcface_scaled_with_level_eyes() -> None:
    np.testing.assert_allclose(TEMPLATE(112), ARCFACE_TEMPLATE_112)
    t = TEMPLATE(224)
    np.testing.assert_allclose(t, ARCFACE_TEMPLATE_112 * 2)
    assert abs(t[0, 1] - t[1, 1]) < 0.5  # eyes level
    assert t[1, 0] - t[0, 0] == pytest.approx(70.47, abs=0.01)  # inter-ocular distance at 224


@pytest.mark.parametrize("angle,scale,shift", [(30.0, 1.7, (300.0, 150.0)), (-20.0, 3.2, (80.0, 40.0))])
def test_matrix_recovers_the_inverse_of_a_known_similarity(angle: float, scale: float, shift: tuple) -> None:
    a = similarity(angle, scale, *shift)
    landmarks = apply(a, TEMPLATE(224))
    m = alignment_matrix(landmarks, 224)
    np.testing.assert_allclose(m, np.linalg.inv(a)[:2], atol=1e-9)
    ref = skimage.transform.SimilarityTransform.from_estimate(landmarks, TEMPLATE(224))
    np.testing.assert_allclose(m, ref.params[:2], atol=1e-6)


@pytest.mark.parametrize("angle,scale,shift", [(30.0, 1.7, (300.0, 150.0)), (-20.0, 3.2, (20.0, 260.0))])
def test_rotated_synthetic_image_aligns_back(angle: float, scale: float, shift: tuple) -> None:
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float64)
    face = np.stack(
        [
            127 + 100 * np.sin(xx / 17.0),
            127 + 100 * np.cos(yy / 23.0),
            127 + 100 * np.sin((xx + yy) / 29.0),
        ],
        axis=-1,
    )
    a = similarity(angle, scale, *shift)
    big = skimage.transform.warp(  # the face, rotated, scaled and shifted, entirely inside a larger frame
        face, np.linalg.inv(a), output_shape=(1000, 1100), order=1, preserve_range=True, cval=0.0
    )
    big = np.clip(np.rint(big), 0, 255).astype(np.uint8)
    crop = align_face(big, apply(a, TEMPLATE(224)), 224)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    inner = (slice(8, -8), slice(8, -8))
    err = np.abs(crop[inner].astype(np.float64) - face[inner])
    assert err.mean() < 3.0, err.mean()


def test_astronaut_alignment_puts_eyes_level_on_the_template(
    full_res: FaceDetector, astronaut: np.ndarray
) -> None:
    frame = place(astronaut, (720, 1280), x=600, y=100, scale=1.2)
    tilted = np.asarray(Image.fromarray(frame).rotate(25, resample=Image.Resampling.BILINEAR))
    det = full_res.detect([tilted])
    assert det.found[0]
    lm = det.landmarks[0]
    m = alignment_matrix(lm, 224)
    eyes = apply(np.vstack([m, [0, 0, 1]]), lm[:2].astype(np.float64))
    assert np.abs(eyes - TEMPLATE(224)[:2]).max() < 7.0
    tilt = np.degrees(np.arctan2(eyes[1, 1] - eyes[0, 1], eyes[1, 0] - eyes[0, 0]))
    assert abs(tilt) < 2.0
    # Independent check: MTCNN run again on the aligned crop (padded, for context) finds the eyes there.
    crop = align_face(tilted, lm, 224)
    padded = np.zeros((448, 448, 3), np.uint8)
    padded[112:336, 112:336] = crop
    again = full_res.detect([padded])
    assert again.found[0]
    eyes2 = again.landmarks[0, :2] - 112
    assert np.abs(eyes2 - TEMPLATE(224)[:2]).max() < 8.0
    assert abs(eyes2[0, 1] - eyes2[1, 1]) < 4.0


def test_align_faces_batch_masks_frames_without_face(astronaut: np.ndarray) -> None:
    lm = np.array(
        [[205.0, 101.7], [246.8, 103.7], [224.7, 129.0], [201.7, 139.2], [245.3, 141.9]], np.float32
    )
    det = FaceDetections.empty(2)
    det.landmarks[0], det.found[0] = lm, True
    out = align_faces([astronaut, np.zeros((100, 100, 3), np.uint8)], det, size=112)
    assert out.shape == (2, 112, 112, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], align_face(astronaut, lm, 112))
    assert out[0].std() > 20 and not out[1].any()


def test_alignment_rejects_missing_or_degenerate_landmarks(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="NaN"):
        align_face(astronaut, np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="degenerate"):
        alignment_matrix(np.ones((5, 2)))
    with pytest.raises(ValueError, match="shape"):
        alignment_matrix(np.ones((4, 2)))
