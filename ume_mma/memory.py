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


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS (glibc ``malloc_trim(0)``); False where there is no such call."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
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
