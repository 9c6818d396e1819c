"""One writer per store: an advisory lock that a crashed writer cannot leave stuck.

Local stores use ``flock`` on a file inside the store: the kernel releases it when the writing process
dies, whatever the cause (SIGKILL included). The writer deletes the file when it is done, so a finished store
holds nothing but Zarr's own files (plain ``zarr`` warns about any other object it meets). Object stores have
no locks, so there the lock is a lease object carrying a heartbeat that the writer renews; a lease older than
``LEASE_TTL_S`` is considered abandoned, and so is one whose writer process on this very host is gone (a
writer that could not delete its lease because the storage went away leaves it behind).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from typing import Any

from emo.errors import StoreError
from emo.features_store.location import StoreLocation

log = logging.getLogger(__name__)

LOCK_NAME = ".emo-writer.lock"
LEASE_TTL_S = 300.0


def _started(pid: int) -> float | None:
    """Start time of process ``pid`` on this host (None if there is none): a pid reused later starts later."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _owner() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "started": _started(os.getpid()),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "heartbeat": time.time(),
        "token": uuid.uuid4().hex,
    }


def held_message(location: StoreLocation, owner: dict[str, Any]) -> str:
    """Why a store cannot be written now: who holds its writer lock."""
    who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, since {owner.get('since', '?')}"
    return (
        f"store {location.display} is being written by another process ({who}); "
        "wait for it to finish or stop it, then run again"
    )


class StoreLock:
    """Exclusive writer lock on a store; use as a context manager or call acquire/release."""

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self._fd: int | None = None
        self._owner: dict[str, Any] | None = None

    def acquire(self) -> StoreLock:
        if self.location.is_local:
            self._acquire_local()
        else:
            self._acquire_lease()
        return self

    def _acquire_local(self) -> None:
        import fcntl

        root = self.location.path
        root.mkdir(parents=True, exist_ok=True)
        path = root / LOCK_NAME
        while True:
            # read-only: flock needs no write access, and a writer holding no file open for writing between its
            # commits lets an administrator remount the file system read-only under it
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
                except ValueError:
                    owner = {}
                os.close(fd)
                raise StoreError(held_message(self.location, owner)) from None
            # the writer before us may have deleted the file between our open and our lock: a lock on a deleted
            # file excludes nobody, so lock the file that is there now
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._owner = _owner()
        try:
            with open(path, "w") as out:
                out.write(json.dumps(self._owner))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _fs(self):  # noqa: ANN202 - fsspec filesystem
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.location.url, **self.location.storage_options)
        return fs, f"{root.rstrip('/')}/{LOCK_NAME}"

    def _acquire_lease(self) -> None:
        fs, key = self._fs()
        if fs.exists(key):
            try:
                owner = json.loads(fs.cat_file(key))
            except ValueError:
                owner = {}
            if _lease_alive(owner):
                raise StoreError(held_message(self.location, owner))
        self._owner = _owner()
        fs.pipe_file(key, json.dumps(self._owner).encode())
        fs.invalidate_cache()
        if json.loads(fs.cat_file(key)).get("token") != self._owner["token"]:
            raise StoreError(held_message(self.location, json.loads(fs.cat_file(key))))

    def heartbeat(self) -> None:
        """Renew the lease (object stores); a no-op for local stores, where the kernel holds the lock."""
        if self._owner is not None and self._fd is None:
            fs, key = self._fs()
            self._owner["heartbeat"] = time.time()
            fs.pipe_file(key, json.dumps(self._owner).encode())

    def release(self) -> None:
        """Give the lock up; never raises (a store whose storage failed is left to the lease's expiry)."""
        if self._fd is not None:
            import fcntl

            # deleted while still locked: whoever locks the file next checks it is still the one at the path
            with contextlib.suppress(OSError):  # a read-only or vanished directory: closing unlocks anyway
                os.unlink(self.location.path / LOCK_NAME)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        elif self._owner is not None:
            try:
                fs, key = self._fs()
                fs.rm_file(key)
            except Exception as exc:  # noqa: BLE001 - storage gone: the lease expires or is taken over
                log.warning(
                    "could not remove the writer's lease of %s (%s); it is taken over by the next writer on this host, "
                    "or once it expires after %.0f s", self.location.display, type(exc).__name__, LEASE_TTL_S
                )
        self._owner = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def active_writer(location: StoreLocation) -> dict[str, Any] | None:
    """The owner of a live writer lock on a store, or None (zips and plain HTTP stores are never written).

    Used by readers that need a stable store (copy): checking does not take the lock away from anyone.
    """
    if location.read_only:
        return None
    if location.is_local:
        import fcntl

        try:
            fd = os.open(location.path / LOCK_NAME, os.O_RDONLY)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                return {}
        finally:
            os.close(fd)  # closing releases a shared lock we got
        return None
    fs, key = StoreLock(location)._fs()
    if not fs.exists(key):
        return None
    try:
        owner = json.loads(fs.cat_file(key))
    except ValueError:
        return None
    return owner if _lease_alive(owner) else None


def _lease_alive(owner: dict[str, Any]) -> bool:
    """Whether a lease still excludes other writers: renewed within ``LEASE_TTL_S``, and, when its writer ran on
    this host, that process still running (same pid and start time)."""
    if time.time() - float(owner.get("heartbeat", 0)) >= LEASE_TTL_S:
        return False
    if owner.get("host") == socket.gethostname() and "pid" in owner and "started" in owner:
        return _started(int(owner["pid"])) == owner["started"]
    return True
