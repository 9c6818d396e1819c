"""``emo store copy`` and ``emo store pack``: move a store between a directory, a zip and an object store.

A copy moves the stored objects unchanged (metadata documents and encoded chunks), so attributes, chunking,
codecs and the recorded checksums arrive as they were. Every chunk is hashed on the way and compared with
its recorded checksum: a corrupt source is refused rather than spread. The destination only becomes a store
at the end: a directory is written beside its final path and renamed into place, a zip is written to a
temporary file, and on an object store the root ``zarr.json`` (what makes a prefix a store) goes last.
Zip members are stored uncompressed (``ZIP_STORED``): the chunks are compressed already, or left raw on purpose
(the per-clip rows, for read speed: ``layout.CODECS``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emo.errors import StoreError, UsageError
from emo.features_store.checksums import ALGORITHM, digest
from emo.features_store.location import StoreLocation, parse_location, storage_errors
from emo.features_store.lock import LOCK_NAME, StoreLock, active_writer, held_message
from emo.features_store.objects import StoreObjects, is_store_object
from emo.features_store.store import FeatureStore
from emo.features_store.verify import verify_store

log = logging.getLogger(__name__)

ROOT_KEY = "zarr.json"


@dataclass
class CopyReport:
    """What a copy moved."""

    source: str
    destination: str
    n_objects: int = 0
    bytes: int = 0
    n_chunks_checked: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "n_objects": self.n_objects,
            "bytes": self.bytes,
            "n_chunks_checked": self.n_chunks_checked,
            "seconds": round(self.seconds, 3),
        }


Objects = Iterator[tuple[str, bytes]]


def copy_store(
    source: str | StoreLocation,
    destination: str | StoreLocation,
    *,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    destination_options: dict[str, Any] | None = None,
) -> CopyReport:
    """Copy a store to a directory, a ``.zip`` or an fsspec URL, checking every chunk against its checksum.

    ``storage_options`` apply to both sides, ``destination_options`` (when given) to the destination instead.
    An existing destination store is replaced only with ``overwrite``.
    """
    started = time.monotonic()
    src = parse_location(source, storage_options)
    dst = parse_location(destination, storage_options if destination_options is None else destination_options)
    if dst.scheme in ("http", "https"):
        raise UsageError(f"cannot copy to {dst.display}: {dst.scheme}:// locations are read-only")
    if src.same_place(dst):
        raise UsageError(f"{src.display} is both the source and the destination")
    report = CopyReport(src.display, dst.display)
    with storage_errors(src, dst, action="copy failed"):
        store = FeatureStore.open(src)
        if (owner := active_writer(src)) is not None:
            raise StoreError(held_message(src, owner))
        objects = StoreObjects(src)
        checked = verify_store(store, objects=objects)
        if not checked.ok:
            raise StoreError(
                f"{src.display} has problems, refusing to copy it: "
                + "; ".join(str(p) for p in checked.problems[:3])
                + " (see 'emo store verify')"
            )
        digests = checked.digests
        _check_destination(dst, overwrite)
        sizes = objects.sizes()
        # the root metadata last: until it exists, the destination is not a store
        keys = sorted(k for k in sizes if k != ROOT_KEY) + [ROOT_KEY]

        def checked_objects() -> Objects:
            for key, data in objects.read(keys, sizes):
                expected = digests.get(key)
                if expected is not None:
                    if digest(data)[ALGORITHM] != expected.get(ALGORITHM):
                        raise StoreError(
                            f"{src.display}: chunk {key} does not match its recorded {ALGORITHM}; the source is "
                            "corrupt (or changed during the copy), nothing was copied (see 'emo store verify --deep')"
                        )
                    report.n_chunks_checked += 1
                report.n_objects += 1
                report.bytes += len(data)
                yield key, data

        _writer_for(dst)(dst, checked_objects())
        landed = StoreObjects(dst).sizes()
        if differ := sorted(k for k in sizes if landed.get(k) != sizes[k]):
            raise StoreError(f"the copy at {dst.display} is incomplete: {', '.join(differ[:5])} missing or truncated")
    report.seconds = time.monotonic() - started
    log.debug("copied %d objects (%d bytes) from %s to %s", report.n_objects, report.bytes, src.display, dst.display)
    return report


def pack_store(
    source: str | StoreLocation,
    output: str | StoreLocation,
    *,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    destination_options: dict[str, Any] | None = None,
) -> CopyReport:
    """Write a store as a single ``.zip`` file that ``FeatureStore.open`` reads directly."""
    out = parse_location(output, storage_options if destination_options is None else destination_options)
    if not out.is_zip:
        raise UsageError(f"{out.display}: the packed store must be a .zip file")
    return copy_store(source, out, overwrite=overwrite, storage_options=storage_options)


# -- destinations -------------------------------------------------------------------------------------------
def _zarr_like(key: str) -> bool:
    """A key a (partial) Zarr store could hold: metadata documents and chunks under a ``c/`` prefix."""
    parts = key.split("/")
    return parts[-1] == ROOT_KEY or "c" in parts[:-1] or not is_store_object(key)


def _check_destination(dst: StoreLocation, overwrite: bool) -> None:
    """Refuse an existing store (unless ``overwrite``) and anything that is not a store (always)."""
    if dst.exists():
        if not overwrite:
            raise UsageError(f"{dst.display} already exists; use --overwrite to replace it")
        if not dst.is_zip and (owner := active_writer(dst)) is not None:
            raise StoreError(held_message(dst, owner))
        if not dst.is_zip:
            FeatureStore.open(dst)  # replace emo stores only, never another kind of Zarr group
        return
    if dst.is_local:
        path = dst.path
        if path.exists() and (dst.is_zip or not path.is_dir()):
            raise UsageError(f"cannot copy to {dst.display}: it exists and is not a store")
        if path.is_dir() and any(path.iterdir()):
            raise UsageError(f"cannot copy to {dst.display}: the directory exists, is not empty and is not a store")
        return
    if dst.is_zip:
        return
    fs, root = dst.filesystem()
    with contextlib.suppress(FileNotFoundError):
        present = [p[len(root) + 1 :] for p in fs.find(root)]
        if foreign := [k for k in present if not _zarr_like(k)]:
            raise UsageError(
                f"cannot copy to {dst.display}: it holds objects that are not part of a store ({foreign[0]}, ...)"
            )
        if present and not overwrite:
            raise UsageError(
                f"{dst.display} holds a partial store (an interrupted copy?); use --overwrite to replace it"
            )


def _writer_for(dst: StoreLocation) -> Callable[[StoreLocation, Objects], None]:
    if dst.is_zip:
        return _write_local_zip if dst.is_local else _write_remote_zip
    return _write_local_dir if dst.is_local else _write_remote_dir


def _write_zip(target: Any, objects: Objects) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, data in objects:
            info = zipfile.ZipInfo(key, date_time=time.localtime()[:6])
            info.external_attr = 0o644 << 16  # a plain readable file when unpacked with unzip
            zf.writestr(info, data)


def _write_local_zip(dst: StoreLocation, objects: Objects) -> None:
    path = dst.path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_zip(f, objects)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_remote_zip(dst: StoreLocation, objects: Objects) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(dst.url, **dst.storage_options)
    with tempfile.TemporaryDirectory(prefix="emo-pack-") as tmp:
        local = Path(tmp) / "store.zip"
        with open(local, "wb") as f:
            _write_zip(f, objects)
        fs.put_file(str(local), path)  # a single object appears only once uploaded completely
    fs.invalidate_cache()


def _write_local_dir(dst: StoreLocation, objects: Objects) -> None:
    final = dst.path
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.copy-{uuid.uuid4().hex[:8]}"
    root = tmp.resolve()
    try:
        for key, data in objects:
            target = (tmp / key).resolve()
            if not target.is_relative_to(root):  # keys were checked already; never write outside, whatever
                raise StoreError(f"refusing to write {key!r} outside {dst.display}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if final.exists():  # the store being replaced, or an empty directory made for the copy
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_remote_dir(dst: StoreLocation, objects: Objects) -> None:
    """Objects under a prefix, root metadata last, under the writer lease; a replaced store goes first
    (object stores cannot rename a prefix into place)."""
    fs, root = dst.filesystem()
    with StoreLock(dst):
        with contextlib.suppress(FileNotFoundError):
            stale = [p for p in fs.find(root) if not p.endswith(f"/{LOCK_NAME}")]
            if stale:
                fs.rm(stale)
        batch: dict[str, bytes] = {}
        size = 0
        for key, data in objects:
            if key == ROOT_KEY:
                if batch:
                    fs.pipe(batch)
                batch, size = {}, 0
            batch[f"{root}/{key}"] = data
            size += len(data)
            if size >= 32 << 20:
                fs.pipe(batch)
                batch, size = {}, 0
        if batch:
            fs.pipe(batch)
    fs.invalidate_cache()
