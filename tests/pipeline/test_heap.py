"""``heap.release_free_memory``: memory a process freed inside glibc's heap goes back to the OS."""

from __future__ import annotations

import platform

import psutil
import pytest

from emo.pipeline.heap import release_free_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_memory_is_returned() -> None:
    process = psutil.Process()
    # 100 KiB blocks stay below glibc's mmap threshold: they come from the heap, and the last one, still held,
    # pins its top, so glibc keeps the 150 MB freed below it until asked
    blocks = [bytearray(b"x" * 100_000) for _ in range(1500)]
    pin = blocks.pop()
    release_free_memory()
    held = process.memory_info().rss
    del blocks
    freed = process.memory_info().rss  # freed, but kept by glibc
    assert release_free_memory() is True
    released = process.memory_info().rss
    assert held - freed < 20_000_000 < 100_000_000 < held - released, (held, freed, released)
    assert len(pin) == 100_000
