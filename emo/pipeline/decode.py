"""Decoding media with FFmpeg (through PyAV): mono float32 audio at a fixed rate, RGB frames at a fixed fps."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import av


class MediaError(Exception):
    """A clip (or one of its streams) cannot be used; ``reason`` is 'category: detail' for the store, ``stats``
    what was tried of a stream of which nothing decoded (None when no stream was decoded)."""

    def __init__(self, category: str, detail: str = "", stats: DecodeStats | None = None) -> None:
        self.category = category
        self.detail = detail
        self.stats = stats
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
    # PyAV is imported where it decodes: the extraction driver, which only lists and describes, never loads
    # FFmpeg's libraries (15 MB resident)
    import av

    if path.stat().st_size == 0:
        raise MediaError("empty file", "0 bytes")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise MediaError("unreadable container", _ffmpeg_message(exc)) from None


def probe(path: Path) -> MediaInfo:
    """Open the container and report its streams and duration (raises MediaError if unreadable)."""
    import av

    with _open(path) as container:
        duration = container.duration / av.time_base if container.duration is not None else float("nan")
        return MediaInfo(bool(container.streams.audio), bool(container.streams.video), duration)


@dataclass
class DecodeStats:
    """How much of a stream decoded: ``seconds`` of media (audio samples / rate, or video frames x frame
    duration) and ``errors``, the packets that failed to decode and were skipped (a read error that ended the
    stream counts as one). ``first_error`` is FFmpeg's message for the first of them."""

    seconds: float = 0.0
    errors: int = 0
    first_error: str = ""

    def skipped(self, exc: av.error.FFmpegError) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = _ffmpeg_message(exc)

    def failure(self, kind: str) -> MediaError:
        """The error of a stream of which nothing could be decoded."""
        if self.errors:
            many = f" ({self.errors} packets failed, nothing decoded)" if self.errors > 1 else ""
            return MediaError(f"{kind} decode error", self.first_error + many, stats=self)
        return MediaError(f"empty {kind} stream", "nothing decoded", stats=self)


def _decoded_frames(container: av.container.InputContainer, stream: av.stream.Stream, stats: DecodeStats) -> Iterator:
    """The decoded frames of ``stream``, the way the ``ffmpeg`` CLI decodes: a packet the decoder rejects is
    skipped and counted, decoding goes on with the next one; a read error of the container ends the stream
    (what was read is kept); the decoder is flushed at the end either way."""
    import av

    packets = container.demux(stream)
    flushed = False
    while not flushed:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.error.FFmpegError as exc:
            stats.skipped(exc)
            break
        flushed = packet.size == 0  # demux ends each stream with an empty packet: it flushes the decoder
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            stats.skipped(exc)
            continue
        yield from frames
    if not flushed:
        try:
            frames = stream.decode(None)
        except (av.error.FFmpegError, EOFError):
            frames = []
        for frame in frames:
            frame.time_base = stream.time_base  # the packets gave it to the others
            yield frame


@dataclass
class DecodedAudio:
    """Mono float32 samples at ``sample_rate`` and how much of the stream decoded."""

    samples: np.ndarray
    sample_rate: int
    stats: DecodeStats


def _resampled(resampler: av.AudioResampler | None, frame: av.AudioFrame | None) -> list[np.ndarray]:
    if resampler is None:
        return []
    return [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]


def decode_audio(path: Path, sample_rate: int = 16000) -> DecodedAudio:
    """The first audio stream as mono float32 samples at ``sample_rate`` Hz (FFmpeg's resampler).

    Damaged packets are skipped like the ``ffmpeg`` CLI does (the samples of the others are kept, in order);
    raises MediaError only when nothing decodes.
    """
    import av

    stats = DecodeStats()
    with _open(path) as container:
        if not container.streams.audio:
            raise MissingStream("no audio stream")
        stream = container.streams.audio[0]
        chunks: list[np.ndarray] = []
        resampler, layout = None, None
        for frame in _decoded_frames(container, stream, stats):
            # a stream whose layout or rate changes mid-way gets a new resampler, as FFmpeg reconfigures its filters
            if (frame.format.name, frame.layout.name, frame.sample_rate) != layout:
                chunks += _resampled(resampler, None)
                resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
                layout = (frame.format.name, frame.layout.name, frame.sample_rate)
            chunks += _resampled(resampler, frame)
        chunks += _resampled(resampler, None)
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise stats.failure("audio")
    stats.seconds = samples.size / sample_rate
    return DecodedAudio(samples, sample_rate, stats)


class FrameStream:
    """RGB frames (H x W x 3 uint8) sampled at ``fps``: the first decoded frame at or after each k / fps.

    Iterate once; damaged packets are skipped like the ``ffmpeg`` CLI does. ``stats`` is complete when the
    iteration ends: ``seconds`` counts every decoded frame (not only the sampled ones) at the stream's frame
    rate. Raises MediaError (when iterated) if the file has no video stream or nothing of it decodes.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self.stats = DecodeStats()

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        with _open(self.path) as container:
            if not container.streams.video:
                raise MissingStream("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            frame_s = 1.0 / float(rate) if rate else 0.0
            next_t = 0.0
            decoded = 0
            last_time = first_time = None
            for frame in _decoded_frames(container, stream, self.stats):
                decoded += 1
                if frame.time is not None:
                    first_time = frame.time if first_time is None else first_time
                    last_time = frame.time
                self.stats.seconds = decoded * frame_s if frame_s else (last_time or 0.0) - (first_time or 0.0)
                if frame.time is None or frame.time + 1e-6 < next_t:
                    continue
                yield float(frame.time), frame.to_ndarray(format="rgb24")
                next_t = (np.floor(frame.time * self.fps + 1e-6) + 1) / self.fps
            if decoded == 0:
                raise self.stats.failure("video")


def iter_frames(path: Path, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """RGB frames sampled at ``fps`` (see :class:`FrameStream`, which also says how much decoded)."""
    return iter(FrameStream(path, fps))


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    """sha256 of a file's bytes (identifies the same clip across stores)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()
