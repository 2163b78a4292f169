"""Library errors become readable UI messages (``gr.Error``), without internals or temporary folders."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from ume_mma.errors import DecodeError, UmeMmaError


def readable(fn: Callable) -> Callable:
    """Library errors become gr.Error with the problem in words (the upload's temp folder left out)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DecodeError as exc:
            raise gr.Error(f"{Path(exc.path).name}: {exc.problem}", print_exception=False) from exc
        except UmeMmaError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    return wrapper
