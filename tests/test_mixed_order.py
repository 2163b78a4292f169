"""The ``mixed`` queue order on a queue with known clusters: disagreement first, but not fifty copies of one
confusion (balanced over the fused labels, spread over the predictions)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ume_mma.annotate import AnnotationQueue, import_dataset, open_store, order_queue, predict_queue
from ume_mma.annotate.mixed import embedding, rank
from ume_mma.predictor import BranchResult, Prediction

LABELS = ["1", "2", "3", "4", "5", "8"]


def plan() -> dict[str, tuple[dict[str, float], dict[str, str]]]:
    """text -> (fused probabilities, branch labels). 30 items of one confusion (a 3 the image reads as 8: the
    branches disagree, margins 0.01..0.06, the most uncertain of the queue), then 4 confident items per other label."""
    out = {}
    for i in range(30):
        m = 0.01 + 0.05 * i / 29
        out[f"c{i}"] = ({"3": 0.5 + m / 2, "8": 0.5 - m / 2}, {"image": "8", "audio": "3"})
    for label in ("1", "2", "4", "5", "8"):
        for j in range(4):
            top = 0.6 + 0.08 * j
            out[f"{label}-{j}"] = ({label: top, "3": 1 - top}, {"image": label, "audio": label})
    return out


PLAN = plan()


class Planned:
    labels, name = LABELS, "planned"

    def predict(self, inputs):
        fused, branches = PLAN[inputs["text"]]
        probs = {k: fused.get(k, 0.0) for k in sorted(LABELS, key=lambda k: -fused.get(k, 0.0))}
        results = {m: BranchResult(lab, {lab: 1.0}) for m, lab in branches.items()}
        return Prediction("planned", "ume", sorted(branches), BranchResult(next(iter(probs)), probs), results, {})


@pytest.fixture
def queue(tmp_path):
    data = tmp_path / "clusters"
    data.mkdir()
    (data / "metadata.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in PLAN))
    store = open_store(tmp_path / "a.db")
    import_dataset(store, data, order="mixed")
    predict_queue(store, Planned(), show_progress=False)
    return AnnotationQueue(store)


def _first(queue: AnnotationQueue, n: int) -> list[str]:
    out = []
    for _ in range(n):
        item = queue.next_item("ann")
        out.append(item.inputs["text"])
        queue.submit(item.id, "3", "ann")
    return out


def test_mixed_spreads_the_first_batch_over_labels_and_keeps_disagreement_first(queue):
    first = _first(queue, 12)
    fused = Counter(max(PLAN[t][0], key=PLAN[t][0].get) for t in first)
    assert set(fused) == {"1", "2", "3", "4", "5", "8"} and max(fused.values()) == 2  # every label, twice
    assert first[0] == "c0"  # the most uncertain item of the queue comes first
    for label in ("1", "2", "4", "5", "8"):  # within a label: the least confident first, then not its near-copy
        assert [t for t in first if t.startswith(f"{label}-")] == [f"{label}-0", f"{label}-2"]


def test_disagreement_alone_hands_out_one_confusion(queue):
    order_queue(queue.store, "default", order="disagreement")
    assert all(t.startswith("c") for t in _first(queue, 12))  # what mixed is for


def test_mixed_picks_far_apart_items_within_a_label():
    """Within one label's window, near-copies of what was picked are passed over (k-center, uncertainty first)."""
    rows = []
    for i, p in enumerate([0.50, 0.51, 0.90, 0.52, 0.53]):  # all fused 'a'; the 0.90 one is the odd one out
        pred = {"fused": {"label": "a", "confidences": {"a": p, "b": 1 - p}}, "branches": {}}
        rows.append({"id": i, "position": i, "disagree": False, "margin": 2 * p - 1, "confidence": p,
                     "prediction": pred})  # fmt: skip
    rows.append({"id": 9, "position": 9, "disagree": None, "margin": None, "confidence": None, "prediction": None})
    got = [r["id"] for r in rank(rows, _key)]
    assert got[0] == 0 and got[1] == 2 and got[-1] == 9  # most uncertain, then the farthest; unpredicted last


def _key(r):
    return (r["confidence"] is None, not r["disagree"], r["margin"] or 0.0, r["position"])


def test_the_embedding_aligns_branches_an_item_lacks():
    full = {"fused": {"confidences": {"a": 0.7, "b": 0.3}}, "branches": {"audio": {"confidences": {"a": 1.0}},
            "image": {"confidences": {"b": 1.0}}}}  # fmt: skip
    image_only = {"fused": {"confidences": {"b": 1.0}}, "branches": {"image": {"confidences": {"b": 1.0}}}}
    assert embedding(full, ["a", "b"], ["audio", "image"]).tolist() == [0.7, 0.3, 1.0, 0.0, 0.0, 1.0]
    assert embedding(image_only, ["a", "b"], ["audio", "image"]).tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
