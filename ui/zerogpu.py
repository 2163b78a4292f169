"""ZeroGPU: on a Space with ``hardware: zero-a10g`` the Hub sets ``SPACES_ZERO_GPU=true`` and a GPU is attached
only while a function wrapped with ``spaces.GPU`` runs. :func:`gpu` wraps the app's prediction handlers with
it there, and is the function itself anywhere else (``cpu-basic``, a local machine: ``spaces`` is not even
imported)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

DURATION_S = 60  # the longest a prediction may hold the GPU


def zero_gpu() -> bool:
    """Whether this process runs on a ZeroGPU Space."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def gpu(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``spaces.GPU(fn)`` on ZeroGPU, else ``fn`` unchanged."""
    if not zero_gpu():
        return fn
    import spaces  # preinstalled on Spaces

    return spaces.GPU(fn, duration=DURATION_S)
