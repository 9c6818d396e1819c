"""Dataset adapters: turn a directory of media into clip records (DESIGN.md §3).

Each adapter recognises one layout (RAVDESS, CREMA-D, MELD, a manifest CSV, a folder per label), returns
one :class:`ClipRecord` per clip and reports every file it could not parse instead of guessing.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emo.errors import UsageError

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


@dataclass
class DatasetScan:
    """What an adapter found: the clips, the ordered label names, and the files it skipped (with why)."""

    adapter: str
    root: Path
    records: list[ClipRecord]
    labels: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """The ``dataset`` root attribute of a store."""
        return {
            "adapter": self.adapter,
            "root": str(self.root),
            "n_clips": len(self.records),
            "n_skipped": len(self.skipped),
        }


def _media_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _prefer_video(records: list[ClipRecord], root: Path, skipped: list[tuple[str, str]]) -> list[ClipRecord]:
    """Keep one record per clip id: a video container wins over an audio-only file of the same clip."""
    chosen: dict[str, ClipRecord] = {}
    for rec in records:
        other = chosen.get(rec.clip_id)
        if other is None:
            chosen[rec.clip_id] = rec
            continue
        keep, drop = (rec, other) if _rank(rec.path) < _rank(other.path) else (other, rec)
        chosen[rec.clip_id] = keep
        skipped.append((_rel(drop.path, root), f"same clip as {_rel(keep.path, root)} (video preferred)"))
    return list(chosen.values())


def _rank(path: Path) -> int:
    ext = path.suffix.lower()
    return MEDIA_EXTENSIONS.index(ext) if ext in MEDIA_EXTENSIONS else len(MEDIA_EXTENSIONS)


# ---------------------------------------------------------------------------------------------- RAVDESS
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
    for path in _media_files(root):
        m = _RAVDESS_RE.match(path.stem)
        if not m:
            skipped.append((_rel(path, root), "name is not MM-VV-EE-II-SS-RR-AA"))
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
            skipped.append((_rel(path, root), f"invalid RAVDESS code for {', '.join(problems)}"))
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
    return DatasetScan("ravdess", root, _prefer_video(records, root, skipped), RAVDESS_LABELS, skipped)


# ---------------------------------------------------------------------------------------------- CREMA-D
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
    for path in _media_files(root):
        m = _CREMAD_RE.match(path.stem)
        if not m:
            skipped.append((_rel(path, root), "name is not AAAA_SSS_EEE_LL"))
            continue
        actor, sentence, emotion, level = m.groups()
        if sentence not in CREMAD_SENTENCES or emotion not in _CREMAD_EMOTIONS or level not in _CREMAD_LEVELS:
            skipped.append((_rel(path, root), f"unknown CREMA-D code in {path.stem}"))
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
    return DatasetScan("crema-d", root, _prefer_video(records, root, skipped), CREMAD_LABELS, skipped)


# ---------------------------------------------------------------------------------------------- MELD
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
    for path in _media_files(root):
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
                    skipped.append((f"{_rel(csv_path, root)}:{line_no}", "no integer Dialogue_ID/Utterance_ID"))
                    continue
                stem = f"dia{dia}_utt{utt}"
                candidates = media.get(stem, [])
                in_split = [p for p in candidates if split in _split_hint(p, root)]
                path = in_split[0] if len(in_split) == 1 else (candidates[0] if len(candidates) == 1 else None)
                if path is None:
                    why = "no media file" if not candidates else f"{len(candidates)} files and none in a {split} folder"
                    skipped.append((f"{_rel(csv_path, root)}:{line_no}", f"{why} for {stem}"))
                    continue
                label = str(row.get("Emotion", "")).strip().lower()
                if label and label not in MELD_LABELS:
                    skipped.append((f"{_rel(csv_path, root)}:{line_no}", f"unknown emotion {label!r}"))
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
        skipped += [(_rel(p, root), f"{stem} is in no *_sent_emo.csv") for p in paths if p not in used]
    return DatasetScan("meld", root, records, MELD_LABELS, skipped)


# ---------------------------------------------------------------------------------------------- manifest
_MANIFEST_KNOWN = ("path", "label", "text", "speaker", "split", "clip_id", "dialogue_id", "utterance_idx")


def _find_manifest(root: Path) -> Path | None:
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
    manifest = _find_manifest(root)
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


# ---------------------------------------------------------------------------------------------- folders
def scan_folders(root: Path) -> DatasetScan:
    """``DATASET_DIR/<label>/**/<clip>.<ext>``, with an optional ``<clip>.txt`` transcript beside each clip."""
    records, skipped = [], []
    for path in _media_files(root):
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            skipped.append((_rel(path, root), "not inside a label folder"))
            continue
        transcript = path.with_suffix(".txt")
        text = transcript.read_text(encoding="utf-8", errors="replace").strip() if transcript.is_file() else ""
        records.append(
            ClipRecord(clip_id=path.relative_to(root).with_suffix("").as_posix(), path=path, label=parts[0], text=text)
        )
    records = _prefer_video(records, root, skipped)
    return DatasetScan("folders", root, records, sorted({r.label for r in records}), skipped)


# ---------------------------------------------------------------------------------------------- registry
ADAPTERS: dict[str, Callable[[Path], DatasetScan]] = {
    "ravdess": scan_ravdess,
    "crema-d": scan_cremad,
    "meld": scan_meld,
    "manifest": scan_manifest,
    "folders": scan_folders,
}


def detect_adapter(root: Path) -> str:
    """Name of the adapter whose layout ``root`` follows (the ``--dataset auto`` rule)."""
    if root.is_file():
        return "manifest"
    if next(iter(root.rglob("*_sent_emo.csv")), None) is not None:
        return "meld"
    if _find_manifest(root) is not None:
        return "manifest"
    files = _media_files(root)
    if not files:
        raise UsageError(f"{root} contains no media files ({', '.join(MEDIA_EXTENSIONS)})")
    for name, pattern in (("ravdess", _RAVDESS_RE), ("crema-d", _CREMAD_RE)):
        if sum(bool(pattern.match(p.stem)) for p in files) * 2 > len(files):
            return name
    if any(len(p.relative_to(root).parts) >= 2 for p in files):
        return "folders"
    raise UsageError(
        f"cannot tell the layout of {root} ({len(files)} media files, none in label folders or with RAVDESS / "
        "CREMA-D names); choose one with --dataset ravdess|crema-d|meld|manifest|folders"
    )


def scan_dataset(root: str | Path, adapter: str = "auto") -> DatasetScan:
    """Scan a dataset directory (or a manifest file) with the named adapter, or the detected one."""
    path = Path(root).expanduser()
    if not path.exists():
        raise UsageError(f"dataset path {path} does not exist")
    if path.is_dir() and not any(path.iterdir()):
        raise UsageError(f"dataset directory {path} is empty")
    name = detect_adapter(path) if adapter == "auto" else adapter
    if name not in ADAPTERS:
        raise UsageError(f"unknown dataset adapter {adapter!r}; choose one of: auto, {', '.join(ADAPTERS)}")
    if path.is_file() and name != "manifest":
        raise UsageError(f"{path} is a file; only the manifest adapter takes a file")
    scan = ADAPTERS[name](path.resolve())
    if not scan.records:
        reasons = "; ".join(f"{p}: {why}" for p, why in scan.skipped[:3])
        raise UsageError(f"no clips found in {path} with the {name} adapter" + (f" ({reasons})" if reasons else ""))
    return scan
