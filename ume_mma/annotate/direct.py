"""Annotating a sample directly (no queue to work through): the app's "Annotate this" and the ``/annotate``
API. The sample, an item of the queue ``queue`` (default ``"app"``; done, unless the queue's overlap asks for
more labels) and the annotation are written in
one durable transaction: when the call returns, the annotation is committed; when it raises, nothing is
stored (no sample row, no media file).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ume_mma.annotate import schema
from ume_mma.annotate.ingest import _queue_row
from ume_mma.annotate.queue import _check_annotator, validate_annotation
from ume_mma.annotate.store import Store
from ume_mma.errors import InputError

APP_QUEUE = "app"


@dataclass
class Annotated:
    """What a committed direct annotation returns (``to_dict()`` is the ``/annotate`` API's answer)."""

    id: str
    sample_id: int
    label: str
    annotator: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def annotate_sample(
    store: Store,
    inputs: Mapping[str, Any],
    label: str,
    annotator: str,
    labels: Iterable[str],
    flags: Mapping[str, Iterable[str]] | None = None,
    note: str = "",
    prediction: Mapping[str, Any] | None = None,
    queue: str = APP_QUEUE,
) -> Annotated:
    """Store ``inputs`` (``image``/``audio``/``video`` paths, ``text``; empty values are absent) labelled
    ``label`` by ``annotator``. ``labels``: the label set (the checkpoint's), ``label`` must be one of them;
    ``flags``: modality -> subset of FLAGS for modalities the sample has; ``prediction``: the checkpoint's
    ``Prediction.to_dict()`` the annotator saw (recorded with the annotation). Raises ``InputError`` /
    ``DecodeError`` / ``StoreError`` with nothing stored."""
    _check_annotator(annotator)
    if not isinstance(note, str):
        raise InputError(f"note must be a string, got {type(note).__name__}")
    labels = list(labels)
    present = {m: v for m, v in inputs.items() if v not in (None, "")}
    clean = validate_annotation(label, flags, labels, present)  # before anything is written
    with store.media_guard() as created, store.transaction() as conn:
        now = store.clock()
        queue_id = _queue_row(conn, queue, sorted(labels), "annotated in the app", "file", 0, now)
        sample_id = store.add_sample(present, conn, created=created)
        items = schema.queue_items
        last = conn.execute(sa.select(sa.func.max(items.c.position)).where(items.c.queue_id == queue_id)).scalar()
        position = (last if last is not None else -1) + 1
        overlap = conn.execute(sa.select(schema.queues.c.overlap).where(schema.queues.c.id == queue_id)).scalar()
        state = "done" if (overlap or 1) <= 1 else "pending"  # a team queue wants more labels of it
        item_id = conn.execute(
            items.insert().values(
                queue_id=queue_id, sample_id=sample_id, position=position, rank=position, state=state, skips=0,
                updated_at=now, prediction=dict(prediction) if prediction else None,
            )
        ).inserted_primary_key[0]  # fmt: skip
        annotation_id = uuid.uuid4().hex
        conn.execute(
            schema.annotations.insert().values(
                id=annotation_id, item_id=item_id, sample_id=sample_id, label=label, flags=clean, note=note,
                annotator=annotator, created_at=now, prediction=dict(prediction) if prediction else None,
                checkpoint=(prediction or {}).get("checkpoint"),
            )
        )  # fmt: skip
    return Annotated(annotation_id, sample_id, label, annotator)
