"""The importer panel of the Annotate tab and ``/import_data``, thin over :mod:`ume_mma.annotate.importing`.

An admin (the local user on 127.0.0.1, or an ``--auth`` admin; never in public mode, like ``/import_queue``)
picks an importer (a dataset folder of ours, class subfolders, a CSV, a Hugging Face dataset, a Label Studio
export), names the source on the server or uploads it (a zip of class subfolders or of a dataset folder, a CSV
or a Label Studio JSON with its files, parquet files: each file under the app's upload cap), and imports into a
new dataset folder in the data folder (:func:`ume_mma.home.datasets_root`), into an annotation queue predicted
by a checkpoint, or both. Bad input imports nothing (no folder, no queue row) and is refused in the importers'
own words, the command line's.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import gradio as gr

from ui import inputs as valid
from ui.errors import readable
from ume_mma.annotate import DEFAULT_ORDER, ORDERS, queue_names
from ume_mma.annotate.importing import import_into
from ume_mma.data.imports.choice import IMPORTERS
from ume_mma.data.imports.staging import ImportRefused
from ume_mma.predictor import Limits

MAX_UPLOADS = 1000  # files in one upload (a zip counts as one)
OPTION_HELP = ("key=value, one a line or comma-separated: label=class, root=media/, media_root=ls-files/, "
               "from_name=sentiment, image=img, seed=1")  # fmt: skip


def import_panel(open_: bool = False) -> SimpleNamespace:
    """The panel's components (events are wired by :func:`wire`)."""
    ui = SimpleNamespace()
    titles = [i.title for i in IMPORTERS.values()]
    with gr.Accordion("Import your data: a folder, CSV, Hugging Face dataset or Label Studio export (admins)",
                      open=open_, elem_id="imp-panel"):  # fmt: skip
        with gr.Row():
            ui.kind = gr.Dropdown(titles, value=titles[0], label="Importer", scale=2, elem_id="imp-kind")
            ui.source = gr.Textbox(label="Source on the server (a folder or file), or upload below", scale=3,
                                   elem_id="imp-source")  # fmt: skip
        ui.uploads = gr.File(label="…or upload: a zip, a CSV or Label Studio JSON with its files, parquet files",
                             file_count="multiple", type="filepath", elem_id="imp-uploads")  # fmt: skip
        ui.options = gr.Textbox(label="Options", placeholder=OPTION_HELP, lines=1, elem_id="imp-options")
        with gr.Row():
            ui.dataset = gr.Textbox(label="New dataset name (empty: none)", scale=2, elem_id="imp-dataset")
            ui.queue = gr.Textbox(label="Into queue (empty: none)", value="", scale=2, elem_id="imp-queue")
            ui.order = gr.Dropdown(sorted(ORDERS), value=DEFAULT_ORDER, label="Order", scale=1)
        ui.labels = gr.Textbox(label="More labels for the queue (comma-separated; new labels welcome)",
                               elem_id="imp-labels")  # fmt: skip
        ui.run = gr.Button("Import", elem_id="imp-run")
        ui.status = gr.Markdown(elem_id="imp-status")
    return ui


def parse_options(value: Any) -> dict[str, Any]:
    """The panel's ``key=value`` text, or the API's mapping, as importer options."""
    if value is None or value == "" or value == {}:
        return {}
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or len(value) > 4000:
        raise ImportRefused(f"options are key=value pairs ({OPTION_HELP}); got {valid.shorten(value)}")
    out = {}
    for part in re.split(r"[\n,]", value):
        if not part.strip():
            continue
        key, eq, val = part.partition("=")
        if not eq or not key.strip():
            raise ImportRefused(f"options are key=value pairs ({OPTION_HELP}); got {part.strip()!r}")
        out[key.strip()] = val.strip()
    return out


def label_list(value: Any) -> list[str]:
    """Extra labels: a comma-separated string or a list of strings."""
    if value is None or value == "" or value == []:
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > 1000 or not all(isinstance(x, str) for x in items):
        raise ImportRefused(f"labels is a comma-separated list of labels; got {valid.shorten(value)}")
    labels = [valid.text(x.strip(), "label", valid.LABEL_MAX_CHARS) for x in items if x.strip()]
    return sorted(set(labels))


def upload_paths(value: Any) -> list[str]:
    """The uploads as file paths (a gr.File list of paths, one path, or FileData dicts from the API)."""
    if value is None or value == [] or value == "":
        return []
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_UPLOADS:
        raise ImportRefused(f"at most {MAX_UPLOADS} uploads at once (zip them)")
    paths = [x.get("path") if isinstance(x, dict) else getattr(x, "path", x) for x in items]
    if not all(isinstance(p, str) and p for p in paths):
        raise ImportRefused("uploads are files (handle_file(...) in gradio_client)")
    return paths


def summary_markdown(s: dict[str, Any]) -> str:
    """The import's summary for the panel."""
    where = [f"dataset `{s['dataset']}`" if s.get("dataset") else "", f"queue `{s['queue']['queue']}`" if s.get(
        "queue") else ""]  # fmt: skip
    labels = ", ".join(f"{k} ({v})" for k, v in s["labels"].items()) or "none"
    lines = [
        f"**Imported {s['rows']} rows** into {' and '.join(w for w in where if w)}.",
        f"Labels: {labels}" + (f"; unlabelled rows: {s['unlabelled']}" if s["unlabelled"] else "") + ".",
        "Modalities: " + ", ".join(f"{k} ({v})" for k, v in s["modalities"].items()) + ".",
        "Splits: " + ", ".join(f"{k} ({v})" for k, v in s["splits"].items()) + ".",
    ]
    if s.get("queue"):
        q = s["queue"]
        lines.append(f"Queue `{q['queue']}`: {q['added']} items added, {q['total']} in all.")
    lines += [f"Skipped: {why}." for why in s["skipped"]] + [f"*{n}*" for n in s["notes"]]
    return "\n\n".join(lines)


def handlers(store: Any, access: Any, pool: Any, default: str) -> SimpleNamespace:
    """``/import_data`` and the panel's event (every write committed before it returns)."""
    limits = pool.predictor_kwargs.get("limits")
    max_file_bytes = limits.max_file_bytes if limits is not None else Limits().max_file_bytes

    def check_caller(request: Any, profile: Any) -> str:
        who = access.annotator(request, profile)  # importing writes
        access.check_server_path("importing data")
        return access.require(who, "admin", "import data")

    def run(kind, source, uploads, dataset, queue, checkpoint, options, labels, order, progress=None) -> dict:
        queue = valid.text(queue, "queue", valid.NAME_MAX_CHARS).strip()
        predictor = None
        if queue:  # loaded before anything is written
            predictor = pool.get(valid.text(checkpoint, "checkpoint", valid.REF_MAX_CHARS).strip() or default).predictor
        report = (lambda d, t: progress((d, t), desc="predicting the queue", unit="items")) if progress else None
        return import_into(
            store,
            valid.text(kind, "importer", valid.NAME_MAX_CHARS).strip() or "dataset",
            valid.text(source, "source", valid.REF_MAX_CHARS).strip(),
            upload_paths(uploads),
            valid.text(dataset, "dataset", valid.NAME_MAX_CHARS).strip(),
            queue,
            predictor,
            label_list(labels),
            valid.text(order, "order", valid.NAME_MAX_CHARS).strip() or DEFAULT_ORDER,
            parse_options(options),
            max_file_bytes,
            report,
        )

    @readable
    def import_data(importer=None, source=None, uploads=None, dataset=None, queue=None, checkpoint=None,
                    options=None, labels=None, order=None, request: gr.Request = None,
                    profile: gr.OAuthProfile | None = None):  # fmt: skip
        """Import your data with one of the importers ("dataset" (a folder of ours), "folder" (class
        subfolders), "csv", "hf" (a Hugging Face dataset: a local copy or parquet files), "label-studio" (a JSON
        export)) from ``source`` (a path on the server) or ``uploads`` (files: a zip, a CSV or JSON with its
        files, parquet files), into a new dataset folder ``dataset`` (a name; in the data folder) and/or the queue
        ``queue`` (predicted with ``checkpoint``, empty: the app's; labels it does not know are accepted and
        offered as choices, with ``labels`` (comma-separated) added to them). ``options``: the command line's
        (``{"label": "class", "root": "media/", "seed": 1}``). Returns {"importer", "rows", "labels",
        "unlabelled", "modalities", "splits", "skipped", "dataset", "folder", "queue", "notes"}. For an admin,
        never in public mode. Bad input imports nothing."""
        check_caller(request, profile)
        return run(importer, source, uploads, dataset, queue, checkpoint, options, labels, order)

    @readable
    def import_data_ui(kind, source, uploads, dataset, queue, options, labels, order, k, request: gr.Request,
                       profile: gr.OAuthProfile | None, progress=gr.Progress()):  # fmt: skip
        check_caller(request, profile)
        s = run(kind, source, uploads, dataset, queue, k, options, labels, order, progress)
        names = queue_names(store)
        chosen = gr.update(choices=names, value=s["queue"]["queue"]) if s["queue"] else gr.update(choices=names)
        return summary_markdown(s), chosen

    return SimpleNamespace(import_data=import_data, import_data_ui=import_data_ui)


def wire(ui: SimpleNamespace, fns: SimpleNamespace, key: Any, queue_choice: Any) -> None:
    """The panel's event (private) and ``/import_data`` (hidden inputs)."""
    inputs = [ui.kind, ui.source, ui.uploads, ui.dataset, ui.queue, ui.options, ui.labels, ui.order, key]
    ui.run.click(fns.import_data_ui, inputs, [ui.status, queue_choice], api_visibility="private")
    with gr.Column(visible=False):
        kind, source = gr.Textbox(label="importer", value="dataset"), gr.Textbox(label="source", value="")
        uploads = gr.File(label="uploads", file_count="multiple", type="filepath")
        dataset, queue = gr.Textbox(label="dataset", value=""), gr.Textbox(label="queue", value="")
        checkpoint, options = gr.Textbox(label="checkpoint", value=""), gr.JSON(label="options", value=None)
        labels, order = gr.JSON(label="labels", value=None), gr.Textbox(label="order", value="")
        out, button = gr.JSON(), gr.Button()
    button.click(fns.import_data, [kind, source, uploads, dataset, queue, checkpoint, options, labels, order], out,
                 api_name="import_data")  # fmt: skip
