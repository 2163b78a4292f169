"""Training progress as JSON lines, and a clean stop on SIGTERM.

The training process appends one JSON object per line to a progress file (``--progress FILE``); anything
(the jobs CLI, the app) reads it back with :func:`read_progress` while training runs. Events:

- ``start``: ``{"event": "start", "phases": [the phases this run trains, in order], "resume": bool}``
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


def summarize_progress(lines: Iterable[str | dict[str, Any]], tail: int = 20) -> dict[str, Any]:
    """Summary of progress lines: the current ``phase`` with ``epoch``/``epochs`` and ``step``/``steps``, the
    last ``loss`` and ``val_accuracy``, the ``before``/``after`` evaluations (``evals``), the ``phases`` seen
    and the last ``tail`` progress lines (``recent``). Lines that are not progress JSON (other log output, a
    half-written last line) are skipped."""
    summary: dict[str, Any] = {"phase": None, "phases": [], "evals": {}, "recent": [], "lines": 0}
    recent: deque[dict[str, Any]] = deque(maxlen=tail)
    for line in events(lines):
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


def phase_progress(lines: Iterable[str | dict[str, Any]]) -> list[dict[str, Any]]:
    """Per training phase, in order: ``phase``, ``done`` and ``total`` steps and ``state`` (``waiting``,
    ``running``, ``done``), from progress lines (the phases announced by ``start``, then those seen). A phase
    is done when its last step is logged, when a later phase begins, or when the run is done."""
    phases: dict[str, dict[str, Any]] = {}
    finished = False
    for line in events(lines):
        event, name = line.get("event"), line.get("phase")
        if event == "start":
            for planned in line.get("phases") or []:
                phases.setdefault(planned, {"phase": planned, "done": 0, "total": None, "state": "waiting"})
        elif event == "phase" and name:
            for other in phases.values():  # a new phase begins: the earlier ones have ended (or were loaded)
                if other["phase"] == name:
                    break
                if other["state"] != "done":
                    other.update(state="done", done=other["total"] or other["done"])
            steps, epochs = int(line.get("steps") or 0), int(line.get("epochs") or 0)
            start = int(line.get("start_epoch") or 0) * steps
            phases[name] = {"phase": name, "done": start, "total": steps * epochs, "state": "running"}
        elif event in ("step", "epoch") and name in phases:
            row = phases[name]
            steps = int(line.get("steps") or (row["total"] or 0) // max(1, int(line.get("epochs") or 1)))
            epoch = int(line.get("epoch") or 1)
            row["done"] = (epoch - 1) * steps + int(line["step"]) if event == "step" else epoch * steps
            if row["total"] and row["done"] >= row["total"]:
                row["state"] = "done"
        elif event == "done":
            finished = True
    for row in phases.values():
        if finished or (row["total"] == 0 and row["state"] == "running"):
            row.update(state="done", done=row["total"] or row["done"])
    return list(phases.values())


def progress_curve(lines: Iterable[str | dict[str, Any]], max_points: int = 400) -> list[dict[str, Any]]:
    """Points of the live training plot: ``{"x": step over the whole run, "phase", "series": "loss" |
    "val accuracy", "value"}``; the loss of at most ``max_points`` evenly spaced steps, every epoch's accuracy."""
    losses: list[dict[str, Any]] = []
    accs: list[dict[str, Any]] = []
    offset, seen, last_x = 0, {}, {}  # phase -> its first global step; phase -> its latest step's x
    for line in events(lines):
        event, name = line.get("event"), line.get("phase")
        if event == "phase" and name:
            if name not in seen:
                seen[name] = offset
                offset += int(line.get("steps") or 0) * int(line.get("epochs") or 0)
        elif event == "step" and name in seen and isinstance(line.get("loss"), int | float):
            x = last_x[name] = seen[name] + (int(line["epoch"]) - 1) * int(line.get("steps") or 0) + int(line["step"])
            losses.append({"x": x, "phase": name, "series": "loss", "value": float(line["loss"])})
        elif event == "epoch" and name in seen and isinstance(line.get("val_accuracy"), int | float):
            x = last_x.get(name, seen[name])
            accs.append({"x": x, "phase": name, "series": "val accuracy", "value": float(line["val_accuracy"])})
    if len(losses) > max_points:
        stride = len(losses) / max_points
        losses = [losses[int(i * stride)] for i in range(max_points - 1)] + [losses[-1]]
    return losses + accs


def events(lines: Iterable[str | dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """The progress events among ``lines`` (other output and a half-written last line are skipped). Items
    already parsed (dicts) pass through, so a caller parses a log once for several summaries."""
    for text in lines:
        if isinstance(text, dict):
            if "event" in text:
                yield text
            continue
        text = text.strip()
        if not text.startswith("{"):
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict) and "event" in line:
            yield line


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
