"""Served inputs kept for annotation: when a prediction is ``uncertain`` (no present branch is estimated likely
right, :mod:`ume_mma.correctness`), the server may keep its inputs in a folder of the one dataset format,
without labels, for ``python -m ume_mma.annotate import FOLDER --queue uncertain`` to turn into a queue.

Opt-in (``app.py --keep-uncertain FOLDER``): a server keeps nothing unless told to. Each kept input is one line
of ``metadata.jsonl`` (no ``label``; ``meta`` holds the checkpoint, the fused answer and each branch's label and
estimate) and a copy of its media files under ``media/``, named by their content hash: the same input served
twice is kept once. Lines are appended whole (one ``write`` under a lock, then ``fsync``), so a crash never
leaves half a line; at most ``max_rows`` inputs are kept (then :meth:`UncertainLog.keep` keeps no more).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ume_mma.data.format import FILE_MODALITIES, METADATA
from ume_mma.prediction import Prediction

MAX_ROWS = 10_000


class UncertainLog:
    """Keep the inputs of uncertain predictions in ``folder`` (created on first use)."""

    def __init__(self, folder: str | os.PathLike[str], max_rows: int = MAX_ROWS) -> None:
        self.folder = Path(folder)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._ids: set[str] | None = None

    def _known(self) -> set[str]:
        if self._ids is None:
            meta = self.folder / METADATA
            lines = meta.read_text(encoding="utf-8").splitlines() if meta.is_file() else []
            self._ids = {json.loads(line)["id"] for line in lines if line.strip()}
        return self._ids

    def keep(self, inputs: Mapping[str, Any], prediction: Prediction) -> str | None:
        """Keep ``inputs`` (modality -> file path, or text) of an uncertain ``prediction``; returns the kept row's
        id, or None when the prediction is not uncertain, the input was kept before or the log is full."""
        if not prediction.uncertain:
            return None
        files = {m: Path(v) for m, v in inputs.items() if m in FILE_MODALITIES and v}
        text = inputs.get("text") or None
        digest = hashlib.sha256()
        for m in sorted(files):
            digest.update(m.encode() + b"\0" + hashlib.sha256(files[m].read_bytes()).digest())
        if text is not None:
            digest.update(b"text\0" + str(text).encode("utf-8"))
        row_id = "served-" + digest.hexdigest()[:16]
        with self._lock:
            known = self._known()
            if row_id in known or len(known) >= self.max_rows:
                return None
            (self.folder / "media").mkdir(parents=True, exist_ok=True)
            row: dict[str, Any] = {"id": row_id}
            for m, path in sorted(files.items()):
                name = f"media/{row_id}-{m}{path.suffix.lower()}"
                shutil.copyfile(path, self.folder / name)
                row[m] = name
            if text is not None:
                row["text"] = str(text)
            row["meta"] = {
                "served": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "checkpoint": prediction.checkpoint,
                "fused": prediction.fused.label,
                "branches": {
                    m: {"label": b.label, "estimated_accuracy": b.estimated_accuracy}
                    for m, b in sorted(prediction.branches.items())
                },
            }
            line = json.dumps(row, ensure_ascii=False) + "\n"
            with open(self.folder / METADATA, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            known.add(row_id)
        return row_id
