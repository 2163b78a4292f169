"""Annotation by a team on real SQLite and PostgreSQL: overlap (each item to N annotators, never twice to
one, nobody sees another's label), leases per annotator, progress, the overlap setting, and the migration of
a version 4 database (its leases kept)."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from tests.test_annotate_queue import Clock, _queue
from tests.test_annotate_store import _open, _raw_engine
from tests.tiny import make_tiny_dataset
from ume_mma.annotate import AnnotationQueue, import_dataset, open_store, schema
from ume_mma.annotate.agreement import queue_agreement
from ume_mma.errors import InputError, LeaseError


@pytest.fixture
def clock():
    return Clock()


def test_overlap_two_with_three_concurrent_annotators_gives_each_item_two_labels_from_two_people(store_url, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", {"train": 4})  # 12 items
    url, media = store_url
    store = open_store(url, media)
    import_dataset(store, data, overlap=2)
    queue = AnnotationQueue(store)
    start = threading.Barrier(3)
    seen: dict[str, list[int]] = defaultdict(list)

    def annotator(name: str) -> None:
        start.wait()
        while (item := queue.next_item(name)) is not None:
            assert item.leased_by == name
            seen[name].append(item.id)
            queue.submit(item.id, item.given_label, name)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(annotator, ["ann", "bob", "cy"]))
    for name, ids in seen.items():
        assert len(ids) == len(set(ids)), f"{name} was handed an item twice"
    with store.transaction() as conn:
        rows = conn.execute(sa.select(schema.annotations.c.item_id, schema.annotations.c.annotator)).all()
    per_item = defaultdict(list)
    for item_id, who in rows:
        per_item[item_id].append(who)
    assert len(per_item) == 12 and all(len(w) == 2 and len(set(w)) == 2 for w in per_item.values())
    s = queue.stats()
    assert (s.total, s.labelled, s.pending, s.leased, s.overlap, s.labels_given) == (12, 12, 0, 0, 2, 24)
    assert sum(s.annotators.values()) == 24 and set(s.annotators) <= {"ann", "bob", "cy"}  # who gets what: scheduling
    agreement = queue_agreement(store, "default")  # everyone gave the dataset's label: full agreement
    assert agreement["items"] == 12 and agreement["krippendorff_alpha"] == 1.0 and agreement["fleiss_kappa"] == 1.0


def test_leases_and_places_are_per_annotator(store_url, tmp_path, clock):
    data = make_tiny_dataset(tmp_path / "data", {"train": 1})  # 3 items: a b c
    queue = _queue(store_url, data, clock, order="file", overlap=2)
    first = queue.next_item("ann")
    assert queue.next_item("ann").id == first.id  # the held item comes back to its holder
    assert queue.next_item("bob").id == first.id  # the second place of the same item
    third = queue.next_item("cy")
    assert third.id != first.id  # both places of the first item are held
    with pytest.raises(LeaseError, match="leased to 'ann'"):
        queue.submit(first.id, "a", "cy")
    queue.submit(first.id, "a", "ann")
    with pytest.raises(LeaseError, match="already labelled by 'ann'"):
        queue.submit(first.id, "a", "ann")
    s = queue.stats()
    assert (s.labelled, s.leased, s.pending, s.labels_given) == (0, 2, 1, 1)  # first: bob holds its last place
    assert queue.next_item("ann").id not in (first.id,)  # never an item ann labelled
    queue.submit(first.id, "b", "bob")
    assert queue.item(first.id).state == "done" and queue.stats().labelled == 1
    undone = queue.undo_last("bob")  # bob takes his back: pending again, leased back to bob only
    assert undone.id == first.id and undone.state == "pending" and undone.leased_by == "bob"
    assert queue.next_item("cy").id == third.id  # cy keeps her own lease
    clock.now += 10_000  # every lease expired
    assert queue.stats().leased == 0


def test_an_item_payload_carries_no_label_of_anyone(store_url, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", {"train": 1})
    queue = _queue(store_url, data, order="file", overlap=3)
    item = queue.next_item("ann")
    queue.submit(item.id, "c", "ann", note="looks like c")
    for who in ("bob", "cy"):
        got = queue.next_item(who)
        assert got.id == item.id
        text = repr(got.to_dict())
        assert "looks like c" not in text and "'ann'" not in text  # nothing of ann's annotation travels


def test_set_overlap_recounts_items_and_keeps_every_annotation(store_url, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", {"train": 1})
    queue = _queue(store_url, data, order="file")
    item = queue.next_item("ann")
    queue.submit(item.id, "a", "ann")
    assert queue.stats().labelled == 1
    queue.set_overlap(2)
    assert queue.item(item.id).state == "pending" and queue.stats().labelled == 0
    assert queue.next_item("bob").id == item.id and queue.next_item("ann").id != item.id
    queue.set_overlap(1)
    assert queue.item(item.id).state == "done" and queue.store.counts()["annotations"] == 1
    for bad in (0, 51, 1.5, "2", True):
        with pytest.raises(InputError, match="overlap must be a whole number from 1 to 50"):
            queue.set_overlap(bad)
    with pytest.raises(InputError, match="overlap must be"):
        import_dataset(queue.store, data, overlap=0)
    assert queue.overlap() == 1


def test_migrates_a_version_4_database_keeping_its_leases(store_url, clock):
    v4 = schema.build_tables(sa.MetaData(), 4)
    assert "overlap" not in v4["queues"].c and "leases" not in v4
    engine = _raw_engine(store_url)
    with engine.begin() as conn:
        schema.create_schema(conn, version=4)
        conn.execute(v4["queues"].insert().values(id=1, name="old", labels=["a", "b"], order="file", seed=0,
                                                  created_at=1))  # fmt: skip
        conn.execute(v4["samples"].insert().values(id=1, content_key="k", text="t", names={}, meta={}, created_at=1))
        held = dict(leased_by="ann", lease_expires=clock.now + 300)
        for i, state, lease in ((1, "done", {}), (2, "pending", held), (3, "pending", {})):
            conn.execute(v4["queue_items"].insert().values(id=i, queue_id=1, sample_id=1, position=i, rank=i,
                                                           state=state, skips=0, updated_at=1, **lease))  # fmt: skip
        conn.execute(v4["annotations"].insert().values(id="x1", item_id=1, sample_id=1, label="a", flags={}, note="",
                                                       annotator="ann", created_at=5))  # fmt: skip
    engine.dispose()
    url, media = store_url
    store = open_store(url, media, clock=clock)
    with store.transaction() as conn:
        assert schema.current_version(conn) == schema.SCHEMA_VERSION == 5
        assert conn.execute(sa.select(schema.leases)).all() == [(2, "ann", clock.now + 300)]
    queue = AnnotationQueue(store, "old")
    s = queue.stats()
    assert (s.total, s.labelled, s.leased, s.pending, s.overlap, s.labels_given) == (3, 1, 1, 1, 1, 1)
    assert queue.next_item("bob").id == 3 and queue.next_item("ann").id == 2  # ann's lease held over
    assert queue.undo_last("ann").id == 1  # the old annotation is kept and can be taken back
    store.close()
    _open(store_url).close()  # opening a current database again changes nothing


def test_every_label_counts_once_per_annotator_under_concurrent_submits(store_url, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", {"train": 1})
    queue = _queue(store_url, data, order="file", overlap=2)
    item = queue.next_item("ann")
    start = threading.Barrier(3)

    def submit(who: str) -> str:
        start.wait()
        try:
            return queue.submit(item.id, "a", who)
        except LeaseError as exc:
            return str(exc)

    with ThreadPoolExecutor(3) as pool:  # ann holds a place; bob and cy race for the other
        results = list(pool.map(submit, ["ann", "bob", "cy"]))
    assert Counter(len(r) == 32 for r in results) == Counter({True: 2, False: 1}), results
    assert queue.item(item.id).state == "done" and queue.store.counts()["annotations"] == 2
