"""Synthetic media for the demo dataset and the tests: a real face photo in moving frames and speech-like
audio whose pitch, energy and tempo depend on the emotion, encoded by FFmpeg into ordinary containers.

The audio is a source-filter model (a glottal-like pulse train with a prosodic f0 contour, shaped by vowel
formant resonators, syllable by syllable, plus aspiration noise). It is not speech, but its prosody varies
by emotion and speaker the way acted speech does, so MFCC / eGeMAPS features separate the classes.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from emo.pipeline.datasets import RAVDESS_LABELS

#: Emotion -> prosody: f0 factor, f0 excursion, syllables/s, energy, roughness noise, tremolo depth.
PROSODY: dict[str, dict[str, float]] = {
    "neutral": {"f0": 1.00, "range": 0.08, "rate": 4.0, "energy": 0.30, "noise": 0.02, "tremolo": 0.0},
    "calm": {"f0": 0.92, "range": 0.05, "rate": 3.2, "energy": 0.22, "noise": 0.015, "tremolo": 0.0},
    "happy": {"f0": 1.35, "range": 0.30, "rate": 5.0, "energy": 0.55, "noise": 0.03, "tremolo": 0.0},
    "sad": {"f0": 0.82, "range": 0.04, "rate": 2.6, "energy": 0.15, "noise": 0.04, "tremolo": 0.0},
    "angry": {"f0": 1.25, "range": 0.22, "rate": 5.6, "energy": 0.90, "noise": 0.10, "tremolo": 0.0},
    "fearful": {"f0": 1.55, "range": 0.20, "rate": 6.2, "energy": 0.40, "noise": 0.05, "tremolo": 0.35},
    "disgust": {"f0": 0.95, "range": 0.14, "rate": 3.0, "energy": 0.45, "noise": 0.06, "tremolo": 0.0},
    "surprised": {"f0": 1.65, "range": 0.45, "rate": 4.4, "energy": 0.65, "noise": 0.03, "tremolo": 0.0},
}
#: Vowel formants F1, F2, F3 (Hz), roughly those of an adult speaker.
VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240))
#: Face appearance per emotion: brightness gain, motion amplitude (px), motion speed (Hz), vertical drift.
APPEARANCE: dict[str, tuple[float, float, float, float]] = {
    "neutral": (1.00, 4, 0.5, 0.0),
    "calm": (0.95, 2, 0.3, 0.0),
    "happy": (1.15, 8, 1.2, -2.0),
    "sad": (0.75, 3, 0.3, 6.0),
    "angry": (1.05, 10, 3.0, 0.0),
    "fearful": (0.85, 6, 4.0, -3.0),
    "disgust": (0.90, 5, 0.8, 2.0),
    "surprised": (1.20, 9, 1.5, -5.0),
}


def speech_like(
    emotion: str, seconds: float, speaker_f0: float = 120.0, sample_rate: int = 16000, seed: int = 0
) -> np.ndarray:
    """Mono float32 speech-like audio for ``emotion`` (a key of :data:`PROSODY`)."""
    p = PROSODY[emotion]
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    n_syllables = max(1, int(round(p["rate"] * seconds)))
    edges = np.sort(rng.uniform(0, n, n_syllables - 1)).astype(int) if n_syllables > 1 else np.array([], int)
    bounds = np.concatenate([[0], edges, [n]])
    accents = rng.uniform(-1, 1, n_syllables) * p["range"]
    f0 = np.empty(n)
    for k in range(n_syllables):
        a, b = bounds[k], bounds[k + 1]
        f0[a:b] = speaker_f0 * p["f0"] * (1 + accents[k]) * (1 - 0.1 * t[a:b] / seconds)
    f0 = signal.savgol_filter(f0, min(801, n - (1 - n % 2)), 2) if n > 801 else f0
    f0 *= 1 + 0.04 * p["tremolo"] * np.sin(2 * np.pi * 7 * t)
    phase = np.cumsum(f0) / sample_rate
    source = signal.sawtooth(2 * np.pi * phase, width=0.2) + p["noise"] * 8 * rng.standard_normal(n)
    out = np.zeros(n)
    for k in range(n_syllables):
        a, b = bounds[k], bounds[k + 1]
        voiced = int(0.75 * (b - a))
        if voiced < 16:
            continue
        segment = source[a : a + voiced]
        shaped = np.zeros(voiced)
        for freq, gain in zip(VOWELS[rng.integers(len(VOWELS))], (1.0, 0.6, 0.3), strict=True):
            bw = 80 + freq * 0.05
            r = np.exp(-np.pi * bw / sample_rate)
            theta = 2 * np.pi * freq / sample_rate
            shaped += gain * signal.lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], segment)
        out[a : a + voiced] = shaped * np.hanning(voiced)
    out += p["noise"] * 0.05 * rng.standard_normal(n)
    out *= p["energy"] / (np.max(np.abs(out)) + 1e-9)
    return out.astype(np.float32)


def face_photo() -> np.ndarray:
    """A real face photograph (scikit-image's astronaut, Eileen Collins), RGB uint8: ``skimage.data.astronaut()``,
    read with PIL from the file scikit-image ships (importing ``skimage.data`` costs a loaded worker 10 MB)."""
    from PIL import Image

    from emo.pipeline.weights import package_dir

    root = package_dir("skimage")  # the package's location, without importing it
    if root is None:
        raise ModuleNotFoundError("scikit-image is not installed: its astronaut photo is emo's real test face")
    with Image.open(root / "data" / "astronaut.png") as image:
        return np.asarray(image.convert("RGB"))


def face_frames(
    emotion: str = "neutral",
    seconds: float = 2.0,
    fps: float = 15.0,
    size: tuple[int, int] = (320, 240),
    face_width: int = 180,
    seed: int = 0,
) -> np.ndarray:
    """[F, H, W, 3] frames of the face photo moving over a background, with emotion-dependent motion."""
    from skimage.transform import resize

    gain, amplitude, speed, drift = APPEARANCE[emotion]
    rng = np.random.default_rng(seed)
    face = resize(face_photo()[:320, 96:416], (face_width, face_width), anti_aliasing=True)  # head and shoulders
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx / width, yy / height, 0.5 + 0 * xx], -1) * 0.6 + 0.2
    n = max(1, int(round(seconds * fps)))
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    cx, cy = (width - face_width) // 2, (height - face_width) // 2
    phase = rng.uniform(0, 2 * np.pi)
    for i in range(n):
        t = i / fps
        dx = int(round(amplitude * np.sin(2 * np.pi * speed * t + phase)))
        dy = int(round(0.5 * amplitude * np.cos(2 * np.pi * speed * t) + drift * t / seconds))
        img = background.copy()
        x0, y0 = np.clip(cx + dx, 0, width - face_width), np.clip(cy + dy, 0, height - face_width)
        img[y0 : y0 + face_width, x0 : x0 + face_width] = face
        frames[i] = np.clip(img * gain * 255, 0, 255).astype(np.uint8)
    return frames


def ffmpeg_exe() -> str:
    """The static FFmpeg binary shipped by imageio-ffmpeg (no system FFmpeg needed)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def encode(
    path: Path,
    frames: np.ndarray | None = None,
    audio: np.ndarray | None = None,
    fps: float = 15.0,
    sample_rate: int = 16000,
    audio_rate: int = 44100,
    extra_args: Sequence[str] = (),
) -> Path:
    """Encode frames (H.264) and/or audio (AAC, or PCM for .wav) into ``path`` with FFmpeg."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error"]
    with tempfile.TemporaryDirectory() as tmp:
        if frames is not None:
            h, w = frames.shape[1:3]
            cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
        if audio is not None:
            wav = Path(tmp) / "audio.wav"
            sf.write(wav, audio, sample_rate, subtype="FLOAT")
            cmd += ["-i", str(wav)]
        if frames is not None:
            cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        if audio is not None and path.suffix.lower() != ".wav":
            cmd += ["-c:a", "aac", "-ar", str(audio_rate), "-ac", "1"]
        elif audio is not None:
            cmd += ["-ar", str(audio_rate)]
        if frames is not None and audio is not None:
            cmd += ["-shortest"]
        cmd += [*extra_args, str(path)]
        stdin = frames.tobytes() if frames is not None else None
        subprocess.run(cmd, input=stdin, check=True, capture_output=True)
    return path


@dataclass(frozen=True)
class DemoSpec:
    """Shape of the demo dataset (RAVDESS naming, 4 actors, 6 emotions, 1 clip each by default)."""

    actors: tuple[int, ...] = (1, 2, 3, 4)
    emotions: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "surprised")
    repetitions: int = 1
    seconds: float = 2.0
    fps: float = 15.0
    size: tuple[int, int] = (320, 240)


#: Speaker base f0 by actor parity (RAVDESS: odd actors are male).
SPEAKER_F0 = {1: 110.0, 0: 205.0}


def make_demo_dataset(root: str | Path, spec: DemoSpec | None = None, seed: int = 0) -> list[Path]:
    """Write a small labelled RAVDESS-style dataset of mp4 clips under ``root`` (idempotent)."""
    spec = spec or DemoSpec()
    root = Path(root)
    paths = []
    for actor in spec.actors:
        for e_i, emotion in enumerate(spec.emotions):
            for rep in range(1, spec.repetitions + 1):
                statement = 1 + (actor + e_i + rep) % 2
                code = RAVDESS_LABELS.index(emotion) + 1
                name = f"01-01-{code:02d}-01-{statement:02d}-{rep:02d}-{actor:02d}.mp4"
                path = root / f"Actor_{actor:02d}" / name
                paths.append(path)
                if path.exists() and path.stat().st_size > 0:
                    continue
                clip_seed = seed * 10_000 + actor * 100 + e_i * 10 + rep
                f0 = SPEAKER_F0[actor % 2] * (1 + 0.06 * ((actor * 7) % 5 - 2) / 2)
                duration = spec.seconds * (1 + 0.1 * ((clip_seed % 7) - 3) / 3)
                audio = speech_like(emotion, duration, speaker_f0=f0, seed=clip_seed)
                frames = face_frames(emotion, duration, spec.fps, spec.size, seed=clip_seed)
                encode(path, frames, audio, fps=spec.fps)
    return paths
