"""Annotation: a durable store of samples, queues with leases and annotations (SQLite or PostgreSQL),
ordering from a checkpoint's predictions (``mixed`` by default: disagreement, class balance, diversity), and
export to the dataset format.

    store = open_store(default_db())        # ume_mma.home.default_db(), or "postgresql://...", media_dir=...
    import_dataset(store, "my_data/", labels=None)             # metadata.jsonl, labels optional
    predict_queue(store, Predictor.from_pretrained("checkpoints/av-digits"))  # background
    q = AnnotationQueue(store)
    item = q.next_item("alice")                                # leased for 10 minutes
    q.submit(item.id, "7", "alice", flags={"audio": ["noisy"]}, note="")
    export(store, "out/")                                      # load_dataset("out/") reads it

A team: ``import_dataset(..., overlap=2, gold=0.1)`` gives each item to two annotators and makes a tenth of
the labelled lines gold items; ``ume_mma.annotate.agreement.queue_agreement(store, queue)`` (Krippendorff's
alpha, Fleiss' and Cohen's kappa, gold accuracy); ``ume_mma.annotate.review`` (``review_items``, ``resolve``,
``history``): a reviewer's resolution is what ``export`` writes.
"""

from ume_mma.annotate.export import export, push_dataset
from ume_mma.annotate.ingest import ImportResult, import_dataset
from ume_mma.annotate.queue import AnnotationQueue, Item, QueueStats, queue_names
from ume_mma.annotate.rank import DEFAULT_ORDER, ORDERS, order_queue, predict_queue
from ume_mma.annotate.schema import FLAGS, SCHEMA_VERSION
from ume_mma.annotate.store import Store, open_store

__all__ = [
    "FLAGS",
    "DEFAULT_ORDER",
    "ORDERS",
    "SCHEMA_VERSION",
    "AnnotationQueue",
    "ImportResult",
    "Item",
    "QueueStats",
    "Store",
    "export",
    "import_dataset",
    "open_store",
    "order_queue",
    "predict_queue",
    "push_dataset",
    "queue_names",
]
