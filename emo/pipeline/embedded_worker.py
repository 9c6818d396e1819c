"""Dask preload of the worker processes of emo's embedded LocalCluster: Ctrl-C belongs to the driver, and
triton is never loaded.

A terminal sends Ctrl-C to its whole foreground process group, which includes the embedded cluster's worker
processes. The driver owns the interrupt: it stops taking results, commits the rows it has and shuts the
cluster down. A worker interrupted by the same keystroke would only die with a traceback on the user's
terminal, in the middle of a clip or of loading its models. Workers of a scheduler the user started
themselves (``--scheduler``) never load this module: their Ctrl-C stays theirs.

triton is the GPU kernel compiler of ``torch.compile``, which no stage of emo runs. torchvision imports
``torch._dynamo``, which imports triton only to ask whether it is installed; loading it costs each worker 85 MB
of resident memory. A worker emo started for itself records triton as absent, the way Python's import system
documents (``None`` in ``sys.modules``), so torch answers "not installed" without loading it.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from emo.pipeline.dask_records import HeartbeatAfterScheduler, PluginSetupRefused


def dask_setup(worker: Any) -> None:
    """Dask's preload hook: runs in the worker process's main thread as the worker starts."""
    sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
    logging.getLogger("distributed.worker").addFilter(HeartbeatAfterScheduler(worker))
    logging.getLogger("distributed.worker").addFilter(PluginSetupRefused())
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if hasattr(signal, "pthread_sigmask"):
            # the process was born with SIGINT blocked (``runner._sigint_blocked``): a Ctrl-C pressed while it
            # imported is discarded now that the signal is ignored, and the thread's mask is the usual one again
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
