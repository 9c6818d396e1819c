"""One writer per store: an advisory lock that a crashed writer cannot leave stuck.

Local stores use ``flock`` on a file inside the store: the kernel releases it when the writing process
dies, whatever the cause (SIGKILL included). Object stores have no locks, so there the lock is a lease
object carrying a heartbeat that the writer renews; a lease older than ``LEASE_TTL_S`` is considered
abandoned.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any

from emo.errors import StoreError
from emo.features_store.location import StoreLocation

LOCK_NAME = ".emo-writer.lock"
LEASE_TTL_S = 300.0


def _owner() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
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
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                owner = {}
            os.close(fd)
            raise StoreError(held_message(self.location, owner)) from None
        self._owner = _owner()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self._owner).encode(), 0)
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
            if time.time() - float(owner.get("heartbeat", 0)) < LEASE_TTL_S:
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
        if self._fd is not None:
            import fcntl

            # the file stays (unlinking it would let two processes lock two different inodes)
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        elif self._owner is not None:
            fs, key = self._fs()
            fs.rm_file(key)
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

        path = location.path / LOCK_NAME
        if not path.is_file():
            return None
        fd = os.open(path, os.O_RDONLY)
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
    return owner if time.time() - float(owner.get("heartbeat", 0)) < LEASE_TTL_S else None
