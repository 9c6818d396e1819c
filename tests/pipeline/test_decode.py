"""FFmpeg decoding through PyAV: containers, resampling to 16 kHz mono, and every kind of bad input."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from emo.pipeline.decode import MediaError, MissingStream, decode_audio, iter_frames, probe
from emo.pipeline.synthetic import ffmpeg_exe


def tone(path: Path, *args: str, seconds: float = 1.0, freq: int = 440, video: bool = True) -> Path:
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error"]
    if video:
        cmd += ["-f", "lavfi", "-i", f"testsrc=size=96x64:rate=10:duration={seconds}"]
    cmd += [
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency={freq}:sample_rate=44100:duration={seconds}",
        "-ac",
        "2",
        *args,
        str(path),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("clip.mp4", ["-c:v", "libx264", "-c:a", "aac"]),
        ("clip.mkv", []),
        ("clip.avi", []),
        ("clip.mov", []),
        ("clip.webm", []),
        ("clip.flv", []),
        ("audio.wav", []),
        ("audio.flac", []),
        ("audio.mp3", []),
    ],
)
def test_containers_decode_to_16k_mono(tmp_path: Path, name: str, args: list[str]) -> None:
    video = not name.startswith("audio")
    path = tone(tmp_path / name, *args, video=video)
    samples = decode_audio(path, 16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size / 16000 - 1.0) < 0.1  # codec padding only
    assert abs(dominant_hz(samples, 16000) - 440) < 5
    info = probe(path)
    assert info.has_audio and info.has_video == video


def test_frames_are_sampled_at_fps(tmp_path: Path) -> None:
    path = tone(tmp_path / "clip.mp4", "-c:v", "libx264", seconds=2.0)
    frames = list(iter_frames(path, fps=5))
    times = [t for t, _ in frames]
    assert len(frames) == 10 and np.allclose(np.diff(times), 0.2, atol=0.051)
    assert frames[0][1].shape == (64, 96, 3) and frames[0][1].dtype == np.uint8


def test_no_audio_stream(bad_media: dict[str, Path]) -> None:
    with pytest.raises(MissingStream, match="no audio stream"):
        decode_audio(bad_media["silent_video"])


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("empty", "empty file"),
        ("notes", "unreadable container"),
        ("corrupt", "unreadable container"),
        ("truncated", "unreadable container"),
        ("truncated_faststart", "truncated"),
    ],
)
def test_bad_files_raise_media_errors(bad_media: dict[str, Path], name: str, category: str) -> None:
    with pytest.raises(MediaError) as info:
        decode_audio(bad_media[name])
    assert info.value.category == category
    assert info.value.reason.startswith(category)
