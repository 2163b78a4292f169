"""The Train tab and the jobs API (``/start_job``, ``/job_status``, ``/cancel_job``), thin over
:mod:`ume_mma.jobs`.

A job fine-tunes a base checkpoint on the store's annotations, or trains **a new task** from scratch on a dataset
folder or an annotation queue with an encoder per modality (:mod:`ume_mma.newtask`), in its own process (never
in the app's);
the tab follows it with a timer (a progress bar per phase, a live loss and accuracy plot, the log tail),
shows the before/after table when it ends, and "Use this model" loads the result as the session's
checkpoint. Behind the same access rule as annotation (:class:`ui.annotate.Access`).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pandas as pd

from ui import inputs as valid
from ui.annotate import Access
from ui.errors import readable
from ui.jobview import public_status, shown_ref
from ume_mma.annotate import queue_names
from ume_mma.annotate.export import annotation_counts
from ume_mma.annotate.store import Store
from ume_mma.data.format import SPLITS
from ume_mma.finetune import ANNOTATION_RECIPE
from ume_mma.jobs import JobStore, cancel_job, job_status, list_jobs, start_job
from ume_mma.jobs.hf import DEFAULT_FLAVOR
from ume_mma.jobs.store import FINISHED, JobError
from ume_mma.newtask import LEAVE_OUT, usable_encoders
from ume_mma.registry import MODALITIES
from ume_mma.report import accuracy_columns, column_title

ALL = "(every queue)"
RUNNERS = {"this machine": "local", "Hugging Face Jobs": "hf"}
POLL_S = 1.0  # the timer's period while a job is queued or running
TABLE_HEADERS = ["evaluated on", "model", "full", "without audio", "without image", "MR50", "audio branch",
                 "image branch"]  # fmt: skip
MODES = {"fine-tune a checkpoint": "finetune", "a new task": "new"}
LEFT_OUT = "(leave out)"  # the encoder choice that leaves a modality of the data out
SERIES = {"loss": "#d62728", "val accuracy": "#1f77b4"}
# an empty plot with the columns' types (numbers, two named series): the first value fixes the chart's encoding
PLOT_EMPTY = pd.DataFrame({"x": [0.0, 0.0], "value": [float("nan")] * 2, "series": list(SERIES)})


def flavors() -> list[str]:
    """Hugging Face Jobs hardware flavors (``huggingface_hub.JobHardware``, kept in sync with the Hub), the
    default first."""
    from huggingface_hub import JobHardware

    return [DEFAULT_FLAVOR, *(str(f.value) for f in JobHardware if f.value != DEFAULT_FLAVOR)]


def train_tab(store: Store, checkpoints: list[str], default: str) -> SimpleNamespace:
    """The Train tab's components (events are wired by :func:`wire`)."""
    ui = SimpleNamespace()
    queues = queue_names(store)
    with gr.Column(elem_id="train-view"):
        gr.Markdown(
            "Fine-tune a checkpoint on your annotations, or train a new task on your own labels. The job runs in its "
            "own process; this page follows it. When it ends, compare the results, then **Use this model** to "
            "predict with it."
        )
        ui.mode = gr.Radio(list(MODES), value="fine-tune a checkpoint", label="Train", elem_id="train-mode")
        with gr.Row():
            ui.base = gr.Dropdown(
                checkpoints, value=default, allow_custom_value=True, label="Base checkpoint", scale=2,
                elem_id="train-base",
            )  # fmt: skip
            ui.queue = gr.Dropdown([ALL, *queues], value=ALL, label="Annotations", scale=1, elem_id="train-queue")
        with gr.Group(visible=False, elem_id="train-new") as ui.new_box:
            with gr.Row():
                ui.data = gr.Textbox(
                    label="Dataset folder on the server (our format; empty: the annotations chosen above)", scale=3,
                    elem_id="train-data",
                )  # fmt: skip
                ui.task = gr.Textbox(label="Task name (default: the folder's name)", scale=1, elem_id="train-task")
            with gr.Row():  # only encoders whose weights load on this server (ume_mma.newtask.usable_encoders)
                ui.encoders = [
                    gr.Dropdown(
                        [LEFT_OUT, *usable_encoders(m)],
                        value=LEFT_OUT,
                        label=f"{m} encoder",
                        elem_id=f"train-encoder-{m}",
                    )  # fmt: skip
                    for m in MODALITIES
                ]
        ui.counts = gr.Dataframe(label="Annotations per label and split (what the job trains on)", interactive=False)
        with gr.Row(visible=True) as ui.finetune_box:
            ui.base_data = gr.Textbox(
                label="Base data folder (optional: replay keeps old skills, and the base test set is scored)",
                scale=3, elem_id="train-base-data",
            )  # fmt: skip
            ui.replay = gr.Slider(
                0, 0.9, value=ANNOTATION_RECIPE["replay"], step=0.05, label="Replay share of the base train split",
                scale=1,
            )  # fmt: skip
        with gr.Row():
            ui.runner = gr.Radio(list(RUNNERS), value="this machine", label="Run on", scale=1)
            ui.flavor = gr.Dropdown(flavors(), value=DEFAULT_FLAVOR, label="Jobs flavor", visible=False, scale=1)
            ui.epochs = gr.Number(ANNOTATION_RECIPE["epochs"], label="Epochs (uni-modal)", precision=0, minimum=0)
            ui.mma_epochs = gr.Number(ANNOTATION_RECIPE["mma_epochs"], label="Epochs (MMA)", precision=0, minimum=0)
        ui.start = gr.Button("Start fine-tuning", variant="primary", elem_id="train-start")
        with gr.Row():
            ui.job = gr.Dropdown([], label="Job", scale=3, elem_id="train-job")  # filled for the signed-in user
            ui.cancel = gr.Button("Cancel job", scale=1, elem_id="train-cancel")
        ui.state = gr.Markdown(elem_id="train-state")
        ui.bars = gr.HTML(elem_id="train-bars")
        with gr.Row():
            ui.plot = gr.LinePlot(
                PLOT_EMPTY, x="x", y="value", color="series", color_map=SERIES, label="Loss and validation accuracy",
                x_title="step", y_title="loss · accuracy", height=260, elem_id="train-plot",
            )  # fmt: skip
            ui.log = gr.Textbox(label="Log tail", lines=10, max_lines=10, interactive=False, elem_id="train-log")
        ui.table = gr.Dataframe(
            headers=TABLE_HEADERS, label="Before / after (accuracy %): with each modality missing, and per branch",
            interactive=False, elem_id="train-table",
        )  # fmt: skip
        ui.use = gr.Button("Use this model", variant="primary", visible=False, elem_id="train-use")
        ui.checkpoint = gr.Textbox(visible=False)  # the shown job's checkpoint ("Use this model" loads it)
    ui.timer = gr.Timer(POLL_S, active=False)
    return ui


def job_choices(store: Store, show: Callable[[dict[str, Any]], bool] = lambda job: True) -> list[tuple[str, int]]:
    """The Job dropdown: ``#id · created · base`` for every job ``show`` accepts, newest first (the state line
    says its state); the base by name, not by server path."""
    when = lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t))  # noqa: E731
    root = JobStore(store).root
    what = lambda j: f"from {shown_ref(j['init_from'], root)}" if j["init_from"] else f"new task {j.get('task')}"  # noqa: E731
    return [(f"#{j['id']} · {when(j['created_at'])} · {what(j)}", j["id"]) for j in list_jobs(store) if show(j)]


def counts_frame(counts: dict[str, dict[str, int]]) -> pd.DataFrame:
    """label x split counts with a total row and column."""
    rows = [[label, *(per[s] for s in SPLITS), sum(per.values())] for label, per in counts.items()]
    if rows:
        rows.append(["total", *(sum(r[i] for r in rows) for i in range(1, len(SPLITS) + 2))])
    return pd.DataFrame(rows, columns=["label", *SPLITS, "total"])


def bars_html(bars: list[dict[str, Any]]) -> str:
    """One labelled progress bar per training phase."""
    if not bars:
        return "<div class='train-bars'><em>preparing: exporting the annotations and caching features…</em></div>"
    rows = []
    for b in bars:
        total, done = b["total"] or 0, b["done"] or 0
        share = 100.0 if b["state"] == "done" else (100.0 * done / total if total else 0.0)
        count = f"{done}/{total} steps" if total else b["state"]
        rows.append(
            f"<div class='train-bar' data-phase='{html.escape(b['phase'])}' data-state='{b['state']}' "
            f"style='display:flex;gap:8px;align-items:center;margin:2px 0'>"
            f"<span style='width:140px'>{html.escape(b['phase'])}</span>"
            f"<progress max='100' value='{share:.1f}' style='flex:1'></progress>"
            f"<span style='width:160px'>{share:.0f}% · {count}</span></div>"
        )
    return "<div class='train-bars'>" + "".join(rows) + "</div>"


def plot_frame(curve: list[dict[str, Any]]) -> pd.DataFrame:
    if not curve:
        return PLOT_EMPTY
    frame = pd.DataFrame(curve, columns=["x", "value", "series"])
    return frame.astype({"x": float, "value": float, "series": str})


def _cells(result: dict[str, Any]) -> dict[str, float]:
    """Column title -> accuracy % of an evaluation (``accuracy`` and ``branches``) or of accuracies."""
    acc = result.get("accuracy", result)
    cells = {column_title(k): round(100 * v, 1) for k, v in acc.items() if k in accuracy_columns(acc)}
    return cells | {f"{m} branch": round(100 * v, 1) for m, v in result.get("branches", {}).items()}


def table_headers(cells: list[dict[str, float]]) -> list[str]:
    """The table's columns: :data:`TABLE_HEADERS`, then any other modality's (``without text``, ``text branch``)."""
    modal = lambda h: h.startswith("without ") or h.endswith(" branch")  # noqa: E731
    extra = [h for c in cells for h in c if h not in TABLE_HEADERS and modal(h)]
    extra = list(dict.fromkeys(sorted(extra, key=lambda h: (h.endswith("branch"), h))))
    return [*TABLE_HEADERS, *extra]


def before_after(status: dict[str, Any]) -> pd.DataFrame:
    """Rows: the job's held-out annotations (its data's test split) and the base test set, before and after; a
    new task has one row, its test split after training."""
    record = (status.get("metrics") or {}).get("finetune") or {}
    evals = status["progress"].get("evals", {})
    new = not (status.get("config") or {}).get("init_from")
    after = (status.get("metrics") or {}).get("test") if new else record.get("after")  # the saved model's test
    rows = [
        ("held-out annotations", "before (base)", record.get("before") or evals.get("before")),
        ("test split" if new else "held-out annotations", "after", after or evals.get("after")),
        ("base test set", "before (base)", record.get("base_before") or evals.get("base_before")),
        ("base test set", "after", record.get("base_after") or evals.get("base_after")),
    ]
    rows = [(where, model, _cells(result)) for where, model, result in rows if result]
    headers = table_headers([c for *_, c in rows])
    return pd.DataFrame([[where, model, *(c.get(h) for h in headers[2:])] for where, model, c in rows],
                        columns=headers)  # fmt: skip


def state_line(status: dict[str, Any]) -> str:
    s, p = status["state"], status["progress"]
    parts = [f"**Job {status['id']}: {s}** on {status['device']}"]
    if s == "queued" and status.get("queue_position"):
        parts.append(f"position {status['queue_position']} in the queue of {status['device']}")
    if p.get("phase"):
        parts.append(f"phase `{p['phase']}` epoch {p.get('epoch')}/{p.get('epochs')}")
    if p.get("loss") is not None:
        parts.append(f"loss {p['loss']:.3f}")
    if p.get("val_accuracy") is not None:
        parts.append(f"val accuracy {100 * p['val_accuracy']:.1f}%")
    if status.get("started_at"):
        end = status.get("finished_at") or time.time()
        parts.append(f"{end - status['started_at']:.0f} s")
    if s == "succeeded" and status.get("checkpoint"):
        chosen = (status.get("metrics") or {}).get("chosen")
        parts.append(f"chose `{chosen}`; checkpoint `{status['checkpoint']}`")
        evidence = ((status.get("metrics") or {}).get("finetune") or {}).get("evidence")
        if evidence:
            parts.append(evidence_line(evidence))
    if status.get("error"):
        parts.append(f"error: {status['error']}")
    return " · ".join(parts)


def evidence_line(e: dict[str, Any]) -> str:
    """What the held-out annotations can tell, in words: the accuracy after with its 95% interval, before, and the
    verdict (``too few to tell`` below 20 items or while the interval holds the base's accuracy)."""
    low, high = e["after_interval"]
    verdict = {"better": "better than the base", "worse": "**worse than the base**"}.get(e["verdict"])
    said = verdict or "**too few to tell** a better model from a worse one: label more, or trust the cross-validation"
    return (
        f"held-out annotations: {e['n']}; after {100 * e['after']:.1f}% (95% interval {100 * low:.0f}-"
        f"{100 * high:.0f}%) vs base {100 * e['before']:.1f}%: {said}"
    )


def log_tail(status: dict[str, Any]) -> str:
    """The job's latest progress lines, readable."""
    out = []
    for line in status.get("recent", []):
        when = time.strftime("%H:%M:%S", time.localtime(line.get("time", 0)))
        rest = {k: v for k, v in line.items() if k not in ("time", "event")}
        text = " ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in sorted(rest.items()))
        out.append(f"{when} {line['event']:<7} {text}"[:300])
    return "\n".join(out)


def job_number(value: Any) -> int:
    return valid.item_id(value, "job_id")


def handlers(store: Store, access: Access, pool: Any = None) -> SimpleNamespace:
    """The Train tab's events and the public jobs API. Every read and write needs the access rule's sign-in;
    only an admin starts a job; a job is its owner's (status, cancel, the job list) and every admin's (the local
    user is one).
    ``pool``: the app's checkpoint pool; a base checkpoint must be one it may load (its allow-list)."""
    jobs_root = JobStore(store).root

    def visible(job: dict[str, Any], who: str) -> bool:
        return access.is_admin(who) or job.get("owner") == who

    def own(job_id: Any, who: str) -> int:
        """The id of a job ``who`` may see; another's job and a missing one get the same answer."""
        number = job_number(job_id)
        try:
            job = JobStore(store).get(number)
        except JobError:
            job = None
        if job is None or not visible(job, who):
            raise gr.Error(f"No job {number} of yours here.", print_exception=False)
        return number

    def choices(who: str) -> list[tuple[str, int]]:
        return job_choices(store, lambda job: visible(job, who))

    def start(who, base, annotations, base_data, replay, runner, flavor, epochs, mma_epochs, task="finetune",
              data="", encoders=None, name="") -> int:  # fmt: skip
        task = MODES.get(task, task) if isinstance(task, str) else task
        task = valid.text(task, "task", valid.NAME_MAX_CHARS).strip() or "finetune"
        if task not in MODES.values():
            raise gr.Error(f"task is finetune or new, got {valid.shorten(task)}", print_exception=False)
        base = valid.text(base, "base", valid.REF_MAX_CHARS).strip()
        if not base and task == "finetune":
            raise gr.Error("Choose a base checkpoint.", print_exception=False)
        annotations = valid.text(annotations, "annotations", valid.NAME_MAX_CHARS).strip()
        base_data = valid.text(base_data, "base_data", valid.REF_MAX_CHARS).strip()
        runner = valid.text(runner, "runner", valid.NAME_MAX_CHARS).strip() or "local"
        flavor = valid.text(flavor, "flavor", valid.NAME_MAX_CHARS).strip()
        counts = [
            valid.whole(v, name, *valid.EPOCHS_RANGE) for v, name in ((epochs, "epochs"), (mma_epochs, "mma_epochs"))
        ]
        replay = valid.number(replay, "replay", 0.0, 0.9, ANNOTATION_RECIPE["replay"])
        kind = RUNNERS.get(runner, runner)
        if kind not in RUNNERS.values():
            raise gr.Error(f"runner is one of {', '.join(RUNNERS.values())}, got {valid.shorten(runner)}",
                           print_exception=False)  # fmt: skip
        options = {"flavor": flavor or DEFAULT_FLAVOR} if kind == "hf" else {}
        if task == "new":
            return start_new(who, annotations, data, encoders, name, counts, kind, options)
        ref = (
            pool.key(base) if pool is not None else base
        )  # as the app loads it: a public app fine-tunes only what it serves
        # the small-data recipe (ANNOTATION_RECIPE) without its replay, which needs base data
        overrides: dict[str, Any] = {k: v for k, v in ANNOTATION_RECIPE.items() if k != "replay"}
        overrides["init_from"] = ref
        if base_data:
            access.check_server_path("base data")
            overrides |= {"base_data": base_data, "replay": replay}
        for key, value in zip(("epochs", "mma_epochs"), counts, strict=True):
            if value is not None:
                overrides[key] = value
        queue = True if annotations in ("", ALL) else annotations
        return start_job(store, overrides, kind, options=options, annotations=queue, owner=who)

    def start_new(who, annotations, data, encoders, name, counts, kind, options) -> int:
        """A new task on a dataset folder (server paths only where the access rule allows) or the annotations."""
        data = valid.text(data, "data", valid.REF_MAX_CHARS).strip()
        name = valid.text(name, "name", valid.NAME_MAX_CHARS).strip()
        if encoders is None or encoders == "":
            encoders = {}
        if not isinstance(encoders, dict):
            raise gr.Error('encoders must be {"modality": "encoder name"}, e.g. {"audio": "scratch.logmel-cnn"}',
                           print_exception=False)  # fmt: skip
        chosen = {valid.text(m, "encoders", valid.NAME_MAX_CHARS): valid.text(n, "encoders", valid.NAME_MAX_CHARS)
                  for m, n in encoders.items()}  # fmt: skip
        chosen = {m: LEAVE_OUT if n.strip() == LEFT_OUT else n for m, n in chosen.items()}
        overrides: dict[str, Any] = {"encoders": chosen}
        queue: str | bool | None = None
        if data:
            access.check_server_path("a dataset folder to train on")
            overrides["data"] = data
        else:
            queue = True if annotations in ("", ALL) else annotations
        task_name = name or (Path(data).name if data else (annotations if queue is not True else "annotations"))
        overrides["task"] = task_name
        for key, value in zip(("epochs", "mma_epochs"), counts, strict=True):
            if value is not None:
                overrides[key] = value
        return start_job(store, overrides, kind, options=options, annotations=queue, owner=who, new_task=True)

    @readable
    def counts_ui(queue, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        access.annotator(request, profile)  # the counts per label are a read of the annotations
        counts = annotation_counts(store, None if queue in (None, ALL) else queue)
        return counts_frame(counts)

    @readable
    def start_ui(base, queue, base_data, replay, runner, flavor, epochs, mma_epochs, mode, data, name, audio, image,
                 text, video, request: gr.Request, profile: gr.OAuthProfile | None):  # fmt: skip
        who = access.require(access.annotator(request, profile), "admin", "start a job")
        chosen = {"audio": audio, "image": image, "text": text, "video": video}  # the dropdowns, in MODALITIES order
        encoders = {m: chosen[m] or LEFT_OUT for m in MODALITIES}
        job_id = start(who, base, queue, base_data, replay, runner, flavor, epochs, mma_epochs, mode, data, encoders,
                       name)  # fmt: skip
        return gr.update(choices=choices(who), value=job_id), gr.Timer(active=True)

    @readable
    def show_ui(job_id, request: gr.Request, profile: gr.OAuthProfile | None):
        if job_id is None:
            return ["", "", PLOT_EMPTY, "", [], gr.update(visible=False), "", gr.Timer(active=False)]
        status = job_status(store, own(job_id, access.annotator(request, profile)), tail=12)
        finished = status["state"] in FINISHED or status["state"] == "interrupted"
        status = public_status(status, jobs_root)
        ckpt = status.get("checkpoint") or "" if status["state"] == "succeeded" else ""
        return [
            state_line(status),
            bars_html(status["bars"]) if status["state"] != "queued" else "",
            plot_frame(status["curve"]),
            log_tail(status),
            before_after(status),
            gr.update(visible=bool(ckpt)),
            ckpt,
            gr.Timer(active=not finished),
        ]

    @readable
    def cancel_ui(job_id, request: gr.Request, profile: gr.OAuthProfile | None):
        who = access.annotator(request, profile)
        if job_id is None:
            raise gr.Error("Choose a job first.", print_exception=False)
        cancel_job(store, own(job_id, who))
        return gr.update(choices=choices(who), value=job_number(job_id)), gr.Timer(active=True)

    @readable
    def start_job_api(base=None, annotations=None, base_data=None, replay=None, runner="local", flavor=None,
                      epochs=None, mma_epochs=None, task="finetune", data=None, encoders=None, name=None,
                      request: gr.Request = None, profile: gr.OAuthProfile | None = None):  # fmt: skip
        """Start a fine-tuning job on the annotations: ``base`` checkpoint (folder or Hub id), ``annotations``
        (a queue name; empty = every queue), optional ``base_data`` folder with ``replay`` share (0 to 0.9),
        ``runner`` ("local" or "hf" with a Jobs ``flavor``), ``epochs``/``mma_epochs`` (0 to 1000; empty = the
        recipe's). The other settings are the small-data recipe ``ume_mma.finetune.ANNOTATION_RECIPE``.
        ``task="new"``: a new task instead, trained from scratch on the labels of ``data`` (a dataset folder on
        the server, where the app may read folders) or of the ``annotations``, with ``encoders`` (``{"audio":
        "scratch.logmel-cnn", ...}``: one per modality of the data, ``""`` leaves one out) and a task ``name``;
        epochs empty = defaults by the data's size (``ume_mma.newtask.size_defaults``); ``base`` is not used.
        Every parameter may be left out by name (``replay``: 0.1). Returns the job's status (see /job_status); it
        runs in its own process: poll /job_status. Admins only."""
        who = access.require(access.annotator(request, profile), "admin", "start a job")
        job_id = start(who, base, annotations, base_data, replay, runner, flavor, epochs, mma_epochs, task, data,
                       encoders, name)  # fmt: skip
        return public_status(job_status(store, job_id, tail=0), jobs_root)

    @readable
    def job_status_api(job_id=None, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        """A job's state (queued, running, succeeded, failed, cancelled, interrupted), progress per phase,
        the loss/accuracy curve, the last progress lines, and before/after accuracies (held-out annotations:
        ``before``/``after``; base test set: ``base_before``/``base_after``) and its ``checkpoint`` when done
        (``job-<id>``: pass it to /predict or /load_model). Only the job's owner (or an admin) sees it."""
        number = own(job_id, access.annotator(request, profile))
        return public_status(job_status(store, number), jobs_root)

    @readable
    def cancel_job_api(job_id=None, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        """Cancel a queued or running job of yours (a running one saves its state and can be resumed from
        the CLI)."""
        number = own(job_id, access.annotator(request, profile))
        return public_status(job_status(store, cancel_job(store, number)["id"], tail=0), jobs_root)

    def runner_ui(runner):
        return gr.update(visible=RUNNERS.get(runner) == "hf")

    def mode_ui(mode):
        """A new task hides the fine-tune's settings, shows the data and encoder choices, and leaves the epochs
        empty (defaults by the data's size); a fine-tune gets the small-data recipe's epochs back."""
        new = MODES.get(mode) == "new"
        epochs = (None, None) if new else (ANNOTATION_RECIPE["epochs"], ANNOTATION_RECIPE["mma_epochs"])
        label = "Start training" if new else "Start fine-tuning"
        return (gr.update(visible=not new), gr.update(visible=not new), gr.update(visible=new),
                *(gr.update(value=e) for e in epochs), gr.update(value=label))  # fmt: skip

    def refresh_ui(queue, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        who = access.annotator(request, profile)  # queue names and the job list are reads too
        names = queue_names(store)
        value = queue if queue in names else ALL
        return gr.update(choices=[ALL, *names], value=value), gr.update(choices=choices(who))

    return SimpleNamespace(**{k: v for k, v in locals().items() if callable(v)})


def wire(ui: SimpleNamespace, fns: SimpleNamespace, tab: gr.Tab) -> None:
    """Events of the Train tab (private) and the public jobs API (hidden inputs)."""
    private = {"api_visibility": "private"}
    shown = [ui.state, ui.bars, ui.plot, ui.log, ui.table, ui.use, ui.checkpoint, ui.timer]
    settings = [ui.base, ui.queue, ui.base_data, ui.replay, ui.runner, ui.flavor, ui.epochs, ui.mma_epochs, ui.mode,
                ui.data, ui.task, *ui.encoders]  # fmt: skip
    opened = tab.select(fns.refresh_ui, ui.queue, [ui.queue, ui.job], **private)
    opened.then(fns.counts_ui, ui.queue, ui.counts, **private)
    ui.queue.change(fns.counts_ui, ui.queue, ui.counts, **private)
    ui.runner.change(fns.runner_ui, ui.runner, ui.flavor, **private)
    mode_out = [ui.base, ui.finetune_box, ui.new_box, ui.epochs, ui.mma_epochs, ui.start]
    ui.mode.change(fns.mode_ui, ui.mode, mode_out, **private)
    ui.start.click(fns.start_ui, settings, [ui.job, ui.timer], **private)
    ui.cancel.click(fns.cancel_ui, ui.job, [ui.job, ui.timer], **private)
    ui.job.change(fns.show_ui, ui.job, shown, **private)
    ui.timer.tick(fns.show_ui, ui.job, shown, show_progress="hidden", **private)
    with gr.Column(visible=False):  # inputs of the API-only endpoints
        api = [gr.Textbox(label=name) for name in ("base", "annotations", "base_data")]
        api += [gr.JSON(label="replay"), gr.Textbox(label="runner", value="local")]
        api += [gr.Textbox(label="flavor")]  # numbers as plain JSON values: the handlers check them (ui.inputs)
        api += [gr.JSON(label=name) for name in ("epochs", "mma_epochs")]
        api += [gr.Textbox(label="task", value="finetune"), gr.Textbox(label="data")]
        api += [gr.JSON(label="encoders"), gr.Textbox(label="name")]
        job_id, out = gr.JSON(label="job_id"), gr.JSON()
        buttons = [gr.Button() for _ in range(3)]
    buttons[0].click(fns.start_job_api, api, out, api_name="start_job")
    buttons[1].click(fns.job_status_api, job_id, out, api_name="job_status")
    buttons[2].click(fns.cancel_job_api, job_id, out, api_name="cancel_job")
