"""Synthetic feature stores with the dimensions of a real extraction, written by emo's own StoreWriter (so
chunking and codecs are exactly what ``emo extract`` produces), cached under ``data/bench/stores/``.

The cache key includes a fingerprint of ``emo/features_store/writer.py`` and ``layout.py``: a change to the store
layout (chunks, codecs) rebuilds the stores, so a benchmark never reads a layout the code no longer writes.

Dimensions (DESIGN.md §5, ResNet-18 and MiniLM): ``audio/mfcc`` 80 per frame (pooled 160), ``audio/mel``
128 (pooled 256), ``audio/egemaps`` 88, ``video/face`` 512 (pooled 1024), ``video/summary`` 512,
``text/cls`` and ``text/mean`` 384, ``text/tokens`` 384 (pooled 768); aligned sequences of 32 steps with
masks. Values are Gaussian with a class-dependent mean, so heads have something to learn; like real float32
features they barely compress.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, ROOT, log

LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
SEQUENCES = {"audio/mfcc": 80, "audio/mel": 128, "video/face": 512, "text/tokens": 384}
VECTORS = {"audio/egemaps": 88, "video/summary": 512, "text/cls": 384, "text/mean": 384}
SPEAKERS = 24
BLOCK = 1024  # clips generated at a time


def _fingerprint() -> str:
    layout = [ROOT / "emo" / "features_store" / name for name in ("writer.py", "layout.py")]
    return hashlib.sha256(b"".join(p.read_bytes() for p in layout)).hexdigest()[:10]


def pooled_paths() -> list[str]:
    """Every per-clip vector of these stores: the ``pooled`` arrays and the plain vectors."""
    return sorted([f"{p}/pooled" for p in SEQUENCES] + list(VECTORS))


def _specs(steps: int) -> list:
    from emo.features_store.schema import SequenceSpec, VectorSpec

    specs: list = [SequenceSpec(p, {"values": (d,)}, steps=steps) for p, d in SEQUENCES.items()]
    specs += [VectorSpec(p, (d,)) for p, d in VECTORS.items()]
    return specs


def _results(n_clips: int, steps: int, frames: int, seed: int, frames_of: dict[str, int] | None = None) -> Iterator:
    from emo.features_store.clip_result import ClipResult

    rng = np.random.default_rng(seed)
    centres = {p: rng.standard_normal((len(LABELS), d)).astype(np.float32) * 0.5 for p, d in SEQUENCES.items()}
    centres |= {p: rng.standard_normal((len(LABELS), d)).astype(np.float32) * 0.5 for p, d in VECTORS.items()}
    for start in range(0, n_clips, BLOCK):
        n = min(BLOCK, n_clips - start)
        y = rng.integers(0, len(LABELS), n)
        arrays: dict[str, np.ndarray] = {}
        for p, d in SEQUENCES.items():
            if steps:
                aligned = rng.standard_normal((n, steps, d), dtype=np.float32) + centres[p][y][:, None, :]
                valid = rng.integers(steps * 2 // 3, steps + 1, n)
                mask = np.arange(steps)[None, :] < valid[:, None]
                arrays[f"{p}/aligned"], arrays[f"{p}/mask"] = aligned * mask[..., None], mask
            mean = rng.standard_normal((n, d), dtype=np.float32) + centres[p][y]
            std = np.abs(rng.standard_normal((n, d), dtype=np.float32)) + 0.5
            arrays[f"{p}/pooled"] = np.concatenate([mean, std], axis=1)
            arrays[f"{p}/values"] = rng.standard_normal((n, (frames_of or {}).get(p, frames), d), dtype=np.float32)
        for p, d in VECTORS.items():
            arrays[p] = rng.standard_normal((n, d), dtype=np.float32) + centres[p][y]
        for i in range(n):
            clip = start + i
            speaker = 1 + clip % SPEAKERS
            columns = {
                "clip_id": f"clip{clip:07d}",
                "label": int(y[i]),
                "label_name": LABELS[y[i]],
                "speaker": f"{speaker:02d}",
                "text": "Kids are talking by the door",
                "status_audio": "ok",
                "status_video": "ok",
                "status_text": "ok",
            }
            yield ClipResult(columns=columns, arrays={k: v[i] for k, v in arrays.items()})


def build(
    name: str, n_clips: int, *, steps: int, frames: int, seed: int = 0, frames_of: dict[str, int] | None = None
) -> Path:
    """The store ``name`` with ``n_clips`` clips (built once per writer layout)."""
    from emo.features_store.location import parse_location
    from emo.features_store.store import FeatureStore
    from emo.features_store.writer import StoreWriter

    path = CACHE / "stores" / f"{name}-{n_clips}-{_fingerprint()}.zarr"
    if path.exists():
        try:
            if FeatureStore.open(str(path)).n_clips == n_clips:
                return path
        except Exception:  # noqa: BLE001 - a half-built cache entry: rebuild it
            pass
        shutil.rmtree(path)
    for old in path.parent.glob(f"{name}-{n_clips}-*.zarr"):
        shutil.rmtree(old)  # layouts the writer no longer produces
    log(f"stores: writing {n_clips} synthetic clips to {path.name}")
    writer = StoreWriter.open(
        parse_location(str(path)),
        specs=_specs(steps or 1),
        labels=LABELS,
        dataset={"adapter": "synthetic", "root": "", "n_clips": n_clips},
        extraction={"config": {"align_steps": steps or 1}, "config_hash": f"benchmark-{name}"},
        software={},
        flush_seconds=1e9,
    )
    with writer:
        for result in _results(n_clips, steps, frames, seed, frames_of):
            if not steps:  # a store of pooled vectors only: one-step aligned views keep the writer's schema
                for p in SEQUENCES:
                    result.arrays[f"{p}/aligned"] = result.arrays[f"{p}/pooled"][None, : SEQUENCES[p]]
                    result.arrays[f"{p}/mask"] = np.ones(1, bool)
            writer.add(result)
    return path


def fusion_store(n_clips: int) -> Path:
    """Pooled vectors and 32-step aligned sequences (what the fusion heads read); 2 ragged frames per clip."""
    return build("fusion", n_clips, steps=32, frames=2)


def frames_store(n_clips: int, mel_frames: int = 300) -> Path:
    """As :func:`fusion_store`, with ``mel_frames`` log-mel frames per clip (3 s at the 10 ms hop): what the heads
    that convolve the clip's own frames read (speech-cnn, cross-tucker's 2-D mel CNN)."""
    return build(f"frames{mel_frames}", n_clips, steps=32, frames=2, frames_of={"audio/mel": mel_frames})


@contextmanager
def row_codec(name: str) -> Iterator[None]:
    """Stores built inside write their per-clip rows with codec ``name`` (one of ``layout.NUMERIC_CODECS``) instead
    of emo's choice, ``layout.CODECS["rows"]``: how the benchmark measures the candidates."""
    from emo.features_store import layout

    before, layout.CODECS["rows"] = layout.CODECS["rows"], name
    try:
        yield
    finally:
        layout.CODECS["rows"] = before


def pooled_store(n_clips: int, codec: str | None = None) -> Path:
    """Every pooled vector of ``n_clips`` clips (sequence groups carry no frames and one-step aligned views);
    ``codec`` writes the per-clip rows with that codec instead of emo's choice."""
    if codec is None:
        return build("pooled", n_clips, steps=0, frames=0)
    with row_codec(codec):
        return build(f"pooled-{codec}", n_clips, steps=0, frames=0)
