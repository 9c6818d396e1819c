"""Giving the heap memory a process has freed back to the operating system (glibc's ``malloc_trim``, and
``M_MMAP_THRESHOLD`` for the extraction driver).

emo's workers keep glibc's adaptive allocator (``runner.dask_client``): large tensors are then served from the
heap instead of fresh mappings, which is faster, but glibc keeps what they freed. After loading the models
(whose warm-up passes leave ~100 MB of freed activations), after each clip's audio and after the video pass
(``process.process_clips``), a worker hands that memory back, so that what the audio stage freed is not still
held while the video stage peaks, nor the video stage's while the driver receives the results. A few calls per
clip: trimming once per batch of frames was slower (every batch then faults its pages in again; README,
Performance).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (``malloc_trim`` and ``mallopt`` are glibc's), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None  # musl, macOS and Windows allocators have no such calls (and return memory by themselves)
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS; False where the C library cannot (nothing happens then)."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


#: glibc's ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (malloc.h)
_M_MMAP_THRESHOLD = -3


def unmap_large_blocks(threshold: int = 256 << 10) -> bool:
    """Serve every allocation of ``threshold`` bytes or more from a mapping of its own, handed back to the OS when
    it is freed (glibc's ``M_MMAP_THRESHOLD``), for the rest of the process; False where the C library cannot.

    For emo's extraction driver, not its workers: glibc raises its threshold to the largest block freed, up to
    32 MB, and keeps later blocks below it in the heap after they are freed. The writer's chunk buffers (up to
    17 MB each) then stay resident: 68 MB after the first commit of a 3-minute clip, 2 MB with this.
    """
    libc = _glibc()
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)) if libc is not None else False
