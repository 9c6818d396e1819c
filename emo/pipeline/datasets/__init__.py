"""Dataset adapters: turn a directory of media into clip records (DESIGN.md §3).

Each adapter recognises one layout (RAVDESS, CREMA-D, MELD, a manifest CSV, a folder per label), returns
one :class:`ClipRecord` per clip and reports every file it could not parse instead of guessing. Every module of
this package is an adapter that registers itself: adding a dataset is adding its module.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from emo.errors import UsageError
from emo.pipeline.datasets.base import (
    ADAPTERS,
    AUDIO_EXTENSIONS,
    MEDIA_EXTENSIONS,
    VIDEO_EXTENSIONS,
    ClipRecord,
    DatasetAdapter,
    DatasetProbe,
    DatasetScan,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

from emo.pipeline.datasets.cremad import CREMAD_LABELS  # noqa: E402
from emo.pipeline.datasets.meld import MELD_LABELS  # noqa: E402
from emo.pipeline.datasets.ravdess import RAVDESS_LABELS, RAVDESS_STATEMENTS  # noqa: E402


def detect_adapter(root: Path) -> str:
    """Name of the adapter whose layout ``root`` follows (the ``--dataset auto`` rule)."""
    if root.is_file():
        return "manifest"
    probe = DatasetProbe(root)
    for name in sorted(ADAPTERS, key=lambda n: ADAPTERS[n].detect_order):
        if ADAPTERS[name].detect(probe):
            return name
    if not probe.files:
        raise UsageError(f"{root} contains no media files ({', '.join(MEDIA_EXTENSIONS)})")
    raise UsageError(
        f"cannot tell the layout of {root} ({len(probe.files)} media files, none in label folders or with RAVDESS / "
        f"CREMA-D names); choose one with --dataset {'|'.join(ADAPTERS)}"
    )


def scan_dataset(root: str | Path, adapter: str = "auto") -> DatasetScan:
    """Scan a dataset directory (or a manifest file) with the named adapter, or the detected one."""
    path = Path(root).expanduser()
    if not path.exists():
        raise UsageError(f"dataset path {path} does not exist")
    if path.is_dir() and not any(path.iterdir()):
        raise UsageError(f"dataset directory {path} is empty")
    if adapter != "auto" and adapter not in ADAPTERS:
        raise UsageError(f"unknown dataset adapter {adapter!r}; choose one of: auto, {', '.join(ADAPTERS)}")
    name = detect_adapter(path) if adapter == "auto" else adapter
    if path.is_file() and name != "manifest":
        raise UsageError(f"{path} is a file; only the manifest adapter takes a file")
    scan = ADAPTERS[name].scan(path.resolve())
    if not scan.records:
        reasons = "; ".join(f"{p}: {why}" for p, why in scan.skipped[:3])
        raise UsageError(f"no clips found in {path} with the {name} adapter" + (f" ({reasons})" if reasons else ""))
    return scan


__all__ = [
    "ADAPTERS",
    "AUDIO_EXTENSIONS",
    "CREMAD_LABELS",
    "MEDIA_EXTENSIONS",
    "MELD_LABELS",
    "RAVDESS_LABELS",
    "RAVDESS_STATEMENTS",
    "VIDEO_EXTENSIONS",
    "ClipRecord",
    "DatasetAdapter",
    "DatasetProbe",
    "DatasetScan",
    "detect_adapter",
    "scan_dataset",
]
