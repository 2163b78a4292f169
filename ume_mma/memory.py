"""Keeping a long-running server's resident memory low: freed memory goes back to the OS, unused GPU compilers
stay unloaded.

Loading a checkpoint frees large temporaries: a text encoder's random initialisation replaced by its pretrained
weights, CTranslate2's float16 file converted to float32, parsed JSON and tokenizer files. glibc keeps freed heap
memory for reuse instead of returning it (its mmap threshold grows after large frees, so later large blocks land
on the heap too), and the process's resident memory stays at its peak. ``malloc_trim(0)`` returns the free
pages of every arena; it changes no allocation that is still in use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from typing import Any


@functools.cache
def _libc() -> Any:
    """The C library when it is glibc (the one with ``malloc_trim``), else None (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33+): byte counts of the C heap, summed over every arena."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def free_heap_bytes() -> int | None:
    """Bytes of the C heap that are free but still held by the process (glibc ``mallinfo2().fordblks``, every
    arena; a few microseconds); None where glibc has no ``mallinfo2`` (before 2.33, or not glibc)."""
    libc = _libc()
    info = getattr(libc, "mallinfo2", None) if libc is not None else None
    if info is None:
        return None
    info.restype = _MallInfo2
    return int(info().fordblks)


_free_after_trim = 0  # free heap bytes right after the last trim (trimmed pages still count as free chunks)


def release_free_memory(min_free_bytes: int = 0) -> bool:
    """Return the C heap's free pages to the OS (glibc ``malloc_trim(0)``) when more than ``min_free_bytes`` were
    freed since the last trim (always where that cannot be read, and for 0); returns whether it trimmed (False
    where there is no such call). Trimmed pages stay free chunks of the heap, so what counts is the growth of the
    free bytes since the last trim. A threshold keeps a small call cheap: trimming after every small allocation
    costs ~0.4 ms and the page faults of the next call that touches those pages again, for a few MB the process
    would reuse anyway."""
    global _free_after_trim
    libc = _libc()
    if libc is None:
        return False
    if min_free_bytes > 0:
        free = free_heap_bytes()
        if free is not None and free - _free_after_trim <= min_free_bytes:
            _free_after_trim = min(_free_after_trim, free)  # reused since: count new frees from here
            return False
    libc.malloc_trim(0)
    _free_after_trim = free_heap_bytes() or 0
    return True


def skip_triton() -> bool:
    """Make ``import triton`` fail in this process, so that torch and transformers treat Triton as absent.

    Triton compiles GPU kernels for ``torch.compile``; a process that runs models on the CPU never uses it, yet
    ``torch._dynamo`` imports it whenever it is installed (transformers imports ``torch._dynamo``; the CUDA build
    of torch installs Triton), which maps 76 MB of ``libtriton.so``. ``sys.modules["triton"] = None`` is Python's
    way to block an import (it raises ImportError; ``importlib.util.find_spec`` answers None). Call it before
    anything imports Triton; returns whether Triton is blocked now (False: it was imported already)."""
    if "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]
    return sys.modules["triton"] is None
