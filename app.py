"""UME-MMA Studio: a Gradio UI and API over ``ume_mma.predictor.Predictor``.

    python app.py [--checkpoint PATH_OR_REPO] [--host H] [--port P] [--share] [--mcp] [--public]
                  [--max-file-mb N] [--max-video-seconds S] [--trusted-proxies ADDR[,ADDR]]

Public mode (``--public``, and always on a Hugging Face Space): checkpoints load only from Space.yaml's list
(plus this app's own fine-tuning results), uploads are capped lower, each client has at most
:data:`PUBLIC_PER_CLIENT` calls in flight on every endpoint and :data:`PUBLIC_UPLOAD_MB_PER_MINUTE` MB of
uploads per minute, nobody names folders on the server, and annotating and training need "Sign in with
Hugging Face" (or ``--auth``). A client is its socket's address unless that is a proxy named by
``--trusted-proxies`` (or a Space's proxy): see :mod:`ui.limits`.

The annotation database, its media and the jobs go to the data folder (:mod:`ume_mma.home`: ``$UME_MMA_HOME``,
``/data`` on a Space, else the user's data folder) unless ``--db`` names another; the app prints where at start.

``build_demo(...)`` returns the Blocks (no model logic here, no mutable globals); ``launch_app``
launches it. Public endpoints: ``/predict`` (one JSON value), ``/load_model``, ``/robustness``; with
annotation on, the annotation API and the jobs API (``/start_job``, ``/job_status``, ``/cancel_job``).
"""

from __future__ import annotations

import argparse
import atexit
import inspect
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
from fastapi.responses import JSONResponse
from gradio.route_utils import FnIndexInferError
from starlette.middleware import Middleware

from ui import annotate as annotate_ui
from ui import importer as import_ui
from ui import inputs as valid
from ui import live as live_ui
from ui import review as review_ui
from ui import train as train_ui
from ui.annotate import ROLES, SHORTCUTS_JS, Access, admins_from_env, reviewers_from_env
from ui.checkpoint import list_checkpoints, model_card, robustness_views, status_line
from ui.errors import readable, scrub
from ui.guards import LoginGuard, UploadBudget
from ui.limits import ClientLimiter, Proxies
from ui.predict import (  # noqa: F401 - re-exported: tests and benches use app.<name>
    ASSETS,
    FRAME_HEIGHT,
    LATER,
    examples_update,
    input_visibility,
    load_examples,
    make_inputs,
    make_render,
    predict_tab,
    thumbnails,
    video_input,
)
from ui.uploads import UploadSweeper
from ui.views import TOGGLE_JS, views_payload
from ui.zerogpu import gpu, zero_gpu
from ume_mma import pool as pool_lib
from ume_mma.annotate.store import Store
from ume_mma.device import DEVICE_CHOICES, on_cpu
from ume_mma.errors import UmeMmaError
from ume_mma.memory import skip_triton
from ume_mma.pool import Loaded
from ume_mma.predictor import Limits, modality_list
from ume_mma.registry import MODALITIES
from ume_mma.uncertainlog import UncertainLog

ROOT = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = "checkpoints/av-digits"
BATCH = 16  # concurrent /predict calls served together (batched through the encoders)
PUBLIC_MAX_FILE_MB, PUBLIC_MAX_VIDEO_SECONDS = 20, 30  # public mode: upload caps (lower ones given win)
PUBLIC_PER_CLIENT = 2  # public mode: calls in flight per client address
LOOPBACK = (None, "127.0.0.1", "localhost", "::1")  # a server bound here is reached from this machine only
PUBLIC_UPLOAD_MB_PER_MINUTE = 200  # public mode: upload bytes per client address per minute
CSS = """
.card {min-width: 140px !important}
#fused-card {border: 2px solid var(--color-accent) !important}
#sources table {font-size: 0.9em}
#frames .grid-container {grid-template-columns: repeat(8, minmax(0, 1fr)) !important}
"""


# ----------------------------------------------------------------------------- model state
class PredictorPool(pool_lib.PredictorPool):
    """The library's pool of loaded checkpoints with the app's folder as root (``checkpoints/x`` works from
    any working directory) and its errors as readable UI messages."""

    def __init__(
        self,
        limits: Limits,
        size: int = 3,
        root: Path = ROOT,
        device: str = "auto",
        allow: list[str] | None = None,
        allow_roots: tuple[Path, ...] = (),
        any_hub_repo: bool = False,
    ) -> None:
        super().__init__(
            size, root, allow=allow, allow_roots=allow_roots, any_hub_repo=any_hub_repo, limits=limits, device=device
        )

    names: Callable[[str], str | None] | None = None  # a name -> its folder (a job's checkpoint: ``job-3``)

    def renamed(self, ref: str) -> str:
        return (self.names(ref) if self.names and isinstance(ref, str) else None) or ref

    def key(self, ref: str) -> str:
        return super().key(self.renamed(ref))

    def get(self, ref: str) -> Loaded:
        try:
            return super().get(self.renamed(ref))
        except UmeMmaError as exc:
            raise gr.Error(scrub(str(exc)), print_exception=False) from exc

    def served(self) -> list[str]:
        """The checkpoints to list: the allow-list of a public app, else those under checkpoints/."""
        return list(self.allow) if self.allow is not None else list_checkpoints()


# ----------------------------------------------------------------------------- the app
def build_demo(
    checkpoint: str = DEFAULT_CHECKPOINT,
    max_file_mb: float = 50,
    max_video_seconds: float = 60,
    pool: PredictorPool | None = None,
    device: str = "auto",
    store: Store | None = None,
    access: Access | None = None,
    per_client: int | None = None,
    proxies: Proxies | None = None,
    upload_mb_per_minute: float | None = None,
    keep_uncertain: str | None = None,
) -> gr.Blocks:
    """The UI and API over ``checkpoint`` (loaded now, so a bad default fails at start-up). ``pool``: the
    shared cache of loaded checkpoints (default: a new one with these limits, on ``device``). With a ``store``
    and an ``access`` rule, the Annotate and Train tabs and their APIs are served too (and jobs left running
    by an earlier app are brought up to date). ``per_client``: calls in flight per client address on every
    endpoint, ``upload_mb_per_minute``: upload bytes per client per minute (public mode; None = no limit);
    ``proxies``: whose X-Forwarded-For names the client (default: :meth:`Proxies.from_settings`)."""
    annotating = store is not None and access is not None
    if annotating:
        from ume_mma.jobs import job_checkpoint, recover_jobs

        recover_jobs(store)  # a job whose process is gone becomes "interrupted"; queued jobs start
    limits = Limits(max_file_bytes=int(max_file_mb * 2**20), max_video_seconds=max_video_seconds)
    pool = pool or PredictorPool(limits, device=device)
    if annotating:  # a job's checkpoint by name (``job-3``): what the jobs API shows instead of its path
        pool.names = lambda ref: job_checkpoint(store, ref)
    first = pool.get(checkpoint)
    mods = first.predictor.modalities
    table, curve, caption = robustness_views(first)
    # delete_cache: every 10 min, the files this app wrote (frames, plots) that are over an hour old.
    with gr.Blocks(title="UME-MMA Studio", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        key = gr.State(checkpoint)  # this session's checkpoint: a key of the pool
        shown_video = gr.State(None)  # the video whose frames the gallery shows (not re-sent when unchanged)
        gr.Markdown(
            "# UME-MMA Studio\nMulti-modal predictions that survive missing modalities: each branch "
            "answers alone, the fused result uses whatever is present. Switch modalities off to see it."
        )
        with gr.Row():
            choice = gr.Dropdown(
                list(dict.fromkeys([checkpoint, *pool.served()])),
                value=checkpoint,
                label="Checkpoint",
                scale=2,
                elem_id="checkpoint",
            )
            ref = gr.Textbox(label="…or a Hub repo id / local path", placeholder="org/name", scale=2)
            load = gr.Button("Load", scale=0, min_width=120)
            if annotating and access.mode == "oauth":
                gr.LoginButton(scale=0, min_width=180)  # annotating needs a Hugging Face sign-in
        status = gr.Markdown(status_line(first))
        with gr.Tabs() as tabs:
            with gr.Tab("Predict", id="predict"):
                ui = predict_tab(mods, first.predictor.model.config.task, first.predictor.labels, annotating)
            with gr.Tab("Live", id="live"):  # camera + microphone, streamed (ui.live)
                lv = live_ui.live_tab(mods, make_render)
            if annotating:
                with gr.Tab("Annotate"):
                    ann = annotate_ui.annotate_tab(store)
                    imp = import_ui.import_panel()  # the importers: into a dataset folder and/or a queue
                with gr.Tab("Train") as train_tab:
                    trn = train_ui.train_tab(store, list(dict.fromkeys([checkpoint, *pool.served()])), checkpoint)
            with gr.Tab("Robustness"):
                rob_caption = gr.Markdown(caption)
                with gr.Row():
                    rob_table = gr.Dataframe(table, label="Accuracy (%)", interactive=False)
                    rob_plot = gr.Image(curve, label="Missing-rate curve", type="pil", interactive=False)
            with gr.Tab("Model card"):
                card = gr.Markdown(model_card(first.predictor))
        with gr.Column(visible=False):  # inputs of the API-only endpoints: plain values, no session state
            api_ckpt = gr.Textbox(label="checkpoint", value="")
            api_in = [
                *(gr.File(label=k, type="filepath") for k in ("video", "audio", "image")),
                gr.Textbox(label="text", value=""),
                gr.JSON(label="modalities", value=None),  # a plain value: the checkpoint says which it has
                api_ckpt,
            ]
            api_out, api_run, api_rob = gr.JSON(), gr.Button(), gr.Button()
        demo.proxies = proxies or Proxies.from_settings()
        demo.upload_budget = upload_mb_per_minute  # MB per client per minute (launch_app enforces it)
        demo.client_limiter = ClientLimiter(per_client, demo.proxies)  # calls in flight per client (public mode)
        keep = UncertainLog(keep_uncertain) if keep_uncertain else None  # opt-in: uncertain inputs kept to annotate
        fns = handlers(pool, checkpoint, ui.render, demo.client_limiter, keep)
        private = {"api_visibility": "private"}
        inputs = [ui.video, ui.audio, ui.image, ui.text]
        views_out = [ui.fused, *ui.cards, ui.sources, ui.chart, ui.raw]
        # Inputs change -> the server predicts once and renders every toggle combination; the browser then
        # shows the enabled one. A toggle runs only in the browser (TOGGLE_JS): no server round trip.
        # One listener for every server trigger: a session's runs never overlap, and the last one wins.
        predict_ui = {
            "fn": fns.predict_ui,
            "inputs": [*inputs, key],
            "outputs": [ui.views, ui.annotate_label],
            "preprocess": False,
            "trigger_mode": "always_last",
            "show_progress": "minimal",
            **private,
        }
        show_views = {"fn": None, "inputs": [ui.toggles, ui.views], "outputs": views_out, "js": TOGGLE_JS, **private}
        # The video's frames follow the answer (their thumbnails, files and gallery cost the first answer ~50 ms
        # on this CPU, ~150 ms on a busy one); the features and frames are in the predictor's caches by then.
        show_frames = {
            "fn": fns.frames_ui,
            "inputs": [*inputs, key, shown_video],
            "outputs": [ui.frames, shown_video],
            "preprocess": False,
            "show_progress": "hidden",
            **private,
        }
        # User actions only (upload, clear, record): an example sets several inputs programmatically and then
        # predicts once, so a half-set example never races the full one.
        files = (ui.video, ui.audio, ui.image)
        triggers = [ui.run.click, ui.text.submit, *(x.upload for x in files), *(x.clear for x in files)]
        triggers.append(ui.audio.stop_recording)
        gr.on(triggers, **predict_ui).success(**show_views).success(**show_frames)
        ui.toggles.change(**show_views, queue=False)
        # An example sets several inputs at once (text does not trigger on change): predict once they are set.
        ui.examples.click(fns.example, [ui.examples, key], inputs, **private).success(**predict_ui).success(
            **show_views
        ).success(**show_frames)
        live_fns = live_ui.handlers(pool, demo.client_limiter)
        demo.live = live_fns  # its sessions and update counts (the live bench reads them)
        live_ui.wire(
            lv, live_fns, key, ui.image, ui.audio, tabs,
            lambda ev: ev.success(**predict_ui).success(**show_views).success(**show_frames),
        )  # fmt: skip
        # Up to 16 API calls in flight: the pool runs those that overlap as one batch through the encoders.
        api_run.click(fns.predict, api_in, api_out, api_name="predict", concurrency_limit=BATCH)
        api_rob.click(fns.robustness, api_ckpt, [rob_table, rob_plot, rob_caption], api_name="robustness")
        view = [card, ui.toggles, ui.video_box, *inputs, *ui.cards, ui.examples, ui.frames, ui.views, ui.annotate_label]
        loads = [(load.click, ref, "load_model"), (choice.input, choice, None)]
        if annotating:  # "Use this model" of the Train tab: the job's checkpoint becomes the session's
            loads.append((trn.use.click, trn.checkpoint, None))
        for trigger, source, load_api in loads:
            loaded = (
                trigger(fns.load_model, source, [key, status], api_name=load_api, api_visibility=load_api and "public")
                .success(fns.show_model, key, view, **private)
                .success(fns.robustness_ui, key, [rob_table, rob_plot, rob_caption], **private)
                .success(None, [ui.toggles, ui.views], views_out, js=TOGGLE_JS, **private)
            )
            loaded.success(live_fns.show, key, [lv.cam, lv.mic, lv.text, *lv.cards, lv.status], **private)
            if annotating and source is trn.checkpoint:
                loaded.success(fns.show_choice, [key, choice], [choice, tabs], **private)
        if annotating:
            limiter = demo.client_limiter
            annotate_ui.wire(ann, limited(annotate_ui.handlers(store, access, pool, checkpoint), limiter), key, ui)
            import_ui.wire(imp, limited(import_ui.handlers(store, access, pool, checkpoint), limiter), key, ann.queue)
            train_ui.wire(trn, limited(train_ui.handlers(store, access, pool), limiter), train_tab)
            review_ui.wire(ann.team, limited(review_ui.handlers(store, access), limiter), ann.queue)
            if access.mode != "local":  # MCP calls carry no login: the annotation and jobs tools are not offered
                hide_from_mcp(demo, ANNOTATION_APIS)
    return demo


ANNOTATION_APIS = ("annotate", "import_queue", "import_data", "next_item", "submit_item", "undo_last",
                   "annotation_stats", "start_job", "job_status", "cancel_job", "configure_queue", "review_items",
                   "resolve_item", "item_history")  # fmt: skip


def limited(fns: SimpleNamespace, limiter: ClientLimiter) -> SimpleNamespace:
    """Every event function of ``fns`` that takes the request, run inside a slot of the caller's address."""
    wrap = lambda f: limiter.wrap(f) if callable(f) and "request" in inspect.signature(f).parameters else f  # noqa: E731
    return SimpleNamespace(**{name: wrap(f) for name, f in vars(fns).items()})


def hide_from_mcp(demo: gr.Blocks, api_names: tuple[str, ...]) -> None:
    """Leave these endpoints out of the MCP server's tools (:func:`launch_app` drops them once Gradio built its
    MCP server); the HTTP API keeps them, behind the access rule."""
    demo.mcp_hidden = {f"/{name}" for name in api_names}


def drop_mcp_tools(demo: gr.Blocks) -> None:
    """Remove the endpoints of ``demo.mcp_hidden`` from the launched MCP server (its schema, tool list and
    calls all read ``tool_to_endpoint``)."""
    server, hidden = getattr(demo, "mcp_server_obj", None), getattr(demo, "mcp_hidden", set())
    if server is not None and hidden:
        server.tool_to_endpoint = {t: e for t, e in server.tool_to_endpoint.items() if e not in hidden}


def handlers(
    pool: PredictorPool,
    default: str,
    render: Callable[..., Any],
    limiter: ClientLimiter | None = None,
    keep: UncertainLog | None = None,
) -> SimpleNamespace:
    """The event functions; ``k`` is the session's checkpoint key (a gr.State, never an API input). Predictions
    run inside a slot of the caller's address (``limiter``: at most so many in flight per client). ``keep``:
    where the inputs of uncertain predictions are kept for annotation (None: nowhere)."""
    limiter = limiter or ClientLimiter(None)

    @limiter.wrap
    @gpu
    @readable
    def predict_ui(v, a, i, t, k, request: gr.Request = None):
        item = pool.get(k)  # resolved once per event
        predictor = item.predictor
        inputs = make_inputs(v, a, i, t)
        pred = item.batcher.predict(inputs, None, subsets=True) if any(inputs.values()) else None
        if keep is not None and pred is not None:
            keep.keep(inputs, pred)
        unsure = pred is not None and bool(pred.uncertain)  # no branch likely right: ask for the true label now
        title = "Its true label · ⚠ the model is uncertain here: annotate this" if unsure else "Its true label"
        label = gr.update(choices=predictor.labels, value=pred.fused.label if pred else None, label=title)
        return views_payload(pred, predictor.modalities, render), label

    @limiter.wrap
    @readable
    def frames_ui(v, a, i, t, k, shown, request: gr.Request = None):
        """The frames sampled from the video that feeds a branch, as thumbnails (after the answer: from the
        predictor's cache of sampled frames; no model runs, so no GPU is asked for); nothing is sent when the
        gallery shows that video already, and the gallery is hidden without one."""
        video, frames = pool.get(k).predictor.shown_frames(make_inputs(v, a, i, t))
        video = str(video) if video is not None else None
        if video == shown and video is not None:
            return gr.skip(), gr.skip()  # the same video: its frames are on screen already
        return gr.update(value=thumbnails(frames) if video else None, visible=True if video else LATER), video

    @limiter.wrap
    @gpu
    @readable
    def predict(
        video=None, audio=None, image=None, text=None, modalities=None, checkpoint=None, request: gr.Request = None
    ):
        """Classify from any subset of modalities: each branch alone and the fused result.

        Args:
            video: a video file; its frames feed the image branch and its soundtrack the audio branch.
            audio: an audio file (replaces a video's soundtrack).
            image: an image file (replaces a video's frames).
            text: text input; empty = absent.
            modalities: the enabled modalities; empty or omitted = all of the checkpoint's.
            checkpoint: the checkpoint to use (a folder under checkpoints/, a local path or a Hub repo id);
                empty = the app's default.
        """
        ref = valid.text(checkpoint, "checkpoint", valid.REF_MAX_CHARS).strip() or default
        text, enabled = valid.text(text, "text", valid.TEXT_MAX_CHARS), valid.modalities(modalities)
        inputs = make_inputs(video, audio, image, text)
        pred = pool.predict(ref, inputs, modality_list(enabled) or None)
        if keep is not None:
            keep.keep(inputs, pred)
        return pred.to_dict()

    @limiter.wrap
    def load_model(checkpoint, request: gr.Request = None):
        """Load a checkpoint for this session: a folder under checkpoints/, a local path or a Hub repo id."""
        checkpoint = valid.text(checkpoint, "checkpoint", valid.REF_MAX_CHARS)
        item = pool.get(checkpoint)
        return checkpoint.strip(), status_line(item)

    def show_model(k):
        predictor = pool.get(k).predictor
        m = predictor.modalities
        return [
            model_card(predictor),
            gr.update(choices=m, value=m),
            gr.update(visible=video_input(m)["visible"]),  # the video's upload box and its player
            *input_visibility(m),
            *(gr.update(visible=x in m) for x in MODALITIES),
            examples_update(predictor.model.config.task),
            gr.update(value=None, visible=LATER),
            views_payload(None, m, render),
            gr.update(choices=predictor.labels, value=None),
        ]

    def show_choice(k, current):
        """After "Use this model": the checkpoint list shows the session's new checkpoint; back to Predict."""
        known = list(dict.fromkeys([*pool.served(), current, k]))
        return gr.update(choices=known, value=k), gr.Tabs(selected="predict")

    def example(index, k):
        samples, _ = load_examples(pool.get(k).predictor.model.config.task)
        return samples[index] if index is not None and 0 <= index < len(samples) else [gr.skip()] * 4

    @limiter.wrap
    def robustness(checkpoint=None, request: gr.Request = None):
        """A checkpoint's stored evaluation: accuracy with all modalities, without each one, and over a
        missing-rate sweep (table, curve, caption). ``checkpoint`` empty = the app's default."""
        return robustness_views(pool.get(valid.text(checkpoint, "checkpoint", valid.REF_MAX_CHARS).strip() or default))

    def robustness_ui(k):
        return robustness_views(pool.get(k))

    return SimpleNamespace(
        predict_ui=predict_ui,
        frames_ui=frames_ui,
        predict=predict,
        load_model=load_model,
        show_model=show_model,
        show_choice=show_choice,
        example=example,
        robustness=robustness,
        robustness_ui=robustness_ui,
    )


def launch_app(demo: gr.Blocks, max_file_mb: float = 50, max_cache_mb: float = 1024, **kwargs: Any) -> Any:
    """Launch with the app's theme, upload cap, readable errors and a bounded upload folder: a sweeper keeps
    Gradio's upload cache under ``max_cache_mb`` (``kwargs`` go to ``launch``). In front of Gradio: the login
    back-off (:class:`ui.guards.LoginGuard`), the upload budget of a public app (:class:`ui.guards.UploadBudget`)
    and an HTTP 404 for an unknown ``api_name``."""
    demo.upload_sweeper = UploadSweeper(demo.GRADIO_CACHE, int(max_cache_mb * 2**20)).start()
    proxies = getattr(demo, "proxies", None) or Proxies.from_settings()
    middleware = [Middleware(LoginGuard, proxies=proxies)]
    if getattr(demo, "upload_budget", None):
        middleware.append(Middleware(UploadBudget, max_bytes=int(demo.upload_budget * 2**20), proxies=proxies))
    # uvicorn rewrites the client address from X-Forwarded-For when the peer is in FORWARDED_ALLOW_IPS (by
    # default 127.0.0.1): off, so that the app sees the socket's peer and applies its own proxy rule (Proxies).
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    app_kwargs = {"middleware": middleware, "exception_handlers": {FnIndexInferError: unknown_endpoint}}
    block = not kwargs.pop("prevent_thread_lock", False)  # blocking comes after the MCP tools are trimmed
    launched = demo.queue(default_concurrency_limit=4).launch(
        theme=gr.themes.Soft(),
        css=CSS,
        show_error=True,
        max_file_size=int(max_file_mb * 2**20),
        allowed_paths=[str(ASSETS)],
        js=SHORTCUTS_JS,
        app_kwargs=app_kwargs,
        prevent_thread_lock=True,
        **kwargs,
    )
    drop_mcp_tools(demo)
    if block:
        demo.block_thread()
    return launched


async def unknown_endpoint(request: Any, exc: Exception) -> JSONResponse:
    """An ``api_name`` that is not one of the app's endpoints: HTTP 404 (Gradio answers 500)."""
    name = request.path_params.get("api_name", "")
    return JSONResponse({"detail": f"no endpoint named {name[:80]!r}; see /gradio_api/info"}, status_code=404)


def own_upload_folder() -> str:
    """Give this server process its own Gradio upload folder (unless GRADIO_TEMP_DIR is set), removed at
    exit, SIGTERM included, so the upload sweeper only ever sees this app's files."""
    if not os.environ.get("GRADIO_TEMP_DIR"):
        folder = tempfile.mkdtemp(prefix="ume-mma-uploads-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        remove_on_sigterm(folder)
        os.environ["GRADIO_TEMP_DIR"] = folder
    return os.environ["GRADIO_TEMP_DIR"]


def remove_on_sigterm(folder: str) -> None:
    """On SIGTERM (which skips atexit), remove ``folder``, then end the process as SIGTERM would."""
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)


def read_users(path: str | None) -> list[tuple[str, str, str | None]] | None:
    """``user:password[:role]`` lines from ``--auth FILE`` or, without it, the ``UME_MMA_AUTH`` variable (the
    same lines); None when neither is given. Blank lines and ``#`` comments are skipped. The role
    (annotator, reviewer or admin) is the last ``:`` field when it is one of those words; a two-column line
    has no role (the user is an annotator unless ``UME_MMA_ADMINS``/``UME_MMA_REVIEWERS`` name it)."""
    text = Path(path).read_text(encoding="utf-8") if path else os.environ.get("UME_MMA_AUTH")
    if text is None:
        return None
    users, bad = [], []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.strip().split(":", 1)
        role = None
        if len(fields) == 2 and ":" in fields[1] and fields[1].rsplit(":", 1)[1].strip() in ROLES:
            fields[1], role = fields[1].rsplit(":", 1)
            role = role.strip()
        if len(fields) != 2 or not all(fields):
            bad.append(fields[0])
            continue
        users.append((fields[0], fields[1], role))
    if bad or not users:
        raise SystemExit(f"app.py: auth needs user:password[:role] lines; bad: {bad or 'no line at all'}")
    return users


def read_auth(path: str | None) -> list[tuple[str, str]] | None:
    """The (user, password) pairs of :func:`read_users` (what Gradio's login takes)."""
    users = read_users(path)
    return None if users is None else [(u, pw) for u, pw, _ in users]


def read_roles(path: str | None) -> dict[str, str]:
    """user -> role of the ``--auth`` lines that name one (the third column)."""
    return {u: role for u, _, role in read_users(path) or [] if role}


def access_rule(
    auth: list | None,
    host: str | None,
    share: bool = False,
    public: bool = False,
    roles: dict | None = None,
    space_yaml: Path = ROOT / "Space.yaml",
) -> tuple[Access | None, str]:
    """Who may annotate and train, and a line saying so at start: logged-in users (``--auth``), Hugging Face
    users on a Space with ``hf_oauth: true``, the local user on 127.0.0.1; else (another address, a public
    ``--share`` link, or public mode without a sign-in) nobody: predict only. In public mode nobody may name
    folders on the server. ``roles``: user -> role, from the ``--auth`` file's third column; on a Space the
    admins and reviewers are ``space_yaml``'s ``deploy.admins`` / ``deploy.reviewers`` and the environment's."""
    paths = not public
    if auth:
        return Access("login", server_paths=paths, roles=dict(roles or {})), "annotation: on, for the users of --auth"
    if share:
        return None, "annotation: OFF: a --share link is public and there is no --auth; serving predict only"
    if os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID"):
        from ume_mma.space import load_space_config

        cfg = load_space_config(space_yaml)  # Space.yaml's admins and reviewers (Hub user names), and the env's
        admins, reviewers = admins_from_env() | set(cfg.admins), reviewers_from_env() | set(cfg.reviewers)
        access = Access("oauth", server_paths=paths, admins=frozenset(admins), reviewers=frozenset(reviewers))
        return access, "annotation: on, after Sign in with Hugging Face"
    if public:
        return None, "annotation: OFF: public mode needs Sign in with Hugging Face (a Space) or --auth"
    if host in LOOPBACK:
        return Access("local"), "annotation: on, for this machine only (bound to 127.0.0.1)"
    return None, f"annotation: OFF: the app is bound to {host} without --auth; serving predict only"


def reachable(host: str | None, share: bool = False) -> bool:
    """Can another machine reach this server: bound beyond loopback, a ``--share`` link, or a Space?"""
    return host not in LOOPBACK or share or bool(os.environ.get("SPACE_ID"))


def public_pool(
    args: argparse.Namespace, jobs_root: Path | None, caps: bool = True
) -> tuple[PredictorPool, float, float]:
    """The public loading rule: the pool loads only Space.yaml's checkpoints (and this app's job results);
    with ``caps`` (public mode) the upload and video caps are lowered too."""
    from ume_mma.space import load_space_config

    try:
        allow = load_space_config(ROOT / "Space.yaml").allowed()
    except UmeMmaError as exc:
        raise SystemExit(f"app.py: public mode needs a valid Space.yaml: {exc}") from None
    if args.checkpoint not in allow:
        allow = [args.checkpoint, *allow]  # the default the operator chose is served too
    max_mb = min(args.max_file_mb, PUBLIC_MAX_FILE_MB) if caps else args.max_file_mb
    seconds = min(args.max_video_seconds, PUBLIC_MAX_VIDEO_SECONDS) if caps else args.max_video_seconds
    limits = Limits(max_file_bytes=int(max_mb * 2**20), max_video_seconds=seconds)
    roots = (jobs_root,) if jobs_root is not None else ()
    return PredictorPool(limits, device=args.device, allow=allow, allow_roots=roots), max_mb, seconds


def login_pool(args: argparse.Namespace, jobs_root: Path | None) -> PredictorPool:
    """A reachable server with ``--auth``: signed-in users load the checkpoints under checkpoints/, this app's job
    results and Hub repos, but no other folder of the server."""
    limits = Limits(max_file_bytes=int(args.max_file_mb * 2**20), max_video_seconds=args.max_video_seconds)
    roots = (ROOT / "checkpoints", *((jobs_root,) if jobs_root is not None else ()))
    allow = list(dict.fromkeys([args.checkpoint, *list_checkpoints()]))
    return PredictorPool(limits, device=args.device, allow=allow, allow_roots=roots, any_hub_repo=True)


def serving_pool(
    args: argparse.Namespace, public: bool, auth: list | None, store: Store | None
) -> tuple[PredictorPool | None, float, float, int | None, str | None]:
    """Who may load what (README "Access and limits"): the pool, upload and video caps, calls in flight per client
    and a line saying so. On 127.0.0.1 any local folder or Hub repo (None: :func:`build_demo`'s default pool);
    reachable with ``--auth``: :func:`login_pool`; reachable without it, ``--public`` or a Space: the public
    loading rule (:func:`public_pool`; public mode also lowers the caps and limits each client)."""
    exposed = reachable(args.host, args.share)
    if not (public or exposed):
        return None, args.max_file_mb, args.max_video_seconds, None, None
    from ume_mma.jobs import JobStore

    jobs_root = JobStore(store).root if store is not None else None
    if public or not auth:
        pool, max_mb, seconds = public_pool(args, jobs_root, caps=public)
        served = f"serving {', '.join(pool.allow)}" + (f"; uploads <= {max_mb:g} MB" if public else "")
        line = f"{'public mode' if public else 'reachable without --auth'}: {served}"
        return pool, max_mb, seconds, PUBLIC_PER_CLIENT if public else None, line
    line = "reachable with --auth: serving checkpoints/, this app's job results and Hub repos"
    return login_pool(args, jobs_root), args.max_file_mb, args.max_video_seconds, None, line


def writes_line(store: Store) -> str:
    """Where the app writes: the annotation database, its media folder and the jobs' folder."""
    from ume_mma.jobs import JobStore

    return f"writing annotations to {store.display}, their media to {store.media.root}, jobs to {JobStore(store).root}"


def main(argv: list[str] | None = None) -> None:
    from ume_mma.annotate import open_store
    from ume_mma.annotate.__main__ import default_db, default_media

    ap = argparse.ArgumentParser(description="UME-MMA Studio (Gradio app)")
    ap.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="checkpoint folder or Hub repo id")
    ap.add_argument("--host", default=None, help="server name, e.g. 0.0.0.0")
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--share", action="store_true", help="create a public gradio.live link")
    ap.add_argument("--mcp", action="store_true", help="also serve the public endpoints as an MCP server")
    ap.add_argument("--max-file-mb", type=float, default=50, help="upload size cap (MB)")
    ap.add_argument("--max-video-seconds", type=float, default=60, help="video duration cap (s)")
    ap.add_argument(
        "--device", default="auto", choices=DEVICE_CHOICES, help="where models run: auto = the GPU when there is one"
    )
    ap.add_argument("--max-cache-mb", type=float, default=1024, help="cap on the upload folder's total size (MB)")
    ap.add_argument(
        "--db", default=None, help="annotation database: SQLite path or postgresql:// URL (default: in UME_MMA_HOME)"
    )
    ap.add_argument(
        "--media-dir", default=None, help="media folder (path or file:// URL) of a PostgreSQL annotation store"
    )
    ap.add_argument(
        "--trusted-proxies",
        default=None,
        help="ADDR[,ADDR]: proxies whose X-Forwarded-For names the client (default: none; a Space's own proxy)",
    )
    ap.add_argument(
        "--keep-uncertain",
        default=None,
        metavar="FOLDER",
        help="keep the inputs of uncertain predictions in FOLDER (dataset format, no labels) to annotate later",
    )
    ap.add_argument("--auth", default=None, help="file of user:password[:role] lines (or UME_MMA_AUTH): login required")
    ap.add_argument(
        "--public", action="store_true", help="public mode (always on a Space): Space.yaml's checkpoints only, caps"
    )
    args = ap.parse_args(argv)
    if on_cpu(args.device) and not zero_gpu():  # ZeroGPU attaches a GPU later, inside the handlers
        skip_triton()  # models run on the CPU: Triton (GPU kernels) would take 76 MB for nothing
    try:
        proxies = Proxies.from_settings(args.trusted_proxies)
    except ValueError as exc:
        raise SystemExit(f"app.py: --trusted-proxies: {exc}") from None
    own_upload_folder()
    public = args.public or bool(os.environ.get("SPACE_ID"))
    auth = read_auth(args.auth)
    access, line = access_rule(auth, args.host, args.share, public, read_roles(args.auth))
    store = None
    if access is not None:
        db = args.db or str(default_db())
        try:
            store = open_store(db, args.media_dir or default_media(db))
        except UmeMmaError as exc:
            access, line = None, f"annotation: OFF: {exc}"
    print(f"app.py: {line}", flush=True)
    if store is not None:
        print(f"app.py: {writes_line(store)}", flush=True)
    pool, max_mb, seconds, per_client, line = serving_pool(args, public, auth, store)
    budget = PUBLIC_UPLOAD_MB_PER_MINUTE if public else None
    if line:
        print(f"app.py: {line}", flush=True)
    try:
        demo = build_demo(
            args.checkpoint, max_mb, seconds, pool, args.device, store=store, access=access, per_client=per_client,
            proxies=proxies, upload_mb_per_minute=budget, keep_uncertain=args.keep_uncertain,
        )  # fmt: skip
    except gr.Error as exc:
        found = ", ".join(list_checkpoints()) or "none"
        raise SystemExit(f"app.py: {exc.message}\nCheckpoints under {ROOT / 'checkpoints'}: {found}") from None
    launch_app(
        demo,
        max_mb,
        args.max_cache_mb,
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        mcp_server=args.mcp,
        auth=auth,
    )


if __name__ == "__main__":
    main()
