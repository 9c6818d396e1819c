"""Zip archives as stores: which member names are safe, and opening a zip (local or remote) for reading.

A packed store is a zip whose member names are the Zarr keys (``zarr.json``, ``audio/mfcc/values/c/0/0``).
A member name that is absolute or climbs out with ``..`` has no place in a store and would escape the
destination when the archive is unpacked, so such an archive is refused as a whole when it is opened,
before Zarr or a copy reads anything from it.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import zarr.storage

from emo.errors import StoreError

if TYPE_CHECKING:
    from fsspec.implementations.zip import ZipFileSystem

    from emo.features_store.location import StoreLocation

_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_key_reason(key: str) -> str | None:
    """Why ``key`` cannot name an object inside a store (None when it is a plain relative path)."""
    if not key:
        return "empty name"
    if "\\" in key or "\0" in key:
        return "backslash or NUL in the name"
    if key.startswith("/") or _DRIVE.match(key):
        return "absolute path"
    parts = key.rstrip("/").split("/")
    if any(p == ".." for p in parts):
        return "'..' climbs out of the store"
    if any(p in ("", ".") for p in parts):
        return "empty or '.' path component"
    return None


def check_keys(keys: Iterable[str], display: str) -> None:
    """Refuse an archive or listing containing any name that could escape the store's root."""
    bad = [(k, reason) for k in keys if (reason := unsafe_key_reason(k))]
    if bad:
        shown = "; ".join(f"{k!r} ({reason})" for k, reason in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise StoreError(
            f"{display} contains member names that escape the store: {shown}{more}; refusing to read this archive"
        )


def check_zip_members(zf: zipfile.ZipFile, display: str) -> None:
    """Refuse a zip with escaping member names (directory entries such as ``audio/`` are allowed)."""
    check_keys((n[:-1] if n.endswith("/") and n != "/" else n for n in zf.namelist()), display)


def open_local_zip(location: StoreLocation) -> None:
    """Check the member names of a local zip store (Zarr's ZipStore then reads it)."""
    try:
        with zipfile.ZipFile(location.path) as zf:
            check_zip_members(zf, location.display)
    except zipfile.BadZipFile as exc:
        raise StoreError(f"{location.display} is not a readable zip file: {exc}") from None


def zip_filesystem(location: StoreLocation, **extra: Any) -> ZipFileSystem:
    """A read-only fsspec view of the members of a zip store, local or remote (chained ``zip::`` URL)."""
    import fsspec

    # a fresh instance every time: a cached one would keep serving the index of a zip since replaced
    extra = {"skip_instance_cache": True, **extra}
    try:
        if location.is_local:
            fs = fsspec.filesystem("zip", fo=str(location.path), **extra)
        else:
            options = {location.scheme: location.storage_options}
            fs, _ = fsspec.core.url_to_fs(f"zip::{location.url}", **options, **extra)
    except zipfile.BadZipFile as exc:
        raise StoreError(f"{location.display} is not a readable zip file: {exc}") from None
    check_zip_members(fs.zip, location.display)
    return fs


class ZipMembersStore(zarr.storage.FsspecStore):
    """Zarr's FsspecStore over the members of a zip opened through fsspec (a zip on S3, GCS, HTTP...).

    Zarr 3.1's ``list_dir`` expects listings of the root path ``""`` to echo a leading ``/``, which fsspec's
    zip filesystem does not: without this override a group's members come out as their full paths.
    """

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        try:
            found = await self.fs._ls(prefix.rstrip("/"), detail=False)
        except FileNotFoundError:
            return
        for path in found:
            yield path.rstrip("/").rsplit("/", 1)[-1]


def remote_zip_store(location: StoreLocation) -> ZipMembersStore:
    """A read-only Zarr store over a remote zip, after checking its member names."""
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

    return ZipMembersStore(AsyncFileSystemWrapper(zip_filesystem(location), asynchronous=True), read_only=True, path="")
