"""Label Studio JSON in and out.

**In** (:func:`import_label_studio`): a project's JSON export, a list of tasks ``{"id", "data": {...},
"annotations": [{"result": [{"type": "choices", "value": {"choices": [label]}, ...}], "was_cancelled": ...}]}``.
``data`` keys map to modalities by name (``image``, ``audio``, ``video``, ``text``; ``columns`` overrides, e.g.
``{"image": "img"}``). The label is the one choice of the task's last annotation that is not cancelled (``from_name``
picks one ``Choices`` control when a project has several). File URLs resolve under ``media_root``:
``/data/local-files/?d=REL`` -> ``media_root/REL``; ``/data/upload/N/NAME`` -> ``media_root/upload/N/NAME`` or
``media_root/NAME``; a plain relative path -> ``media_root/PATH``. Web URLs are refused (download the media first).
Tasks without an annotation are left out and counted.

**Out** (:func:`export_label_studio`): an annotation queue as Label Studio tasks in a new folder: ``tasks.json``,
``label_config.xml`` (one object per modality, one ``Choices`` control named ``label`` over the queue's labels)
and ``media/`` (the queue's files, referenced as ``/data/local-files/?d=<folder name>/media/<file>``: serve the
folder's parent as Label Studio's local-files root). Each task carries our current annotations as
``annotations`` and the checkpoint's predictions as ``predictions`` (pre-annotations): the fused label and each
branch's label, ``model_version`` naming the checkpoint and the branch, ``score`` its confidence.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from xml.sax.saxutils import quoteattr

from ume_mma.data.format import FILE_MODALITIES, Sample
from ume_mma.data.imports.queue_rows import queue_rows
from ume_mma.data.imports.staging import ImportRefused, Staging, hashed_split, require_labels, split_name
from ume_mma.registry import MODALITIES

CONTROL = "label"  # the Choices control of an exported project
TAGS = {"image": "Image", "audio": "Audio", "video": "Video", "text": "Text"}


def _tasks(path: Path) -> list[Any]:
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportRefused(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"{path}: not a Label Studio JSON export ({exc})") from None
    if not isinstance(tasks, list):
        raise ImportRefused(f"{path}: a Label Studio JSON export is a list of tasks, got {type(tasks).__name__}")
    return tasks


def task_label(task: dict[str, Any], where: str, from_name: str | None = None) -> str | None:
    """The one choice of the last annotation that is not cancelled, or None (no annotation)."""
    for ann in reversed(task.get("annotations") or []):
        if not isinstance(ann, dict) or ann.get("was_cancelled"):
            continue
        choices = [r for r in ann.get("result") or [] if isinstance(r, dict) and r.get("type") == "choices"]
        if from_name is not None:
            choices = [r for r in choices if r.get("from_name") == from_name]
        if not choices:
            continue
        names = sorted({r.get("from_name") for r in choices})
        if len(names) > 1:
            raise ImportRefused(f"{where}: several Choices controls {names}: pick one with --from-name")
        values = [c for r in choices for c in (r.get("value") or {}).get("choices") or []]
        if len(values) != 1 or not isinstance(values[0], str):
            raise ImportRefused(f"{where}: needs exactly one choice per task (single-label), got {values}")
        return values[0]
    return None


def resolve(url: str, media_root: Path, where: str) -> Path:
    """The local file of a Label Studio data URL (see the module docstring)."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https", "s3", "gs", "azure-blob"):
        raise ImportRefused(f"{where}: {url} is a web or cloud URL: download the media and give --media-root")
    if parsed.path.startswith("/data/local-files"):
        rel = parse_qs(parsed.query).get("d", [""])[0]
        if not rel:
            raise ImportRefused(f"{where}: {url} names no file (no ?d=)")
        return media_root / unquote(rel)
    path = unquote(parsed.path)
    if path.startswith("/data/upload/"):
        inside = media_root / path[len("/data/") :]
        return inside if inside.exists() else media_root / Path(path).name
    return Path(path) if Path(path).is_absolute() else media_root / path


def import_label_studio(
    tasks_json: str | os.PathLike[str],
    out: str | os.PathLike[str],
    media_root: str | os.PathLike[str] | None = None,
    columns: dict[str, str] | None = None,
    from_name: str | None = None,
    seed: int = 0,
    unlabelled: bool = False,
) -> tuple[Path, int]:
    """Import a Label Studio JSON export into ``out`` (new). Returns ``(out, tasks without an annotation)``: left
    out, or with ``unlabelled`` (a folder for an annotation queue) kept without a label."""
    path = Path(tasks_json).expanduser().resolve()
    root = Path(media_root).expanduser().resolve() if media_root else path.parent
    keys = {m: (columns or {}).get(m, m) for m in MODALITIES}
    bad = sorted(set(columns or {}) - set(MODALITIES))
    if bad:
        raise ImportRefused(f"unknown modality {bad} to map; map {', '.join(MODALITIES)}")
    tasks, count = _tasks(path), 0
    with Staging(out, seed=seed, unlabelled=unlabelled) as st:
        for n, task in enumerate(tasks):
            where = f"{path.name} task {task.get('id', n) if isinstance(task, dict) else n}"
            data = task.get("data") if isinstance(task, dict) else None
            if not isinstance(data, dict) or not data:
                raise ImportRefused(f"{where}: has no data (a task needs a 'data' object with its inputs)")
            if not any(data.get(k) not in (None, "") for k in keys.values()):
                raise ImportRefused(f"{where}: its data {sorted(data)} has none of {sorted(keys.values())}")
            label = task_label(task, where, from_name)
            if label is None:
                count += 1
                if not unlabelled:
                    continue
            sid = f"ls-{task.get('id', n)}"
            media = {m: st.add_file(resolve(str(data[keys[m]]), root, where), m, where, stem=sid)
                     for m in FILE_MODALITIES if data.get(keys[m]) not in (None, "")}  # fmt: skip
            text = data.get(keys["text"])
            split = split_name(data.get("split"), where) or hashed_split(sid, seed)
            st.add(Sample(label=label, text=None if text is None else str(text), split=split, id=sid,
                          meta={"label_studio_task": task.get("id")}, **media))  # fmt: skip
        if not unlabelled:
            require_labels(st.samples, str(tasks_json))
    return st.out, count


def label_config(modalities: list[str], labels: list[str]) -> str:
    """A Label Studio labeling config: one object per modality, one single-choice ``label`` control."""
    objects = [f"  <{TAGS[m]} name={quoteattr(m)} value={quoteattr('$' + m)}/>" for m in modalities]
    choices = [f"    <Choice value={quoteattr(label)}/>" for label in labels]
    to = quoteattr(modalities[0])
    return "\n".join(["<View>", *objects, f'  <Choices name="{CONTROL}" toName={to} choice="single">', *choices,
                      "  </Choices>", "</View>", ""])  # fmt: skip


def _choice(label: str, to_name: str) -> dict[str, Any]:
    return {"from_name": CONTROL, "to_name": to_name, "type": "choices", "value": {"choices": [label]}}


def predictions(prediction: dict[str, Any] | None, to_name: str) -> list[dict[str, Any]]:
    """Label Studio ``predictions`` of a stored ``Prediction.to_dict()``: the fused label, then each branch's."""
    if not prediction or "error" in prediction:
        return []
    checkpoint = prediction.get("checkpoint", "checkpoint")
    parts = [("fused", prediction["fused"])] + sorted(prediction.get("branches", {}).items())
    out = []
    for name, branch in parts:
        score = (branch.get("confidences") or {}).get(branch["label"])
        kind = "fused" if name == "fused" else f"{name} branch"
        entry = {"model_version": f"ume-mma {checkpoint} ({kind})", "result": [_choice(branch["label"], to_name)]}
        out.append(entry | ({"score": float(score)} if score is not None else {}))
    return out


def export_label_studio(store: Any, queue: str, out: str | os.PathLike[str]) -> Path:
    """Write ``queue`` of ``store`` as Label Studio tasks into the new folder ``out`` (see the module docstring)."""
    target = Path(out).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ImportRefused(f"{target} exists and is not an empty folder: choose a new export folder")
    labels, rows = queue_rows(store, queue)
    modalities = [m for m in MODALITIES if any(r["inputs"].get(m) is not None for r in rows)]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tasks = []
        for r in rows:
            data: dict[str, Any] = {}
            for m in modalities:
                value = r["inputs"].get(m)
                if value is None:
                    continue
                if m == "text":
                    data[m] = value
                    continue
                (tmp / "media" / value).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(store.media.path(value), tmp / "media" / value)
                data[m] = f"/data/local-files/?d={target.name}/media/{value}"
            anns = [{"result": [_choice(a["label"], modalities[0])], "was_cancelled": False} for a in r["annotations"]]
            meta = {"ume_mma": {"queue": queue, "item": r["item"], "sample": r["sample"],
                                "annotators": [a["annotator"] for a in r["annotations"]]}}  # fmt: skip
            tasks.append({"id": r["item"], "data": data, "annotations": anns,
                          "predictions": predictions(r["prediction"], modalities[0]), "meta": meta})  # fmt: skip
        (tmp / "tasks.json").write_text(json.dumps(tasks, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "label_config.xml").write_text(label_config(modalities, labels), encoding="utf-8")
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
