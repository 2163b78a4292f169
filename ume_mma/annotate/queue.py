"""The annotation queue: hand out items with leases, take annotations, skip, undo, count.

A queue that does not exist yet reads as an empty queue: ``next_item`` and ``undo_last`` give ``None``,
``stats`` zero counts (a fresh app answers its API before anything is imported). Queues are created by
``ume_mma.annotate.ingest.import_dataset`` (a folder) and ``ume_mma.annotate.direct.annotate_sample`` (queue
``"app"``); an item id of a queue that does not exist is a ``LeaseError`` like any unknown item.

Overlap: a queue gives each item to ``overlap`` annotators (default 1; :meth:`AnnotationQueue.set_overlap`).
An item is pending until it has ``overlap`` current labels from as many different annotators, then done. An
annotator is never handed an item it labelled already, and an item's payload (:class:`Item`) never carries
anyone's label (nor a gold item's known label): nobody sees another's label before giving its own.

Leasing is atomic and per annotator (table ``leases``: one row per item and annotator). ``next_item`` picks
the best item the annotator may take (pending, not labelled by it, and its labels plus the unexpired leases
of others below ``overlap``) and leases it in one transaction: on PostgreSQL with ``SELECT ... FOR UPDATE
SKIP LOCKED`` on the item row (every writer of an item's leases and labels locks that row first, so two
clients never fill the same last place), then re-counts the places under the lock; on SQLite inside
``BEGIN IMMEDIATE`` (one writer at a time). A lost race retries. An expired lease frees its place again.
"""

from __future__ import annotations

import time
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
leases_t = schema.leases
DEFAULT_LEASE_SECONDS = 600.0
MAX_OVERLAP = 50


@dataclass
class Item:
    """One queue item as handed to an annotator (``to_dict()`` is JSON-ready for an API). It never holds
    another annotator's label; ``given_label`` (the dataset's label) is withheld in a queue with gold items,
    where it would tell gold items apart. ``leased_by``/``lease_expires``: the caller's lease (from
    ``next_item``/``undo_last``), else the lease that ends first."""

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
    """Counts of one queue; ``labelled + pending + leased == total`` (the three are disjoint). An item is
    done once it has ``overlap`` labels; ``labels_given`` counts every current label."""

    total: int
    labelled: int  # done: ``overlap`` current labels (not undone)
    pending: int  # not done, and no annotator holds an unexpired lease on it
    leased: int  # not done, held by at least one annotator under an unexpired lease
    disagreements_left: int  # items not done whose branches disagree (with each other or the fused answer)
    annotators: dict[str, int]  # annotator -> annotations (not undone)
    overlap: int = 1  # annotators per item
    labels_given: int = 0  # current annotations of the queue (done when labels_given == overlap * total)

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


def current(item: sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
    """The current (not undone) annotations of ``item``."""
    return sa.and_(annotations_t.c.item_id == item, annotations_t.c.undone_at.is_(None))


def _labels_of(item: sa.ColumnElement[int]) -> sa.ScalarSelect[int]:
    return sa.select(sa.func.count()).select_from(annotations_t).where(current(item)).scalar_subquery()


def _leases_of(item: sa.ColumnElement[int], now: float, but: str | None = None) -> sa.ScalarSelect[int]:
    """Unexpired leases of ``item`` (of annotators other than ``but``)."""
    where = [leases_t.c.item_id == item, leases_t.c.expires > now]
    if but is not None:
        where.append(leases_t.c.annotator != but)
    return sa.select(sa.func.count()).select_from(leases_t).where(*where).scalar_subquery()


def check_overlap(overlap: Any) -> int:
    """``overlap`` if it is a whole number from 1 to MAX_OVERLAP, else ``InputError``."""
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 1 <= overlap <= MAX_OVERLAP:
        raise InputError(f"overlap must be a whole number from 1 to {MAX_OVERLAP}, got {overlap!r}")
    return overlap


def apply_overlap(conn: sa.Connection, queue_id: int, overlap: int, now: float) -> None:
    """Set a queue's overlap inside the caller's transaction and re-count its items' states."""
    conn.execute(queues_t.update().where(queues_t.c.id == queue_id).values(overlap=overlap))
    n, mine = _labels_of(items_t.c.id), items_t.c.queue_id == queue_id
    conn.execute(
        items_t.update().where(mine, n >= overlap, items_t.c.state != "done").values(state="done", updated_at=now)
    )
    conn.execute(
        items_t.update().where(mine, n < overlap, items_t.c.state != "pending").values(state="pending", updated_at=now)
    )


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
            queue_id = self.id  # looked up before the transaction (the lookup opens one of its own)
            with self.store.transaction() as own:
                return list(own.execute(sa.select(queues_t.c.labels).where(queues_t.c.id == queue_id)).scalar() or [])
        return list(conn.execute(sa.select(queues_t.c.labels).where(queues_t.c.id == self.id)).scalar() or [])

    def overlap(self, conn: sa.Connection | None = None) -> int:
        """How many annotators label each item (1 while no queue has this name)."""
        if not self.exists:
            return 1
        if conn is None:
            with self.store.transaction() as own:
                return self.overlap(own)
        return int(conn.execute(sa.select(queues_t.c.overlap).where(queues_t.c.id == self.id)).scalar() or 1)

    def set_overlap(self, overlap: int) -> None:
        """Give each item to ``overlap`` annotators (1 to MAX_OVERLAP). Items are re-counted in the same
        transaction: one with fewer labels than the new overlap is pending again, one with as many or more is
        done. No annotation is changed or removed."""
        check_overlap(overlap)
        if not self.exists:
            raise InputError(f"no queue named {self.name!r}: import one first")
        with self.store.transaction() as conn:
            apply_overlap(conn, self.id, overlap, self.store.clock())

    def _open_to(self, annotator: str, now: float, overlap: int) -> sa.ColumnElement[bool]:
        """Items of this queue ``annotator`` may lease: pending, not labelled by it, and a free place (its
        labels plus the others' unexpired leases below ``overlap``)."""
        mine_already = sa.exists().where(current(items_t.c.id), annotations_t.c.annotator == annotator)
        return sa.and_(
            items_t.c.queue_id == self.id,
            items_t.c.state == "pending",
            sa.not_(mine_already),
            _labels_of(items_t.c.id) + _leases_of(items_t.c.id, now, but=annotator) < overlap,
        )

    def _places(self, conn: sa.Connection, item_id: int, annotator: str, now: float) -> tuple[int, int, bool, bool]:
        """(labels, others' unexpired leases, labelled by ``annotator``, leased to it) of an item, now (one query)."""
        item = sa.literal(item_id)
        mine = sa.exists().where(current(item), annotations_t.c.annotator == annotator)
        held = sa.exists().where(
            leases_t.c.item_id == item, leases_t.c.annotator == annotator, leases_t.c.expires > now
        )
        row = conn.execute(sa.select(_labels_of(item), _leases_of(item, now, but=annotator), mine, held)).one()
        return int(row[0]), int(row[1]), bool(row[2]), bool(row[3])

    def _lease(self, conn: sa.Connection, item_id: int, annotator: str, expires: float, now: float) -> None:
        """(Re)write ``annotator``'s lease of an item, dropping the item's expired leases."""
        conn.execute(
            leases_t.delete().where(
                leases_t.c.item_id == item_id, sa.or_(leases_t.c.annotator == annotator, leases_t.c.expires <= now)
            )
        )
        conn.execute(leases_t.insert().values(item_id=item_id, annotator=annotator, expires=expires))

    def next_item(self, annotator: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Item | None:
        """Lease the best item ``annotator`` may take for ``lease_seconds`` and return it; the item the
        annotator already holds (unexpired) comes back first. Never an item it labelled already. ``None``
        when nothing is left for it (or no queue has this name yet)."""
        _check_annotator(annotator)
        if not self.exists:
            return None
        for attempt in range(20):  # a lost race (another client took the last place under our feet) retries
            if attempt:
                time.sleep(min(0.05, 0.002 * attempt))  # let the other client's transaction commit
            with self.store.transaction() as conn:
                now, overlap = self.store.clock(), self.overlap(conn)
                order = (items_t.c.rank, items_t.c.position, items_t.c.id)
                held = (
                    sa.select(items_t.c.id)
                    .join(leases_t, leases_t.c.item_id == items_t.c.id)
                    .where(items_t.c.queue_id == self.id, items_t.c.state == "pending")
                    .where(leases_t.c.annotator == annotator, leases_t.c.expires > now)
                    .order_by(*order)
                    .limit(1)
                )
                item_id = conn.execute(held.with_for_update(of=items_t)).scalar()
                serialized = conn.dialect.name == "sqlite"  # BEGIN IMMEDIATE: what we read stays true until commit
                if item_id is not None and not serialized and not self._places(conn, item_id, annotator, now)[3]:
                    continue  # its lease ended while we waited for the row: look again
                if item_id is None:
                    query = sa.select(items_t.c.id).where(self._open_to(annotator, now, overlap)).order_by(*order)
                    item_id = conn.execute(query.limit(1).with_for_update(of=items_t, skip_locked=True)).scalar()
                    if item_id is None:
                        if not serialized and conn.execute(query.limit(1)).scalar() is not None:
                            continue  # PostgreSQL: the open items are locked by other clients' writes right now
                        return None
                    if not serialized:  # PostgreSQL: count the places again, now that the row is locked
                        labels, others, mine, _ = self._places(conn, item_id, annotator, now)
                        state = conn.execute(sa.select(items_t.c.state).where(items_t.c.id == item_id)).scalar()
                        if mine or labels + others >= overlap or state != "pending":
                            continue
                self._lease(conn, item_id, annotator, now + lease_seconds, now)
                return self._item(conn, item_id, viewer=annotator)
        raise LeaseError("could not lease an item: too many concurrent clients, try again")

    def item(self, item_id: int) -> Item:
        """An item of this queue by id (any state)."""
        self._require(item_id)
        with self.store.transaction() as conn:
            return self._item(conn, item_id)

    def has_gold(self, conn: sa.Connection) -> bool:
        """Whether any item of this queue is a gold item."""
        return bool(conn.execute(sa.select(self._gold_exists())).scalar())

    def _gold_exists(self) -> sa.Exists:
        return sa.exists().where(items_t.c.queue_id == self.id, items_t.c.gold.is_not(None))

    def _item(self, conn: sa.Connection, item_id: int, lock: bool = False, viewer: str | None = None) -> Item:
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
        now = self.store.clock()
        held = conn.execute(
            sa.select(leases_t.c.annotator, leases_t.c.expires)
            .where(leases_t.c.item_id == item_id, leases_t.c.expires > now)
            .order_by(leases_t.c.expires, leases_t.c.annotator)
        ).all()
        lease = next((h for h in held if h.annotator == viewer), held[0] if held else None)
        keep = ("id", "sample_id", "position", "rank", "state", "prediction", "disagree", "margin", "confidence")
        labels, gold = conn.execute(
            sa.select(queues_t.c.labels, self._gold_exists()).where(queues_t.c.id == self.id)
        ).one()  # fmt: skip
        return Item(
            queue=self.name,
            inputs=sample["inputs"],
            labels=list(labels or []),
            given_label=None if gold else sample["given_label"],
            group=sample["group"],
            source_id=sample["source_id"],
            names=sample["names"],
            leased_by=lease.annotator if lease else None,
            lease_expires=lease.expires if lease else None,
            **{k: row[k] for k in keep},
        )

    def _claim(self, conn: sa.Connection, item_id: int, annotator: str) -> tuple[Item, int, int]:
        """The item, locked for this transaction, checked to be pending, not labelled by ``annotator`` yet,
        and with a place for it (its own lease, or labels plus others' unexpired leases below the overlap).
        Two concurrent submits of one item: the second waits for the lock, then sees the item done. Returns the
        item, its current labels and the queue's overlap."""
        item = self._item(conn, item_id, lock=True, viewer=annotator)
        if item.state != "pending":
            raise LeaseError(f"item {item_id} is already labelled")
        now = self.store.clock()
        labels, others, mine, holds = self._places(conn, item_id, annotator, now)
        if mine:
            raise LeaseError(f"item {item_id} is already labelled by {annotator!r}")
        overlap = self.overlap(conn)
        if not holds and labels + others >= overlap:
            holder = conn.execute(
                sa.select(leases_t.c.annotator, leases_t.c.expires)
                .where(leases_t.c.item_id == item_id, leases_t.c.expires > now, leases_t.c.annotator != annotator)
                .order_by(leases_t.c.expires)
                .limit(1)
            ).first()
            if holder is not None:
                raise LeaseError(f"item {item_id} is leased to {holder.annotator!r} until {holder.expires:.0f}")
            raise LeaseError(f"item {item_id} is already labelled")
        return item, labels, overlap

    def submit(
        self,
        item_id: int,
        label: str,
        annotator: str,
        flags: Mapping[str, Iterable[str]] | None = None,
        note: str = "",
    ) -> str:
        """Record ``annotator``'s annotation of an item, end its lease, and mark the item done once it has
        ``overlap`` labels, in one durable transaction. ``flags``: modality -> subset of FLAGS (e.g.
        ``{"audio": ["noisy"]}``). Returns the annotation id. Raises ``InputError`` (bad label, flag or
        modality: nothing stored) or ``LeaseError`` (someone else holds the last place, the item is done, or
        this annotator labelled it already)."""
        _check_annotator(annotator)
        self._require(item_id)
        if not isinstance(note, str):
            raise InputError(f"note must be a string, got {type(note).__name__}")
        with self.store.transaction() as conn:
            item, labels, overlap = self._claim(conn, item_id, annotator)
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
            conn.execute(leases_t.delete().where(leases_t.c.item_id == item.id, leases_t.c.annotator == annotator))
            state = "done" if labels + 1 >= overlap else "pending"  # the item row is locked: labels is current
            conn.execute(items_t.update().where(items_t.c.id == item.id).values(state=state, updated_at=now))
            return ann_id

    def skip(self, item_id: int, annotator: str) -> None:
        """Give an item back unlabelled: the annotator's lease ends and the item moves to the end of the queue."""
        _check_annotator(annotator)
        self._require(item_id)
        with self.store.transaction() as conn:
            self._claim(conn, item_id, annotator)
            last = conn.execute(sa.select(sa.func.max(items_t.c.rank)).where(items_t.c.queue_id == self.id)).scalar()
            conn.execute(leases_t.delete().where(leases_t.c.item_id == item_id, leases_t.c.annotator == annotator))
            values = {"rank": (last or 0) + 1, "updated_at": self.store.clock()}
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
            self._item(conn, last.item_id, lock=True)  # the item's places change: hold its row like a lease
            now = self.store.clock()
            conn.execute(annotations_t.update().where(annotations_t.c.id == last.id).values(undone_at=now))
            conn.execute(items_t.update().where(items_t.c.id == last.item_id).values(state="pending", updated_at=now))
            self._lease(conn, last.item_id, annotator, now + lease_seconds, now)
            return self._item(conn, last.item_id, viewer=annotator)

    def stats(self) -> QueueStats:
        """Counts of this queue: total, labelled (done: ``overlap`` labels), pending (no unexpired lease),
        leased, disagreements left (not done), annotations per annotator, the overlap and the labels given.
        Zero counts while no queue has this name."""
        if not self.exists:
            return QueueStats(0, 0, 0, 0, 0, {})
        with self.store.transaction() as conn:
            now = self.store.clock()
            mine = items_t.c.queue_id == self.id
            pending = sa.and_(mine, items_t.c.state == "pending")
            held = sa.and_(pending, _leases_of(items_t.c.id, now) > 0)

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
                overlap=self.overlap(conn),
                labels_given=sum(n for _, n in per),
            )


def queue_names(store: Store) -> list[str]:
    """The names of the store's queues, sorted."""
    with store.transaction() as conn:
        return sorted(conn.execute(sa.select(queues_t.c.name)).scalars())


def _check_annotator(annotator: Any) -> None:
    if not isinstance(annotator, str) or not annotator.strip():
        raise InputError(f"annotator must be a non-empty string, got {annotator!r}")
