"""FFmpeg decoding through PyAV: containers, resampling to 16 kHz mono, and every kind of bad input."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import overwrite_packets, packets

from emo.pipeline.decode import FrameStream, MediaError, MissingStream, decode_audio, iter_frames, probe
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
    decoded = decode_audio(path, 16000)
    samples = decoded.samples
    assert (decoded.stats.errors, decoded.stats.seconds) == (0, samples.size / 16000)
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
    ],
)
def test_bad_files_raise_media_errors(bad_media: dict[str, Path], name: str, category: str) -> None:
    with pytest.raises(MediaError) as info:
        decode_audio(bad_media[name])
    assert info.value.category == category
    assert info.value.reason.startswith(category)


def ffmpeg_audio_seconds(path: Path, tmp_path: Path) -> float:
    """Seconds of 16 kHz mono audio the ffmpeg CLI decodes from ``path`` (exit 0 required, as for a user)."""
    out = tmp_path / f"{path.stem}.f32"
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", "16000", "-f", "f32le"]
    subprocess.run([*cmd, str(out)], check=True, capture_output=True)
    return out.stat().st_size / 4 / 16000


def ffmpeg_video_frames(path: Path) -> int:
    """Frames the ffmpeg CLI decodes from the video stream of ``path``."""
    cmd = [ffmpeg_exe(), "-y", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return int(re.findall(r"frame=\s*(\d+)", proc.stderr)[-1])


#: One audio frame of the codec at 44.1 kHz: AAC 1024 samples, AC3 1536.
FRAME_S = {"aac": 1024 / 44100, "ac3": 1536 / 44100}


@pytest.mark.parametrize(
    ("name", "codec", "errors"),
    [("aac_damaged", "aac", True), ("cut_in_last_audio_frame", "aac", True), ("ac3_cut", "ac3", False)],
)
def test_damaged_audio_keeps_what_ffmpeg_decodes(
    damaged_media: dict[str, Path], tmp_path: Path, name: str, codec: str, errors: bool
) -> None:
    path = damaged_media[name]
    decoded = decode_audio(path, 16000)
    reference = ffmpeg_audio_seconds(path, tmp_path)
    assert abs(decoded.stats.seconds - reference) <= FRAME_S[codec], (decoded.stats.seconds, reference)
    assert decoded.stats.seconds == decoded.samples.size / 16000 > 2.5
    # FFmpeg's AC3 decoder conceals a cut last frame; its AAC decoder rejects damaged packets, which are counted
    assert (decoded.stats.errors > 0) == errors
    if errors:
        assert "Invalid data" in decoded.stats.first_error


def test_damaged_gop_keeps_every_frame_ffmpeg_decodes(damaged_media: dict[str, Path]) -> None:
    path = damaged_media["gop_damaged"]
    stream = FrameStream(path, fps=5)
    times = [t for t, _ in stream]
    decoded = ffmpeg_video_frames(path)
    assert stream.stats.errors > 0 and abs(stream.stats.seconds - decoded / 15) < 1e-6
    assert decoded < 60  # frames of the damaged GOP are really lost (H.264 conceals some of them)...
    assert times[0] == 0.0 and times[-1] > 3.5  # ...and the frames after it are kept
    assert len(times) <= 20 and np.all(np.diff(times) > 0)  # sampled at 5 fps from what decodes, in order


def test_truncated_file_keeps_its_first_part(bad_media: dict[str, Path], tmp_path: Path) -> None:
    # half of a faststart mp4: its index says 2 s, its data stop about half-way
    path = bad_media["truncated_faststart"]
    decoded = decode_audio(path, 16000)
    assert 0.3 < decoded.stats.seconds < 1.8 < probe(path).duration_s
    assert abs(decoded.stats.seconds - ffmpeg_audio_seconds(path, tmp_path)) <= FRAME_S["aac"]
    stream = FrameStream(path, fps=5)
    assert 0 < len(list(stream)) < 10 and 0 < stream.stats.seconds < 1.8


def test_nothing_decodable_is_an_error_with_its_reason(damaged_media: dict[str, Path], tmp_path: Path) -> None:
    src = damaged_media["aac_damaged"]
    spans = packets(src, "audio")
    broken = overwrite_packets(src, tmp_path / "all_audio_damaged.mp4", spans, keep=0)
    with pytest.raises(MediaError) as info:
        decode_audio(broken, 16000)
    assert info.value.category == "audio decode error" and "Invalid data" in info.value.detail
    assert info.value.stats is not None and info.value.stats.seconds == 0 and info.value.stats.errors >= len(spans) // 2
