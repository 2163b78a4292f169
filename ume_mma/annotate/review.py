"""Review: the items of a queue whose labels disagree (with each other, or with the model), each with every
annotator's label, flags and note and the branch predictions; a reviewer's resolution, which export (and so
fine-tuning) uses instead of the annotators' labels; and the history of an item (every label, undo and
resolution, with who, when, before and after). Resolutions are never updated in place: each change is a new
row of ``resolutions`` holding the label before and after.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from ume_mma.annotate import schema
from ume_mma.annotate.agreement import majority, resolutions
from ume_mma.annotate.queue import AnnotationQueue, _check_annotator
from ume_mma.annotate.store import Store, sample_dict
from ume_mma.errors import InputError, LeaseError

a_t, items_t, res_t, samples_t = schema.annotations, schema.queue_items, schema.resolutions, schema.samples
WHICH = ("disagree", "model", "all")  # labels disagree; their majority disagrees with the model's; every labelled item


def _predicted(prediction: dict[str, Any] | None) -> dict[str, str]:
    """modality (and "fused") -> the label the model predicted."""
    pred = prediction or {}
    out = {m: b["label"] for m, b in pred.get("branches", {}).items() if "label" in b}
    if pred.get("fused"):
        out["fused"] = pred["fused"]["label"]
    return out


def review_items(store: Store, queue: str, which: str = "disagree", limit: int = 200) -> list[dict[str, Any]]:
    """Items of ``queue`` to review, oldest first: ``which`` = "disagree" (two or more current labels, not
    all the same), "model" (the labels' majority is not the model's fused label) or "all" (every item with a
    label). Each: item, sample and source ids, inputs, state, gold label, the annotations (annotator, label, flags,
    note, time), the model's per-branch and fused labels, and the current resolution (None)."""
    if which not in WHICH:
        raise InputError(f"which is one of {', '.join(WHICH)}, got {which!r}")
    q = AnnotationQueue(store, queue)
    if not q.exists:
        return []
    with store.transaction() as conn:
        ids = sa.select(items_t.c.id).where(items_t.c.queue_id == q.id)
        rows = conn.execute(
            sa.select(a_t).where(a_t.c.item_id.in_(ids), a_t.c.undone_at.is_(None)).order_by(a_t.c.created_at, a_t.c.id)
        ).mappings()
        by_item: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_item[r["item_id"]].append({k: r[k] for k in ("id", "annotator", "label", "flags", "note", "created_at")})
        resolved = resolutions(conn, ids)
        items = conn.execute(sa.select(items_t).where(items_t.c.id.in_(list(by_item))).order_by(items_t.c.id))
        out = []
        for item in items.mappings():
            labels = [a["label"] for a in by_item[item["id"]]]
            predicted = _predicted(item["prediction"])
            if which == "disagree" and len(set(labels)) < 2:
                continue
            if which == "model" and (not predicted.get("fused") or majority(labels) == predicted["fused"]):
                continue
            sample = conn.execute(sa.select(samples_t).where(samples_t.c.id == item["sample_id"])).mappings().one()
            out.append(
                {
                    "item_id": item["id"],
                    "sample_id": item["sample_id"],
                    "source_id": sample["source_id"],
                    "state": item["state"],
                    "inputs": sample_dict(store.media, sample)["inputs"],
                    "gold": item["gold"],
                    "annotations": by_item[item["id"]],
                    "predicted": predicted,
                    "resolution": resolved.get(item["id"]),
                }
            )
            if len(out) >= limit:
                break
    return out


def resolve(store: Store, queue: str, item_id: int, label: str, reviewer: str, note: str = "") -> dict[str, Any]:
    """Set ``reviewer``'s resolution of an item (a label of the queue's label set), kept as a new row with
    the label before and after; returns it. Raises ``InputError`` (unknown label) or ``LeaseError`` (no such
    item in this queue); nothing is stored then."""
    _check_annotator(reviewer)
    if not isinstance(note, str):
        raise InputError(f"note must be a string, got {type(note).__name__}")
    q = AnnotationQueue(store, queue)
    if not q.exists:
        raise LeaseError(f"queue {queue!r} has no item {item_id} (no queue has this name yet)")
    with store.transaction() as conn:
        q._item(conn, item_id, lock=True)  # raises for an item of another queue; one resolver at a time
        labels = q.labels(conn)
        if label not in labels:
            raise InputError(f"unknown label {label!r}; the labels are {labels}")
        before = resolutions(conn, [item_id]).get(item_id)
        row = {"id": uuid.uuid4().hex, "item_id": item_id, "before": before, "label": label, "reviewer": reviewer,
               "note": note, "created_at": store.clock()}  # fmt: skip
        conn.execute(res_t.insert().values(**row))
    return row


def history(store: Store, queue: str, item_id: int) -> list[dict[str, Any]]:
    """Every change of an item's label, oldest first: ``{"at", "who", "what", "before", "after", "note"}``
    where ``what`` is "label" (an annotator's label; before: None), "undo" (an annotator took its label
    back; after: None) or "resolve" (a reviewer's resolution, before: the previous resolution)."""
    q = AnnotationQueue(store, queue)
    q._require(item_id)
    with store.transaction() as conn:
        q._item(conn, item_id)  # an item of another queue is unknown here
        events = []
        for a in conn.execute(sa.select(a_t).where(a_t.c.item_id == item_id)).mappings():
            events.append({"at": a["created_at"], "who": a["annotator"], "what": "label", "before": None,
                           "after": a["label"], "note": a["note"]})  # fmt: skip
            if a["undone_at"] is not None:
                events.append({"at": a["undone_at"], "who": a["annotator"], "what": "undo", "before": a["label"],
                               "after": None, "note": ""})  # fmt: skip
        for r in conn.execute(sa.select(res_t).where(res_t.c.item_id == item_id).order_by(res_t.c.seq)).mappings():
            events.append({"at": r["created_at"], "who": r["reviewer"], "what": "resolve", "before": r["before"],
                           "after": r["label"], "note": r["note"]})  # fmt: skip
    return sorted(events, key=lambda e: e["at"])  # stable: a resolution's rows keep their order
