"""Upload hygiene: Gradio keeps every uploaded file in its cache folder; this keeps that folder bounded.

``sweep(folder, max_bytes)`` deletes the oldest files (and empty leftovers) until the folder holds at most
``max_bytes``, never touching a file younger than ``min_age_s`` (a request may still be reading it).
``UploadSweeper`` runs it every ``every_s`` seconds in a daemon thread. The app gives each server process its
own upload folder (``GRADIO_TEMP_DIR``) so the sweep never sees another program's files.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SweepResult:
    bytes_before: int
    bytes_after: int
    removed: int


def sweep(folder: str | Path, max_bytes: int, min_age_s: float = 60.0, now: float | None = None) -> SweepResult:
    """Delete empty files, then the least recently modified files, until ``folder`` holds <= ``max_bytes``;
    files modified less than ``min_age_s`` ago are kept whatever the size. Empty sub-folders are removed."""
    root = Path(folder)
    now = time.time() if now is None else now
    files = []
    for path in _entries(root, files=True):
        try:
            if path.is_file() and not path.is_symlink():
                st = path.stat()
                files.append((st.st_mtime, st.st_size, path))
        except OSError:  # removed meanwhile
            continue
    total = before = sum(size for _, size, _ in files)
    removed, emptied = 0, set()
    for mtime, size, path in sorted(files, key=lambda f: (f[1] != 0, f[0])):  # empty files first, then oldest
        if now - mtime < min_age_s or (size and total <= max_bytes):
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed += 1
        emptied.add(path.parent)
    for sub in sorted(_entries(root, files=False), key=lambda p: len(p.parts), reverse=True):
        try:  # a folder we just emptied, or an old one (never a fresh one an upload is about to fill)
            if sub in emptied or now - sub.stat().st_mtime >= min_age_s:
                sub.rmdir()  # only succeeds when empty
        except OSError:
            pass
    return SweepResult(before, total, removed)


def _entries(root: Path, files: bool) -> list[Path]:
    """The files (or the sub-folders) under ``root``; a folder removed during the walk (Gradio's own cache
    cleaning, a request finishing) is skipped, not an error."""
    found = []
    for folder, dirs, names in os.walk(root):  # os.walk ignores folders that vanish meanwhile
        found += [Path(folder, n) for n in (names if files else dirs)]
    return found


class UploadSweeper:
    """Runs :func:`sweep` on ``folder`` every ``every_s`` seconds in a daemon thread until :meth:`stop`."""

    def __init__(self, folder: str | Path, max_bytes: int, every_s: float = 30.0, min_age_s: float = 60.0) -> None:
        self.folder, self.max_bytes, self.every_s, self.min_age_s = Path(folder), max_bytes, every_s, min_age_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="upload-sweeper", daemon=True)

    def start(self) -> UploadSweeper:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            sweep(self.folder, self.max_bytes, self.min_age_s)

    def stop(self) -> None:
        self._stop.set()
