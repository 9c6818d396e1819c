"""Ctrl-C held over a section and raised when it ends (emo.interrupt)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from emo.interrupt import deferred_interrupt


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs in this (main) thread at the next bytecode


def test_ctrl_c_is_raised_when_the_section_ends() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            _ctrl_c()
            done.append("rest of the section")
        done.append("after")  # never runs
    assert done == ["rest of the section"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nested_sections_raise_once_the_outermost_ends() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), deferred_interrupt():
        with deferred_interrupt():
            _ctrl_c()
        done.append("outer section goes on")
    assert done == ["outer section goes on"]


def test_no_ctrl_c_no_exception_and_the_handler_is_restored() -> None:
    with deferred_interrupt():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_the_main_thread_the_section_just_runs() -> None:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            with deferred_interrupt():
                pass
        except BaseException as exc:  # noqa: BLE001 - signal.signal would raise ValueError off the main thread
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert errors == []
