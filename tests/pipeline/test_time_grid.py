"""One time grid for every modality: step i of ``audio/mel/aligned`` and of ``video/face/aligned`` cover the same
interval of the clip, for clips shorter and longer than T / fps; stores written before are refused by sequence
heads and put on the grid by ``emo store realign``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import run_emo

from emo.errors import UsageError
from emo.features_store import FeatureStore
from emo.features_store.sequences import align_on_grid
from emo.fusion.train import train
from emo.fusion.train_config import TrainConfig
from emo.pipeline.synthetic import encode, face_frames

FPS, STEPS, RATE = 5.0, 32, 16000
#: (clip seconds, the face and the tone from, to): shorter and longer than STEPS / FPS = 6.4 s
CLIPS = {"short": (3.0, 1.0, 2.0), "long": (9.0, 4.0, 6.5)}


def _clip(path: Path, seconds: float, start: float, stop: float) -> Path:
    """Gray frames with the face photo only in [start, stop); quiet noise with a 1 kHz tone only there."""
    frames = face_frames("neutral", seconds, fps=15.0, seed=1)
    t = np.arange(frames.shape[0]) / 15.0
    frames[(t < start) | (t >= stop)] = 128
    n = int(seconds * RATE)
    times = np.arange(n) / RATE
    audio = 0.003 * np.random.default_rng(0).standard_normal(n)
    audio += np.where((times >= start) & (times < stop), 0.5 * np.sin(2 * np.pi * 1000 * times), 0.0)
    return encode(path, frames, audio.astype(np.float32), fps=15.0)


@pytest.fixture(scope="module")
def grid_store(tmp_path_factory: pytest.TempPathFactory, scheduler: str) -> Path:
    root = tmp_path_factory.mktemp("grid")
    for name, (seconds, start, stop) in CLIPS.items():
        _clip(root / "neutral" / f"{name}.mp4", seconds, start, stop)
    store = root / "s.zarr"
    proc = run_emo(
        "extract", str(root), "-o", str(store), "--scheduler", scheduler, "--features", "mel,faces,face",
        "--visual-weights", "random", "--fps", str(FPS), "--align-steps", str(STEPS), "-q",
    )
    assert proc.returncode == 0, proc.stderr
    return store


def _steps(store: Path) -> dict[str, tuple[set[int], set[int]]]:
    """Per clip: the steps where the tone sounds (mel energy) and the steps with a face (video/face mask)."""
    fs = FeatureStore.open(store)
    ids = [c.split("/")[-1] for c in fs.clips()["clip_id"]]
    energy = fs.read("audio/mel/aligned").mean(axis=2)
    audio_mask, face_mask = fs.read("audio/mel/mask"), fs.read("video/face/mask")
    out = {}
    for i, name in enumerate(ids):
        loud = energy[i] > (energy[i][audio_mask[i]].max() + energy[i][audio_mask[i]].min()) / 2
        out[name] = (set(np.flatnonzero(loud & audio_mask[i]).tolist()), set(np.flatnonzero(face_mask[i]).tolist()))
    return out


def _expected(seconds: float, start: float, stop: float) -> set[int]:
    segment = seconds / STEPS
    return {i for i in range(STEPS) if (i + 1) * segment > start and i * segment < stop}


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_a_tone_and_a_face_at_the_same_time_land_on_the_same_steps(grid_store: Path, name: str) -> None:
    seconds, start, stop = CLIPS[name]
    tone, faces = _steps(grid_store)[name]
    expected = _expected(seconds, start, stop)
    near = {j for i in expected for j in (i - 1, i, i + 1)}  # a segment that straddles an edge may go either way
    assert expected - {min(expected), max(expected)} <= tone <= near, (sorted(tone), sorted(expected))
    assert faces <= near, (sorted(faces), sorted(expected))  # no face where there is none...
    # ...and faces all along, as far as sampling at FPS sees them (the last sampled face may be 1 / FPS early)
    sampling = int(np.ceil((1 / FPS) / (seconds / STEPS)))
    assert abs(min(faces) - min(expected)) <= 1 and 0 <= max(expected) - max(faces) <= sampling + 1
    assert max(np.diff(sorted(faces))) <= sampling
    attrs = FeatureStore.open(grid_store).array("video/face/aligned").attrs
    assert attrs["time_grid"]["steps"] == STEPS and "duration" in attrs["time_grid"]["segments"]


def test_align_on_grid_means_inside_nearest_outside_masked_beyond() -> None:
    values = np.array([[1.0], [3.0], [10.0]], dtype=np.float32)
    times = np.array([0.05, 0.1, 0.8])  # a 1 s clip on 4 steps of 0.25 s
    aligned, mask = align_on_grid(values, times, 1.0, 4)
    # step 1 [.25, .5): the nearest frame, 0.1, is .15 outside (over half a segment): masked, not zero-filled
    assert mask.tolist() == [True, False, True, True]
    assert aligned[0, 0] == pytest.approx(2.0)  # the mean of the frames inside
    assert aligned[2, 0] == pytest.approx(10.0)  # [.5, .75): 0.8 is .05 outside, within half a segment
    assert aligned[3, 0] == pytest.approx(10.0) and aligned[1, 0] == 0.0
    aligned, mask = align_on_grid(values, times, 1.0, 4, valid=np.array([True, False, True]))
    assert aligned[0, 0] == pytest.approx(1.0)  # invalid frames (no face) are not data
    assert not align_on_grid(values, times, float("nan"), 4)[1].any()


def _as_format_1(src: Path, dst: Path) -> Path:
    """A copy of ``src`` as emo wrote it before the time grid: format 1, aligned positional, no frame times."""
    shutil.copytree(src, dst)
    group = zarr.open_group(str(dst), mode="r+")
    group.attrs["emo_store_version"] = 1
    aligned = group["video/face/aligned"]
    aligned[:] = np.roll(np.asarray(aligned[:]), 5, axis=1)  # whatever it was: not the grid
    shutil.rmtree(dst / "video" / "faces" / "times")
    return dst


def test_older_stores_are_refused_by_sequence_heads_and_realigned_on_request(grid_store: Path, tmp_path: Path) -> None:
    old = _as_format_1(grid_store, tmp_path / "old.zarr")
    with pytest.raises(UsageError, match=r"before emo put every modality on one time grid .*emo store realign"):
        config = TrainConfig(method="bilstm", features=("audio/mel", "video/face"), split="stratified", epochs=1)
        train(str(old), config)
    proc = run_emo(
        "extract", str(grid_store.parent), "-o", str(old), "--features", "mel,faces,face", "--visual-weights", "random",
        "--fps", str(FPS), "--align-steps", str(STEPS), "-q",
    )
    assert proc.returncode == 2 and "emo store realign" in proc.stderr  # nor resumed
    proc = run_emo("store", "realign", str(old))
    assert proc.returncode == 0, proc.stderr
    assert "realigned audio/mel, video/face" in proc.stdout and "k / fps" in proc.stdout
    fresh, fixed = FeatureStore.open(grid_store), FeatureStore.open(old)
    assert fixed.attrs["emo_store_version"] == 2 and fixed.attrs["realigned"]["from_store_version"] == 1
    for path in ("audio/mel/aligned", "audio/mel/mask", "video/face/mask"):
        np.testing.assert_array_equal(fixed.read(path), fresh.read(path), err_msg=path)
    # the sampled frames' times were not stored before: k / fps is within one source frame of the real ones
    np.testing.assert_allclose(fixed.read("video/faces/times"), fresh.read("video/faces/times"), atol=1 / 15 + 1e-6)
    np.testing.assert_allclose(fixed.read("video/face/aligned"), fresh.read("video/face/aligned"), atol=1e-5)
    assert run_emo("store", "verify", str(old)).returncode == 0
    again = run_emo("store", "realign", str(old))
    assert again.returncode == 0 and "already on the common time grid" in again.stdout
