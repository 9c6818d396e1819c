"""The raw objects behind a store (files of a directory, members of a zip, keys of an object store).

``verify`` lists them with their sizes in one call and hashes their bytes, ``copy`` moves them unchanged:
both need the stored bytes, not the arrays Zarr decodes from them. Keys are Zarr keys, relative to the
store's root (``zarr.json``, ``audio/mfcc/values/c/0/0``), and every key is checked not to escape the root.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from emo.features_store.archive import check_keys
from emo.features_store.location import StoreLocation
from emo.features_store.lock import LOCK_NAME

#: Bytes fetched per batch when reading many objects (remote filesystems fetch a batch concurrently).
BATCH_BYTES = 64 << 20


def is_store_object(key: str) -> bool:
    """False for what is not part of the store's data: the writer's lock, temporary and probe files."""
    name = key.rsplit("/", 1)[-1]
    return name != LOCK_NAME and not name.endswith(".partial") and not name.startswith(".emo-write-test")


class StoreObjects:
    """Read access to the stored objects of a location, by Zarr key."""

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self.fs, self.root = location.filesystem()
        self._sizes: dict[str, int] | None = None

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def sizes(self) -> dict[str, int]:
        """Every object of the store and its size in bytes (one listing, made once)."""
        if self._sizes is None:
            self._sizes = self._list()
        return dict(self._sizes)

    def _list(self) -> dict[str, int]:
        self.fs.invalidate_cache()  # list what is there now, not what this filesystem instance saw before
        found: dict[str, Any] = self.fs.find(self.root, detail=True)
        prefix = f"{self.root.rstrip('/')}/" if self.root else ""
        out: dict[str, int] = {}
        unknown: list[str] = []
        for path, info in found.items():
            if info.get("type") == "directory":
                continue
            key = path[len(prefix) :] if prefix and path.startswith(prefix) else path.lstrip("/")
            if is_store_object(key):
                out[key] = int(info["size"]) if info.get("size") is not None else -1
                if out[key] < 0:
                    unknown.append(key)
        check_keys(out, self.location.display)
        if unknown:  # HTTP directory listings carry no sizes: ask for each object (HEAD requests)
            paths = [self._path(k) for k in unknown]
            out.update(zip(unknown, (int(n) for n in self.fs.sizes(paths)), strict=True))
        return out

    def read(self, keys: Iterable[str], sizes: dict[str, int] | None = None) -> Iterator[tuple[str, bytes]]:
        """``(key, bytes)`` for each key, fetched in batches of about BATCH_BYTES."""
        batch: list[str] = []
        total = 0
        for key in keys:
            batch.append(key)
            total += (sizes or {}).get(key, 1 << 20)
            if total >= BATCH_BYTES:
                yield from self._fetch(batch)
                batch, total = [], 0
        if batch:
            yield from self._fetch(batch)

    def _fetch(self, keys: list[str]) -> Iterator[tuple[str, bytes]]:
        if len(keys) == 1:
            yield keys[0], self.fs.cat_file(self._path(keys[0]))
            return
        data = self.fs.cat([self._path(k) for k in keys], on_error="raise")
        for key in keys:
            yield key, data[self._path(key)]
