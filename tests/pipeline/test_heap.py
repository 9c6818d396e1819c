"""``emo.pipeline.heap``: memory a process freed inside glibc's heap goes back to the OS."""

from __future__ import annotations

import platform
import subprocess
import sys

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


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="M_MMAP_THRESHOLD is glibc's")
def test_large_blocks_go_back_to_the_os_when_freed() -> None:
    # in a child: the setting is for the rest of the process (emo's extraction driver), not for pytest's
    code = """
import numpy as np, psutil
from emo.pipeline.heap import unmap_large_blocks
process = psutil.Process()
SETTING
for _ in range(2):  # after the first round, glibc's adaptive threshold serves such blocks from its heap
    blocks = [np.ones(2_000_000, np.uint8) for _ in range(50)]
    pin = blocks.pop()  # in the heap, the last block pins the freed ones below it
    held = process.memory_info().rss
    del blocks
print(held - process.memory_info().rss)
"""
    freed = {}
    for setting in ("assert unmap_large_blocks() is True", "pass"):
        proc = subprocess.run(
            [sys.executable, "-c", code.replace("SETTING", setting)], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        freed[setting] = int(proc.stdout)
    assert freed["pass"] < 20_000_000 < 90_000_000 < freed["assert unmap_large_blocks() is True"], freed
