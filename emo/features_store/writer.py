"""Writing a feature store: one writer, appending complete blocks of clips, committing them atomically.

A write is two steps: the block's rows are appended to every array (features first, the clip table last),
then the root attribute ``rows`` is raised to include them. Zarr writes each metadata document and chunk
atomically (temporary file + rename on local disks; single PUTs on object stores), so a writer killed at
any point leaves a store whose committed rows are intact; the next writer trims the uncommitted tail.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

import emo
from emo.errors import StoreError, UsageError
from emo.features_store.checksums import record_checksums, recorded, refresh_after_trim
from emo.features_store.clip_result import ClipResult
from emo.features_store.location import StoreLocation, parse_location, storage_errors
from emo.features_store.lock import LOCK_NAME, StoreLock, active_writer
from emo.features_store.schema import CLIP_COLUMNS, STORE_VERSION, Column, FeatureSpec, SequenceSpec, VectorSpec
from emo.features_store.store import ROWS_ATTR, before_time_grid, check_version
from emo.interrupt import deferred_interrupt

log = logging.getLogger(__name__)

#: Target uncompressed size of one chunk of a ragged (per-frame) array.
FRAME_CHUNK_BYTES = 4 << 20


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


#: Blosc block size. Blosc's own choice for zstd is a few tens of KiB: every block then starts a fresh zstd
#: stream over a sliver of each shuffled byte plane. Whole-MiB blocks (still within a core's L2 cache) compress
#: float32 features better and decode 1.2-3x faster (``benchmarks/store_read.py`` lists both).
BLOSC_BLOCK_BYTES = 1 << 20


def compressors_for(dtype: Any) -> list[Any]:
    """The compressor of every array of this dtype: Blosc-zstd level 1 over byte-shuffled values (bit-shuffled
    for 1-byte types) in 1 MiB blocks; zstd for strings."""
    if dtype is str:
        return [zarr.codecs.ZstdCodec(level=3)]
    itemsize = np.dtype(dtype).itemsize
    return [
        BloscCodec(
            cname="zstd",
            clevel=1,
            shuffle="shuffle" if itemsize > 1 else "bitshuffle",
            typesize=itemsize,
            blocksize=BLOSC_BLOCK_BYTES,
        )
    ]


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
        _check_writable(location)
        lock = StoreLock(location).acquire()
        try:
            exists = location.exists()
            if exists and overwrite:
                _clear(location)
                exists = False
            zstore = location.zarr_store(read_only=False)
            if exists:
                group = zarr.open_group(zstore, mode="r+")
                attrs = dict(group.attrs)
                check_version(attrs, location.display)
                if (reason := before_time_grid(attrs, location.display)) is not None:
                    raise UsageError(f"{reason}; then run the same command again to resume (or --overwrite)")
                _check_compatible(location, attrs, labels, extraction)
                _add_missing_columns(group)
            else:
                group = _create(zstore, specs, labels, dataset, extraction, software, chunk_rows)
            writer = cls(group, location, lock, specs, flush_seconds=flush_seconds, on_commit=on_commit)
            writer._trim_uncommitted()
            writer._ensure_checksums()
            return writer
        except BaseException:
            lock.release()
            raise

    def done_clip_ids(self) -> set[str]:
        """Ids of the clips already committed (a resumed run skips them)."""
        return _clip_ids(self.group, self.rows)

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
                for name in ("aligned", "mask", "pooled"):
                    _append(g[f"{spec.path}/{name}"], np.stack([r.arrays[f"{spec.path}/{name}"] for r in block]))
        for col in CLIP_COLUMNS:
            values = [r.columns.get(col.name, col.fill) for r in block]
            data = np.array(values, dtype=object) if col.dtype is str else np.array(values, dtype=col.dtype)
            _append(g[f"clips/{col.name}"], data)
        self._recording = len(block)
        g.attrs.update({ROWS_ATTR: self.rows + len(block), "updated_at": _now()})
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

    def _array_paths(self) -> list[str]:
        paths = [f"clips/{col.name}" for col in CLIP_COLUMNS]
        for spec in self.specs:
            paths += list(spec.arrays())
            if isinstance(spec, SequenceSpec):
                paths.append(f"{spec.path}/offsets")
        return paths

    def _ensure_checksums(self) -> None:
        """Record checksums of arrays that have none yet (new arrays; stores written before emo kept them)."""
        for path in self._array_paths():
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


def committed_clip_ids(location: StoreLocation, config_hash: str) -> set[str] | None:
    """Ids of the clips committed to the store at ``location`` when it was written with ``config_hash`` (an
    empty set when there is no store yet), read without the writer lock; None when a writer would refuse it
    (another configuration, another writer holds the lock, the location cannot be written) or it cannot be
    read. A peek that lets ``extract`` start its workers before opening the store; the
    store's writer (``StoreWriter.open``) remains the authority and says what is wrong."""
    try:
        if not writable_now(location):
            return None
        if not location.exists():
            return set()
        group = zarr.open_group(location.zarr_store(read_only=True), mode="r")
        attrs = dict(group.attrs)
        if attrs.get("extraction", {}).get("config_hash") != config_hash:
            return None
        return _clip_ids(group, int(attrs.get(ROWS_ATTR, 0)))
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


def _clip_ids(group: zarr.Group, rows: int) -> set[str]:
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


def _check_writable(location: StoreLocation) -> None:
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


def _clear(location: StoreLocation) -> None:
    """Delete a store's contents (for --overwrite), keeping the lock we hold."""
    if location.is_local:
        for child in location.path.iterdir():
            if child.name == LOCK_NAME:
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        return
    import fsspec

    fs, root = fsspec.core.url_to_fs(location.url, **location.storage_options)
    for child in fs.ls(root, detail=False):
        if not child.rstrip("/").endswith(LOCK_NAME):
            fs.rm(child, recursive=True)


def _check_compatible(
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


def _create_column(group: zarr.Group, col: Column, chunk_rows: int, length: int) -> None:
    """The clip table's column ``col``, ``length`` rows of its fill value."""
    group.create_array(
        f"clips/{col.name}",
        shape=(length,),
        dtype=col.dtype,
        chunks=(chunk_rows,),
        compressors=compressors_for(col.dtype),
        fill_value=col.fill,
        dimension_names=["clip"],
        attributes={"description": col.description},
    )


def _add_missing_columns(group: zarr.Group) -> None:
    """Columns added to the clip table since the store was created, filled with "unknown" for its rows."""
    length = group["clips/clip_id"].shape[0]
    for col in CLIP_COLUMNS:
        if f"clips/{col.name}" not in group:
            _create_column(group, col, int(group.attrs["chunk_rows"]), length)


def _create(
    zstore: Any,
    specs: Iterable[FeatureSpec],
    labels: Sequence[str],
    dataset: dict[str, Any],
    extraction: dict[str, Any],
    software: dict[str, str],
    chunk_rows: int,
) -> zarr.Group:
    now = _now()
    # mode "a", not "w": "w" would wipe the directory, lock file included
    group = zarr.open_group(
        zstore,
        mode="a",
        attributes={
            "emo_store_version": STORE_VERSION,
            "emo_version": emo.__version__,
            "created_at": now,
            "updated_at": now,
            "description": "emo multimodal emotion feature store; rows of every array follow clips/clip_id",
            "dataset": dataset,
            "labels": list(labels),
            "extraction": extraction,
            "software": software,
            "chunk_rows": chunk_rows,
            ROWS_ATTR: 0,
        },
    )
    for col in CLIP_COLUMNS:
        _create_column(group, col, chunk_rows, 0)
    for spec in specs:
        if isinstance(spec, VectorSpec):
            group.create_array(
                spec.path,
                shape=(0, *spec.shape),
                dtype=spec.dtype,
                chunks=(chunk_rows, *spec.shape),
                compressors=compressors_for(spec.dtype),
                fill_value=np.nan,
                dimension_names=["clip", *[f"d{i}" for i in range(len(spec.shape))]],
                attributes=spec.attrs,
            )
            continue
        sub = group.require_group(spec.path)
        sub.attrs.update(spec.attrs)
        for name, shape in spec.fields.items():
            row_bytes = int(np.prod(shape)) * np.dtype(spec.dtype).itemsize
            frames = 1 << max(10, (FRAME_CHUNK_BYTES // max(row_bytes, 1)).bit_length() - 1)
            sub.create_array(
                name,
                shape=(0, *shape),
                dtype=spec.dtype,
                chunks=(frames, *shape),
                compressors=compressors_for(spec.dtype),
                fill_value=np.nan,
                dimension_names=["frame", *[f"d{i}" for i in range(len(shape))]],
                attributes={
                    **spec.attrs,
                    "ragged": True,
                    "description": f"frames of all clips; clip i is rows "
                    f"offsets[i]:offsets[i+1] of {spec.path}/offsets",
                },
            )
        sub.create_array(
            "offsets",
            data=np.zeros(1, dtype=np.int64),
            chunks=(max(chunk_rows, 4096),),
            compressors=compressors_for(np.int64),
            dimension_names=["clip_edge"],
            attributes={**spec.attrs, "description": "N+1 row offsets into the ragged arrays of this group"},
        )
        if spec.derived:
            d, steps = spec.dim, spec.steps
            sub.create_array(
                "aligned",
                shape=(0, steps, d),
                dtype=spec.dtype,
                chunks=(chunk_rows, steps, d),
                compressors=compressors_for(spec.dtype),
                fill_value=0.0,
                dimension_names=["clip", "step", "d0"],
                attributes={
                    **spec.attrs,
                    "description": f"each clip resampled to {steps} steps (segment means; "
                    "shorter clips zero-padded, see mask)",
                    "steps": steps,
                },
            )
            sub.create_array(
                "mask",
                shape=(0, steps),
                dtype=bool,
                chunks=(chunk_rows, steps),
                compressors=compressors_for(bool),
                fill_value=False,
                dimension_names=["clip", "step"],
                attributes={**spec.attrs, "description": "True where aligned holds data"},
            )
            sub.create_array(
                "pooled",
                shape=(0, 2 * d),
                dtype=spec.dtype,
                chunks=(chunk_rows, 2 * d),
                compressors=compressors_for(spec.dtype),
                fill_value=np.nan,
                dimension_names=["clip", "d0"],
                attributes={
                    **spec.attrs,
                    "description": f"mean over frames (first {d}) then standard deviation "
                    f"(last {d}); NaN when the clip has no frames"
                },
            )
    return group
