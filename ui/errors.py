"""Library errors become readable UI messages (``gr.Error``), without internals or temporary folders."""

from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from ume_mma.errors import DecodeError, StoreError, UmeMmaError

_ABSOLUTE = re.compile(r"(?<![\w.:/])/(?:[^\s'\"():,]+/)+([^\s'\"():,]+)")


def without_folders(message: str) -> str:
    """``message`` with every absolute path cut to its last part (``/srv/x/annotations.db`` -> ``annotations.db``)."""
    return _ABSOLUTE.sub(r"\1", message)


_DATABASE_URL = re.compile(r"\bpostgres(?:ql)?(?:\+\w+)?://[^\s'\"]*[^\s'\",;:.)]")


def _server_folders() -> list[str]:
    """The folders of this server a message must not name: the app's, the working directory, the temporary and
    upload folders, the home folder, the Python environment (longest first)."""
    app = Path(__file__).resolve().parent.parent
    folders = {app, Path.cwd(), Path(tempfile.gettempdir()), Path.home(), Path(sys.prefix)}
    if os.environ.get("GRADIO_TEMP_DIR"):
        folders.add(Path(os.environ["GRADIO_TEMP_DIR"]))
    if os.environ.get("UME_MMA_HOME"):
        folders.add(Path(os.environ["UME_MMA_HOME"]))
    names = {str(f) for f in folders} | {str(f.resolve()) for f in folders}
    return sorted((n for n in names if len(Path(n).parts) > 1), key=len, reverse=True)


def scrub(message: str) -> str:
    """``message`` without this server's paths: a path under one of its folders becomes its last part
    (``/tmp/ume-mma-uploads-x/ab/bad.wav`` -> ``bad.wav``), a database URL ``the PostgreSQL database``. Paths the
    caller named outside those folders (``'/etc' is not served here``) stay as given."""
    message = _DATABASE_URL.sub("the PostgreSQL database", message)
    for folder in _server_folders():
        pattern = re.escape(folder) + r"(?:/[^\s'\",;:)]*)?"
        message = re.sub(pattern, lambda m: Path(m.group(0)).name or "the server", message)
    return message


def readable(fn: Callable) -> Callable:
    """Library errors become gr.Error with the problem in words, naming no server path (:func:`scrub`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DecodeError as exc:
            raise gr.Error(f"{Path(exc.path).name}: {scrub(exc.problem)}", print_exception=False) from exc
        except StoreError as exc:  # names the database file, not where it lives on the server
            raise gr.Error(without_folders(scrub(str(exc))), print_exception=False) from exc
        except UmeMmaError as exc:
            raise gr.Error(scrub(str(exc)), print_exception=False) from exc

    return wrapper
