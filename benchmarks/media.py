"""Benchmark media: RAVDESS-like clips encoded by FFmpeg (H.264 720p at 30 fps, AAC 48 kHz stereo) of a real
face photo moving over a background, with emo's speech-like audio, cached under ``data/bench/``.

RAVDESS's own clips are 1280x720, 29.97 fps, 3-5 s, H.264 + AAC 48 kHz; ours match that shape, so decoding
and face detection cost what they would on the real dataset. The face (skimage's astronaut, head and
shoulders) is about 180 px wide and moves smoothly, so MTCNN finds it in every sampled frame.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE

#: Emotions cycled over the clips (RAVDESS codes via emo's label list).
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


@dataclass(frozen=True)
class ClipSpec:
    width: int = 1280
    height: int = 720
    fps: int = 30
    face_px: int = 640  # side of the head-and-shoulders crop; the face is ~28% of it
    preset: str = "veryfast"
    crf: int = 23


def _images(directory: Path, spec: ClipSpec) -> tuple[Path, Path]:
    from PIL import Image

    from emo.pipeline.synthetic import face_photo

    face, background = directory / f"face{spec.face_px}.png", directory / f"bg{spec.width}x{spec.height}.png"
    if not face.exists():
        Image.fromarray(face_photo()[:320, 96:416]).resize((spec.face_px, spec.face_px), Image.LANCZOS).save(face)
    if not background.exists():
        yy, xx = np.mgrid[0 : spec.height, 0 : spec.width]
        bg = np.stack([xx / spec.width, yy / spec.height, 0.5 + 0 * xx], -1) * 0.6 + 0.2
        Image.fromarray((bg * 255).astype(np.uint8)).save(background)
    return face, background


def encode_clip(path: Path, seconds: float, emotion: str, seed: int, spec: ClipSpec = ClipSpec()) -> Path:
    """One clip: the face moving over the background (FFmpeg overlay) with speech-like audio."""
    import soundfile as sf

    from emo.pipeline.synthetic import ffmpeg_exe, speech_like

    path.parent.mkdir(parents=True, exist_ok=True)
    face, background = _images(CACHE, spec)
    rng = np.random.default_rng(seed)
    ax, ay = rng.uniform(20, 80), rng.uniform(10, 40)
    fx, fy = rng.uniform(0.2, 1.0), rng.uniform(0.2, 0.8)
    f0 = 110.0 if seed % 2 else 205.0
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        sf.write(wav, speech_like(emotion, seconds, speaker_f0=f0, seed=seed), 16000, subtype="FLOAT")
        overlay = (
            f"[0:v][1:v]overlay=x='(W-w)/2+{ax:.1f}*sin(2*PI*{fx:.2f}*t)':"
            f"y='(H-h)/2+{ay:.1f}*cos(2*PI*{fy:.2f}*t)',format=yuv420p[v]"
        )
        cmd = [
            ffmpeg_exe(), "-y", "-loglevel", "error",
            "-loop", "1", "-framerate", str(spec.fps), "-i", str(background),
            "-loop", "1", "-framerate", str(spec.fps), "-i", str(face),
            "-i", str(wav),
            "-filter_complex", overlay, "-map", "[v]", "-map", "2:a", "-t", f"{seconds:.3f}",
            "-c:v", "libx264", "-preset", spec.preset, "-crf", str(spec.crf), "-r", str(spec.fps),
            "-c:a", "aac", "-ar", "48000", "-ac", "2", str(path),
        ]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
    return path


def ravdess_dataset(n_clips: int, spec: ClipSpec = ClipSpec()) -> Path:
    """``n_clips`` RAVDESS-named clips of 3.0-4.5 s (24 actors, emotions cycled), cached; returns the root."""
    from emo.pipeline.datasets import RAVDESS_LABELS

    root = CACHE / f"ravdess-{spec.width}x{spec.height}-{n_clips}"
    for i in range(n_clips):
        actor, emotion = 1 + i % 24, EMOTIONS[i % len(EMOTIONS)]
        code = RAVDESS_LABELS.index(emotion) + 1
        rep = 1 + (i // 24) % 2
        statement = 1 + (i // 48) % 2
        name = f"01-01-{code:02d}-01-{statement:02d}-{rep:02d}-{actor:02d}.mp4"
        path = root / f"Actor_{actor:02d}" / name
        if path.exists() and path.stat().st_size > 0:
            continue
        seconds = 3.0 + 1.5 * np.random.default_rng(i).random()
        encode_clip(path, seconds, emotion, seed=1000 + i, spec=spec)
    return root


def long_clip(seconds: float, spec: ClipSpec = ClipSpec()) -> Path:
    """One long clip (e.g. 3 minutes of 720p) in a one-clip RAVDESS-named dataset directory; returns the root."""
    root = CACHE / f"long-{spec.width}x{spec.height}-{seconds:g}s"
    path = root / "Actor_01" / "01-01-03-01-01-01-01.mp4"
    if not (path.exists() and path.stat().st_size > 0):
        encode_clip(path, seconds, "happy", seed=7, spec=spec)
    return root


def clips_of(root: Path) -> list[Path]:
    return sorted(root.rglob("*.mp4"))
