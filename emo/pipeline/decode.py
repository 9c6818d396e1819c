"""Decoding media with FFmpeg (through PyAV): mono float32 audio at a fixed rate, RGB frames at a fixed fps."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

#: A decoded stream shorter than this fraction of its declared duration counts as truncated.
TRUNCATION_TOLERANCE = 0.8


class MediaError(Exception):
    """A clip (or one of its streams) cannot be used; ``reason`` is 'category: detail' for the store."""

    def __init__(self, category: str, detail: str = "") -> None:
        self.category = category
        self.detail = detail
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        return f"{self.category}: {self.detail}" if self.detail else self.category


class MissingStream(MediaError):
    """The container decodes but has no stream of the requested kind."""


@dataclass(frozen=True)
class MediaInfo:
    """What the container says about itself, before decoding."""

    has_audio: bool
    has_video: bool
    duration_s: float


def _ffmpeg_message(exc: av.error.FFmpegError) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip()


def _open(path: Path) -> av.container.InputContainer:
    if path.stat().st_size == 0:
        raise MediaError("empty file", "0 bytes")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise MediaError("unreadable container", _ffmpeg_message(exc)) from None


def _declared_duration(container: av.container.InputContainer, stream: av.stream.Stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return float("nan")


def probe(path: Path) -> MediaInfo:
    """Open the container and report its streams and duration (raises MediaError if unreadable)."""
    with _open(path) as container:
        duration = container.duration / av.time_base if container.duration is not None else float("nan")
        return MediaInfo(bool(container.streams.audio), bool(container.streams.video), duration)


def decode_audio(path: Path, sample_rate: int = 16000) -> np.ndarray:
    """The first audio stream as mono float32 samples at ``sample_rate`` Hz (FFmpeg's resampler)."""
    with _open(path) as container:
        if not container.streams.audio:
            raise MissingStream("no audio stream")
        stream = container.streams.audio[0]
        declared = _declared_duration(container, stream)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except av.error.FFmpegError as exc:
            raise MediaError("audio decode error", _ffmpeg_message(exc)) from None
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise MediaError("empty audio stream", "no samples decoded")
    got = samples.size / sample_rate
    if np.isfinite(declared) and got < TRUNCATION_TOLERANCE * declared and declared - got > 0.2:
        raise MediaError("truncated", f"decoded {got:.2f} s of audio, the container declares {declared:.2f} s")
    return samples


def iter_frames(path: Path, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """RGB frames (H x W x 3 uint8) sampled at ``fps``: the first decoded frame at or after each k / fps."""
    with _open(path) as container:
        if not container.streams.video:
            raise MissingStream("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        next_t = 0.0
        try:
            for frame in container.decode(stream):
                if frame.time is None or frame.time + 1e-6 < next_t:
                    continue
                yield float(frame.time), frame.to_ndarray(format="rgb24")
                next_t = (np.floor(frame.time * fps + 1e-6) + 1) / fps
        except av.error.FFmpegError as exc:
            raise MediaError("video decode error", _ffmpeg_message(exc)) from None


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    """sha256 of a file's bytes (identifies the same clip across stores)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()
