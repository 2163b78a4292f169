"""The annotation queue on real SQLite and PostgreSQL: leases (concurrent clients, expiry), submit, skip,
undo, bad annotations, import without labels, and the orders built from stored predictions."""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.tiny import make_tiny_dataset
from ume_mma.annotate import AnnotationQueue, import_dataset, open_store, order_queue, predict_queue, schema
from ume_mma.errors import DatasetFormatError, InputError, LeaseError
from ume_mma.predictor import BranchResult, Prediction

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def tiny(tmp_path):
    return make_tiny_dataset(tmp_path / "data", {"train": 2})  # 6 items: a a b b c c


def _queue(store_url, data, clock=None, **kw):
    url, media = store_url
    store = open_store(url, media, **({"clock": clock} if clock else {}))
    import_dataset(store, data, **({"order": "disagreement"} | kw))  # the orders' tests below are exact
    return AnnotationQueue(store)


def test_concurrent_clients_never_hold_the_same_item(store_url, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", {"train": 8})  # 24 items
    queue = _queue(store_url, data)
    start = threading.Barrier(6)
    held: list[list[int]] = [[] for _ in range(6)]

    def client(k: int) -> None:
        start.wait()
        while (item := queue.next_item(f"annotator-{k}")) is not None:
            held[k].append(item.id)
            queue.submit(item.id, item.given_label, f"annotator-{k}")

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(client, range(6)))
    ids = [i for h in held for i in h]
    assert len(ids) == len(set(ids)) == 24  # every item handed out exactly once
    stats = queue.stats()
    assert (stats.labelled, stats.pending, sum(stats.annotators.values())) == (24, 0, 24)


def test_simultaneous_leases_are_distinct(store_url, tiny):
    queue = _queue(store_url, tiny)
    start = threading.Barrier(4)

    def lease(k: int) -> int:
        start.wait()
        return queue.next_item(f"a{k}").id

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lease, range(4)))
    assert len(set(ids)) == 4
    assert queue.stats().leased == 4


def test_concurrent_submits_of_one_item_store_one_annotation(store_url, tiny):
    queue = _queue(store_url, tiny)
    for item_id in [queue.next_item(f"holder{i}").id for i in range(3)]:
        queue.store.clock = lambda: 2e10  # every lease has expired: anyone may submit
        start = threading.Barrier(2)

        def submit(who: str, item_id: int = item_id, start: threading.Barrier = start) -> str:
            start.wait()
            try:
                return queue.submit(item_id, "a", who)
            except LeaseError as exc:
                return str(exc)

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(submit, ["x", "y"]))
        assert sorted(len(r) == 32 for r in results) == [False, True], results  # one annotation id, one error
        assert [r for r in results if len(r) != 32][0] == f"item {item_id} is already labelled"
    assert queue.store.counts()["annotations"] == 3


def test_an_expired_lease_returns_the_item(store_url, clock, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", {"train": 1})  # 3 items
    queue = _queue(store_url, data, clock, order="file")
    first = queue.next_item("alice", lease_seconds=600)
    assert queue.next_item("alice").id == first.id  # the held item comes back to its holder
    others = [queue.next_item("bob").id, queue.next_item("carol").id]
    assert first.id not in others and queue.next_item("dave") is None
    clock.now += 599
    assert queue.next_item("dave") is None
    clock.now += 2  # alice's lease (and the others') expired
    assert queue.next_item("dave").id == first.id
    with pytest.raises(LeaseError, match="leased to 'dave'"):
        queue.submit(first.id, "a", "alice")
    queue.submit(first.id, "a", "dave")
    with pytest.raises(LeaseError, match="already labelled"):
        queue.submit(first.id, "a", "dave")


BAD_ANNOTATIONS = {
    "unknown label": (dict(label="zebra"), "unknown label 'zebra'"),
    "unknown flag": (dict(flags={"audio": ["loud"]}), "unknown flag"),
    "unknown modality": (dict(flags={"smell": ["noisy"]}), "unknown modality 'smell'"),
    "absent modality": (dict(flags={"video": ["noisy"]}), "has no video"),
    "empty annotator": (dict(annotator=" "), "annotator"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_a_bad_annotation_stores_nothing(store_url, tiny, case):
    queue = _queue(store_url, tiny)
    item = queue.next_item("alice")
    args, match = BAD_ANNOTATIONS[case]
    with pytest.raises(InputError, match=match):
        queue.submit(item.id, **{"label": "a", "annotator": "alice", **args})
    assert queue.store.counts()["annotations"] == 0
    again = queue.item(item.id)
    assert (again.state, again.leased_by) == ("pending", "alice")


def test_submit_stores_flags_note_and_prediction_context(store_url, tiny):
    queue = _queue(store_url, tiny)
    item = queue.next_item("alice")
    ann = queue.submit(item.id, "c", "alice", flags={"audio": ["noisy", "corrupt", "noisy"], "image": []}, note="hm")
    with queue.store.transaction() as conn:
        row = conn.execute(sa.select(schema.annotations)).mappings().one()
    assert row["id"] == ann and row["flags"] == {"audio": ["corrupt", "noisy"]} and row["note"] == "hm"
    assert (row["label"], row["annotator"], row["item_id"], row["prediction"]) == ("c", "alice", item.id, None)
    assert queue.item(item.id).state == "done"


def test_undo_last_and_skip(store_url, tiny, clock):
    queue = _queue(store_url, tiny, clock, order="file")
    first = queue.next_item("alice")
    queue.submit(first.id, "a", "alice")
    clock.now += 1
    second = queue.next_item("alice")
    queue.submit(second.id, "b", "alice")
    assert queue.stats().labelled == 2
    back = queue.undo_last("alice")
    assert back.id == second.id and back.state == "pending" and back.leased_by == "alice"
    assert queue.next_item("bob").id not in (first.id, second.id)  # the undone item stays with alice
    assert queue.next_item("alice").id == second.id
    assert queue.undo_last("alice").id == first.id
    assert queue.undo_last("alice") is None and queue.undo_last("nobody") is None
    stats = queue.stats()
    assert stats.labelled == 0 and stats.annotators == {}
    assert queue.store.counts()["annotations"] == 2  # undone annotations are kept, marked
    # skip: the item goes to the end of the queue and is free again
    item = queue.next_item("carol")
    queue.skip(item.id, "carol")
    order = []
    while (nxt := queue.next_item("erin")) is not None:
        order.append(nxt.id)
        queue.submit(nxt.id, "a", "erin")
    assert order[-1] == item.id and len(order) == 3  # 6 items, 2 leased by alice and 1 by bob


def test_importing_a_folder_again_adds_only_what_is_new(store_url, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", {"train": 1})
    queue = _queue(store_url, data)
    again = import_dataset(queue.store, data)
    assert (again.added, again.duplicates) == (0, 3)
    with (data / "metadata.jsonl").open("a") as fh:
        fh.write(json.dumps({"text": "new"}) + "\n")
    assert (import_dataset(queue.store, data).added, queue.stats().total) == (1, 4)
    assert queue.store.counts()["samples"] == 4
    other = import_dataset(queue.store, data, queue="second")  # another queue has its own items
    assert (other.added, other.duplicates) == (4, 0)


def test_import_without_labels(store_url, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", {"train": 1})
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    rows[0].pop("label")
    rows[1]["label"] = None
    rows.append({"text": "only a text"})
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    queue = _queue(store_url, data, labels=["x"], order="file")
    items = [queue.next_item(f"u{i}") for i in range(4)]
    assert [i.given_label for i in items] == [None, None, "c", None]
    assert items[0].labels == queue.labels() == ["c", "x"]  # the given labels plus the dataset's
    assert items[3].inputs == {"text": "only a text"}
    with pytest.raises(InputError, match="unknown label 'a'"):
        queue.submit(items[0].id, "a", "u0")


def test_import_rejects_bad_lines_with_the_format_rules(store_url, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "metadata.jsonl").write_text('{"text": "ok"}\n{"label": "a"}\n')
    url, media = store_url
    store = open_store(url, media)
    with pytest.raises(DatasetFormatError, match="line 2: sample has no modality"):
        import_dataset(store, data)
    (data / "metadata.jsonl").write_text('{"text": "ok", "colour": "red"}\n')
    with pytest.raises(DatasetFormatError, match="unknown field 'colour'"):
        import_dataset(store, data)
    with pytest.raises(InputError, match="unknown order"):
        import_dataset(store, data, order="alphabetical")
    assert store.counts()["samples"] == 0


# ----------------------------------------------------------------------------------------------- ordering
# text of an item -> (fused probabilities over x/y/z, branch labels); "fail" cannot be predicted
PLANNED = {
    "p0": ([0.9, 0.05, 0.05], {"text": "x"}),  # agree, margin .85
    "p1": ([0.6, 0.3, 0.1], {"text": "x", "image": "y"}),  # disagree, margin .3
    "p2": ([0.5, 0.4, 0.1], {"text": "x"}),  # agree, margin .1
    "p3": ([0.1, 0.45, 0.45], {"text": "z", "image": "z"}),  # fused y (first max): both disagree, margin 0
    "fail": None,
    "p5": ([0.2, 0.7, 0.1], {"text": "y"}),  # agree, margin .5
}


class PlannedPredictor:
    """A predictor whose answers are planned per text input (to test the orders exactly)."""

    labels = ["x", "y", "z"]
    name = "planned"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, inputs):
        self.calls.append(1)
        return self.answer(inputs)

    def answer(self, inputs):
        plan = PLANNED[inputs["text"]]
        if plan is None:
            raise InputError("no input for any enabled modality")
        probs, branches = plan
        fused = dict(zip(self.labels, probs, strict=True))
        top = max(fused, key=fused.get)
        results = {m: BranchResult(label, {label: 1.0}) for m, label in branches.items()}
        return Prediction("planned", "ume", sorted(branches), BranchResult(top, fused), results, {})


class BatchPredictor(PlannedPredictor):
    """``predict_many`` as the predictor has it: a failed item's slot holds its error."""

    def predict_many(self, many):
        self.calls.append(len(many))
        out = []
        for inputs in many:
            try:
                out.append(self.answer(inputs))
            except InputError as exc:
                out.append(exc)
        return out


class RaisingBatchPredictor(PlannedPredictor):
    """A ``predict_many`` that raises when one item fails: the pass retries that batch item by item."""

    def predict_many(self, many):
        self.calls.append(len(many))
        return [self.answer(inputs) for inputs in many]


@pytest.fixture
def planned(tmp_path):
    data = tmp_path / "planned"
    data.mkdir()
    (data / "metadata.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in PLANNED))
    return data


def _handed_out(queue: AnnotationQueue) -> list[str]:
    texts = []
    while (item := queue.next_item("ann")) is not None:
        texts.append(item.inputs["text"])
        queue.submit(item.id, "x", "ann")
    return texts


@pytest.mark.parametrize("predictor_cls", [PlannedPredictor, BatchPredictor, RaisingBatchPredictor])
def test_disagreement_first_then_smallest_margin(store_url, planned, predictor_cls):
    queue = _queue(store_url, planned)
    progress = []
    predictor = predictor_cls()
    n = predict_queue(queue.store, predictor, batch_size=4, progress=lambda *a: progress.append(a))
    assert n == 6 and progress == [(4, 6), (6, 6)]
    if predictor_cls is not PlannedPredictor:
        assert predictor.calls[0] == 4  # batched
    if predictor_cls is BatchPredictor:
        assert predictor.calls == [4, 2]  # the failed item did not cost a retry
    stats = queue.stats()
    assert stats.disagreements_left == 2
    item = queue.item(queue.next_item("peek").id)
    assert item.inputs["text"] == "p3" and item.disagree and item.margin == 0.0
    assert item.prediction["branches"]["image"]["label"] == "z" and item.labels == ["x", "y", "z"]
    queue.skip(item.id, "peek")
    order_queue(queue.store, "default")  # re-ranking puts the skipped item back in its place
    assert _handed_out(queue) == ["p3", "p1", "p2", "p5", "p0", "fail"]
    assert queue.store.counts()["annotations"] == 6


def test_a_stopped_prediction_pass_keeps_its_batches_and_resumes(store_url, planned):
    queue = _queue(store_url, planned)

    def stop(done, total):
        raise KeyboardInterrupt  # a UI cancelling the pass from its progress callback

    with pytest.raises(KeyboardInterrupt):
        predict_queue(queue.store, PlannedPredictor(), batch_size=4, progress=stop, show_progress=False)
    with queue.store.transaction() as conn:
        predicted = conn.execute(sa.select(sa.func.count()).where(schema.queue_items.c.prediction.is_not(None)))
        assert predicted.scalar_one() == 4
    again = PlannedPredictor()
    assert predict_queue(queue.store, again, show_progress=False) == 2 and len(again.calls) == 2
    assert queue.next_item("ann").inputs["text"] == "p3"


def test_other_orders(store_url, planned):
    queue = _queue(store_url, planned)
    predict_queue(queue.store, PlannedPredictor(), show_progress=False)
    order_queue(queue.store, "default", "confidence")
    with queue.store.transaction() as conn:
        rows = conn.execute(sa.select(schema.queue_items.c.rank, schema.samples.c.text).join(schema.samples))
        by_rank = [text for _, text in sorted(rows)]
    assert by_rank == ["p3", "p2", "p1", "p5", "p0", "fail"]
    orders = {}
    for seed in (0, 0, 1):
        order_queue(queue.store, "default", "random", seed=seed)
        with queue.store.transaction() as conn:
            ranks = conn.execute(sa.select(schema.queue_items.c.id).order_by(schema.queue_items.c.rank)).scalars()
            orders.setdefault(seed, []).append(list(ranks))
    assert orders[0][0] == orders[0][1] != orders[1][0]  # seeded: reproducible, and the seed matters
    assert sorted(orders[0][0]) == sorted(orders[1][0])
    order_queue(queue.store, "default", "file")
    assert [i for i in _handed_out(queue)] == list(PLANNED)


def test_disagreement_first_with_the_shipped_checkpoint(tmp_path):
    """Real predictions: checkpoints/av-digits on the assets pair whose branches disagree (image 2, spoken 5)
    and pairs that agree (7): the disagreeing pair is handed out first."""
    from ume_mma.predictor import Predictor

    assets, data = ROOT / "assets", tmp_path / "av"
    shutil.copytree(assets, data / "assets", ignore=shutil.ignore_patterns("*.mp4", "*.json", "*.py"))
    rows = [
        {"image": "assets/agree_7_image_7.png", "audio": "assets/agree_7_speech_7_en_US_f_Allison.wav"},
        {"image": "assets/agree_7_image_7.png"},
        {"image": "assets/disagree_2_5_image_2.png", "audio": "assets/disagree_2_5_speech_5_es_MX_f_Allison.wav"},
        {"audio": "assets/agree_7_speech_7_en_US_f_Allison.wav"},
    ]
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    queue = _queue((str(tmp_path / "a.db"), None), data)
    predictor = Predictor.from_pretrained(ROOT / "checkpoints" / "av-digits")
    predict_queue(queue.store, predictor, show_progress=False)
    first = queue.next_item("alice")
    branches = {m: b["label"] for m, b in first.prediction["branches"].items()}
    assert first.position == 2 and first.disagree and branches == {"image": "2", "audio": "5"}
    assert queue.stats().disagreements_left == 1
    assert predictor.stats["encoder_calls"] == 4  # the repeated image and clip were encoded once each
    queue.submit(first.id, "2", "alice", flags={"audio": ["irrelevant"]})
    rest = []
    while (item := queue.next_item("alice")) is not None:
        rest.append(item)
        queue.submit(item.id, "7", "alice")
    assert len(rest) == 3 and all(not r.disagree and r.prediction["fused"]["label"] == "7" for r in rest)


def test_counts_are_disjoint_after_undo(store_url, tmp_path, clock):
    """The issue's case: 3 items, one labelled then undone: pending 2 + leased 1 + labelled 0 = total 3."""
    queue = _queue(store_url, make_tiny_dataset(tmp_path / "three", {"train": 1}), clock)
    item = queue.next_item("alice")
    queue.submit(item.id, item.given_label, "alice")
    assert queue.undo_last("alice").id == item.id
    s = queue.stats()
    assert (s.total, s.labelled, s.pending, s.leased) == (3, 0, 2, 1)
    queue.next_item("bob")  # a second lease
    s = queue.stats()
    assert (s.pending, s.leased) == (1, 2) and s.labelled + s.pending + s.leased == s.total
    clock.now += 10_000  # every lease expired: the items are free again
    assert (queue.stats().pending, queue.stats().leased) == (3, 0)


def test_a_queue_that_does_not_exist_reads_as_empty(store_url, tiny):
    url, media = store_url
    store = open_store(url, media)
    queue = AnnotationQueue(store, "later")
    assert not queue.exists and queue.next_item("alice") is None and queue.undo_last("alice") is None
    assert queue.stats().to_dict() == {
        "total": 0, "labelled": 0, "pending": 0, "leased": 0, "disagreements_left": 0, "annotators": {},
        "overlap": 1, "labels_given": 0,
    }  # fmt: skip
    with pytest.raises(LeaseError, match="queue 'later' has no item 1") as exc:
        queue.submit(1, "a", "alice")
    assert str(url) not in str(exc.value)  # the queue is named, not the database
    assert store.counts()["queues"] == 0  # reading created nothing
    import_dataset(store, tiny, "later")  # imported later: the same object sees it
    assert queue.exists and queue.stats().total == 6 and queue.next_item("alice") is not None
    with pytest.raises(InputError, match="non-empty name"):
        AnnotationQueue(store, " ")
