"""Writing a feature store: one writer, appending complete blocks of clips, committing them atomically.

A write is two steps: the block's rows are appended to every array (features first, the clip table last),
then the root attribute ``rows`` is raised to include them. Zarr writes each metadata document and chunk
atomically (temporary file + rename on local disks; single PUTs on object stores), so a writer killed at
any point leaves a store whose committed rows are intact; the next writer trims the uncommitted tail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import zarr

from emo.errors import StoreError, UsageError
from emo.features_store.checksums import record_checksums, recorded, refresh_after_trim
from emo.features_store.clip_result import ClipResult
from emo.features_store.layout import DERIVED_ARRAYS, add_missing_columns, array_paths, create_store, now
from emo.features_store.location import StoreLocation, parse_location, storage_errors
from emo.features_store.lock import StoreLock
from emo.features_store.resume import check_compatible, check_writable, clear, clip_ids, compatible
from emo.features_store.schema import CLIP_COLUMNS, FeatureSpec, SequenceSpec, VectorSpec
from emo.features_store.store import ROWS_ATTR, before_time_grid, check_version
from emo.interrupt import deferred_interrupt

log = logging.getLogger(__name__)

class StoreWriter:
    """The single writer of a store. Buffers clip results and appends them in chunk-aligned blocks.

    Open with :meth:`open`; add results with :meth:`add`; :meth:`close` flushes the rest and releases the
    lock. ``on_commit(rows_total, rows_added)`` is called after every committed block.
    """

    def __init__(
        self,
        group: zarr.Group,
        location: StoreLocation,
        lock: StoreLock,
        specs: Sequence[FeatureSpec],
        *,
        flush_seconds: float,
        on_commit: Callable[[int, int], None] | None,
    ) -> None:
        self.group = group
        self.location = location
        self.lock = lock
        self.specs = list(specs)
        self.chunk_rows = int(group.attrs["chunk_rows"])
        self.rows = int(group.attrs.get(ROWS_ATTR, 0))
        self.flush_seconds = flush_seconds
        self.on_commit = on_commit
        self._buffer: list[ClipResult] = []
        self._failed = False  # a write stopped part-way (see _write)
        self._recording = 0  # clips whose commit record is being written (its outcome unknown if that fails)
        self._last_flush = time.monotonic()
        self._paths = {p for s in self.specs for p in s.arrays()}

    # -- opening ----------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        store: str | StoreLocation,
        *,
        specs: Sequence[FeatureSpec],
        labels: Sequence[str],
        dataset: dict[str, Any],
        extraction: dict[str, Any],
        software: dict[str, str],
        chunk_rows: int = 256,
        overwrite: bool = False,
        storage_options: dict[str, Any] | None = None,
        flush_seconds: float = 30.0,
        on_commit: Callable[[int, int], None] | None = None,
    ) -> StoreWriter:
        """Create a store, or reopen one written with the same extraction config to add clips to it.

        ``extraction`` is ``{"config": {...}, "config_hash": "..."}``. A store with a different config hash
        or label set is refused (naming what differs) unless ``overwrite`` is set.
        """
        location = parse_location(store, storage_options)
        if location.is_zip:
            raise UsageError(
                f"cannot extract into {location.display}: a .zip store is read-only; "
                "extract into a directory and run 'emo store pack'"
            )
        if location.read_only:
            raise UsageError(f"cannot write to {location.display}: {location.scheme}:// locations are read-only")
        check_writable(location)
        lock = StoreLock(location).acquire()
        try:
            exists = location.exists()
            if exists and overwrite:
                clear(location)
                exists = False
            zstore = location.zarr_store(read_only=False)
            if exists:
                group = zarr.open_group(zstore, mode="r+")
                attrs = dict(group.attrs)
                check_version(attrs, location.display)
                if int(attrs.get(ROWS_ATTR, 0)) == 0 and not compatible(attrs, labels, extraction):
                    # Nothing committed (a run stopped before its first clip, e.g. a worker refused its model):
                    # no clip could be mixed with another configuration's, so the store starts again with this
                    # one, and the command an error message advised works on the same -o.
                    log.warning("%s holds no clip yet: starting it again with this configuration", location.display)
                    with deferred_interrupt():
                        clear(location)
                    exists = False
                else:
                    if (reason := before_time_grid(attrs, location.display)) is not None:
                        raise UsageError(f"{reason}; then run the same command again to resume (or --overwrite)")
                    check_compatible(location, attrs, labels, extraction)
                    add_missing_columns(group)
            if not exists:
                group = create_store(zstore, specs, labels, dataset, extraction, software, chunk_rows)
            writer = cls(group, location, lock, specs, flush_seconds=flush_seconds, on_commit=on_commit)
            writer._trim_uncommitted()
            writer._ensure_checksums()
            return writer
        except BaseException:
            lock.release()
            raise

    def done_clip_ids(self) -> set[str]:
        """Ids of the clips already committed (a resumed run skips them)."""
        return clip_ids(self.group, self.rows)

    # -- writing ----------------------------------------------------------------------------------------
    def add(self, result: ClipResult) -> None:
        """Queue one clip's results; whole chunks (and, every ``flush_seconds``, the rest) are written."""
        self._validate(result)
        self._buffer.append(result)
        boundary = (self.rows + len(self._buffer)) // self.chunk_rows * self.chunk_rows
        if boundary > self.rows:
            self._write(boundary - self.rows)
        elif time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Commit every queued clip now."""
        if self._buffer:
            self._write(len(self._buffer))

    def close(self) -> None:
        """Flush what is queued and release the writer lock."""
        try:
            self.flush()
        finally:
            self.lock.release()

    def abort(self) -> None:
        """Release the lock without writing the queued (uncommitted) clips."""
        self._buffer.clear()
        self.lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            # a failure mid-run: keep what is complete, never write a half-built block
            try:
                if not self._failed:
                    self.flush()
            finally:
                self.lock.release()

    def _validate(self, result: ClipResult) -> None:
        missing = self._paths - result.arrays.keys()
        if missing:
            raise StoreError(f"clip {result.clip_id}: no value for {sorted(missing)}")
        for spec in self.specs:
            for path, (shape, _dtype, ragged) in spec.arrays().items():
                got = result.arrays[path].shape
                if (got[1:] if ragged else got) != tuple(shape):
                    raise StoreError(
                        f"clip {result.clip_id}: {path} has shape {got}, expected "
                        f"{'(frames, ' + str(shape)[1:] if ragged else shape}"
                    )
            if isinstance(spec, SequenceSpec):
                lengths = {result.arrays[f"{spec.path}/{f}"].shape[0] for f in spec.fields}
                if len(lengths) != 1:
                    raise StoreError(f"clip {result.clip_id}: fields of {spec.path} differ in length {lengths}")

    def _write(self, n: int) -> None:
        """Append the first ``n`` queued clips to every array, then commit them; Ctrl-C waits for the commit."""
        if self._failed:
            raise StoreError(
                f"{self.location.display}: an earlier write stopped part-way; nothing more is written by this writer "
                "(the committed rows are intact, the next run trims the rest)"
            )
        with deferred_interrupt():
            try:
                with storage_errors(self.location, action="cannot write to the store"):
                    self._append_block(self._buffer[:n])
            except BaseException as exc:
                # arrays may now differ in length: another block appended after them would misalign rows
                self._failed = True
                if isinstance(exc, StoreError):
                    # A failure while the commit record itself was written (a connection lost before the server's
                    # answer) leaves its outcome unknown: the record may have landed. Either way the store is
                    # whole, and a resumed run reads which from the store.
                    maybe = (
                        f", and the {self._recording} of the commit under way may be too (the storage failed "
                        "while recording it; `emo store info` tells)"
                        if self._recording else ""
                    )
                    raise StoreError(
                        f"{exc}; the {self.rows} clips committed before are intact{maybe}: fix the storage (free "
                        "space, permissions, connection) and run the same command again to resume"
                    ) from None
                raise
            finally:
                self._recording = 0
            self._buffer = self._buffer[n:]
            try:
                with storage_errors(self.location, action="could not renew the writer's lease"):
                    self.lock.heartbeat()
            except StoreError as exc:  # the block is committed; the next commit says whether the storage is back
                log.warning("%s", exc)
            self._last_flush = time.monotonic()
            if self.on_commit is not None:
                self.on_commit(self.rows, n)

    def _append_block(self, block: list[ClipResult]) -> None:
        g = self.group
        for spec in self.specs:
            if isinstance(spec, VectorSpec):
                _append(g[spec.path], np.stack([r.arrays[spec.path] for r in block]).astype(spec.dtype))
                continue
            offsets = g[f"{spec.path}/offsets"]
            lengths = np.array([r.arrays[f"{spec.path}/{next(iter(spec.fields))}"].shape[0] for r in block])
            base = int(offsets[self.rows])
            for name in spec.fields:
                values = [r.arrays[f"{spec.path}/{name}"] for r in block]
                if lengths.sum():
                    _append(g[f"{spec.path}/{name}"], np.concatenate(values).astype(spec.dtype))
            _append(offsets, base + np.cumsum(lengths, dtype=np.int64))
            if spec.derived:
                for name in DERIVED_ARRAYS:
                    _append(g[f"{spec.path}/{name}"], np.stack([r.arrays[f"{spec.path}/{name}"] for r in block]))
        for col in CLIP_COLUMNS:
            values = [r.columns.get(col.name, col.fill) for r in block]
            data = np.array(values, dtype=object) if col.dtype is str else np.array(values, dtype=col.dtype)
            _append(g[f"clips/{col.name}"], data)
        self._recording = len(block)
        g.attrs.update({ROWS_ATTR: self.rows + len(block), "updated_at": now()})
        self._recording = 0
        self.rows += len(block)

    def _trim_uncommitted(self) -> None:
        """Cut every array back to the committed rows (after an interrupted writer)."""
        g = self.group
        n = self.rows
        for spec in self.specs:
            end = int(g[f"{spec.path}/offsets"][n]) if isinstance(spec, SequenceSpec) else n
            for path, (_shape, _dtype, ragged) in spec.arrays().items():
                _truncate(g[path], end if ragged else n)
            if isinstance(spec, SequenceSpec):
                _truncate(g[f"{spec.path}/offsets"], n + 1)
        for col in CLIP_COLUMNS:
            _truncate(g[f"clips/{col.name}"], n)
        if self.location.is_local:
            for partial in self.location.path.rglob("*.partial"):
                partial.unlink(missing_ok=True)

    def _ensure_checksums(self) -> None:
        """Record checksums of arrays that have none yet (new arrays; stores written before emo kept them)."""
        for path in array_paths(self.specs):
            arr = self.group[path]
            if recorded(arr) is None:
                record_checksums(arr, 0, arr.shape[0])


def _append(arr: zarr.Array, data: np.ndarray) -> None:
    """Append rows and record the checksums of the chunks that were written."""
    start = arr.shape[0]
    arr.append(data)
    record_checksums(arr, start, arr.shape[0])


def _truncate(arr: zarr.Array, length: int) -> None:
    if arr.shape[0] > length:
        arr.resize((length, *arr.shape[1:]))
        refresh_after_trim(arr)
