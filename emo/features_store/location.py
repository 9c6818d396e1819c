"""Where a store lives: a local directory, a ``.zip`` file, or any fsspec URL (s3://, gs://, https://...)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zarr.storage

from emo.errors import UsageError


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store address; ``storage_options`` (credentials, endpoints) are never part of its repr."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def scheme(self) -> str:
        scheme = urlsplit(self.url).scheme
        # a Windows drive letter is not a scheme
        return "" if len(scheme) <= 1 else scheme.lower()

    @property
    def is_local(self) -> bool:
        return self.scheme in ("", "file")

    @property
    def is_zip(self) -> bool:
        return self.url.rstrip("/").lower().endswith(".zip")

    @property
    def path(self) -> Path:
        """The local filesystem path (only for local locations)."""
        if not self.is_local:
            raise ValueError(f"{self.display} is not a local path")
        return Path(urlsplit(self.url).path if self.scheme == "file" else self.url).expanduser()

    @property
    def display(self) -> str:
        """The address for messages: no query string (signed URLs carry credentials there)."""
        parts = urlsplit(self.url)
        if parts.scheme and len(parts.scheme) > 1:
            netloc = parts.hostname or ""
            return f"{parts.scheme}://{netloc}{parts.path}"
        return self.url

    def exists(self) -> bool:
        """True when a Zarr group is already there."""
        if self.is_local:
            p = self.path
            return p.is_file() if self.is_zip else (p / "zarr.json").is_file()
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs.exists(root if self.is_zip else f"{root.rstrip('/')}/zarr.json")

    def zarr_store(self, *, read_only: bool) -> zarr.abc.store.Store:
        """The Zarr store object for this location."""
        if self.is_zip:
            if not read_only:
                raise UsageError(
                    f"{self.display}: a .zip store is read-only; write to a directory and use "
                    "'emo store pack' to make a zip"
                )
            if self.is_local:
                return zarr.storage.ZipStore(self.path, mode="r", read_only=True)
            return zarr.storage.FsspecStore.from_url(
                f"zip::{self.url}", storage_options={self.scheme: self.storage_options}, read_only=True
            )
        if self.is_local:
            return zarr.storage.LocalStore(self.path, read_only=read_only)
        return zarr.storage.FsspecStore.from_url(
            self.url, storage_options=self.storage_options or None, read_only=read_only
        )


def parse_location(
    store: str | os.PathLike[str] | StoreLocation, storage_options: dict[str, Any] | None = None
) -> StoreLocation:
    """Normalise a user-supplied store address."""
    if isinstance(store, StoreLocation):
        return store
    url = os.fspath(store)
    if not url:
        raise UsageError("empty store path")
    return StoreLocation(url, dict(storage_options or {}))


def parse_storage_options(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (``--storage-option``) to fsspec storage options.

    Values are JSON when they parse as JSON (numbers, booleans, objects), else strings; dotted keys build
    nested dicts (``client_kwargs.region_name=us-east-1``).
    """
    import json

    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--storage-option takes KEY=VALUE, got {item.split('=')[0]!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, leaf = key.split(".")
        target = options
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise UsageError(f"--storage-option {key}: {part} is both a value and a group")
        target[leaf] = value
    return options
