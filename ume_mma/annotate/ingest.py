"""Import a dataset folder (``metadata.jsonl``, labels optional) into the store as an annotation queue.

Lines are validated with the dataset format's own ``parse_sample`` (same fields, path rules and errors);
the only difference is that ``label`` may be absent or null here (unlabelled data to annotate).
An import is all or nothing: one transaction, and media files written for it are removed again if it fails.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ume_mma.annotate import schema
from ume_mma.annotate.queue import apply_overlap, check_overlap
from ume_mma.annotate.rank import DEFAULT_ORDER, ORDERS
from ume_mma.annotate.store import Store
from ume_mma.compat import Fit, check_modalities, few
from ume_mma.data.format import FILE_MODALITIES, METADATA, Sample, json_lines, parse_sample
from ume_mma.errors import InputError, UmeMmaError

_UNLABELLED = "\x00unlabelled"  # stands in for a missing label while the rest of the line is validated


@dataclass
class ImportResult:
    queue: str
    added: int
    skipped: list[str] = field(default_factory=list)  # "line N: problem" for lines left out (skip_bad=True)
    duplicates: int = 0  # lines whose content was already in the queue (not added again)
    new_labels: list[str] = field(default_factory=list)  # labels of the folder the predicting checkpoint lacks
    checkpoint: str = ""  # that checkpoint's name (``Fit.name``), for :meth:`note`

    def note(self) -> str:
        """A sentence about the new labels ('' when there are none)."""
        return new_labels_note(self.new_labels, self.checkpoint)


def read_unlabelled(folder: str | os.PathLike[str]) -> list[tuple[int, Sample]]:
    """(line number, Sample) of every line of ``folder/metadata.jsonl``; ``Sample.label`` is None where the
    line has no label. Files are not checked here (``Store.add_sample`` checks and decodes them)."""
    root = Path(folder).expanduser().resolve()
    out = []
    for lineno, where, obj in json_lines(root):
        unlabelled = isinstance(obj, dict) and obj.get("label") is None
        if unlabelled:
            obj = {**obj, "label": _UNLABELLED}
        sample = parse_sample(obj, where)
        sample.root = root
        if unlabelled:
            sample.label = None  # type: ignore[assignment]
        out.append((lineno, sample))
    return out


def check_fits(rows: list[tuple[int, Sample]], fit: Fit, data: str) -> list[str]:
    """Refuse a folder with no modality the checkpoint that will predict it reads (``IncompatibleDataError``),
    before any file is decoded. Labels it does not know are accepted (a fine-tune grows its heads for them,
    :mod:`ume_mma.labelgrow`): returned sorted, for :func:`new_labels_note`."""
    check_modalities(fit.modalities, {m for _, s in rows for m in s.present}, model=fit.name, data=data)
    return sorted({s.label for _, s in rows if s.label is not None} - set(fit.labels))  # labelgrow.added_labels


def new_labels_note(new: list[str], checkpoint: str) -> str:
    """What a queue with labels its checkpoint does not know does with them ('' when there are none)."""
    if not new:
        return ""
    return (f"note: labels {few(new)} are new to {checkpoint}: the queue is predicted with its labels; the new ones "
            "are offered in the label choices (a fine-tune from this queue grows the heads for them)")  # fmt: skip


def _inputs(sample: Sample) -> dict[str, Any]:
    inputs: dict[str, Any] = {m: sample.path(m) for m in FILE_MODALITIES if getattr(sample, m) is not None}
    if sample.text is not None:
        inputs["text"] = sample.text
    return inputs


def _queue_row(conn: sa.Connection, name: str, labels: list[str], source: str, order: str, seed: int, now: float):
    q = schema.queues
    row = conn.execute(sa.select(q).where(q.c.name == name)).mappings().first()
    if row is None:
        values = dict(name=name, labels=labels, source=source, order=order, seed=seed, created_at=now)
        return conn.execute(q.insert().values(**values)).inserted_primary_key[0]
    merged = sorted(set(row["labels"]) | set(labels))
    conn.execute(q.update().where(q.c.id == row["id"]).values(labels=merged, order=order, seed=seed))
    return row["id"]


def _share(key: str, seed: int) -> float:
    """A seeded SHA-256 of a content key mapped to [0, 1) (which lines become gold items)."""
    return int(hashlib.sha256(f"gold\x00{seed}\x00{key}".encode()).hexdigest()[:16], 16) / 2**64


def import_dataset(
    store: Store,
    data_dir: str | os.PathLike[str],
    queue: str = "default",
    labels: Iterable[str] | None = None,
    order: str = DEFAULT_ORDER,
    seed: int = 0,
    skip_bad: bool = False,
    fit: Fit | None = None,
    *,
    overlap: int | None = None,
    gold: float = 0.0,
) -> ImportResult:
    """Add every sample of ``data_dir`` to ``queue`` (created if new, appended to otherwise), in file order.

    ``labels``: the label set annotators choose from (merged with the dataset's own labels; a prediction
    pass adds the checkpoint's). ``order``: how ``rank.predict_queue`` / ``rank.order_queue`` will sort it.
    A bad line (format error, missing or undecodable file, no input) raises and nothing is stored, unless
    ``skip_bad``: then it is left out and listed in ``ImportResult.skipped``. A sample whose content (files
    and text) is already in the queue from an earlier import is not added again (``duplicates``), so
    importing a folder twice adds only what is new. Then run ``rank.predict_queue(store, predictor, queue)``
    (in the background) to predict and order it. ``fit``: the checkpoint that will predict it
    (``Fit.of(predictor, name)``); a folder with no modality it reads is refused first; labels it does not know
    are kept (``ImportResult.new_labels``, :meth:`ImportResult.note`): the queue offers them as choices.
    ``overlap``: give each item of the queue to this many annotators (None: keep the queue's, 1 for a new one).
    ``gold``: the share (0 to 1) of the labelled lines that become gold items, chosen by a seeded hash of their
    content: their label is the known answer (``queue_items.gold``), never shown to annotators (in a queue with
    gold items no item shows the dataset's label), and each annotator's accuracy on them is in the agreement
    stats. ``gold=1`` makes every line of a labelled folder a gold item (a gold set mixed into a queue).
    """
    if order not in ORDERS:
        raise InputError(f"unknown order {order!r}; known: {', '.join(ORDERS)}")
    if overlap is not None:
        check_overlap(overlap)
    if isinstance(gold, bool) or not isinstance(gold, int | float) or not 0.0 <= gold <= 1.0:
        raise InputError(f"gold must be a share from 0 to 1, got {gold!r}")
    rows = read_unlabelled(data_dir)
    if gold > 0 and not any(s.label is not None for _, s in rows):
        raise InputError(f"gold items need known labels, but no line of {data_dir} has a label")
    new = check_fits(rows, fit, os.fspath(data_dir)) if fit is not None else []
    label_set = sorted(set(labels or ()) | {s.label for _, s in rows if s.label is not None})
    result = ImportResult(queue, 0, new_labels=new, checkpoint=fit.name if fit is not None else "")
    with store.media_guard() as created, store.transaction() as conn:
        queue_id = _queue_row(conn, queue, label_set, str(Path(data_dir).resolve()), order, seed, store.clock())
        items_t, samples_t = schema.queue_items, schema.samples
        mine = items_t.c.queue_id == queue_id
        start = conn.execute(sa.select(sa.func.coalesce(sa.func.max(items_t.c.position), -1)).where(mine)).scalar()
        known = set(conn.execute(sa.select(samples_t.c.content_key).join(items_t).where(mine)).scalars())
        items = []
        for lineno, sample in rows:
            sample_id = _add(store, conn, lineno, sample, created, result if skip_bad else None)
            if sample_id is None:
                continue
            key = conn.execute(sa.select(samples_t.c.content_key).where(samples_t.c.id == sample_id)).scalar_one()
            if key in known:
                conn.execute(samples_t.delete().where(samples_t.c.id == sample_id))  # its files were there already
                result.duplicates += 1
                continue
            pos = start + 1 + len(items)
            known_label = sample.label if sample.label is not None and _share(key, seed) < gold else None
            items.append(dict(queue_id=queue_id, sample_id=sample_id, position=pos, rank=pos, state="pending",
                              skips=0, updated_at=store.clock(), gold=known_label))  # fmt: skip
        if items:
            conn.execute(items_t.insert(), items)
        result.added = len(items)
        if overlap is not None:
            apply_overlap(conn, queue_id, overlap, store.clock())
    return result


def _add(
    store: Store, conn: sa.Connection, lineno: int, sample: Sample, created: list[str], skips: ImportResult | None
) -> int | None:
    """Store one line's sample; a bad one raises (naming the line), or is noted in ``skips`` if given."""
    try:
        return store.add_sample(
            _inputs(sample), conn, label=sample.label, group=sample.group, source_id=sample.id, meta=sample.meta,
            created=created,
        )  # fmt: skip
    except UmeMmaError as exc:
        if skips is None:
            if isinstance(exc, InputError):
                raise InputError(f"{METADATA} line {lineno}: {exc}") from exc
            raise
        skips.skipped.append(f"line {lineno}: {exc}")
        return None
