"""What every dataset adapter shares: the clip record, the scan result, media helpers and the adapter registry.

An adapter is one module of this package that registers a :class:`DatasetAdapter` under its ``--dataset`` name:
how to recognise its layout (``--dataset auto``) and how to list its clips.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emo.registry import Registry

VIDEO_EXTENSIONS = (".mp4", ".avi", ".flv", ".mkv", ".mov", ".webm")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3")
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS + AUDIO_EXTENSIONS


@dataclass
class ClipRecord:
    """One clip of a dataset, as an adapter sees it (before any decoding)."""

    clip_id: str
    path: Path
    label: str = ""
    speaker: str = ""
    text: str = ""
    split: str = ""
    dialogue_id: str = ""
    utterance_idx: int = -1
    metadata: dict[str, Any] = field(default_factory=dict)
    #: set by the :class:`DatasetScan` the record belongs to: the label's index into the scan's labels (-1 =
    #: unknown) and the media path relative to the dataset root (how the store names it)
    label_index: int = -1
    source_path: str = ""


@dataclass
class DatasetScan:
    """What an adapter found: the clips, the ordered label names, and the files it skipped (with why)."""

    adapter: str
    root: Path
    records: list[ClipRecord]
    labels: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        index = {name: i for i, name in enumerate(self.labels)}
        base = self.root if self.root.is_dir() else self.root.parent  # a manifest's clips are named from its folder
        for rec in self.records:
            rec.label_index = index.get(rec.label, -1)
            rec.source_path = rec.path.relative_to(base).as_posix() if rec.path.is_relative_to(base) else str(rec.path)

    def describe(self) -> dict[str, Any]:
        """The ``dataset`` root attribute of a store."""
        return {
            "adapter": self.adapter,
            "root": str(self.root),
            "n_clips": len(self.records),
            "n_skipped": len(self.skipped),
        }


def media_files(root: Path) -> list[Path]:
    """Every media file under ``root``, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)


def relative(path: Path, root: Path) -> str:
    """``path`` under ``root``, with forward slashes (how skipped files are named)."""
    return path.relative_to(root).as_posix()


def prefer_video(records: list[ClipRecord], root: Path, skipped: list[tuple[str, str]]) -> list[ClipRecord]:
    """Keep one record per clip id: a video container wins over an audio-only file of the same clip."""
    chosen: dict[str, ClipRecord] = {}
    for rec in records:
        other = chosen.get(rec.clip_id)
        if other is None:
            chosen[rec.clip_id] = rec
            continue
        keep, drop = (rec, other) if _rank(rec.path) < _rank(other.path) else (other, rec)
        chosen[rec.clip_id] = keep
        skipped.append((relative(drop.path, root), f"same clip as {relative(keep.path, root)} (video preferred)"))
    return list(chosen.values())


def _rank(path: Path) -> int:
    ext = path.suffix.lower()
    return MEDIA_EXTENSIONS.index(ext) if ext in MEDIA_EXTENSIONS else len(MEDIA_EXTENSIONS)


class DatasetProbe:
    """What ``--dataset auto`` looks at in a directory; the media listing is made once, when first asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @functools.cached_property
    def files(self) -> list[Path]:
        return media_files(self.root)

    def majority_named(self, pattern: Any) -> bool:
        """Whether more than half of the media files have a stem ``pattern`` matches."""
        return sum(bool(pattern.match(p.stem)) for p in self.files) * 2 > len(self.files)


@dataclass(frozen=True)
class DatasetAdapter:
    """A dataset layout: ``scan(root)`` lists its clips; ``detect(probe)`` says whether a directory follows it.
    ``--dataset auto`` asks the adapters in ``detect_order`` (lower first) and takes the first that answers yes."""

    scan: Callable[[Path], DatasetScan]
    detect: Callable[[DatasetProbe], bool]
    detect_order: int = 50


#: Every ``--dataset``: an adapter module registers with ``ADAPTERS.register("name")(DatasetAdapter(...))``.
ADAPTERS: Registry[DatasetAdapter] = Registry("dataset adapter", "--dataset")
