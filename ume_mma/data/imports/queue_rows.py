"""Reading an annotation queue for an export: its items in file order, each with its inputs, the stored
prediction and the current (not undone) annotations. Read-only; the store's tables are not changed."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ume_mma.annotate import AnnotationQueue, schema
from ume_mma.data.format import FILE_MODALITIES
from ume_mma.data.imports.staging import ImportRefused


def queue_rows(store: Any, queue: str) -> tuple[list[str], list[dict[str, Any]]]:
    """``(the queue's labels, rows)``; a row: ``item``, ``sample``, ``inputs`` (modality -> media ref or the
    text), ``prediction`` (``Prediction.to_dict()`` or None) and ``annotations`` (``label``, ``annotator``, oldest
    first). An unknown or empty queue is refused."""
    q = AnnotationQueue(store, queue)
    if not q.exists:
        raise ImportRefused(f"no queue {queue!r} in this store")
    i, s, a = schema.queue_items, schema.samples, schema.annotations
    query = (
        sa.select(i.c.id, i.c.sample_id, i.c.prediction, s.c.text, *(s.c[m] for m in FILE_MODALITIES))
        .join(s, s.c.id == i.c.sample_id)
        .where(i.c.queue_id == q.id)
        .order_by(i.c.position)
    )
    with store.transaction() as conn:
        items = list(conn.execute(query).mappings())
        ids = [r["id"] for r in items]
        anns = conn.execute(
            sa.select(a.c.item_id, a.c.label, a.c.annotator)
            .where(a.c.item_id.in_(ids), a.c.undone_at.is_(None))
            .order_by(a.c.created_at, a.c.id)
        ).mappings()
        by_item: dict[int, list[dict[str, Any]]] = {}
        for ann in anns:
            by_item.setdefault(ann["item_id"], []).append({"label": ann["label"], "annotator": ann["annotator"]})
    if not items:
        raise ImportRefused(f"queue {queue!r} has no items")
    rows = []
    for r in items:
        inputs = {m: r[m] for m in FILE_MODALITIES if r[m]} | ({"text": r["text"]} if r["text"] is not None else {})
        rows.append({"item": r["id"], "sample": r["sample_id"], "inputs": inputs, "prediction": r["prediction"],
                     "annotations": by_item.get(r["id"], [])})  # fmt: skip
    return q.labels(), rows
