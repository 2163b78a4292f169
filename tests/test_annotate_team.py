"""Annotation by a team on real SQLite and PostgreSQL: overlap (each item to N annotators, never twice to
one, nobody sees another's label), leases per annotator, progress, the overlap setting, and the migration of
a version 4 database (its leases kept)."""

from __future__ import annotations

import json
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


def test_an_open_item_locked_by_another_client_s_write_is_waited_for_not_reported_gone(store_url, tmp_path):
    """PostgreSQL skips rows locked by other transactions (SKIP LOCKED): the last open item, locked for a moment
    by another client's write, must not make next_item answer "nothing left"."""
    import time

    data = make_tiny_dataset(tmp_path / "data", {"train": 1})  # 3 items
    url, media = store_url
    store = open_store(url, media)
    import_dataset(store, data)
    queue = AnnotationQueue(store)
    for _ in range(2):
        item = queue.next_item("ann")
        queue.submit(item.id, item.given_label, "ann")
    with store.transaction() as conn:
        (last,) = conn.execute(sa.select(schema.queue_items.c.id).where(schema.queue_items.c.state == "pending")).one()
    locked = threading.Event()

    def write_for_a_moment() -> None:
        with store.transaction() as conn:
            conn.execute(sa.select(schema.queue_items.c.id).where(schema.queue_items.c.id == last).with_for_update())
            locked.set()
            time.sleep(0.2)

    writer = threading.Thread(target=write_for_a_moment)
    writer.start()
    locked.wait(5)
    item = queue.next_item("bob")
    writer.join()
    assert item is not None and item.id == last


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


def test_gold_items_are_a_seeded_share_of_the_labelled_lines_and_never_shown(store_url, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", {"train": 6})  # 18 labelled items
    url, media = store_url
    store = open_store(url, media)
    import_dataset(store, data, "g", gold=0.5)
    queue = AnnotationQueue(store, "g")
    with store.transaction() as conn:
        rows = conn.execute(
            sa.select(schema.queue_items.c.id, schema.queue_items.c.gold, schema.samples.c.given_label).join(
                schema.samples
            )
        ).all()
    gold = {r.id: r.gold for r in rows if r.gold is not None}
    assert 3 <= len(gold) <= 15 and all(r.gold == r.given_label for r in rows if r.gold)  # the known label
    again = open_store(tmp_path / "again.db")  # the same folder and seed choose the same lines
    import_dataset(again, data, "g", gold=0.5)
    with again.transaction() as conn:
        assert len(
            conn.execute(sa.select(schema.queue_items.c.id).where(schema.queue_items.c.gold.is_not(None))).all()
        ) == len(gold)
    item = queue.next_item("ann")
    assert item.given_label is None and "gold" not in item.to_dict()  # no item of a gold queue shows a label
    queue.submit(item.id, "a", "ann")
    row = queue_agreement(store, "g")["annotators"]["ann"]
    assert row["gold_items"] == (1 if item.id in gold else 0)
    if item.id in gold:
        assert row["gold_accuracy"] == (1.0 if gold[item.id] == "a" else 0.0)
    unlabelled = make_tiny_dataset(tmp_path / "bare", {"train": 1})
    rows = [json.loads(line) for line in (unlabelled / "metadata.jsonl").read_text().splitlines()]
    (unlabelled / "metadata.jsonl").write_text("".join(json.dumps({**r, "label": None}) + "\n" for r in rows))
    with pytest.raises(InputError, match="gold items need known labels"):
        import_dataset(store, unlabelled, "g2", gold=0.2)
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(InputError, match="gold must be a share from 0 to 1"):
            import_dataset(store, data, "g3", gold=bad)
    assert queue_names_of(store) == ["g"]


def queue_names_of(store):
    from ume_mma.annotate import queue_names

    return queue_names(store)


def test_review_lists_disagreements_and_model_disagreements_and_export_uses_resolutions(store_url, tmp_path):
    from ume_mma.annotate.export import export
    from ume_mma.annotate.review import history, resolve, review_items
    from ume_mma.data.format import load_dataset

    data = make_tiny_dataset(tmp_path / "data", {"train": 1})  # 3 items a b c
    queue = _queue(store_url, data, order="file", overlap=2)
    store = queue.store
    fused = {"fused": {"label": "c", "confidences": {"c": 1.0}}, "branches": {"image": {"label": "c"}}}
    with store.transaction() as conn:
        conn.execute(schema.queue_items.update().values(prediction=fused))
    for who, labels in (("ann", ["a", "b", "c"]), ("bob", ["a", "c", "c"])):
        for label in labels:
            item = queue.next_item(who)
            queue.submit(item.id, label, who, note=f"{who} says {label}")
    ids = sorted(i.id for i in [queue.item(n) for n in range(1, 4)])
    disagree = review_items(store, "default")
    assert [d["item_id"] for d in disagree] == [ids[1]] and disagree[0]["predicted"] == {"image": "c", "fused": "c"}
    assert [(a["annotator"], a["label"], a["note"]) for a in disagree[0]["annotations"]] == [
        ("ann", "b", "ann says b"), ("bob", "c", "bob says c")
    ]  # fmt: skip
    model = review_items(store, "default", "model")  # the majority differs from the fused answer "c"
    assert [d["item_id"] for d in model] == [ids[0], ids[1]]  # a,a -> a; b,c -> no majority
    with pytest.raises(InputError, match="which is one of"):
        review_items(store, "default", "some")
    with pytest.raises(InputError, match="unknown label 'z'"):
        resolve(store, "default", ids[1], "z", "rita")
    with pytest.raises(LeaseError, match="has no item 99"):
        resolve(store, "default", 99, "b", "rita")
    first = resolve(store, "default", ids[1], "c", "rita", note="the image is a c")
    second = resolve(store, "default", ids[1], "b", "rita", note="no: b")
    assert (first["before"], second["before"]) == (None, "c")
    steps = [(e["what"], e["who"], e["before"], e["after"]) for e in history(store, "default", ids[1])]
    assert steps == [("label", "ann", None, "b"), ("label", "bob", None, "c"), ("resolve", "rita", None, "c"),
                     ("resolve", "rita", "c", "b")]  # fmt: skip
    result = export(store, tmp_path / "out", queue="default")
    lines = {s.id: s for s in load_dataset(tmp_path / "out").samples}
    assert result.unresolved == [] and len(lines) == 3 and lines[second["id"]].label == "b"
    assert lines[second["id"]].meta["labels"] == {"ann": "b", "bob": "c"}
    assert store.counts()["annotations"] == 6  # nothing was lost: every label stays in the store


def test_a_direct_annotation_in_a_team_queue_leaves_its_item_open_for_more_labels(store_url, tmp_path):
    from ume_mma.annotate.direct import annotate_sample

    data = make_tiny_dataset(tmp_path / "data", {"train": 1})
    url, media = store_url
    store = open_store(url, media)
    image = str(next((data / "images").glob("*.png")))
    annotate_sample(store, {"image": image}, "a", "ann", ["a", "b"], queue="team")
    queue = AnnotationQueue(store, "team")
    assert queue.stats().labelled == 1  # overlap 1: done
    queue.set_overlap(2)
    annotate_sample(store, {"image": image}, "b", "ann", ["a", "b"], queue="team")
    s = queue.stats()
    assert (s.total, s.labelled, s.labels_given) == (2, 0, 2)  # both wait for a second annotator
    assert queue.next_item("ann") is None  # ann labelled both
    item = queue.next_item("bob")
    queue.submit(item.id, "a", "bob")
    assert queue.stats().labelled == 1
