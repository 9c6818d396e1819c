"""MELD (Poria et al. 2019): utterance clips of TV dialogues, labels and transcripts in per-split CSV tables."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from emo.pipeline.datasets.base import ADAPTERS, ClipRecord, DatasetAdapter, DatasetScan, media_files, relative

MELD_LABELS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
_MELD_CLIP_RE = re.compile(r"^dia(\d+)_utt(\d+)$")
_SPLIT_ALIASES = {"train": "train", "dev": "dev", "val": "dev", "valid": "dev", "test": "test"}


def _split_hint(path: Path, root: Path) -> set[str]:
    hints = set()
    for part in path.relative_to(root).parts[:-1]:
        for token in re.split(r"[^a-z]+", part.lower()):
            if token in _SPLIT_ALIASES:
                hints.add(_SPLIT_ALIASES[token])
    return hints


def scan_meld(root: Path) -> DatasetScan:
    """MELD: ``{train,dev,test}_sent_emo.csv`` beside ``dia{D}_utt{U}.mp4`` clips.

    Clip ids are ``{split}/dia{D}_utt{U}`` (MELD reuses dialogue numbers across splits). A clip is looked up
    first in folders whose names mention its split (``train_splits``, ``output_repeated_splits_test``...),
    then anywhere if its name is unique.
    """
    csvs = sorted(root.rglob("*_sent_emo.csv"))
    media: dict[str, list[Path]] = {}
    for path in media_files(root):
        if _MELD_CLIP_RE.match(path.stem):
            media.setdefault(path.stem, []).append(path)
    records, skipped, used = [], [], set()
    for csv_path in csvs:
        split = _SPLIT_ALIASES.get(csv_path.name.split("_")[0].lower(), csv_path.name.split("_")[0].lower())
        with open(csv_path, newline="", encoding="utf-8", errors="replace") as fh:
            for line_no, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    dia, utt = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
                except (KeyError, TypeError, ValueError):
                    skipped.append((f"{relative(csv_path, root)}:{line_no}", "no integer Dialogue_ID/Utterance_ID"))
                    continue
                stem = f"dia{dia}_utt{utt}"
                candidates = media.get(stem, [])
                in_split = [p for p in candidates if split in _split_hint(p, root)]
                path = in_split[0] if len(in_split) == 1 else (candidates[0] if len(candidates) == 1 else None)
                if path is None:
                    why = "no media file" if not candidates else f"{len(candidates)} files and none in a {split} folder"
                    skipped.append((f"{relative(csv_path, root)}:{line_no}", f"{why} for {stem}"))
                    continue
                label = str(row.get("Emotion", "")).strip().lower()
                if label and label not in MELD_LABELS:
                    skipped.append((f"{relative(csv_path, root)}:{line_no}", f"unknown emotion {label!r}"))
                    continue
                used.add(path)
                records.append(
                    ClipRecord(
                        clip_id=f"{split}/{stem}",
                        path=path,
                        label=label,
                        speaker=str(row.get("Speaker", "")).strip(),
                        text=str(row.get("Utterance", "")).strip(),
                        split=split,
                        dialogue_id=f"{split}/dia{dia}",
                        utterance_idx=utt,
                        metadata={
                            k: str(row[k]).strip()
                            for k in ("Sentiment", "Season", "Episode", "StartTime", "EndTime", "Sr No.")
                            if row.get(k) is not None
                        },
                    )
                )
    for stem, paths in media.items():
        skipped += [(relative(p, root), f"{stem} is in no *_sent_emo.csv") for p in paths if p not in used]
    return DatasetScan("meld", root, records, MELD_LABELS, skipped)


ADAPTERS.register("meld")(
    DatasetAdapter(scan_meld, detect=lambda probe: next(iter(probe.root.rglob("*_sent_emo.csv")), None) is not None,
                   detect_order=10)
)
