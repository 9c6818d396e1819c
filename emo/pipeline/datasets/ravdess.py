"""RAVDESS (Livingstone & Russo 2018): one file per clip, every label coded in its name."""

from __future__ import annotations

import re
from pathlib import Path

from emo.pipeline.datasets.base import (
    ADAPTERS,
    ClipRecord,
    DatasetAdapter,
    DatasetScan,
    media_files,
    prefer_video,
    relative,
)

RAVDESS_LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
_RAVDESS_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_RAVDESS_MODALITY = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
_RAVDESS_CHANNEL = {"01": "speech", "02": "song"}
_RAVDESS_INTENSITY = {"01": "normal", "02": "strong"}


def scan_ravdess(root: Path) -> DatasetScan:
    """RAVDESS: ``MM-VV-EE-II-SS-RR-AA.ext`` (modality, vocal channel, emotion, intensity, statement,
    repetition, actor); labels and transcripts come from the codes."""
    records, skipped = [], []
    for path in media_files(root):
        m = _RAVDESS_RE.match(path.stem)
        if not m:
            skipped.append((relative(path, root), "name is not MM-VV-EE-II-SS-RR-AA"))
            continue
        modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
        problems = [
            name
            for name, ok in (
                ("modality", modality in _RAVDESS_MODALITY),
                ("vocal channel", channel in _RAVDESS_CHANNEL),
                ("emotion", 1 <= int(emotion) <= 8),
                ("intensity", intensity in _RAVDESS_INTENSITY),
                ("statement", statement in RAVDESS_STATEMENTS),
                ("actor", int(actor) >= 1),
            )
            if not ok
        ]
        if problems:
            skipped.append((relative(path, root), f"invalid RAVDESS code for {', '.join(problems)}"))
            continue
        records.append(
            ClipRecord(
                clip_id=path.stem,
                path=path,
                label=RAVDESS_LABELS[int(emotion) - 1],
                speaker=f"Actor_{actor}",
                text=RAVDESS_STATEMENTS[statement],
                metadata={
                    "modality": _RAVDESS_MODALITY[modality],
                    "vocal_channel": _RAVDESS_CHANNEL[channel],
                    "intensity": _RAVDESS_INTENSITY[intensity],
                    "statement": statement,
                    "repetition": repetition,
                    "gender": "male" if int(actor) % 2 else "female",
                },
            )
        )
    return DatasetScan("ravdess", root, prefer_video(records, root, skipped), RAVDESS_LABELS, skipped)


ADAPTERS.register("ravdess")(
    DatasetAdapter(scan_ravdess, detect=lambda probe: probe.majority_named(_RAVDESS_RE), detect_order=30)
)
