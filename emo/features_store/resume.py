"""Whether a store may be written to or resumed, and what it holds already: writability, the configuration and
labels it was written with, its committed clips. ``StoreWriter.open`` decides with these; ``extract`` peeks
with them before it opens the store."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr

from emo.errors import UsageError
from emo.features_store.location import StoreLocation
from emo.features_store.lock import LOCK_NAME, active_writer
from emo.features_store.store import ROWS_ATTR


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two (nested) configs."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            keys += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = value.get(part, "<absent>") if isinstance(value, dict) else "<absent>"
    return value


def committed_clip_ids(location: StoreLocation, config_hash: str) -> set[str] | None:
    """Ids of the clips committed to the store at ``location`` when it was written with ``config_hash`` (an
    empty set when there is no store yet or it holds no clip), read without the writer lock; None when a writer
    would refuse it (clips of another configuration, another writer holds the lock, the location cannot be
    written) or it cannot be read. A peek that lets ``extract`` start its workers before opening the store; the
    store's writer (``StoreWriter.open``) remains the authority and says what is wrong."""
    try:
        if not writable_now(location):
            return None
        if not location.exists():
            return set()
        group = zarr.open_group(location.zarr_store(read_only=True), mode="r")
        attrs = dict(group.attrs)
        rows = int(attrs.get(ROWS_ATTR, 0))
        if rows and attrs.get("extraction", {}).get("config_hash") != config_hash:
            return None
        return clip_ids(group, rows)  # none committed: a writer starts it again with any configuration
    except Exception:  # noqa: BLE001 - anything odd is for StoreWriter.open to report
        return None


def recorded_config(location: StoreLocation) -> dict[str, Any] | None:
    """The extraction config recorded in the store at ``location`` when it holds committed clips (None when there
    is no store, it holds none, or it cannot be read: the writer then says what is wrong)."""
    try:
        if not location.exists():
            return None
        attrs = dict(zarr.open_group(location.zarr_store(read_only=True), mode="r").attrs)
        if not int(attrs.get(ROWS_ATTR, 0)):
            return None
        return dict(attrs.get("extraction", {}).get("config", {}))
    except Exception:  # noqa: BLE001 - anything odd is for StoreWriter.open to report
        return None


def writable_now(location: StoreLocation) -> bool:
    """Whether a writer could open the store at ``location`` now: not read-only, no known reason it cannot be
    written, no other writer holding the lock. Looks without touching anything (``StoreWriter.open`` decides)."""
    try:
        return not (location.is_zip or location.read_only or _write_problem(location)) and (
            active_writer(location) is None
        )
    except OSError:
        return False


def clip_ids(group: zarr.Group, rows: int) -> set[str]:
    return set(np.asarray(group["clips/clip_id"][:rows]).tolist()) if rows else set()


def _write_problem(location: StoreLocation) -> str | None:
    """Why a store cannot be written at ``location``, found without touching it (None: no reason known)."""
    if not location.is_local:
        return None
    path = location.path
    if path.exists() and not path.is_dir():
        return f"cannot write a store to {path}: it exists and is not a directory"
    if path.is_dir() and not (path / "zarr.json").exists() and any(p.name != LOCK_NAME for p in path.iterdir()):
        return (
            f"cannot write a store to {path}: the directory exists, is not empty and is not an emo store; "
            "choose a new path"
        )
    if not path.exists():
        parent = next(p for p in path.parents if p.exists())
        if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
            return f"cannot write a store to {path}: {parent} is not a writable directory"
    return None


def check_writable(location: StoreLocation) -> None:
    problem = _write_problem(location)
    if problem is not None:
        raise UsageError(problem)
    if not location.is_local:
        return
    path = location.path
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".emo-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write a store to {path}: {exc.strerror or exc}") from None


def clear(location: StoreLocation) -> None:
    """Delete a store's contents (for --overwrite), keeping the lock we hold. The root ``zarr.json`` goes last:
    a clear cut short leaves a store (perhaps with broken arrays) that the next --overwrite or restart clears,
    not a directory refused as "not an emo store"."""
    if location.is_local:
        children = [c for c in location.path.iterdir() if c.name != LOCK_NAME]
        for child in sorted(children, key=lambda c: c.name == "zarr.json"):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        return
    import fsspec

    fs, root = fsspec.core.url_to_fs(location.url, **location.storage_options)
    children = [c for c in fs.ls(root, detail=False) if not c.rstrip("/").endswith(LOCK_NAME)]
    for child in sorted(children, key=lambda c: c.rstrip("/").endswith("/zarr.json")):
        fs.rm(child, recursive=True)


def compatible(attrs: dict[str, Any], labels: Sequence[str], extraction: dict[str, Any]) -> bool:
    """Whether a store with ``attrs`` was written with this extraction config and label set."""
    same_config = attrs.get("extraction", {}).get("config_hash") == extraction["config_hash"]
    return same_config and list(attrs.get("labels", [])) == list(labels)


def check_compatible(
    location: StoreLocation, attrs: dict[str, Any], labels: Sequence[str], extraction: dict[str, Any]
) -> None:
    old = attrs.get("extraction", {})
    if old.get("config_hash") != extraction["config_hash"]:
        diffs = config_differences(old.get("config", {}), extraction["config"])
        detail = "; ".join(
            f"{k}: store has {_lookup(old.get('config', {}), k)!r}, now {_lookup(extraction['config'], k)!r}"
            for k in diffs[:8]
        )
        hint = ""
        if "trim_silence_db" in diffs and "trim_silence_db" not in old.get("config", {}):
            hint = " (the store predates --trim-silence: resume it with --trim-silence off)"
        raise UsageError(
            f"{location.display} was extracted with a different configuration ({detail}){hint}; "
            "use the same options to resume, --overwrite to start again, or another -o"
        )
    if list(attrs.get("labels", [])) != list(labels):
        raise UsageError(
            f"{location.display} has labels {attrs.get('labels')}, the dataset has {list(labels)}; "
            "use --overwrite or another -o"
        )


