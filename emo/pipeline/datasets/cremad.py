"""CREMA-D (Cao et al. 2014): one file per clip, actor, sentence, emotion and level coded in its name."""

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

CREMAD_LABELS = ["anger", "disgust", "fear", "happy", "neutral", "sad"]
_CREMAD_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_CREMAD_LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
CREMAD_SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
_CREMAD_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def scan_cremad(root: Path) -> DatasetScan:
    """CREMA-D: ``AAAA_SSS_EEE_LL.ext`` (actor, sentence code, emotion, level)."""
    records, skipped = [], []
    for path in media_files(root):
        m = _CREMAD_RE.match(path.stem)
        if not m:
            skipped.append((relative(path, root), "name is not AAAA_SSS_EEE_LL"))
            continue
        actor, sentence, emotion, level = m.groups()
        if sentence not in CREMAD_SENTENCES or emotion not in _CREMAD_EMOTIONS or level not in _CREMAD_LEVELS:
            skipped.append((relative(path, root), f"unknown CREMA-D code in {path.stem}"))
            continue
        records.append(
            ClipRecord(
                clip_id=path.stem,
                path=path,
                label=_CREMAD_EMOTIONS[emotion],
                speaker=actor,
                text=CREMAD_SENTENCES[sentence],
                metadata={"sentence": sentence, "level": _CREMAD_LEVELS[level]},
            )
        )
    return DatasetScan("crema-d", root, prefer_video(records, root, skipped), CREMAD_LABELS, skipped)


ADAPTERS.register("crema-d")(
    DatasetAdapter(scan_cremad, detect=lambda probe: probe.majority_named(_CREMAD_RE), detect_order=31)
)
