"""Dask preload of the worker processes of emo's embedded LocalCluster: Ctrl-C belongs to the driver.

A terminal sends Ctrl-C to its whole foreground process group, which includes the embedded cluster's worker
processes. The driver owns the interrupt: it stops taking results, commits the rows it has and shuts the
cluster down. A worker interrupted by the same keystroke would only die with a traceback on the user's
terminal, in the middle of a clip or of loading its models. Workers of a scheduler the user started
themselves (``--scheduler``) never load this module: their Ctrl-C stays theirs.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

#: What a Dask worker logs, with a traceback, when a heartbeat to its scheduler fails.
HEARTBEAT_FAILED = "Failed to communicate with scheduler during heartbeat"


class _HeartbeatAfterScheduler(logging.Filter):
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


def dask_setup(worker: Any) -> None:
    """Dask's preload hook: runs in the worker process's main thread as the worker starts."""
    logging.getLogger("distributed.worker").addFilter(_HeartbeatAfterScheduler(worker))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if hasattr(signal, "pthread_sigmask"):
            # the process was born with SIGINT blocked (``runner._sigint_blocked``): a Ctrl-C pressed while it
            # imported is discarded now that the signal is ignored, and the thread's mask is the usual one again
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
