"""The Annotate tab's team panels and their API, thin over :mod:`ume_mma.annotate.agreement` and
:mod:`ume_mma.annotate.review`: the agreement tables (everyone signed in; gold accuracy for reviewers and
admins only) and the review view (reviewers and admins): the items whose labels disagree, with or without the
model, each annotator's label, flags and note and the branch predictions, the resolution and the item's
history. API: ``/review_items``, ``/resolve_item``, ``/item_history``.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import gradio as gr

from ui import inputs as valid
from ui.errors import readable
from ume_mma.annotate import AnnotationQueue
from ume_mma.annotate.agreement import queue_agreement
from ume_mma.annotate.review import WHICH, history, resolve, review_items
from ume_mma.annotate.store import Store

if TYPE_CHECKING:
    from ui.annotate import Access

ANNOTATOR_HEADERS = ["annotator", "labels", "items", "agreement", "Cohen's kappa", "gold items", "gold accuracy"]
LABEL_HEADERS = ["label", "values", "agreement", "Fleiss' kappa"]
PAIR_HEADERS = ["annotators", "items", "agreement", "Cohen's kappa"]
REVIEW_HEADERS = ["item", "state", "labels", "flags", "notes", "model", "resolution", "gold"]
HISTORY_HEADERS = ["time", "who", "what", "before", "after", "note"]


def agreement_for(store: Store, access: Access, name: str, who: str) -> dict[str, Any]:
    """A queue's agreement report as ``who`` may read it: gold counts only for a reviewer or admin (to an
    annotator they would tell which items are gold)."""
    report = queue_agreement(store, name)
    if not access.may(who, "reviewer"):
        report.pop("gold_items", None)
        for row in report["annotators"].values():
            row.pop("gold_items")
            row.pop("gold_accuracy")
    return report


def _num(x: Any) -> Any:
    return "" if x is None else x


def agreement_views(report: dict[str, Any]) -> tuple[str, list[list[Any]], list[list[Any]], list[list[Any]]]:
    """The summary line and the per-annotator, per-label and per-pair tables of an agreement report."""
    if not report["items"]:
        line = "*No item has two labels yet: agreement needs an overlap of 2 or more (set it on import).*"
    else:
        line = (
            f"Krippendorff's alpha **{_num(report['krippendorff_alpha'])}** on {report['items']} items; "
            f"Fleiss' kappa **{_num(report['fleiss_kappa'])}** on {report['fleiss_items']} items with "
            f"{report['raters_per_item']} labels each"
        )
    people = [
        [name, r["labels"], r["items"], _num(r["agreement"]), _num(r["cohen_kappa"]),
         _num(r.get("gold_items", "")), _num(r.get("gold_accuracy"))]
        for name, r in report["annotators"].items()
    ]  # fmt: skip
    labels = [[c, r["values"], _num(r["agreement"]), _num(r["fleiss_kappa"])] for c, r in report["labels"].items()]
    pairs = [[" · ".join(p["annotators"]), p["items"], p["agreement"], _num(p["cohen_kappa"])] for p in report["pairs"]]
    return line, people, labels, pairs


def review_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    """Table rows of :func:`ume_mma.annotate.review.review_items`."""
    rows = []
    for it in items:
        anns = it["annotations"]
        flags = "; ".join(
            f"{a['annotator']}: " + ", ".join(f"{m} {'/'.join(f)}" for m, f in a["flags"].items())
            for a in anns
            if a["flags"]
        )
        notes = "; ".join(f"{a['annotator']}: {a['note']}" for a in anns if a["note"])
        model = " · ".join(f"{m}: {lab}" for m, lab in it["predicted"].items())
        labels = " · ".join(f"{a['annotator']}: {a['label']}" for a in anns)
        rows.append([it["item_id"], it["state"], labels, flags, notes, model, it["resolution"] or "", it["gold"] or ""])
    return rows


def history_rows(events: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"])), e["who"], e["what"], e["before"] or "",
         e["after"] or "", e["note"]]
        for e in events
    ]  # fmt: skip


def team_panels(store: Store) -> SimpleNamespace:
    """The Agreement and Review accordions of the Annotate tab (events: :func:`wire`)."""
    ui = SimpleNamespace()
    with gr.Accordion("Agreement", open=False, elem_id="ann-agreement"):
        ui.agree_line = gr.Markdown(elem_id="ann-agreement-line")
        ui.agree_people = gr.Dataframe(headers=ANNOTATOR_HEADERS, label="Per annotator, against the consensus",
                                       interactive=False, elem_id="ann-agree-annotators")  # fmt: skip
        with gr.Row():
            ui.agree_labels = gr.Dataframe(headers=LABEL_HEADERS, label="Per label", interactive=False)
            ui.agree_pairs = gr.Dataframe(headers=PAIR_HEADERS, label="Per pair of annotators", interactive=False)
        ui.agree_refresh = gr.Button("Refresh agreement", elem_id="ann-agree-refresh")
    with gr.Accordion("Review (reviewers)", open=False, elem_id="ann-review-panel"):
        with gr.Row():
            ui.which = gr.Radio(
                [("labels disagree", "disagree"), ("labels disagree with the model", "model")],
                value="disagree",
                label="Items to review",
                scale=3,
            )
            ui.load = gr.Button("Load items to review", elem_id="ann-review-load", scale=1)
        ui.table = gr.Dataframe(
            headers=REVIEW_HEADERS, label="Items to review", interactive=False, elem_id="ann-review"
        )
        with gr.Row():
            ui.item = gr.Number(label="Item", precision=0, elem_id="ann-review-item")
            ui.label = gr.Dropdown([], label="Resolution (the label export and fine-tuning use)",
                                   elem_id="ann-review-label")  # fmt: skip
            ui.note = gr.Textbox(label="Reviewer's note", elem_id="ann-review-note")
            ui.resolve = gr.Button("Resolve", variant="primary", elem_id="ann-resolve")
        ui.status = gr.Markdown(elem_id="ann-review-status")
        ui.history = gr.Dataframe(headers=HISTORY_HEADERS, label="History of the item (every change)",
                                  interactive=False, elem_id="ann-history")  # fmt: skip
    return ui


def handlers(store: Store, access: Access) -> SimpleNamespace:
    """The panels' events and the review API. Reading everyone's labels and resolving: reviewers only."""

    def queue_of(value: Any) -> str:
        return valid.text(value, "queue", valid.NAME_MAX_CHARS, "default").strip() or "default"

    def reviewer(request: Any, profile: Any, what: str) -> str:
        return access.require(access.annotator(request, profile), "reviewer", what)

    @readable
    def agreement_ui(name, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        who = access.annotator(request, profile)
        return agreement_views(agreement_for(store, access, queue_of(name), who))

    @readable
    def review_ui(name, which, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        reviewer(request, profile, "read everyone's labels")
        name = queue_of(name)
        items = review_items(store, name, which or "disagree")
        queue = AnnotationQueue(store, name)
        labels = queue.labels() if queue.exists else []
        first = items[0]["item_id"] if items else None
        return review_rows(items), gr.update(choices=labels, value=None), first

    @readable
    def history_ui(name, item, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        if item is None:
            return []
        reviewer(request, profile, "read an item's history")
        return history_rows(history(store, queue_of(name), valid.item_id(item)))

    @readable
    def resolve_ui(name, item, label, note, which, request: gr.Request = None,
                   profile: gr.OAuthProfile | None = None):  # fmt: skip
        who = reviewer(request, profile, "resolve an item")
        if item is None or not label:
            raise gr.Error("Choose an item and its label first.", print_exception=False)
        name, number = queue_of(name), valid.item_id(item)
        note = valid.text(note, "note", valid.NOTE_MAX_CHARS)
        done = resolve(store, name, number, valid.text(label, "label", valid.LABEL_MAX_CHARS), who, note)
        status = f"Item {number} resolved as **{done['label']}** by {who}" + (
            f" (was {done['before']})." if done["before"] else "."
        )
        items = review_rows(review_items(store, name, which or "disagree"))
        return status, items, history_rows(history(store, name, number))

    @readable
    def review_items_api(queue="default", which="disagree", request: gr.Request = None,
                         profile: gr.OAuthProfile | None = None):  # fmt: skip
        """Items of a queue to review (reviewers and admins): ``which`` = "disagree" (their labels disagree),
        "model" (their labels' majority is not the model's fused label) or "all". Each: item_id, sample_id,
        state, inputs, gold, annotations (annotator, label, flags, note, created_at), predicted (per branch
        and fused) and resolution (the reviewer's label, or null)."""
        reviewer(request, profile, "read everyone's labels")
        which = valid.text(which, "which", valid.NAME_MAX_CHARS, "disagree").strip() or "disagree"
        if which not in WHICH:
            raise gr.Error(f"which is one of {', '.join(WHICH)}, got {valid.shorten(which)}", print_exception=False)
        return review_items(store, queue_of(queue), which)

    @readable
    def resolve_item_api(item_id=None, label=None, note="", queue="default", request: gr.Request = None,
                         profile: gr.OAuthProfile | None = None):  # fmt: skip
        """Resolve an item (reviewers and admins): its label for export and fine-tuning, whatever the
        annotators gave. Every change is kept (/item_history). Returns {"id", "item_id", "before", "label",
        "reviewer", "note", "created_at"} once committed."""
        who = reviewer(request, profile, "resolve an item")
        number, label = valid.item_id(item_id), valid.text(label, "label", valid.LABEL_MAX_CHARS)
        return resolve(store, queue_of(queue), number, label, who, valid.text(note, "note", valid.NOTE_MAX_CHARS))

    @readable
    def item_history_api(item_id=None, queue="default", request: gr.Request = None,
                         profile: gr.OAuthProfile | None = None):  # fmt: skip
        """Every change of an item's label, oldest first (reviewers and admins): {"at", "who", "what" (label,
        undo or resolve), "before", "after", "note"}."""
        reviewer(request, profile, "read an item's history")
        return history(store, queue_of(queue), valid.item_id(item_id))

    return SimpleNamespace(**{k: v for k, v in locals().items() if callable(v)})


def wire(ui: SimpleNamespace, fns: SimpleNamespace, queue: Any) -> None:
    """Events of the panels (private) and the review API (hidden inputs). ``queue``: the tab's queue dropdown."""
    private = {"api_visibility": "private"}
    agree_out = [ui.agree_line, ui.agree_people, ui.agree_labels, ui.agree_pairs]
    ui.agree_refresh.click(fns.agreement_ui, queue, agree_out, **private)
    queue.change(fns.agreement_ui, queue, agree_out, **private)
    ui.load.click(fns.review_ui, [queue, ui.which], [ui.table, ui.label, ui.item], **private)
    ui.item.change(fns.history_ui, [queue, ui.item], ui.history, **private)
    ui.resolve.click(
        fns.resolve_ui, [queue, ui.item, ui.label, ui.note, ui.which], [ui.status, ui.table, ui.history], **private
    )
    with gr.Column(visible=False):
        q, which = gr.Textbox(label="queue", value="default"), gr.Textbox(label="which", value="disagree")
        item_id, label, note, out = (
            gr.JSON(label="item_id"),
            gr.Textbox(label="label"),
            gr.Textbox(label="note"),
            gr.JSON(),
        )
        buttons = [gr.Button() for _ in range(3)]
    buttons[0].click(fns.review_items_api, [q, which], out, api_name="review_items")
    buttons[1].click(fns.resolve_item_api, [item_id, label, note, q], out, api_name="resolve_item")
    buttons[2].click(fns.item_history_api, [item_id, q], out, api_name="item_history")
