"""Training progress as JSON lines, and a clean stop on SIGTERM.

The training process appends one JSON object per line to a progress file (``--progress FILE``); anything
(the jobs CLI, the app) reads it back with :func:`read_progress` while training runs. Events:

- ``start``: ``{"event": "start", "phases": [...], "resume": bool}``
- ``phase``: a phase begins: ``phase``, ``epochs``, ``steps`` (per epoch), ``start_epoch``
- ``step``: ``phase``, ``epoch`` (1-based), ``step`` (1-based, within the epoch), ``steps``, ``loss``
- ``epoch``: an epoch ends: ``phase``, ``epoch``, ``epochs``, ``loss`` (mean), ``val_accuracy`` (full modality)
- ``eval``: ``name`` (``before``: the base checkpoint; ``after``: the chosen model), ``accuracy`` (test split)
- ``stopped``: SIGTERM was handled: state saved at ``phase``/``epoch``/``step``
- ``done``: ``chosen``, ``test_accuracy``

Every line also has ``time`` (seconds since the epoch). A reader tolerates a half-written last line.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

EXIT_STOPPED = 143  # 128 + SIGTERM: the trainer saved its state and stopped on request


class ProgressLog:
    """Appends JSON lines to ``path`` (no-op when ``path`` is None or ``enabled`` is False), flushed per line."""

    def __init__(self, path: str | os.PathLike[str] | None, enabled: bool = True) -> None:
        self.path = Path(path) if path is not None and enabled else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def write(self, event: str, **fields: Any) -> None:
        """Append ``{"time", "event", **fields}`` as one line."""
        if self.path is None:
            return
        line = json.dumps({"time": round(time.time(), 3), "event": event, **fields}, sort_keys=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def read_progress(path: str | os.PathLike[str], tail: int = 20) -> dict[str, Any]:
    """:func:`summarize_progress` of a progress file (a missing file gives an empty summary)."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []
    return summarize_progress(lines, tail)


def summarize_progress(lines: Iterable[str], tail: int = 20) -> dict[str, Any]:
    """Summary of progress lines: the current ``phase`` with ``epoch``/``epochs`` and ``step``/``steps``, the
    last ``loss`` and ``val_accuracy``, the ``before``/``after`` evaluations (``evals``), the ``phases`` seen
    and the last ``tail`` progress lines (``recent``). Lines that are not progress JSON (other log output, a
    half-written last line) are skipped."""
    summary: dict[str, Any] = {"phase": None, "phases": [], "evals": {}, "recent": [], "lines": 0}
    recent: deque[dict[str, Any]] = deque(maxlen=tail)
    for text in lines:
        text = text.strip()
        if not text.startswith("{"):
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if not isinstance(line, dict) or "event" not in line:
            continue
        summary["lines"] += 1
        recent.append(line)
        _fold(summary, line)
    summary["recent"] = list(recent)
    return summary


def _fold(summary: dict[str, Any], line: dict[str, Any]) -> None:
    """Update ``summary`` with one progress line."""
    event = line.get("event")
    if event == "phase":
        summary["phase"] = line.get("phase")
        summary["phases"].append(line.get("phase"))
        summary.update(epochs=line.get("epochs"), steps=line.get("steps"), epoch=line.get("start_epoch", 0), step=0)
    elif event == "step":
        summary.update({k: line.get(k) for k in ("phase", "epoch", "step", "steps", "loss")})
    elif event == "epoch":
        summary.update({k: line.get(k) for k in ("phase", "epoch", "epochs", "val_accuracy")})
    elif event == "eval":
        summary["evals"][line.get("name")] = line.get("accuracy")
    elif event in ("stopped", "done"):
        summary["last_event"] = event
        if event == "done":
            summary.update(chosen=line.get("chosen"), test_accuracy=line.get("test_accuracy"))


class StopRequest:
    """Set by SIGTERM: the trainer checks :attr:`requested` at every step boundary, saves its state and exits
    with :data:`EXIT_STOPPED`. Installing it outside the main thread does nothing (signals go to the main thread)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def install(self) -> StopRequest:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler (e.g. training inside a test thread)
            self._previous = None
        return self

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True


class Stopped(Exception):
    """Raised inside the trainer after the state was saved on a stop request (not an error of the input)."""
