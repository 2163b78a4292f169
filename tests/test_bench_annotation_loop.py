"""The annotation-loop bench's pieces: the simulated annotator takes items in queue order and gives the true
label, the pool view holds one split, every latency request is new content, and the targets come from the rows."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from tests.tiny import make_tiny_dataset
from ume_mma.annotate import AnnotationQueue, import_dataset, open_store, predict_queue
from ume_mma.annotate import schema as s
from ume_mma.data.format import load_dataset
from ume_mma.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
TINY_CKPT = ROOT / "tests" / "fixtures" / "tiny_checkpoint_v1"


@pytest.fixture
def pool(tmp_path):
    import bench_annotation_loop as loop

    data = make_tiny_dataset(tmp_path / "data", {"train": 6, "val": 1, "test": 2})
    return loop.part_view(data, "train", tmp_path / "pool")


def test_part_view_holds_one_split_with_linked_media(pool):
    ds = load_dataset(pool)
    assert len(ds) == 18 and {x.split for x in ds} == {"train"}
    assert all(x.path("image").is_file() and x.path("audio").is_file() for x in ds)
    assert (pool / "images").is_symlink(), "media are linked, not copied"


@pytest.mark.parametrize("order", ["disagreement", "random"])
def test_the_simulated_annotator_takes_items_in_queue_order_with_the_true_label(pool, tmp_path, order):
    import bench_annotation_loop as loop
    import sqlalchemy as sa

    store = open_store(tmp_path / "a.db")
    import_dataset(store, pool, queue="q", order=order, seed=3)
    predict_queue(store, Predictor.from_pretrained(TINY_CKPT), "q", show_progress=False)
    with store.transaction() as conn:
        ranked = conn.execute(
            sa.select(s.samples.c.source_id).join(s.queue_items).order_by(s.queue_items.c.rank)
        ).scalars().all()  # fmt: skip
    queue = AnnotationQueue(store, "q")
    first = loop.annotate(queue, 5)
    assert first == ranked[:5], "the annotator follows the queue's order"
    assert loop.annotate(queue, 4) == ranked[5:9] and queue.stats().labelled == 9
    truth = {x.id: x.label for x in load_dataset(pool)}
    with store.transaction() as conn:
        given = conn.execute(sa.select(s.samples.c.source_id, s.annotations.c.label).join(s.annotations)).all()
    assert len(given) == 9 and all(truth[sid] == label for sid, label in given), "the true label, every time"
    assert loop.annotate(queue, 100) == ranked[9:], "it stops when the queue is empty"


def test_latency_requests_are_new_content_every_call(pool, tmp_path):
    import bench_annotation_loop as loop

    requests = loop.Requests(load_dataset(pool).samples[:2], tmp_path / "req")
    digests = set()
    for _ in range(5):
        r = requests.next()
        digests |= {hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in r.values()}
    assert len(digests) == 10, "every image and every clip differs from all the others"


def test_targets_come_from_the_rows():
    import bench_annotation_loop as loop

    def row(order, k, held, orig, seed=0):
        return {"order": order, "k": k, "seed": seed,
                "accuracy": {"heldout": {"fused": held}, "original_test": {"fused": orig}}}  # fmt: skip

    shipped = {"heldout": {"fused": 0.6}, "original_test": {"fused": 0.99}}
    rows = [
        row("disagreement", 25, 0.7, 0.99),
        row("disagreement", 50, 0.8, 0.985),
        row("disagreement", 50, 0.76, 0.99, 1),
        row("random", 100, 0.77, 0.97),
        row("random", 50, 0.7, 0.99),
    ]
    t = loop.targets(rows, shipped, [25, 50, 100], 42.0, None)
    assert t["heldout_gain_k50_disagreement"] == pytest.approx(0.18)  # the mean over seeds
    assert t["original_test_worst_drop"] == pytest.approx(0.02)
    assert t["disagreement_k_reaching_random_k100"] == 50
    assert t["disagreement_k50_minus_random_k100"] == pytest.approx(0.01)
    assert t["job_100_annotations_wall_s"] == 42.0
