"""Any importer's source into a new dataset folder and/or an annotation queue, all or nothing (``/import_data``).

    summary = import_into(store, "csv", source="list.csv", dataset="my-clips", queue="my-clips",
                          predictor=predictor, options={"label": "class"})

The dataset folder is built in a hidden folder of :func:`ume_mma.home.datasets_root` (beside the store's media
and jobs) and renamed into place only once the queue, if any, took every row; a refusal leaves no folder and no
queue row. Into a queue alone, labels are optional: a dataset folder of ours is read as it is (nothing copied),
a CSV's empty label cells and a Label Studio project's tasks without an annotation are rows to annotate.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ume_mma.annotate.ingest import import_dataset, read_unlabelled
from ume_mma.annotate.queue import AnnotationQueue
from ume_mma.annotate.rank import DEFAULT_ORDER, ORDERS, predict_queue
from ume_mma.annotate.store import Store
from ume_mma.compat import Fit
from ume_mma.data.format import Sample, load_dataset
from ume_mma.data.imports.choice import check_options, importer, run_import, summarize
from ume_mma.data.imports.staging import ImportRefused
from ume_mma.data.imports.uploads import gather, import_uploads, source_in
from ume_mma.home import datasets_root

DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
Progress = Callable[[int, int], None]


def dataset_target(store: Store, name: str) -> Path | None:
    """The new dataset folder called ``name`` in the store's datasets folder (None for ``""``)."""
    if not name:
        return None
    if not DATASET_NAME.fullmatch(name):
        raise ImportRefused(f"a dataset name is letters, digits, '.', '_' and '-' (at most 100, not starting with "
                            f"'.' or '-'); got {name!r}")  # fmt: skip
    target = datasets_root(store.media.root) / name
    if target.exists():
        raise ImportRefused(f"dataset {name!r} exists already in the data folder: choose a new name")
    return target


def _stage(kind: str, source: str, files: list[str], staged: Path, keep: bool, max_file_bytes: int,
           options: Mapping[str, Any]) -> tuple[Path, list[Sample], list[str]]:  # fmt: skip
    """(the folder to read, its rows, what was left out): built in ``staged``, or (a dataset folder of ours into a
    queue alone, ``keep`` False) the source itself."""
    spec, uploads = importer(kind), staged.parent / "uploads"
    if spec.name == "dataset" and not keep:  # labels optional, nothing copied
        check_options(spec, options)  # it takes none
        skipped = gather(files, uploads, max_file_bytes) if files else []
        folder = source_in("dataset", uploads) if files else Path(source).expanduser()
        return folder, [s for _, s in read_unlabelled(folder)], skipped
    unlabelled = not keep  # a queue alone takes rows without a label (a CSV's empty cell, a task not annotated)
    if files:
        folder, skipped = import_uploads(spec.name, files, staged, uploads, max_file_bytes, dict(options), unlabelled)
    else:
        folder, skipped = run_import(spec.name, source, staged, options, unlabelled)
    rows = [s for _, s in read_unlabelled(folder)] if unlabelled else load_dataset(folder).samples
    return folder, rows, skipped


def _into_queue(store: Store, folder: Path, queue: str, predictor: Any, labels: list[str], order: str,
                summary: dict[str, Any], progress: Progress | None) -> dict[str, Any]:  # fmt: skip
    fit = Fit.of(predictor, f"checkpoint {predictor.name}")
    result = import_dataset(store, folder, queue, labels=labels, order=order, fit=fit)
    if result.note():
        summary["notes"].append(result.note())
    if result.duplicates:
        summary["skipped"].append(f"{result.duplicates} rows already in queue {queue!r}: not added again")
    predict_queue(store, predictor, queue, progress=progress, show_progress=False)
    q = AnnotationQueue(store, queue)
    return {"queue": queue, "added": result.added, "duplicates": result.duplicates, "total": q.stats().total,
            "labels": q.labels(), "new_labels": result.new_labels}  # fmt: skip


def import_into(
    store: Store,
    kind: str,
    source: str = "",
    files: Iterable[str] = (),
    dataset: str = "",
    queue: str = "",
    predictor: Any = None,
    labels: Iterable[str] = (),
    order: str = DEFAULT_ORDER,
    options: Mapping[str, Any] | None = None,
    max_file_bytes: int = 50 * 2**20,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Import ``source`` (a path) or ``files`` (uploads) with importer ``kind`` into the new dataset folder
    ``dataset`` (a name) and/or ``queue`` (predicted by ``predictor``; ``labels`` added to its choices). Returns
    the summary: :func:`~ume_mma.data.imports.choice.summarize`'s keys plus ``importer``, ``dataset`` and
    ``folder`` (None without one), ``queue`` (its counts and labels, None without one) and ``notes``."""
    spec, files = importer(kind), list(files)
    out = dataset_target(store, dataset)
    if out is None and not queue:
        raise ImportRefused("import into what? Name a new dataset, a queue, or both")
    if source and files:
        raise ImportRefused("give a source on the server or uploads, not both")
    if not source and not files:
        raise ImportRefused(f"give the source ({spec.source}) on the server, or upload it")
    if order not in ORDERS:
        raise ImportRefused(f"unknown order {order!r}; known: {', '.join(ORDERS)}")
    if queue and predictor is None:
        raise ImportRefused("a queue is predicted by a checkpoint: give one")
    root = datasets_root(store.media.root)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".import-", dir=root))  # beside the target: renamed, never copied
    try:
        staged = work / "dataset"
        folder, rows, skipped = _stage(spec.name, source, files, staged, out is not None, max_file_bytes,
                                       options or {})  # fmt: skip
        summary = {"importer": spec.name, **summarize(rows, skipped), "dataset": None, "folder": None}
        summary |= {"queue": None, "notes": []}
        if queue:
            summary["queue"] = _into_queue(store, folder, queue, predictor, sorted(set(labels)), order, summary,
                                           progress)  # fmt: skip
        if out is not None:
            os.replace(staged, out)
            summary["dataset"], summary["folder"] = out.name, str(out)
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)
