"""Library errors become readable UI messages (``gr.Error``), without internals or temporary folders."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from ume_mma.errors import DecodeError, StoreError, UmeMmaError

_ABSOLUTE = re.compile(r"(?<![\w.:/])/(?:[^\s'\"():,]+/)+([^\s'\"():,]+)")


def without_folders(message: str) -> str:
    """``message`` with every absolute path cut to its last part (``/srv/x/annotations.db`` -> ``annotations.db``)."""
    return _ABSOLUTE.sub(r"\1", message)


def readable(fn: Callable) -> Callable:
    """Library errors become gr.Error with the problem in words (the upload's temp folder left out)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DecodeError as exc:
            raise gr.Error(f"{Path(exc.path).name}: {exc.problem}", print_exception=False) from exc
        except StoreError as exc:  # names the database file, not where it lives on the server
            raise gr.Error(without_folders(str(exc)), print_exception=False) from exc
        except UmeMmaError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    return wrapper
