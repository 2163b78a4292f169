"""The Annotate tab and the annotation API (``/annotate``, ``/import_queue``, ``/next_item``, ``/submit_item``,
``/undo_last``, ``/annotation_stats``), thin over :mod:`ume_mma.annotate`. A queue that does not exist yet
reads as empty (``/next_item`` and ``/undo_last``: null; ``/annotation_stats``: zero counts); ``/annotate``
and the Predict tab's "Annotate this" write to queue ``app``.

Who may annotate (:class:`Access`): with ``--auth`` the whole app is behind Gradio's login and the annotator
is the logged-in user; on a Hugging Face Space with ``hf_oauth: true`` predicting stays public and annotating
needs "Sign in with Hugging Face"; with neither, annotation is served only to a server bound to 127.0.0.1 (the
annotator is the local user). Every write returns only after its transaction committed.
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import gradio as gr

from ui import inputs as valid
from ui.errors import readable
from ui.importer import label_list
from ui.predict import make_inputs
from ui.review import agreement_for, team_panels
from ume_mma.annotate import (
    DEFAULT_ORDER,
    FLAGS,
    ORDERS,
    AnnotationQueue,
    ImportResult,
    import_dataset,
    predict_queue,
    queue_names,
)
from ume_mma.annotate import schema as db
from ume_mma.annotate.direct import APP_QUEUE, annotate_sample
from ume_mma.annotate.queue import MAX_OVERLAP
from ume_mma.annotate.store import Store
from ume_mma.compat import Fit
from ume_mma.errors import InputError
from ume_mma.registry import MODALITIES

SHORTCUTS_JS = """() => {
  // Annotate tab: keys 1-9 and 0 pick the n-th label, Enter submits, S skips, U undoes (not while typing).
  document.addEventListener("keydown", (e) => {
    const tab = document.querySelector("#annotate-view");
    if (!tab || tab.offsetParent === null || e.ctrlKey || e.metaKey || e.altKey) return;
    if (["INPUT", "TEXTAREA"].includes(document.activeElement?.tagName)
        && document.activeElement.type !== "radio") return;
    const click = (id) => document.querySelector(id)?.click();
    if (/^[0-9]$/.test(e.key)) {
      const radios = [...document.querySelectorAll("#ann-label input[type=radio]")];
      const n = e.key === "0" ? 9 : Number(e.key) - 1;
      if (radios[n]) { radios[n].click(); e.preventDefault(); }
    } else if (e.key === "Enter") { click("#ann-submit"); e.preventDefault(); }
    else if (e.key.toLowerCase() === "s") { click("#ann-skip"); e.preventDefault(); }
    else if (e.key.toLowerCase() === "u") { click("#ann-undo"); e.preventDefault(); }
  });
}"""


ROLES = ("annotator", "reviewer", "admin")  # each may do what the roles before it may


def names_from_env(variable: str) -> frozenset[str]:
    """A comma-separated list of user names from an environment variable (empty: none)."""
    return frozenset(n.strip() for n in os.environ.get(variable, "").split(",") if n.strip())


def admins_from_env() -> frozenset[str]:
    """``UME_MMA_ADMINS=alice,bob``: the users (of ``--auth``, or Hugging Face names) who are admins."""
    return names_from_env("UME_MMA_ADMINS")


def reviewers_from_env() -> frozenset[str]:
    """``UME_MMA_REVIEWERS=carol``: the users (of ``--auth``, or Hugging Face names) who are reviewers."""
    return names_from_env("UME_MMA_REVIEWERS")


@dataclass(frozen=True)
class Access:
    """How annotators are identified: ``login`` (Gradio auth), ``oauth`` (Sign in with Hugging Face) or
    ``local`` (a server bound to 127.0.0.1: the local user, an admin).

    Roles (:data:`ROLES`): an *annotator* labels items; a *reviewer* also reads everyone's labels and
    resolves disagreements; an *admin* also imports, sets a queue's overlap, starts jobs and sees and
    cancels every job. A user's role is its ``roles`` entry (the third column of the ``--auth`` file), else
    admin if named in ``admins`` (``UME_MMA_ADMINS``), reviewer if in ``reviewers`` (``UME_MMA_REVIEWERS``),
    else annotator (a two-column ``--auth`` line)."""

    mode: str
    local_user: str = ""
    server_paths: bool = True  # may a user name folders on the server (import a queue, base data)? Not in public mode
    admins: frozenset[str] = field(default_factory=admins_from_env)
    roles: Mapping[str, str] = field(default_factory=dict, hash=False)
    reviewers: frozenset[str] = field(default_factory=reviewers_from_env)

    def role(self, who: str) -> str:
        if self.mode == "local":
            return "admin"
        if who in self.roles:
            return self.roles[who]
        return "admin" if who in self.admins else "reviewer" if who in self.reviewers else "annotator"

    def may(self, who: str, role: str) -> bool:
        """Whether ``who`` has ``role`` or one above it."""
        return ROLES.index(self.role(who)) >= ROLES.index(role)

    def require(self, who: str, role: str, what: str) -> str:
        """``who`` if it has ``role`` (or one above), else a ``gr.Error`` saying who may."""
        if not self.may(who, role):
            raise gr.Error(
                f"Only {'an' if role[0] in 'aeiou' else 'a'} {role} may {what}; {who} is {self.role(who)}.",
                print_exception=False,
            )
        return who

    def is_admin(self, who: str) -> bool:
        return self.may(who, "admin")

    def check_server_path(self, what: str) -> None:
        if not self.server_paths:
            raise gr.Error(
                f"This public app does not read folders on the server ({what}); annotate from the Predict tab "
                "and train on your annotations.",
                print_exception=False,
            )

    def annotator(self, request: gr.Request | None, profile: Any) -> str:
        if self.mode == "login":
            name = getattr(request, "username", None)
            if not name:
                raise gr.Error("Log in to annotate.", print_exception=False)
            return str(name)
        if self.mode == "oauth":
            if profile is None:
                raise gr.Error("Sign in with Hugging Face to annotate.", print_exception=False)
            return str(profile.username)
        return self.local_user or getpass.getuser() or "local"


def stats_line(queue: AnnotationQueue | None) -> str:
    if queue is None:
        return "*No queue yet: import a dataset folder below, or annotate from the Predict tab.*"
    s = queue.stats()
    team = f" ({s.labels_given} of {s.total * s.overlap} labels given, {s.overlap} annotators per item)"
    return (
        f"**{s.labelled} of {s.total} {'labelled' if s.overlap == 1 else 'done'}** in `{queue.name}`"
        f"{team if s.overlap > 1 else ''}; {s.disagreements_left} "
        f"disagreement{'' if s.disagreements_left == 1 else 's'} left; "
        f"{s.leased} leased now"
    )


def recent(store: Store, limit: int = 10, who: str | None = None) -> list[list[Any]]:
    """The latest annotations (newest first) as table rows: ``who``'s only (an annotator never sees another's
    label), or everyone's (``who`` None: a reviewer's view)."""
    import sqlalchemy as sa

    a = db.annotations
    query = sa.select(a.c.created_at, a.c.annotator, a.c.label, a.c.sample_id, a.c.flags, a.c.note, a.c.undone_at)
    if who is not None:
        query = query.where(a.c.annotator == who)
    with store.transaction() as conn:
        rows = conn.execute(query.order_by(a.c.created_at.desc()).limit(limit)).all()
    return [
        [time.strftime("%H:%M:%S", time.localtime(r.created_at)), r.annotator, r.label, r.sample_id,
         ", ".join(f"{m}: {'/'.join(f)}" for m, f in (r.flags or {}).items()), r.note,
         "undone" if r.undone_at else ""]
        for r in rows
    ]  # fmt: skip


RECENT_HEADERS = ["time", "annotator", "label", "sample", "flags", "note", ""]


def annotate_tab(store: Store) -> SimpleNamespace:
    """The Annotate tab's components (events are wired by :func:`wire`)."""
    ui = SimpleNamespace()
    names = queue_names(store)
    with gr.Column(elem_id="annotate-view"):
        with gr.Row():
            ui.queue = gr.Dropdown(
                names, value=names[0] if names else None, label="Queue", scale=2, elem_id="ann-queue"
            )
            ui.next = gr.Button("Next item", variant="primary", scale=1, elem_id="ann-next")
        ui.progress = gr.Markdown(elem_id="ann-progress")
        with gr.Row():
            with gr.Column(scale=2):
                ui.image = gr.Image(label="image", interactive=False, visible=False, height=200)
                ui.audio = gr.Audio(label="audio", interactive=False, visible=False)
                ui.video = gr.Video(label="video", interactive=False, visible=False, height=200)
                ui.text = gr.Textbox(label="text", interactive=False, visible=False)
                ui.item_info = gr.Markdown(elem_id="ann-item")
            with gr.Column(scale=3):
                with gr.Row():
                    ui.fused = gr.Label(label="fused", num_top_classes=3, elem_id="ann-fused")
                    ui.cards = [gr.Label(label=m, num_top_classes=3, visible=False) for m in MODALITIES]
                ui.label = gr.Radio(
                    [], label="Label (keys 1-9, 0; pre-filled with the fused answer)", elem_id="ann-label"
                )
                ui.flags = [
                    gr.CheckboxGroup(list(FLAGS), label=f"{m} flags", visible=False, elem_id=f"ann-flags-{m}")
                    for m in MODALITIES
                ]
                ui.note = gr.Textbox(label="Note", lines=1, elem_id="ann-note")
                with gr.Row():
                    ui.submit = gr.Button("Submit (Enter)", variant="primary", elem_id="ann-submit")
                    ui.skip = gr.Button("Skip (S)", elem_id="ann-skip")
                    ui.undo = gr.Button("Undo last (U)", elem_id="ann-undo")
        ui.recent = gr.Dataframe(
            headers=RECENT_HEADERS, label="Recent annotations (yours; a reviewer sees everyone's)", interactive=False
        )
        ui.team = team_panels(store)
        with gr.Accordion("Import a dataset folder as a queue (admins)", open=not names):
            with gr.Row():
                ui.folder = gr.Textbox(label="Folder with metadata.jsonl (labels optional)", scale=3)
                ui.new_queue = gr.Textbox(label="Queue name", value="default", scale=1)
                ui.order = gr.Dropdown(sorted(ORDERS), value=DEFAULT_ORDER, label="Order", scale=1)
            with gr.Row():
                ui.overlap = gr.Number(value=1, minimum=1, maximum=50, precision=0, label="Annotators per item",
                                       elem_id="ann-overlap")  # fmt: skip
                ui.gold = gr.Slider(0, 1, value=0, step=0.05, label="Share of labelled lines as gold items",
                                    elem_id="ann-gold")  # fmt: skip
            ui.do_import = gr.Button("Import and predict with the loaded checkpoint", elem_id="ann-import")
            ui.import_status = gr.Markdown()
    ui.item_id = gr.State(None)
    return ui


def item_views(item: Any) -> list[Any]:
    """Values of: item id, inputs (image, audio, video, text), item info, fused card, one card per modality,
    label radio, one flag box per modality, note."""
    if item is None:
        empty = [gr.update(value=None, visible=False)] * 4
        cards = [gr.update(value=None, visible=False) for _ in MODALITIES]
        flags = [gr.update(value=[], visible=False) for _ in MODALITIES]
        return [None, *empty, "*Nothing left to annotate in this queue.*", None, *cards, gr.update(), *flags, ""]
    inputs, pred = item.inputs, item.prediction or {}
    shown = [gr.update(value=inputs.get(m), visible=m in inputs) for m in ("image", "audio", "video", "text")]
    branches = pred.get("branches", {})
    cards = [
        gr.update(value=branches[m]["confidences"] if m in branches else None, visible=m in branches)
        for m in MODALITIES
    ]
    fused = pred.get("fused", {})
    why = "branches disagree" if item.disagree else ("branches agree" if item.disagree is False else "not predicted")
    info = f"Item {item.id} · sample {item.sample_id} · {why}" + (
        f" · dataset label: **{item.given_label}**" if item.given_label else ""
    )
    label = gr.update(choices=item.labels, value=fused.get("label") or item.given_label)
    flags = [gr.update(value=[], visible=m in inputs) for m in MODALITIES]
    return [item.id, *shown, info, fused.get("confidences"), *cards, label, *flags, ""]


def flag_dict(value: Any) -> dict[str, Any]:
    """The API's ``flags`` input: a mapping modality -> list of flag names (empty: none)."""
    return valid.flags(value)


def item_number(value: Any) -> int:
    return valid.item_id(value)


def queue_name(value: Any) -> str:
    return valid.text(value, "queue", valid.NAME_MAX_CHARS, "default")


def note_text(value: Any) -> str:
    return valid.text(value, "note", valid.NOTE_MAX_CHARS)


def label_text(value: Any) -> str:
    return valid.text(value, "label", valid.LABEL_MAX_CHARS)


def flags_of(values: list[Any]) -> dict[str, list[str]]:
    return {m: list(v) for m, v in zip(MODALITIES, values, strict=True) if v}


def _queue(store: Store, name: str | None) -> AnnotationQueue:
    return AnnotationQueue(store, (name or "").strip() or "default")


def handlers(store: Store, access: Access, pool: Any, default: str) -> SimpleNamespace:
    """The Annotate tab's events and the public annotation API (every write committed before it returns)."""

    def store_annotation(files: tuple, label: str, who: str, flags: Any, note: str, ref: str) -> Any:
        """Predict the inputs with checkpoint ``ref`` (the annotator saw that) and store them with the label."""
        label, note = label_text(label), note_text(note)
        files = (*files[:3], valid.text(files[3], "text", valid.TEXT_MAX_CHARS))
        inputs = make_inputs(*files)
        predictor = pool.get(valid.text(ref, "checkpoint", valid.REF_MAX_CHARS)).predictor
        prediction = predictor.predict(inputs).to_dict()
        return annotate_sample(store, inputs, label, who, predictor.labels, flag_dict(flags), note or "", prediction)

    def refresh(name: str | None, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        """The queue's progress line and the latest annotations: a read, behind the same sign-in as a write."""
        return shown(name, access.annotator(request, profile))

    def shown(name: str | None, who: str) -> tuple[str, list[list[Any]]]:
        """The progress line and the latest annotations: the caller's own, everyone's for a reviewer."""
        queue = _queue(store, name) if name in queue_names(store) else None
        return stats_line(queue), recent(store, who=None if access.may(who, "reviewer") else who)

    @readable
    def next_ui(name: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        who = access.annotator(request, profile)
        if not name:
            raise gr.Error("Choose a queue (or import a folder first).", print_exception=False)
        return [*item_views(_queue(store, name).next_item(who)), *shown(name, who)]

    @readable
    def submit_ui(
        item_id,
        name,
        label,
        note,
        f_audio,
        f_image,
        f_text,
        f_video,
        request: gr.Request,
        profile: gr.OAuthProfile | None,
    ):  # fmt: skip  (one flag box per modality, in MODALITIES order)
        flag_values = [f_audio, f_image, f_text, f_video]
        if item_id is None:
            raise gr.Error("No item: press Next item first.", print_exception=False)
        if not label:
            raise gr.Error("Choose a label first.", print_exception=False)
        who = access.annotator(request, profile)
        _queue(store, name).submit(item_id, label_text(label), who, flags_of(flag_values), note_text(note))
        return next_ui(name, request, profile)

    @readable
    def skip_ui(item_id, name, request: gr.Request, profile: gr.OAuthProfile | None):
        if item_id is not None:
            _queue(store, name).skip(item_id, access.annotator(request, profile))
        return next_ui(name, request, profile)

    @readable
    def undo_ui(name, request: gr.Request, profile: gr.OAuthProfile | None):
        who = access.annotator(request, profile)
        item = _queue(store, name).undo_last(who)
        if item is None:
            raise gr.Error("Nothing of yours to undo in this queue.", print_exception=False)
        return [*item_views(item), *shown(name, who)]

    def import_folder(
        folder: Any, name: Any, order: Any, ref: str, progress: Any = None, overlap: int | None = None, gold: float = 0,
        labels: list[str] | None = None,
    ) -> ImportResult:  # fmt: skip
        """Import a dataset folder on the server as queue ``name`` and predict it with checkpoint ``ref`` (it must
        read a modality of the folder: checked before any file is read; labels it does not know are kept as
        choices, ``ImportResult.note`` says so). ``labels``: more labels to offer."""
        if not isinstance(folder, str) or not folder.strip():
            raise InputError("give the path of a dataset folder on the server (with metadata.jsonl)")
        name = name.strip() if isinstance(name, str) and name.strip() else "default"
        predictor = pool.get(ref).predictor
        fit = Fit.of(predictor, f"checkpoint {ref}")
        result = import_dataset(
            store, folder.strip(), name, labels, order=(order or DEFAULT_ORDER), fit=fit, overlap=overlap, gold=gold
        )
        report = (lambda d, t: progress((d, t), unit="items")) if progress is not None else None
        if progress is not None:
            progress((0, max(1, result.added)), desc="predicting the queue", unit="items")
        predict_queue(store, predictor, name, progress=report, show_progress=False)
        return result

    @readable
    def import_ui(folder, name, order, overlap, gold, k, request: gr.Request, profile: gr.OAuthProfile | None,
                  progress=gr.Progress()):  # fmt: skip
        who = access.annotator(request, profile)  # importing writes too
        access.check_server_path("importing a dataset folder")
        access.require(who, "admin", "import a queue")
        folder, name = valid.text(folder, "folder", valid.REF_MAX_CHARS), queue_name(name)
        overlap = valid.whole(overlap, "overlap", 1, MAX_OVERLAP, 1)
        result = import_folder(folder, name, order, k, progress, overlap, valid.number(gold, "gold", 0.0, 1.0, 0.0))
        name = result.queue
        note = f"Imported {result.added} items into `{name}` ({result.duplicates} already there) and ordered them."
        note += f"\n\n*{result.note()}*" if result.note() else ""
        return note, gr.update(choices=queue_names(store), value=name), *shown(name, who)

    @readable
    def import_queue(folder=None, queue="default", order=DEFAULT_ORDER, checkpoint=None, overlap=None, gold=0.0,
                     labels=None, request: gr.Request = None, profile: gr.OAuthProfile | None = None):  # fmt: skip
        """Import a dataset folder on the server (metadata.jsonl; labels optional) as a queue (new, or appended
        to: lines already in it are not added again), predicted and ordered with the checkpoint (empty: the
        app's default; it must read a modality of the folder; labels it does not know are accepted and offered
        as choices, ``new_labels`` and ``note`` say which). ``labels``: more labels to offer (comma-separated or a
        list; a submitted label must be one of the queue's). ``order``: mixed, disagreement,
        confidence, margin, random or file (empty: ``DEFAULT_ORDER``). ``overlap``: annotators per item (empty:
        the queue's, 1 for a new queue); ``gold``: the share (0 to 1) of the labelled lines that become gold items
        (their label is never shown). Returns {"queue", "added", "duplicates", "total", "new_labels", "note"} once
        committed. For an admin, and never in public mode (no folder on the server is read there)."""
        who = access.annotator(request, profile)
        access.check_server_path("importing a dataset folder")
        access.require(who, "admin", "import a queue")
        folder, queue = valid.text(folder, "folder", valid.REF_MAX_CHARS), queue_name(queue)
        order = valid.text(order, "order", valid.NAME_MAX_CHARS, DEFAULT_ORDER)
        ref = valid.text(checkpoint, "checkpoint", valid.REF_MAX_CHARS).strip() or default
        overlap = valid.whole(overlap, "overlap", 1, MAX_OVERLAP)
        gold = valid.number(gold, "gold", 0.0, 1.0, 0.0)
        result = import_folder(folder, queue, order, ref, None, overlap, gold, label_list(labels))
        total = AnnotationQueue(store, result.queue).stats().total
        return {"queue": result.queue, "added": result.added, "duplicates": result.duplicates, "total": total,
                "new_labels": result.new_labels, "note": result.note()}  # fmt: skip

    @readable
    def annotate(video=None, audio=None, image=None, text=None, label=None, flags=None, note="", checkpoint=None,
                 request: gr.Request = None, profile: gr.OAuthProfile | None = None):  # fmt: skip
        """Annotate a sample: the same inputs as /predict plus its label (one of the checkpoint's labels),
        flags (modality -> list of "noisy", "irrelevant", "corrupt") and a note. Returns {"id", "sample_id",
        "label", "annotator"} once the annotation is committed; it is stored in queue "app" (see
        /annotation_stats("app"))."""
        who = access.annotator(request, profile)
        ref = valid.text(checkpoint, "checkpoint", valid.REF_MAX_CHARS).strip() or default
        return store_annotation((video, audio, image, text), label or "", who, flags, note, ref).to_dict()

    @readable
    def annotate_ui_from_predict(v, a, i, t, label, note, k, request: gr.Request, profile: gr.OAuthProfile | None):
        if not label:
            raise gr.Error("Choose the label of this sample first.", print_exception=False)
        who = access.annotator(request, profile)
        done = store_annotation((v, a, i, t), label, who, {}, note, k)
        status = f"Saved: sample {done.sample_id} labelled **{done.label}** by {done.annotator} (queue `{APP_QUEUE}`)."
        return status, *shown(APP_QUEUE, who)

    @readable
    def next_item(queue="default", request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        """Lease the next item of a queue (disagreements first, by default) to the caller for 10 minutes:
        its id, inputs (paths on the server), labels and the checkpoint's predictions; null when none is left.
        A queue comes from /import_queue (a folder; default name "default"); /annotate writes to queue "app".
        A queue that does not exist yet is empty: null."""
        item = _queue(store, queue_name(queue)).next_item(access.annotator(request, profile))
        return item.to_dict() if item else None

    @readable
    def submit_item(item_id=None, label=None, flags=None, note="", queue="default", request: gr.Request = None,
                    profile: gr.OAuthProfile | None = None):  # fmt: skip
        """Label a leased item; returns {"id", "item_id", "label", "annotator"} once committed."""
        who = access.annotator(request, profile)
        number, label, note = item_number(item_id), label_text(label), note_text(note)
        ann = _queue(store, queue_name(queue)).submit(number, label, who, flag_dict(flags), note)
        return {"id": ann, "item_id": number, "label": label, "annotator": who}

    @readable
    def undo_last(queue="default", request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        """Take back the caller's latest annotation in a queue; its item is leased back and returned (null when
        the caller has nothing to undo there, or the queue does not exist yet)."""
        item = _queue(store, queue_name(queue)).undo_last(access.annotator(request, profile))
        return item.to_dict() if item else None

    @readable
    def annotation_stats(queue="default", request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        """A queue's progress: total = labelled (done: ``overlap`` labels each) + pending (free) + leased (held now
        by an annotator), disagreements left, annotations per annotator, ``overlap`` and ``labels_given``; and
        ``agreement``: Krippendorff's alpha, Fleiss' kappa, per label, per pair of annotators (Cohen's kappa)
        and per annotator against the consensus, each with the number of items it rests on, and (for reviewers
        and admins) each annotator's accuracy on gold items. Zero counts for a queue that does not exist yet.
        /annotate writes to queue "app"; /import_queue makes one from a folder. Signed-in callers only."""
        who = access.annotator(request, profile)  # who annotated what is a read of the annotations: signed in only
        name = queue_name(queue)
        out = _queue(store, name).stats().to_dict()
        out["agreement"] = agreement_for(store, access, name, who)
        return out

    @readable
    def configure_queue(queue="default", overlap=None, request: gr.Request = None,
                        profile: gr.OAuthProfile | None = None):  # fmt: skip
        """Set a queue's ``overlap`` (each item to that many annotators, 1 to 50); items are re-counted, no
        annotation changes. Admins only. Returns the queue's progress (as /annotation_stats, without agreement)."""
        access.require(access.annotator(request, profile), "admin", "set a queue's overlap")
        number = valid.whole(overlap, "overlap", 1, MAX_OVERLAP)
        if number is None:
            raise gr.Error("give overlap: the number of annotators per item", print_exception=False)
        q = _queue(store, queue_name(queue))
        q.set_overlap(number)
        return q.stats().to_dict()

    return SimpleNamespace(**{k: v for k, v in locals().items() if callable(v)})


def wire(ui: SimpleNamespace, fns: SimpleNamespace, key: Any, predict_ui: SimpleNamespace) -> None:
    """Events of the Annotate tab (private) and the public annotation API (hidden inputs)."""
    private = {"api_visibility": "private"}
    item_out = [ui.item_id, ui.image, ui.audio, ui.video, ui.text, ui.item_info, ui.fused, *ui.cards, ui.label,
                *ui.flags, ui.note, ui.progress, ui.recent]  # fmt: skip
    ui.next.click(fns.next_ui, ui.queue, item_out, **private)
    ui.submit.click(fns.submit_ui, [ui.item_id, ui.queue, ui.label, ui.note, *ui.flags], item_out, **private)
    ui.skip.click(fns.skip_ui, [ui.item_id, ui.queue], item_out, **private)
    ui.undo.click(fns.undo_ui, ui.queue, item_out, **private)
    ui.queue.change(fns.refresh, ui.queue, [ui.progress, ui.recent], **private)
    ui.do_import.click(
        fns.import_ui, [ui.folder, ui.new_queue, ui.order, ui.overlap, ui.gold, key],
        [ui.import_status, ui.queue, ui.progress, ui.recent],
        **private,
    )  # fmt: skip
    with gr.Column(visible=False):  # inputs of the API-only endpoints
        files = [gr.File(label=k, type="filepath") for k in ("video", "audio", "image")]
        text, label, note = (
            gr.Textbox(label="text", value=""),
            gr.Textbox(label="label"),
            gr.Textbox(label="note", value=""),
        )
        flags, queue = gr.JSON(label="flags", value={}), gr.Textbox(label="queue", value="default")
        item_id, checkpoint, out = (
            gr.JSON(label="item_id"),  # a plain value: the handler checks it (valid.item_id)
            gr.Textbox(label="checkpoint", value=""),
            gr.JSON(),
        )
        buttons = [gr.Button() for _ in range(5)]
    buttons[0].click(fns.annotate, [*files, text, label, flags, note, checkpoint], out, api_name="annotate")
    buttons[1].click(fns.next_item, queue, out, api_name="next_item")
    buttons[2].click(fns.submit_item, [item_id, label, flags, note, queue], out, api_name="submit_item")
    buttons[3].click(fns.undo_last, queue, out, api_name="undo_last")
    buttons[4].click(fns.annotation_stats, queue, out, api_name="annotation_stats")
    with gr.Column(visible=False):  # /import_queue: a folder on the server becomes a queue
        folder, order = gr.Textbox(label="folder"), gr.Textbox(label="order", value=DEFAULT_ORDER)
        overlap, gold = gr.JSON(label="overlap", value=None), gr.JSON(label="gold", value=0.0)
        labels = gr.JSON(label="labels", value=None)  # more labels to offer (new ones welcome)
        import_btn, configure_btn = gr.Button(), gr.Button()
    import_btn.click(fns.import_queue, [folder, queue, order, checkpoint, overlap, gold, labels], out,
                     api_name="import_queue")  # fmt: skip
    configure_btn.click(fns.configure_queue, [queue, overlap], out, api_name="configure_queue")
    # The Predict tab's "Annotate this": the inputs on screen, the chosen label and note.
    predict_ui.annotate_btn.click(
        fns.annotate_ui_from_predict, [*predict_ui.inputs, predict_ui.annotate_label, predict_ui.annotate_note, key],
        [predict_ui.annotate_status, ui.progress, ui.recent], **private,
    )  # fmt: skip
