"""Where a store lives: a local directory, a ``.zip`` file, or any fsspec URL (s3://, gs://, https://...)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zarr.storage

from emo.errors import EmoError, StoreError, UsageError

#: Schemes that can be read but never written (plain HTTP servers).
READ_ONLY_SCHEMES = ("http", "https")
#: Storage-option keys whose values are secrets (matched as substrings, case-insensitively).
_SECRET_KEY = re.compile(r"key|secret|token|passw|credential|signature|sas|auth", re.IGNORECASE)
#: ``user:password@`` inside a URL.
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


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
    def read_only(self) -> bool:
        """True where emo can only read: zip files and plain HTTP(S) servers."""
        return self.is_zip or self.scheme in READ_ONLY_SCHEMES

    @property
    def display(self) -> str:
        """The address for messages: no query string (signed URLs carry credentials there), no user:password."""
        parts = urlsplit(self.url)
        if parts.scheme and len(parts.scheme) > 1:
            netloc = parts.hostname or ""
            if parts.port is not None:
                netloc += f":{parts.port}"
            return f"{parts.scheme}://{netloc}{parts.path}"
        return self.url

    def secrets(self) -> list[str]:
        """Every credential-like value in the storage options and the URL, longest first (for redaction)."""
        found: list[str] = []

        def walk(options: Any, secret: bool) -> None:
            if isinstance(options, dict):
                for key, value in options.items():
                    walk(value, secret or bool(_SECRET_KEY.search(str(key))))
            elif isinstance(options, list | tuple):
                for value in options:
                    walk(value, secret)
            elif isinstance(options, str):
                if secret and len(options) >= 3:
                    found.append(options)
                for userinfo in _USERINFO.findall(options):
                    found.append(userinfo.rstrip("@"))

        walk(self.storage_options, False)
        walk(self.url, False)
        parts = urlsplit(self.url)
        if parts.query:
            found.append(parts.query)
        return sorted(set(found), key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` with this location's credentials replaced by ``***`` (for messages and logs)."""
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return _USERINFO.sub("***@", text)

    def same_place(self, other: StoreLocation) -> bool:
        """True when both addresses name the same store."""
        if self.is_local and other.is_local:
            return self.path.resolve() == other.path.resolve()
        return self.url.rstrip("/") == other.url.rstrip("/")

    def exists(self) -> bool:
        """True when a Zarr group is already there."""
        if self.is_local:
            p = self.path
            return p.is_file() if self.is_zip else (p / "zarr.json").is_file()
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs.exists(root if self.is_zip else f"{root.rstrip('/')}/zarr.json")

    def filesystem(self) -> tuple[Any, str]:
        """An fsspec filesystem and the root path of the store's objects in it (zip members for a zip)."""
        import fsspec

        if self.is_zip:
            from emo.features_store.archive import zip_filesystem

            return zip_filesystem(self), ""
        if self.is_local:
            return fsspec.filesystem("file"), str(self.path.resolve())
        fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs, root.rstrip("/")

    def zarr_store(self, *, read_only: bool) -> zarr.abc.store.Store:
        """The Zarr store object for this location (zips: after checking that no member escapes the root)."""
        if not read_only and self.read_only:
            what = "a .zip store" if self.is_zip else f"an {self.scheme}:// store"
            raise UsageError(
                f"{self.display}: {what} is read-only; write to a directory or an object store "
                "(and use 'emo store pack' to make a zip)"
            )
        if self.is_zip:
            from emo.features_store.archive import open_local_zip, remote_zip_store

            if self.is_local:
                open_local_zip(self)
                return zarr.storage.ZipStore(self.path, mode="r", read_only=True)
            return remote_zip_store(self)
        if self.is_local:
            return zarr.storage.LocalStore(self.path, read_only=read_only)
        _quiet_reset_requests()
        return zarr.storage.FsspecStore.from_url(
            self.url, storage_options=self.storage_options or None, read_only=read_only
        )


class _ResetRequestTask(logging.Filter):
    """Drops the record asyncio logs when aiohttp's task writing a request body dies with the connection.

    When an object store goes away in the middle of a request, aiohttp (under s3fs and fsspec's HTTP
    filesystem) leaves the task that writes the request's bytes with a connection-reset error nobody retrieves;
    asyncio logs it with a traceback when the task is collected, possibly long after emo has reported the
    storage error in its own line (``storage_errors``). Only that record: an unretrieved aiohttp connection
    reset. Any other unretrieved task exception still shows.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Task exception was never retrieved") or not record.exc_info:
            return True
        try:
            from aiohttp import ClientConnectionResetError, ClientOSError
        except ImportError:
            return True
        return not isinstance(record.exc_info[1], ClientConnectionResetError | ClientOSError)


_RESET_FILTER = _ResetRequestTask()


def _quiet_reset_requests() -> None:
    """Install :class:`_ResetRequestTask` on asyncio's logger (once) before the first remote store is used."""
    asyncio_log = logging.getLogger("asyncio")
    if _RESET_FILTER not in asyncio_log.filters:
        asyncio_log.addFilter(_RESET_FILTER)


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


def _storage_exceptions() -> tuple[type[BaseException], ...]:
    """What storage backends raise for missing buckets, refused credentials, lost connections, bad zips."""
    import zipfile

    found: list[type[BaseException]] = [OSError, zipfile.BadZipFile]
    for module, names in (("botocore.exceptions", ("BotoCoreError", "ClientError")), ("aiohttp", ("ClientError",))):
        with contextlib.suppress(ImportError):
            imported = __import__(module, fromlist=list(names))
            found += [getattr(imported, n) for n in names]
    return tuple(found)


@contextlib.contextmanager
def storage_errors(*locations: StoreLocation, action: str = "") -> Iterator[None]:
    """Turn errors of the storage libraries (fsspec, s3fs, botocore, aiohttp) into a one-line StoreError.

    Their messages may echo endpoints, signed URLs or keys: every credential of ``locations`` is redacted.
    """
    try:
        yield
    except EmoError:
        raise
    except _storage_exceptions() as exc:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for location in locations:
            text = location.redact(text)
        where = ", ".join(loc.display for loc in locations)
        raise StoreError(f"{action or 'storage error'} ({where}): {text}") from None


_URL_QUERY = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s?#]*)\?[^\s#]*", re.IGNORECASE)


def redact_url_secrets(text: str) -> str:
    """``text`` with what URLs may carry as credentials hidden: user:password@ and query strings (presigned
    signatures, tokens, SAS keys)."""
    return _URL_QUERY.sub(r"\1?***", _USERINFO.sub("***@", text))


def redact_argv(argv: list[str] | tuple[str, ...]) -> list[str]:
    """A command line fit for provenance: credential-like ``--storage-option KEY=VALUE`` values become ``***``,
    and so do credentials inside any URL (user:password@, query strings)."""
    out: list[str] = []
    after_option = False
    for arg in argv:
        flag, eq, inline = arg.partition("=")
        if flag.startswith("--") and flag.endswith("storage-option") and eq:
            out.append(f"{flag}={_redact_item(inline)}")
        elif after_option:
            out.append(_redact_item(arg))
        else:
            out.append(redact_url_secrets(arg))
        after_option = arg.startswith("--") and arg.endswith("storage-option")
    return out


def _redact_item(item: str) -> str:
    key, sep, value = item.partition("=")
    return f"{key}=***" if sep and _SECRET_KEY.search(key) else _USERINFO.sub("***@", item)


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
