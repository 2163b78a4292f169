"""Export the annotations of a store as a dataset folder that ``ume_mma.data.load_dataset`` and training
read, and push it to the Hugging Face Hub as a dataset repo.

One line per item (undone annotations are left out): a reviewer's resolution where there is one
(``ume_mma.annotate.review``), else the item's one label or the label all its annotators gave; an item whose
labels disagree and that nobody resolved is left out (``ExportResult.unresolved``). Each line has ``label``,
the media files (copied once each, by content, under ``media/``), ``text``, ``split``, ``group`` and ``id`` =
the annotation (or resolution) id; ``meta`` keeps annotator (or ``resolved_by``), time, flags, note, every
annotator's label (``labels``, where more than one labelled the item), checkpoint and what the model predicted.
Splits come from a seeded hash of the group (or of the sample's content when it has no group), so a group
never straddles two splits. A small export whose hash leaves a split empty (a few groups: training refuses a
dataset without train, val and test) moves, for each empty split, the group whose hash is nearest that split's
range into it (from the split that has the most groups), when there are enough groups for every split.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ume_mma.annotate import schema
from ume_mma.annotate.store import Store
from ume_mma.data.format import FILE_MODALITIES, SPLITS, Sample, load_dataset, write_dataset
from ume_mma.errors import InputError, StoreError, UmeMmaError

MEDIA = "media"


@dataclass
class ExportResult:
    path: Path
    counts: dict[str, dict[str, int]]  # label -> split -> number of lines
    annotators: dict[str, int]
    unresolved: list[int] = field(default_factory=list)  # items whose labels disagree and nobody resolved: left out


def _check_fractions(fractions: tuple[float, ...]) -> None:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise InputError(f"split fractions must be 3 non-negative numbers summing to 1, got {fractions}")


def _unit(key: str, seed: int) -> float:
    """A seeded SHA-256 of ``key`` mapped to [0, 1)."""
    return int(hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()[:16], 16) / 2**64


def split_of(key: str, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """The split of a group: a seeded SHA-256 of ``key`` mapped to [0, 1) and cut at the fractions."""
    _check_fractions(fractions)
    u, edge = _unit(key, seed), 0.0
    for name, share in zip(SPLITS, fractions, strict=True):
        edge += share
        if u < edge:
            return name
    return SPLITS[-1]


def assign_splits(
    keys: list[str], seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, str]:
    """Group -> split by :func:`split_of`; then every split with a positive fraction that got no group takes
    the group (of the split with the most groups, which keeps at least one) whose hash is nearest its range.
    Needs at least as many groups as such splits; with fewer, the plain hash split is returned."""
    _check_fractions(fractions)
    out = {k: split_of(k, seed, fractions) for k in dict.fromkeys(keys)}
    wanted = [s for s, share in zip(SPLITS, fractions, strict=True) if share > 0]
    if len(out) < len(wanted):
        return out
    edges = dict(zip(SPLITS, zip([0.0, *itertools.accumulate(fractions)], itertools.accumulate(fractions))))
    for split in wanted:
        if split in out.values():
            continue
        sizes = Counter(out.values())
        donor = max((s for s in sizes if sizes[s] > 1), key=lambda s: (sizes[s], -SPLITS.index(s)))
        lo, hi = edges[split]
        key = min(
            (k for k, s in out.items() if s == donor),
            key=lambda k: min(abs(_unit(k, seed) - lo), abs(_unit(k, seed) - hi)),
        )
        out[key] = split
    return out


def _rows(store: Store, queue: str | None, unresolved: list[int] | None = None) -> list[Mapping[str, Any]]:
    """One row per exported item: a reviewer's resolution where there is one; else its one label, or the
    label its annotators all gave (an item whose labels disagree and that nobody resolved is left out, and
    its id appended to ``unresolved``)."""
    a, s, i, q, r = schema.annotations, schema.samples, schema.queue_items, schema.queues, schema.resolutions
    sample_cols = (s.c.content_key, s.c.group, s.c.source_id, s.c.text, *(s.c[m] for m in FILE_MODALITIES))
    where = [q.c.name == queue] if queue is not None else []
    query = (
        sa.select(a, *sample_cols)
        .join(s, s.c.id == a.c.sample_id)
        .join(i, i.c.id == a.c.item_id)
        .join(q, q.c.id == i.c.queue_id)
        .where(a.c.undone_at.is_(None), *where)
        .order_by(a.c.created_at, a.c.id)
    )
    changes = (
        sa.select(r, i.c.sample_id, i.c.prediction.label("item_prediction"), *sample_cols)
        .join(i, i.c.id == r.c.item_id)
        .join(s, s.c.id == i.c.sample_id)
        .join(q, q.c.id == i.c.queue_id)
        .where(*where)
        .order_by(r.c.seq)
    )
    with store.transaction() as conn:
        rows = list(conn.execute(query).mappings())
        resolved = {c["item_id"]: c for c in conn.execute(changes).mappings()}  # the newest change wins
    by_item: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_item.setdefault(row["item_id"], []).append(row)
    out: list[Mapping[str, Any]] = []
    for item_id in sorted(set(by_item) | set(resolved), key=lambda k: _first_time(by_item, resolved, k)):
        given = by_item.get(item_id, [])
        labels = {g["annotator"]: g["label"] for g in given}
        change = resolved.get(item_id)
        if change is not None and change["label"] is not None:
            base = (
                dict(given[0]) if given else {"flags": {}, "checkpoint": None, "prediction": change["item_prediction"]}
            )
            base.update({k: change[k] for k in ("id", "item_id", "sample_id", "label", "created_at", "content_key",
                                                "group", "source_id", "text", *FILE_MODALITIES)})  # fmt: skip
            base.update(annotator=change["reviewer"], note=change["note"], labels=labels, resolved=True)
            out.append(base)
        elif len(set(labels.values())) == 1:
            out.append({**given[0], "labels": labels if len(labels) > 1 else {}, "resolved": False})
        elif given and unresolved is not None:
            unresolved.append(item_id)
    return out


def _first_time(by_item: dict, resolved: dict, item_id: int) -> tuple[float, str]:
    first = by_item.get(item_id) or [resolved[item_id]]
    return first[0]["created_at"], str(first[0]["id"])


def _meta(row: Mapping[str, Any]) -> dict[str, Any]:
    pred = row["prediction"] or {}
    predicted = {m: b["label"] for m, b in pred.get("branches", {}).items()}
    if pred.get("fused"):
        predicted["fused"] = pred["fused"]["label"]
    when = dt.datetime.fromtimestamp(row["created_at"], dt.UTC).isoformat(timespec="seconds")
    meta = {"annotator": row["annotator"], "annotated_at": when, "flags": row["flags"], "note": row["note"]}
    if row.get("resolved"):
        meta["resolved_by"] = row["annotator"]  # a reviewer's resolution: annotator/annotated_at are the reviewer's
    meta["labels"] = row.get("labels") or {}  # annotator -> label, where more than one labelled the item
    meta.update({"checkpoint": row["checkpoint"], "predicted": predicted, "source_id": row["source_id"]})
    return {k: v for k, v in meta.items() if v not in (None, "", {})}


def export(
    store: Store,
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    queue: str | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> ExportResult:
    """Write every current annotation (of ``queue``, or of all queues) to ``out_dir`` (new or empty) as
    ``metadata.jsonl`` + ``media/`` + a dataset card ``README.md``. The folder appears complete or not at
    all (built beside it, then renamed). Returns the path and the counts."""
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an empty folder: choose a new export folder")
    unresolved: list[int] = []
    rows = _rows(store, queue, unresolved)
    if not rows:
        why = f" ({len(unresolved)} items whose labels disagree: resolve them first)" if unresolved else ""
        raise InputError("nothing to export: no annotations" + (f" in queue {queue!r}" if queue else "") + why)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        samples = []
        splits = assign_splits([row["group"] or row["content_key"] for row in rows], seed, fractions)
        for row in rows:
            files = {}
            for m in FILE_MODALITIES:
                if row[m]:
                    target = tmp / MEDIA / row[m]
                    if not target.exists():
                        _copy(store, row[m], target)
                    files[m] = f"{MEDIA}/{row[m]}"
            split = splits[row["group"] or row["content_key"]]
            samples.append(Sample(label=row["label"], text=row["text"], split=split, group=row["group"],
                                  id=row["id"], meta=_meta(row), **files))  # fmt: skip
        write_dataset(tmp, samples)
        result = ExportResult(out, _counts(samples), dict(Counter(r["annotator"] for r in rows)), unresolved)
        (tmp / "README.md").write_text(dataset_card(result, store, seed, fractions, rows), encoding="utf-8")
        load_dataset(tmp)  # what we wrote must read back
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def annotation_counts(
    store: Store, queue: str | None = None, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, dict[str, int]]:
    """What :func:`export` would write, counted without writing: label -> split -> number of annotations
    (current ones, of ``queue`` or of every queue), with the same splits per group (:func:`assign_splits`)."""
    rows = _rows(store, queue)
    splits = assign_splits([row["group"] or row["content_key"] for row in rows], seed, fractions)
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        per = counts.setdefault(row["label"], dict.fromkeys(SPLITS, 0))
        per[splits[row["group"] or row["content_key"]]] += 1
    return dict(sorted(counts.items()))


def _copy(store: Store, ref: str, target: Path) -> None:
    source = store.media.path(ref)
    if not source.is_file():
        raise StoreError(f"media file {source} is missing: the store's media folder is incomplete")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _counts(samples: list[Sample]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for s in samples:
        per = counts.setdefault(s.label, dict.fromkeys(SPLITS, 0))
        per[s.split or "train"] += 1
    return dict(sorted(counts.items()))


def dataset_card(
    result: ExportResult, store: Store, seed: int, fractions: tuple[float, ...], rows: list[Mapping[str, Any]]
) -> str:
    """The dataset card (Hub YAML front matter + counts per label and split, annotators, flags)."""
    n = sum(sum(per.values()) for per in result.counts.values())
    lines = ["---", "tags:", "- ume-mma", "- multimodal", "- annotations", f"pretty_name: {result.path.name}"]
    lines += ["---", "", f"# {result.path.name}", ""]
    lines += [f"{n} annotated samples exported by `python -m ume_mma.annotate export` from a {store.dialect} store."]
    lines += [f"Splits by a seeded hash of the group (seed {seed}, fractions {tuple(fractions)}): a group stays in"]
    lines += ["one split. Format: `metadata.jsonl` as read by `ume_mma.data.load_dataset`; each line's `id` is the"]
    lines += ["annotation id and its `meta` holds annotator, time, flags, note and the model's predictions.", ""]
    lines += ["## Counts", "", "| label | " + " | ".join(SPLITS) + " | total |", "|---" * (len(SPLITS) + 2) + "|"]
    for label, per in result.counts.items():
        lines.append(f"| {label} | " + " | ".join(str(per[s]) for s in SPLITS) + f" | {sum(per.values())} |")
    totals = [sum(per[s] for per in result.counts.values()) for s in SPLITS]
    lines += ["| **total** | " + " | ".join(map(str, totals)) + f" | {n} |", "", "## Annotators", ""]
    lines += ["| annotator | annotations |", "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in sorted(result.annotators.items())]
    flags = Counter((m, f) for r in rows for m, names in (r["flags"] or {}).items() for f in names)
    lines += ["", "## Flags", "", "| modality | flag | samples |", "|---|---|---|"]
    lines += [f"| {m} | {f} | {c} |" for (m, f), c in sorted(flags.items())] or ["| - | - | 0 |"]
    checkpoints = sorted({r["checkpoint"] for r in rows if r["checkpoint"]})
    lines += ["", "Predictions shown to annotators came from: " + (", ".join(checkpoints) or "no checkpoint"), ""]
    return "\n".join(lines)


def push_dataset(out_dir: str | os.PathLike[str], repo_id: str, private: bool = True) -> str:
    """Upload an exported folder as the Hugging Face dataset repo ``repo_id`` (created if needed, private by
    default). The token comes only from the ``HF_TOKEN`` environment variable. Returns the commit URL."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise InputError("set the HF_TOKEN environment variable to a write token to push to the Hub")
    folder = Path(out_dir)
    load_dataset(folder)  # never push a folder that does not read back
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="dataset", commit_message="Annotations export"
        )
    except HfHubHTTPError as exc:
        raise UmeMmaError(f"pushing {folder} to the Hub dataset {repo_id!r} failed: {exc}") from exc
    return str(getattr(info, "commit_url", info))
