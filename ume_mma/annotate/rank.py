"""The prediction pass over a queue and the orders in which its items are handed out.

``predict_queue`` predicts every item with a ``ume_mma.predictor.Predictor`` (its encoder-output cache
makes repeated files free; ``predict_many`` is used in batches when the predictor has it), stores each
item's branch and fused predictions with a summary (do the branches disagree? fused margin, confidence),
then ranks the queue. Orders are a small registry: name -> sort key over the stored summaries.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from tqdm.auto import tqdm

from ume_mma.annotate import mixed, schema
from ume_mma.annotate.store import Store, sample_dict
from ume_mma.errors import InputError, UmeMmaError

if TYPE_CHECKING:
    from ume_mma.predictor import Predictor  # or anything with labels, name, predict (and predict_many)

items_t, queues_t = schema.queue_items, schema.queues
Progress = Callable[[int, int], None]
SortKey = Callable[[Mapping[str, Any]], tuple]


def _unpredicted_last(row: Mapping[str, Any]) -> int:
    return 0 if row["confidence"] is not None else 1


Ranker = Callable[[list[Mapping[str, Any]], int], list[Mapping[str, Any]]]  # (rows, seed) -> rows in order


def _uncertain_first(r: Mapping[str, Any]) -> tuple:
    """Branches disagree (with each other or with the fused answer) first, then the smallest fused margin."""
    return (_unpredicted_last(r), not r["disagree"], r["margin"] or 0.0, r["position"])


def _by(key: SortKey) -> Ranker:
    return lambda rows, seed: sorted(rows, key=key)


def _shuffled(rows: list[Mapping[str, Any]], seed: int) -> list[Mapping[str, Any]]:
    ranked = sorted(rows, key=lambda r: r["position"])
    random.Random(seed).shuffle(ranked)
    return ranked


ORDERS: dict[str, Ranker] = {
    "disagreement": _by(_uncertain_first),
    "confidence": _by(lambda r: (_unpredicted_last(r), r["confidence"] or 0.0, r["position"])),  # least sure first
    "file": _by(lambda r: (r["position"],)),
    "random": _shuffled,  # with the queue's seed
    # disagreement first, balanced over the fused labels and spread over the confusions (ume_mma.annotate.mixed)
    "mixed": lambda rows, seed: mixed.rank(rows, _uncertain_first),
}
DEFAULT_ORDER = "mixed"  # the order of a new queue (CLI, app, /import_queue) unless another is chosen


def summarize(prediction: Mapping[str, Any]) -> dict[str, Any]:
    """``disagree``, ``margin`` (fused top-1 minus top-2) and ``confidence`` (fused top-1) of a
    ``Prediction.to_dict()``. Some branch differing from the fused label covers both "branches disagree
    with each other" (they cannot all equal the fused label then) and "a branch disagrees with fusion"."""
    fused = prediction["fused"]
    probs = sorted(fused["confidences"].values(), reverse=True)
    branches = prediction.get("branches", {})
    return {
        "disagree": any(b["label"] != fused["label"] for b in branches.values()),
        "margin": probs[0] - (probs[1] if len(probs) > 1 else 0.0),
        "confidence": probs[0],
    }


def _queue(conn: sa.Connection, name: str) -> Mapping[str, Any]:
    row = conn.execute(sa.select(queues_t).where(queues_t.c.name == name)).mappings().first()
    if row is None:
        names = sorted(conn.execute(sa.select(queues_t.c.name)).scalars())
        raise InputError(f"no queue named {name!r}; the queues are: {', '.join(map(repr, names)) or 'none yet'}")
    return row


def order_queue(store: Store, queue: str = "default", order: str | None = None, seed: int | None = None) -> None:
    """Rank the pending items of ``queue`` by ``order`` (default: the queue's own; one of ORDERS), with
    ``seed`` for "random". Skipped items lose their place to the end only until the next ranking."""
    with store.transaction() as conn:
        q = _queue(conn, queue)
        order = order or q["order"]
        seed = q["seed"] if seed is None else seed
        if order not in ORDERS:
            raise InputError(f"unknown order {order!r}; known: {', '.join(ORDERS)}")
        cols = [items_t.c.id, items_t.c.position, items_t.c.disagree, items_t.c.margin, items_t.c.confidence]
        if order == "mixed":  # it reads the stored predictions too
            cols.append(items_t.c.prediction)
        rows = conn.execute(sa.select(*cols).where(items_t.c.queue_id == q["id"])).mappings().all()
        ranked = ORDERS[order](list(rows), seed)
        if ranked:
            update = items_t.update().where(items_t.c.id == sa.bindparam("item")).values(rank=sa.bindparam("r"))
            conn.execute(update, [{"item": r["id"], "r": i} for i, r in enumerate(ranked)])
        conn.execute(queues_t.update().where(queues_t.c.id == q["id"]).values(order=order, seed=seed))


def _predict_batch(predictor: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Predict one batch; an item the model cannot use (no input for its modalities, undecodable) gets
    ``{"error": message}`` instead of failing the pass. ``predict_many(list of inputs)`` may return an
    ``UmeMmaError`` in a failed item's slot, or raise (then the batch is retried item by item)."""
    many = getattr(predictor, "predict_many", None)
    if many is not None:
        try:
            results = list(many([s["inputs"] for s in batch]))
        except UmeMmaError:
            results = None  # one bad item failed the whole call: find it item by item
        if results is not None and len(results) == len(batch):
            return [{"error": str(r)} if isinstance(r, Exception) else r.to_dict() for r in results]
    out = []
    for s in batch:
        try:
            out.append(predictor.predict(s["inputs"]).to_dict())
        except UmeMmaError as exc:
            out.append({"error": str(exc)})
    return out


def predict_queue(
    store: Store,
    predictor: Predictor,
    queue: str = "default",
    *,
    batch_size: int = 32,
    progress: Progress | None = None,
    redo: bool = False,
    show_progress: bool = True,
) -> int:
    """Predict every item of ``queue`` not predicted yet (all with ``redo``), store the predictions, add
    the predictor's labels to the queue's label set, and rank the queue by its order. ``progress(done,
    total)`` is called after each batch (for a UI); a tqdm bar is shown unless ``show_progress=False``.
    Each batch is committed on its own, so an interrupted pass keeps what it did and the next call resumes
    (a UI can stop the pass by raising from ``progress``). Call it again after importing more items (only
    those are predicted; the whole queue is re-ranked). Returns the number of items predicted."""
    with store.transaction() as conn:
        q = _queue(conn, queue)
        where = [items_t.c.queue_id == q["id"]] + ([] if redo else [items_t.c.prediction.is_(None)])
        todo = conn.execute(sa.select(items_t.c.id, items_t.c.sample_id).where(*where).order_by(items_t.c.position))
        todo = todo.all()
        labels = sorted(set(q["labels"]) | set(predictor.labels))
        conn.execute(queues_t.update().where(queues_t.c.id == q["id"]).values(labels=labels, checkpoint=predictor.name))
    done = 0
    with tqdm(total=len(todo), desc=f"predicting {queue}", unit="item", disable=not show_progress) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            with store.transaction() as conn:
                sample_rows = conn.execute(
                    sa.select(schema.samples).where(schema.samples.c.id.in_([r.sample_id for r in chunk]))
                ).mappings()
                by_id = {r["id"]: sample_dict(store.media, r) for r in sample_rows}
            preds = _predict_batch(predictor, [by_id[r.sample_id] for r in chunk])
            rows = [_row(r.id, p, store.clock()) for r, p in zip(chunk, preds, strict=True)]
            with store.transaction() as conn:
                update = items_t.update().where(items_t.c.id == sa.bindparam("item"))
                conn.execute(update.values({k[2:]: sa.bindparam(k) for k in rows[0] if k != "item"}), rows)
            done += len(chunk)
            bar.update(len(chunk))
            if progress is not None:
                progress(done, len(todo))
    order_queue(store, queue)
    return done


def _row(item_id: int, prediction: dict[str, Any], now: float) -> dict[str, Any]:
    summary = {"disagree": None, "margin": None, "confidence": None}
    if "error" not in prediction:
        summary = summarize(prediction)
    values = {"prediction": prediction, "updated_at": now, **summary}
    return {"item": item_id, **{f"b_{k}": v for k, v in values.items()}}  # bind names may not be column names
