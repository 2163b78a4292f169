"""The annotation queue: hand out items with leases, take annotations, skip, undo, count.

A queue that does not exist yet reads as an empty queue: ``next_item`` and ``undo_last`` give ``None``,
``stats`` zero counts (a fresh app answers its API before anything is imported). Queues are created by
``ume_mma.annotate.ingest.import_dataset`` (a folder) and ``ume_mma.annotate.direct.annotate_sample`` (queue
``"app"``); an item id of a queue that does not exist is a ``LeaseError`` like any unknown item.

Leasing is atomic. ``next_item`` picks the best available item (pending, and not leased or its lease
expired) and leases it in one transaction: on PostgreSQL with ``SELECT ... FOR UPDATE SKIP LOCKED`` (two
clients never lock the same row; each takes the next free one), on SQLite inside ``BEGIN IMMEDIATE`` (one
writer at a time). The UPDATE also re-checks that the item is still free, so a lost race retries instead of
double-leasing. An expired lease simply makes the item available again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ume_mma.annotate import schema
from ume_mma.annotate.store import Store, sample_dict
from ume_mma.errors import InputError, LeaseError
from ume_mma.registry import MODALITIES

items_t, annotations_t, queues_t, samples_t = schema.queue_items, schema.annotations, schema.queues, schema.samples
DEFAULT_LEASE_SECONDS = 600.0


@dataclass
class Item:
    """One queue item as handed to an annotator (``to_dict()`` is JSON-ready for an API)."""

    id: int
    queue: str
    sample_id: int
    position: int
    rank: int
    state: str
    inputs: dict[str, str]  # modality -> absolute media path, or the text
    labels: list[str]  # the labels an annotation may use
    given_label: str | None = None
    group: str | None = None
    source_id: str | None = None
    prediction: dict[str, Any] | None = None
    disagree: bool | None = None
    margin: float | None = None
    confidence: float | None = None
    leased_by: str | None = None
    lease_expires: float | None = None
    names: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class QueueStats:
    """Counts of one queue; ``labelled + pending + leased == total`` (the three are disjoint)."""

    total: int
    labelled: int  # done: annotated (and not undone)
    pending: int  # waiting for an annotator: not labelled, not under an unexpired lease
    leased: int  # not labelled, held by an annotator under an unexpired lease
    disagreements_left: int  # pending items whose branches disagree (with each other or the fused answer)
    annotators: dict[str, int]  # annotator -> annotations (not undone)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def validate_annotation(
    label: str, flags: Mapping[str, Iterable[str]] | None, labels: list[str], present: Iterable[str]
) -> dict[str, list[str]]:
    """Check a label against ``labels`` and flags (modality -> flags) against FLAGS and the sample's present
    modalities; returns the normalised flags. Raises ``InputError`` naming what is wrong."""
    if not labels:
        raise InputError("this queue has no label set: import it with labels or predict it with a checkpoint")
    if label not in labels:
        raise InputError(f"unknown label {label!r}; the labels are {labels}")
    out: dict[str, list[str]] = {}
    present = set(present)
    for modality, names in (flags or {}).items():
        if modality not in MODALITIES:
            raise InputError(f"unknown modality {modality!r} in flags; known: {', '.join(MODALITIES)}")
        if modality not in present:
            raise InputError(f"flags for {modality!r}, but this sample has no {modality}")
        if not isinstance(names, str | list | tuple | set) or not all(isinstance(n, str) for n in names):
            known = ", ".join(schema.FLAGS)
            raise InputError(f"flags for {modality} are a list of flag names ({known}); got {names!r}")
        names = [names] if isinstance(names, str) else list(names)
        bad = sorted(set(names) - set(schema.FLAGS))
        if bad:
            raise InputError(f"unknown flag {bad} for {modality}; flags are {', '.join(schema.FLAGS)}")
        if names:
            out[modality] = sorted(set(names))
    return out


class AnnotationQueue:
    """One named queue of a store. Create it with ``ume_mma.annotate.ingest.import_dataset``; a name that
    no queue has yet is an empty queue (``exists`` is False; it is looked up again on each call, so a
    queue imported later is seen)."""

    def __init__(self, store: Store, name: str = "default") -> None:
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"queue must be a non-empty name, got {name!r}")
        self.store = store
        self.name = name
        self._id: int | None = None

    @property
    def id(self) -> int | None:
        """The queue's row id, or None while no queue has this name."""
        if self._id is None:
            with self.store.transaction() as conn:
                self._id = conn.execute(sa.select(queues_t.c.id).where(queues_t.c.name == self.name)).scalar()
        return self._id

    @property
    def exists(self) -> bool:
        return self.id is not None

    def _require(self, item_id: int) -> None:
        """Before a transaction that needs the queue: an item of a queue that does not exist is unknown."""
        if not self.exists:
            raise LeaseError(f"queue {self.name!r} has no item {item_id} (no queue has this name yet)")

    def labels(self, conn: sa.Connection | None = None) -> list[str]:
        """The labels an annotation of this queue may use (the import's, the dataset's, the checkpoint's)."""
        if conn is None:
            with self.store.transaction() as own:
                return self.labels(own)
        return list(conn.execute(sa.select(queues_t.c.labels).where(queues_t.c.id == self.id)).scalar() or [])

    def _free(self, now: float) -> sa.ColumnElement[bool]:
        return sa.and_(
            items_t.c.queue_id == self.id,
            items_t.c.state == "pending",
            sa.or_(items_t.c.leased_by.is_(None), items_t.c.lease_expires <= now),
        )

    def next_item(self, annotator: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Item | None:
        """Lease the best available item to ``annotator`` for ``lease_seconds`` and return it; the item the
        annotator already holds (unexpired) comes back first. ``None`` when nothing is left (or no queue
        has this name yet)."""
        _check_annotator(annotator)
        if not self.exists:
            return None
        for _ in range(20):  # a lost race (another client leased the row between SELECT and UPDATE) retries
            with self.store.transaction() as conn:
                now = self.store.clock()
                held = sa.and_(items_t.c.leased_by == annotator, items_t.c.lease_expires > now)
                mine = sa.and_(items_t.c.queue_id == self.id, items_t.c.state == "pending", held)
                query = sa.select(items_t.c.id).order_by(items_t.c.rank, items_t.c.position).limit(1)
                item_id = conn.execute(query.where(mine)).scalar()
                if item_id is None:
                    item_id = conn.execute(query.where(self._free(now)).with_for_update(skip_locked=True)).scalar()
                if item_id is None:
                    return None
                update = items_t.update().where(items_t.c.id == item_id, sa.or_(self._free(now), held))
                values = {"leased_by": annotator, "lease_expires": now + lease_seconds, "updated_at": now}
                if conn.execute(update.values(**values)).rowcount == 1:
                    return self._item(conn, item_id)
        raise LeaseError("could not lease an item: too many concurrent clients, try again")

    def item(self, item_id: int) -> Item:
        """An item of this queue by id (any state)."""
        self._require(item_id)
        with self.store.transaction() as conn:
            return self._item(conn, item_id)

    def _item(self, conn: sa.Connection, item_id: int, lock: bool = False) -> Item:
        query = sa.select(items_t).where(items_t.c.id == item_id, items_t.c.queue_id == self.id)
        if lock:  # PostgreSQL: hold the row until commit (SQLite's BEGIN IMMEDIATE already serializes writers)
            query = query.with_for_update(of=items_t)
        row = conn.execute(query).mappings().first()
        if row is None:
            raise LeaseError(f"queue {self.name!r} has no item {item_id}")
        sample = sample_dict(
            self.store.media,
            conn.execute(sa.select(samples_t).where(samples_t.c.id == row["sample_id"])).mappings().one(),
        )
        keep = ("id", "sample_id", "position", "rank", "state", "prediction", "disagree", "margin", "confidence")
        return Item(
            queue=self.name,
            inputs=sample["inputs"],
            labels=self.labels(conn),
            given_label=sample["given_label"],
            group=sample["group"],
            source_id=sample["source_id"],
            names=sample["names"],
            leased_by=row["leased_by"],
            lease_expires=row["lease_expires"],
            **{k: row[k] for k in keep},
        )

    def _claim(self, conn: sa.Connection, item_id: int, annotator: str) -> Item:
        """The item, locked for this transaction, checked to be pending and not leased to someone else (an
        expired lease is free). Two concurrent submits of one item: the second waits, then sees it done."""
        item = self._item(conn, item_id, lock=True)
        if item.state != "pending":
            raise LeaseError(f"item {item_id} is already labelled")
        now = self.store.clock()
        if item.leased_by not in (None, annotator) and (item.lease_expires or 0) > now:
            raise LeaseError(f"item {item_id} is leased to {item.leased_by!r} until {item.lease_expires:.0f}")
        return item

    def submit(
        self,
        item_id: int,
        label: str,
        annotator: str,
        flags: Mapping[str, Iterable[str]] | None = None,
        note: str = "",
    ) -> str:
        """Record ``annotator``'s annotation of an item and mark it done, in one durable transaction.
        ``flags``: modality -> subset of FLAGS (e.g. ``{"audio": ["noisy"]}``). Returns the annotation id.
        Raises ``InputError`` (bad label, flag or modality: nothing stored) or ``LeaseError``."""
        _check_annotator(annotator)
        self._require(item_id)
        if not isinstance(note, str):
            raise InputError(f"note must be a string, got {type(note).__name__}")
        with self.store.transaction() as conn:
            item = self._claim(conn, item_id, annotator)
            clean = validate_annotation(label, flags, item.labels, item.inputs)
            now, ann_id = self.store.clock(), uuid.uuid4().hex
            prediction = item.prediction if item.prediction and "error" not in item.prediction else None
            conn.execute(
                annotations_t.insert().values(
                    id=ann_id, item_id=item.id, sample_id=item.sample_id, label=label, flags=clean, note=note,
                    annotator=annotator, created_at=now, prediction=prediction,
                    checkpoint=prediction.get("checkpoint") if prediction else None,
                )
            )  # fmt: skip
            done = {"state": "done", "leased_by": None, "lease_expires": None, "updated_at": now}
            conn.execute(items_t.update().where(items_t.c.id == item.id).values(**done))
            return ann_id

    def skip(self, item_id: int, annotator: str) -> None:
        """Give an item back unlabelled: its lease ends and it moves to the end of the queue."""
        _check_annotator(annotator)
        self._require(item_id)
        with self.store.transaction() as conn:
            self._claim(conn, item_id, annotator)
            last = conn.execute(sa.select(sa.func.max(items_t.c.rank)).where(items_t.c.queue_id == self.id)).scalar()
            values = {"leased_by": None, "lease_expires": None, "rank": (last or 0) + 1}
            values["updated_at"] = self.store.clock()
            conn.execute(items_t.update().where(items_t.c.id == item_id).values(skips=items_t.c.skips + 1, **values))

    def undo_last(self, annotator: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Item | None:
        """Take back ``annotator``'s latest annotation in this queue: it is marked undone (kept for the
        record), its item is pending again and leased back to the annotator, and returned. ``None`` if the
        annotator has nothing to undo (or no queue has this name yet)."""
        _check_annotator(annotator)
        if not self.exists:
            return None
        with self.store.transaction() as conn:
            last = conn.execute(
                sa.select(annotations_t.c.id, annotations_t.c.item_id)
                .join(items_t, items_t.c.id == annotations_t.c.item_id)
                .where(items_t.c.queue_id == self.id, annotations_t.c.annotator == annotator)
                .where(annotations_t.c.undone_at.is_(None))
                .order_by(annotations_t.c.created_at.desc(), annotations_t.c.id.desc())
                .limit(1)
                .with_for_update(of=annotations_t)  # two undos at once (two browser tabs) take back one each
            ).first()
            if last is None:
                return None
            now = self.store.clock()
            conn.execute(annotations_t.update().where(annotations_t.c.id == last.id).values(undone_at=now))
            lease = {"leased_by": annotator, "lease_expires": now + lease_seconds, "updated_at": now}
            conn.execute(items_t.update().where(items_t.c.id == last.item_id).values(state="pending", **lease))
            return self._item(conn, last.item_id)

    def stats(self) -> QueueStats:
        """Counts of this queue: total, labelled, pending (free), leased, disagreements left (pending or
        leased), annotations per annotator. Zero counts while no queue has this name."""
        if not self.exists:
            return QueueStats(0, 0, 0, 0, 0, {})
        with self.store.transaction() as conn:
            now = self.store.clock()
            mine = items_t.c.queue_id == self.id
            pending = sa.and_(mine, items_t.c.state == "pending")
            held = sa.and_(pending, items_t.c.leased_by.is_not(None), items_t.c.lease_expires > now)

            def count(where: sa.ColumnElement[bool]) -> int:
                return conn.execute(sa.select(sa.func.count()).select_from(items_t).where(where)).scalar_one()

            per = conn.execute(
                sa.select(annotations_t.c.annotator, sa.func.count())
                .join(items_t, items_t.c.id == annotations_t.c.item_id)
                .where(mine, annotations_t.c.undone_at.is_(None))
                .group_by(annotations_t.c.annotator)
            ).all()
            return QueueStats(
                total=count(mine),
                labelled=count(sa.and_(mine, items_t.c.state == "done")),
                pending=count(sa.and_(pending, sa.not_(held))),
                leased=count(held),
                disagreements_left=count(sa.and_(pending, items_t.c.disagree.is_(True))),
                annotators={name: n for name, n in sorted(per)},
            )


def queue_names(store: Store) -> list[str]:
    """The names of the store's queues, sorted."""
    with store.transaction() as conn:
        return sorted(conn.execute(sa.select(queues_t.c.name)).scalars())


def _check_annotator(annotator: Any) -> None:
    if not isinstance(annotator, str) or not annotator.strip():
        raise InputError(f"annotator must be a non-empty string, got {annotator!r}")
