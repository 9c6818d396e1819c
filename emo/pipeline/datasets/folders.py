"""One folder per label: the generic layout of a dataset without its own adapter."""

from __future__ import annotations

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


def scan_folders(root: Path) -> DatasetScan:
    """``DATASET_DIR/<label>/**/<clip>.<ext>``, with an optional ``<clip>.txt`` transcript beside each clip."""
    records, skipped = [], []
    for path in media_files(root):
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            skipped.append((relative(path, root), "not inside a label folder"))
            continue
        transcript = path.with_suffix(".txt")
        text = transcript.read_text(encoding="utf-8", errors="replace").strip() if transcript.is_file() else ""
        records.append(
            ClipRecord(clip_id=path.relative_to(root).with_suffix("").as_posix(), path=path, label=parts[0], text=text)
        )
    records = prefer_video(records, root, skipped)
    return DatasetScan("folders", root, records, sorted({r.label for r in records}), skipped)


ADAPTERS.register("folders")(
    DatasetAdapter(
        scan_folders,
        detect=lambda probe: any(len(p.relative_to(probe.root).parts) >= 2 for p in probe.files),
        detect_order=90,
    )
)
