"""Any dataset described by a manifest table: one row per clip with its path and label."""

from __future__ import annotations

import csv
from pathlib import Path

from emo.errors import UsageError
from emo.pipeline.datasets.base import ADAPTERS, MEDIA_EXTENSIONS, ClipRecord, DatasetAdapter, DatasetScan

_MANIFEST_KNOWN = ("path", "label", "text", "speaker", "split", "clip_id", "dialogue_id", "utterance_idx")


def find_manifest(root: Path) -> Path | None:
    if root.is_file():
        return root
    for name in ("manifest.csv", "manifest.tsv"):
        if (root / name).is_file():
            return root / name
    tables = [p for p in sorted(root.glob("*")) if p.suffix.lower() in (".csv", ".tsv") and p.is_file()]
    matching = [p for p in tables if {"path", "label"} <= set(_read_header(p))]
    return matching[0] if len(matching) == 1 else None


def _read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        first = fh.readline()
    delimiter = "\t" if path.suffix.lower() == ".tsv" or first.count("\t") > first.count(",") else ","
    return [h.strip().lower() for h in first.rstrip("\r\n").split(delimiter)]


def scan_manifest(root: Path) -> DatasetScan:
    """A CSV/TSV with at least ``path,label`` (optional text, speaker, split, clip_id, dialogue_id,
    utterance_idx; other columns become metadata). Relative paths are relative to the manifest's folder."""
    manifest = find_manifest(root)
    if manifest is None:
        raise UsageError(f"no manifest in {root}: expected manifest.csv/.tsv or one CSV/TSV with path,label columns")
    header = _read_header(manifest)
    missing = [c for c in ("path", "label") if c not in header]
    if missing:
        raise UsageError(f"manifest {manifest} lacks column(s) {', '.join(missing)} (has: {', '.join(header)})")
    base = manifest.parent
    delimiter = "\t" if manifest.suffix.lower() == ".tsv" or "\t" in ",".join(header) else ","
    records, skipped, seen = [], [], set()
    with open(manifest, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        next(reader)
        for line_no, values in enumerate(reader, start=2):
            if not any(v.strip() for v in values):
                continue
            row = {h: v.strip() for h, v in zip(header, values, strict=False)}
            where = f"{manifest.name}:{line_no}"
            if not row.get("path"):
                skipped.append((where, "empty path"))
                continue
            path = Path(row["path"]).expanduser()
            path = path if path.is_absolute() else base / path
            if not path.is_file():
                skipped.append((where, f"file not found: {row['path']}"))
                continue
            if path.suffix.lower() not in MEDIA_EXTENSIONS:
                skipped.append((where, f"not a media file ({', '.join(MEDIA_EXTENSIONS)}): {row['path']}"))
                continue
            clip_id = row.get("clip_id") or Path(row["path"]).with_suffix("").as_posix()
            if clip_id in seen:
                skipped.append((where, f"duplicate clip_id {clip_id}"))
                continue
            try:
                utterance_idx = int(row["utterance_idx"]) if row.get("utterance_idx") else -1
            except ValueError:
                skipped.append((where, f"utterance_idx is not an integer: {row['utterance_idx']!r}"))
                continue
            seen.add(clip_id)
            records.append(
                ClipRecord(
                    clip_id=clip_id,
                    path=path,
                    label=row.get("label", ""),
                    speaker=row.get("speaker", ""),
                    text=row.get("text", ""),
                    split=row.get("split", ""),
                    dialogue_id=row.get("dialogue_id", ""),
                    utterance_idx=utterance_idx,
                    metadata={k: v for k, v in row.items() if k not in _MANIFEST_KNOWN},
                )
            )
    labels = sorted({r.label for r in records if r.label})
    return DatasetScan("manifest", manifest, records, labels, skipped)


ADAPTERS.register("manifest")(
    DatasetAdapter(scan_manifest, detect=lambda probe: find_manifest(probe.root) is not None, detect_order=20)
)
