"""A model's label history (``ModelConfig.label_history``): which labels came from which base or data.

``[{"source": "checkpoints/av-digits", "labels": ["0", ..., "9"]}, {"source": "data/commands", "labels": ["stop"]}]``:
the entries' labels, in order, are exactly the model's labels (a grown label set appends; :mod:`ume_mma.labelgrow`).
"""

from __future__ import annotations

from typing import Any


def check_history(history: Any, labels: list[str]) -> None:
    """Raise ``ValueError`` unless ``history`` is ``[{"source": str, "labels": [str, ...]}, ...]`` whose labels,
    in order, are exactly ``labels``."""
    ok = isinstance(history, list) and all(
        isinstance(h, dict) and set(h) == {"source", "labels"} and isinstance(h["source"], str)
        and isinstance(h["labels"], list) for h in history
    )  # fmt: skip
    if not ok or [label for h in history for label in h["labels"]] != list(labels):
        raise ValueError(f"label_history must list each label once, in label order, with its source; got {history!r}")


def card_line(label_history: list[dict] | None) -> list[str]:
    """The model card's line on where the labels came from (none without a history)."""
    if not label_history:
        return []
    parts = [f"{', '.join(h['labels'])} from `{h['source']}`" for h in label_history]
    return ["- **Label history:** " + "; ".join(parts)]
