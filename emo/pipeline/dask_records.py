"""The records of Dask's that emo drops, each by its logger and its text, and why: every one is a message Dask
logs with a traceback on a path emo has handled in order (a lost scheduler, a killed worker, a worker stopping
after its scheduler, a Ctrl-C, a worker refusing its models with emo's own error), where the user gets emo's
own one-line account instead. Nothing broader is filtered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from emo.errors import EmoError

#: What a Dask worker logs, with a traceback, when a heartbeat to its scheduler fails.
HEARTBEAT_FAILED = "Failed to communicate with scheduler during heartbeat"


class HeartbeatAfterScheduler(logging.Filter):
    """Drops the worker's "heartbeat failed" record once the worker is stopping or its scheduler is gone.

    The embedded scheduler lives in the driver and is closed after its workers were told to stop and were
    waited for (``LocalCluster.close``). A heartbeat already on its way when the driver's process winds down on
    an overloaded machine still fails (seen once under a full test suite on 2 busy cores), and the worker logs
    it as an ERROR with a traceback after the driver has reported how the run ended. Only that record, only in
    these workers, and only then: a heartbeat failing while worker and scheduler are up still shows.
    """

    def __init__(self, worker: Any) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(HEARTBEAT_FAILED):
            return True
        stream = getattr(self.worker, "batched_stream", None)
        comm = getattr(stream, "comm", None)
        scheduler_gone = comm is None or comm.closed()
        return self.worker.status.name == "running" and not scheduler_gone


class PluginSetupRefused(logging.Filter):
    """Drops the record a worker logs when emo's extractor plugin refuses to set up with one of emo's own
    errors (``EmoError``: weights whose bf16 embeddings move, a weights file that changed, a model that is
    missing). Dask's ``Worker.plugin_add`` logs every exception of a plugin's ``setup`` as an ERROR with a
    traceback before it hands the error to the client, and has no quieter way to refuse. The driver re-raises
    that error and stops with its one line (exit 2). Only that record, and only for an ``EmoError``: any other
    exception there is a bug, and its traceback still shows."""

    SETUP_FAILED = "Worker plugin %s failed to setup"

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (record.msg == self.SETUP_FAILED and isinstance(exc, EmoError))


class ReconnectCancelled(logging.Filter):
    """Drops the two records Dask's client logs when its scheduler is gone for good. The client then cancels
    every future and keeps reconnecting for its timeout; the run stops with its own one-line error
    (``ClusterLost``) and closes the client. Depending on which comes first, Dask reports the end of that
    reconnection as an ERROR: "Failed to reconnect to scheduler after ... seconds, closing client", or, when
    the close cancels it, a ``CancelledError`` with a traceback. Dask has no way to close a reconnecting client
    silently, so exactly these two records of ``distributed.client`` are dropped; nothing else of Dask's is."""

    GAVE_UP = "Failed to reconnect to scheduler after %.2f seconds, closing client"

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, asyncio.CancelledError) or record.msg == self.GAVE_UP)


class RecomputedResult(logging.Filter):
    """Drops the record the embedded scheduler logs when the driver asks for a task's result that a killed
    worker held: between a task finishing and the driver fetching its result there is a moment where only that
    worker has it. Dask then runs the task again and hands the driver the new result (every clip arrives exactly
    once: ``tests/pipeline/test_faults.py``), but first logs "Couldn't gather keys" as an ERROR. Only that
    record, and only when every key it names is still known to the scheduler (its dead holder not yet noticed,
or computing again); a key the scheduler has forgotten still shows."""

    RECOVERING = frozenset({"memory", "released", "waiting", "queued", "no-worker", "processing"})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "Couldn't gather keys: %s":
            return True
        states = record.args  # logging unpacks a lone mapping argument
        return not (isinstance(states, dict) and states and set(states.values()) <= self.RECOVERING)


class InterruptedSync(logging.Filter):
    """Drops the record of a bug in Dask's ``distributed.utils.sync`` (2026.8.0), the call through which every
    blocking client method waits. When a Ctrl-C interrupts that wait, ``sync`` schedules a ``cancel`` callback
    on the client's event loop, which reads a ``future`` variable its coroutine assigns only once it has started
    the awaited call, after a first step that yields to the loop. A Ctrl-C inside that window (wider when the
    machine is loaded) makes ``cancel`` raise ``NameError`` in the loop, which tornado logs as an ERROR with a
    traceback, while the KeyboardInterrupt itself reaches emo and the run stops as it should. Only that record:
    tornado's "Exception in callback" for ``sync``'s own ``cancel`` failing with a ``NameError`` on ``future``."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not (isinstance(exc, NameError) and exc.name == "future" and record.msg == "Exception in callback %r"):
            return True
        callback = record.args[0] if isinstance(record.args, tuple) and record.args else None
        func = getattr(callback, "func", callback)
        return not (
            getattr(func, "__module__", "") == "distributed.utils"
            and getattr(func, "__qualname__", "") == "sync.<locals>.cancel"
        )


@contextmanager
def logs_filtered(filters: dict[str, logging.Filter]) -> Iterator[None]:
    """The filters on their loggers for the block (each drops one record of Dask's; see its docstring)."""
    for name, record_filter in filters.items():
        logging.getLogger(name).addFilter(record_filter)
    try:
        yield
    finally:
        for name, record_filter in filters.items():
            logging.getLogger(name).removeFilter(record_filter)
