"""The one record of Dask's that a Ctrl-C can make its event loop log (``dask_records.InterruptedSync``): the
bug is reproduced with Dask's own ``sync`` and a real event loop, and only that record is dropped."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import pytest
from distributed.utils import LoopRunner, sync

from emo.pipeline.dask_records import InterruptedSync, logs_filtered


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _in_sync_wait(thread_id: int) -> bool:
    """Whether that thread is blocked in ``sync``'s wait for its coroutine."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame.f_code.co_name == "wait" and frame.f_code.co_qualname == "sync.<locals>.wait":
            return True
        frame = frame.f_back
    return False


def _interrupt_sync_before_its_coroutine_runs(loop_runner: LoopRunner) -> None:
    """Ctrl-C while ``sync`` waits and its coroutine has not taken its first step (the loop is held until the
    KeyboardInterrupt reached the caller): the window in which Dask's ``cancel`` reads an unassigned ``future``."""
    main = threading.get_ident()
    caught = threading.Event()

    def hold_the_loop() -> None:  # runs on the loop's thread, ahead of sync's coroutine
        while not _in_sync_wait(main):
            os.sched_yield()
        os.kill(os.getpid(), signal.SIGINT)
        caught.wait()  # sync has queued its cancel callback before it raised

    async def never_called() -> None:
        return None

    loop_runner.loop.add_callback(hold_the_loop)
    with pytest.raises(KeyboardInterrupt):
        sync(loop_runner.loop, never_called)
    caught.set()
    done = threading.Event()
    loop_runner.loop.add_callback(done.set)  # after cancel: the loop has run it
    done.wait()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals go to the main thread")
def test_a_ctrl_c_inside_dask_sync_logs_nothing_with_the_filter() -> None:
    records = _Records()
    logger = logging.getLogger("tornado.application")
    logger.addHandler(records)
    runner = LoopRunner(asynchronous=False)
    runner.start()
    try:
        _interrupt_sync_before_its_coroutine_runs(runner)
        # without the filter: Dask's bug shows as tornado's ERROR with a NameError traceback
        (bug,) = records.records
        assert bug.levelno == logging.ERROR and isinstance(bug.exc_info[1], NameError), bug.getMessage()
        assert not InterruptedSync().filter(bug)
        records.records.clear()
        with logs_filtered({"tornado.application": InterruptedSync()}):
            _interrupt_sync_before_its_coroutine_runs(runner)
            assert records.records == []

            def other_failure() -> None:
                raise NameError("name 'future' is not defined", name="future")

            runner.loop.add_callback(other_failure)  # any other callback's error still shows
            done = threading.Event()
            runner.loop.add_callback(done.set)
            done.wait()
        (other,) = records.records
        assert "other_failure" in other.getMessage()
    finally:
        runner.stop()
        logger.removeHandler(records)
