"""UME-MMA Studio: a Gradio UI and API over ``ume_mma.predictor.Predictor``.

    python app.py [--checkpoint PATH_OR_REPO] [--host H] [--port P] [--share] [--mcp]
                  [--max-file-mb N] [--max-video-seconds S]

``build_demo(...)`` returns the Blocks (no model logic here, no mutable globals); ``launch_app``
launches it. Public endpoints: ``/predict`` (one JSON value), ``/load_model``, ``/robustness``.
"""

from __future__ import annotations

import argparse
import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import gradio as gr

from ume_mma.errors import DecodeError, UmeMmaError
from ume_mma.predictor import Limits, Prediction, Predictor
from ume_mma.registry import MODALITIES
from ume_mma.report import accuracy_columns, column_title, missing_rate_figure

ROOT = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = "checkpoints/av-digits"
ASSETS = ROOT / "assets"
CSS = """
.card {min-width: 140px !important}
#fused-card {border: 2px solid var(--color-accent) !important}
#sources table {font-size: 0.9em}
#frames .grid-container {grid-template-columns: repeat(8, minmax(0, 1fr)) !important}
"""
COLORS = MappingProxyType(
    {"fused": "#3730a3", "audio": "#f59e0b", "image": "#10b981", "text": "#ef4444", "video": "#8b5cf6"}
)


# ----------------------------------------------------------------------------- model state
@dataclass
class Loaded:
    """One loaded checkpoint: its predictor (thread-safe), model card and stored evaluation."""

    predictor: Predictor
    card: str
    metrics: dict[str, Any] | None


class PredictorPool:
    """A small bounded LRU of loaded checkpoints, shared by all sessions; each session keeps only the key."""

    def __init__(self, limits: Limits, size: int = 3, root: Path = ROOT) -> None:
        self.limits, self.size, self.root = limits, size, root
        self._items: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def _path(self, ref: str) -> str:
        """A ref relative to the app folder (``checkpoints/x``) works from any working directory."""
        local = self.root / ref
        return str(local) if not Path(ref).exists() and local.exists() else ref

    def get(self, ref: str) -> Loaded:
        ref = (ref or "").strip()
        if not ref:
            raise gr.Error("Give a checkpoint: a folder under checkpoints/, a local path or a Hub repo id.")
        with self._lock:
            if ref in self._items:
                self._items.move_to_end(ref)
                return self._items[ref]
            try:
                path = self._path(ref)
                predictor = Predictor.from_pretrained(path, name=ref, limits=self.limits)
                item = Loaded(predictor, model_card(predictor), predictor.metrics)
            except UmeMmaError as exc:
                raise gr.Error(f"Could not load {ref!r}: {exc}", print_exception=False) from exc
            self._items[ref] = item
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return item

    def predict(self, ref: str, inputs: dict[str, Any], modalities: list[str] | None) -> Prediction:
        return self.get(ref).predictor.predict(inputs, modalities)


def list_checkpoints(root: Path = ROOT) -> list[str]:
    """``checkpoints/<name>`` for every subfolder holding a config.json."""
    folder = root / "checkpoints"
    return sorted(f"checkpoints/{p.parent.name}" for p in folder.glob("*/config.json")) if folder.is_dir() else []


def model_card(predictor: Predictor) -> str:
    """The checkpoint's model card without its YAML front matter, else a summary of its config."""
    text = predictor.card
    if text:
        if text.startswith("---"):
            text = text.split("---", 2)[-1]
        return text.strip()
    cfg = predictor.model.config
    return (
        f"# {cfg.task}\n\n- **Fusion:** `{cfg.fusion}`\n- **Labels:** {', '.join(cfg.labels)}\n"
        f"- **Encoders:** " + ", ".join(f"{m}: `{cfg.encoders[m]['name']}`" for m in cfg.modalities)
    )


def readable(fn: Callable) -> Callable:
    """Library errors become gr.Error with the problem in words (the upload's temp folder left out)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DecodeError as exc:
            raise gr.Error(f"{Path(exc.path).name}: {exc.problem}", print_exception=False) from exc
        except UmeMmaError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    return wrapper


# ----------------------------------------------------------------------------- views
def file_path(value: Any) -> str | None:
    """A path from a component value: a str, or an unprocessed FileData dict (UI events skip preprocess)."""
    if isinstance(value, dict):
        if value.get("path") is None and value.get("url"):
            raise gr.Error("This input could not be read as a file; upload it instead.")
        return value.get("path")
    return value or None


def make_inputs(video: Any, audio: Any, image: Any, text: str | None) -> dict[str, Any]:
    return {"video": file_path(video), "audio": file_path(audio), "image": file_path(image), "text": text or ""}


def probability_chart(pred: Prediction, top: int = 10) -> Any:
    """Grouped bars: each class (top by fused probability) x the fused result and every branch."""
    from matplotlib.figure import Figure

    classes = list(pred.fused.confidences)[:top]
    series = {"fused": pred.fused} | pred.branches
    fig = Figure(figsize=(6.4, 2.8), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    for i, (name, result) in enumerate(series.items()):
        xs = [c + (i - (len(series) - 1) / 2) * width for c in range(len(classes))]
        ax.bar(
            xs,
            [result.confidences.get(c, 0.0) for c in classes],
            width,
            color=COLORS.get(name),
            label=f"fused ({pred.fusion})" if name == "fused" else f"{name} branch",
        )
    ax.set_xticks(range(len(classes)), classes)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_xlabel("class (top by fused probability)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def sources_table(pred: Prediction | None, modalities: list[str], enabled: list[str]) -> str:
    rows = ["| branch | fed by | answer |", "|---|---|---|"]
    for m in modalities:
        if m not in enabled:
            fed, answer = "*switched off*", "–"
        elif pred is not None and m in pred.branches:
            fed, answer = pred.sources[m], f"**{pred.branches[m].label}**"
        else:
            fed = pred.sources.get(m, "*no input*") if pred is not None else "*no input*"
            answer = "–"
        rows.append(f"| {m} | {fed} | {answer} |")
    if pred is not None:
        rows.append(f"| **fused** ({pred.fusion}) | {', '.join(pred.modalities_used)} | **{pred.fused.label}** |")
    return "\n".join(rows)


def result_views(pred: Prediction | None, modalities: list[str], enabled: list[str], note: str = "") -> list[Any]:
    """Values of: fused card, one card per modality in MODALITIES, sources, chart, frames, raw JSON."""
    cards = []
    for m in MODALITIES:
        branch = pred.branches.get(m) if pred is not None else None
        state = "off" if m not in enabled else ("" if branch else "no input")
        cards.append(
            gr.update(value=branch.confidences if branch else None, label=m + (f" · {state}" if state else ""))
        )
    fused = gr.update(
        value=pred.fused.confidences if pred else None, label=f"fused · {pred.fusion}" if pred else "fused"
    )
    frames = pred.frames if pred is not None else []
    return [
        fused,
        *cards,
        (note + "\n\n" if note else "") + sources_table(pred, modalities, enabled),
        probability_chart(pred) if pred is not None else None,
        gr.update(value=frames or None, visible=bool(frames)),
        pred.to_dict() if pred else None,
    ]


def robustness_views(item: Loaded) -> tuple[Any, Any, str]:
    """(table rows, missing-rate curve image, caption) of the checkpoint's stored evaluation."""
    import pandas as pd
    from PIL import Image

    m = item.metrics
    if not m or "accuracy" not in m:
        return (
            pd.DataFrame(columns=["condition", "accuracy (%)"]),
            None,
            ("No evaluation is stored with this checkpoint (`metrics.json`); run `python -m ume_mma.evaluate`."),
        )
    acc = m["accuracy"]
    rows = [(condition_name(c), round(100 * acc[c], 1)) for c in accuracy_columns(acc)]
    rows += [(f"{b} branch alone", round(100 * v, 1)) for b, v in sorted(m.get("branches", {}).items())]
    png = BytesIO()  # rendered in memory: no temporary file
    missing_rate_figure({item.predictor.name: acc}, title="accuracy vs missing rate").savefig(png, format="png")
    curve = Image.open(png).convert("RGB")
    caption = (
        f"Test accuracy of `{item.predictor.name}` over {m.get('n', '?')} samples: with every modality, "
        "without each one, and when each modality of each sample is missing with the given rate."
    )
    return pd.DataFrame(rows, columns=["condition", "accuracy (%)"]), curve, caption


def condition_name(column: str) -> str:
    """``full`` -> all modalities, ``missing_rate_0.25`` -> missing rate 25%, ``without_x`` -> without x."""
    if column == "full":
        return "all modalities"
    title = column_title(column)
    return f"missing rate {title[2:]}%" if column.startswith("missing_rate_") else title


def status_line(item: Loaded) -> str:
    from ume_mma.fusion import get_fusion

    p = item.predictor
    fusion = p.model.config.fusion
    kind = f"{fusion.upper()} ({get_fusion(fusion).description})"
    return f"**Loaded** `{p.name}` · {kind} · modalities: {', '.join(p.modalities)} · {len(p.labels)} labels"


def input_visibility(modalities: list[str]) -> list[Any]:
    """Video, audio, image, text inputs: shown only when the checkpoint uses them."""
    video = bool({"video", "image", "audio"} & set(modalities))
    return [gr.update(visible=video), *(gr.update(visible=m in modalities) for m in ("audio", "image", "text"))]


def load_examples(modalities: list[str]) -> tuple[list[list[Any]], list[str]]:
    """Rows of assets/examples.json as [video, audio, image(, text)] paths, and their labels."""
    index = ASSETS / "examples.json"
    if not index.is_file():
        return [], []
    rows = json.loads(index.read_text())
    keys = ["video", "audio", "image"] + (["text"] if "text" in modalities else [])
    return (
        [[str(ASSETS / r[k]) if r.get(k) and k != "text" else r.get(k) for k in keys] for r in rows],
        [r["label"] for r in rows],
    )


# ----------------------------------------------------------------------------- the app
def predict_tab(mods: list[str]) -> SimpleNamespace:
    """Inputs, modality toggles and examples on the left; cards, sources, chart and frames on the right."""
    ui = SimpleNamespace()
    with gr.Row():
        with gr.Column(scale=2):
            ui.video = gr.Video(
                label="Video (frames + soundtrack)",
                sources=["upload"],
                height=200,
                elem_id="video-input",
                visible=bool({"video", "image", "audio"} & set(mods)),
            )
            with gr.Row():
                ui.audio = gr.Audio(
                    label="Audio",
                    type="filepath",
                    sources=["upload", "microphone"],
                    elem_id="audio-input",
                    visible="audio" in mods,
                )
                ui.image = gr.Image(
                    label="Image",
                    type="filepath",
                    sources=["upload", "clipboard"],
                    height=200,
                    elem_id="image-input",
                    visible="image" in mods,
                )
            ui.text = gr.Textbox(label="Text (Enter to predict)", visible="text" in mods)
            ui.toggles = gr.CheckboxGroup(
                mods,
                value=mods,
                elem_id="toggles",
                label="Modalities in use (switch one off: the result updates at once)",
            )
            ui.run = gr.Button("Predict", variant="primary")
            rows, labels = load_examples(mods)
            if rows:
                gr.Examples(
                    rows,
                    [ui.video, ui.audio, ui.image] + ([ui.text] if "text" in mods else []),
                    example_labels=labels,
                    cache_examples=False,
                    api_visibility="private",
                    label="Examples (held-out test speakers and digits)",
                )
        with gr.Column(scale=3):
            with gr.Row():
                ui.fused = gr.Label(label="fused", num_top_classes=3, elem_classes="card", elem_id="fused-card")
                ui.cards = [
                    gr.Label(label=m, num_top_classes=3, visible=m in mods, elem_classes="card", elem_id=f"{m}-card")
                    for m in MODALITIES
                ]
            ui.sources = gr.Markdown(sources_table(None, mods, mods), elem_id="sources")
            ui.chart = gr.Plot(label="Class probabilities: each branch and the fused result", format="png")
            ui.frames = gr.Gallery(
                label="Frames sampled from the video (fed to the image branch)",
                columns=8,
                height=130,
                object_fit="contain",
                visible=False,
                elem_id="frames",
            )
            with gr.Accordion("Raw result (the /predict API returns this JSON)", open=False):
                ui.raw = gr.JSON()
    return ui


def build_demo(
    checkpoint: str = DEFAULT_CHECKPOINT,
    max_file_mb: float = 50,
    max_video_seconds: float = 60,
    pool: PredictorPool | None = None,
) -> gr.Blocks:
    """The UI and API over ``checkpoint`` (loaded now, so a bad default fails at start-up). ``pool``: the
    shared cache of loaded checkpoints (default: a new one with these limits)."""
    pool = pool or PredictorPool(Limits(max_file_bytes=int(max_file_mb * 2**20), max_video_seconds=max_video_seconds))
    first = pool.get(checkpoint)
    mods = first.predictor.modalities
    table, curve, caption = robustness_views(first)
    with gr.Blocks(title="UME-MMA Studio", analytics_enabled=False) as demo:
        key = gr.State(checkpoint)  # this session's checkpoint: a key of the pool
        gr.Markdown(
            "# UME-MMA Studio\nMulti-modal predictions that survive missing modalities: each branch "
            "answers alone, the fused result uses whatever is present. Switch modalities off to see it."
        )
        with gr.Row():
            choice = gr.Dropdown(
                list(dict.fromkeys([checkpoint, *list_checkpoints()])), value=checkpoint, label="Checkpoint", scale=2
            )
            ref = gr.Textbox(label="…or a Hub repo id / local path", placeholder="org/name", scale=2)
            load = gr.Button("Load", scale=0, min_width=120)
        status = gr.Markdown(status_line(first))
        with gr.Tabs():
            with gr.Tab("Predict"):
                ui = predict_tab(mods)
            with gr.Tab("Robustness"):
                rob_caption = gr.Markdown(caption)
                with gr.Row():
                    rob_table = gr.Dataframe(table, label="Accuracy (%)", interactive=False)
                    rob_plot = gr.Image(curve, label="Missing-rate curve", type="pil", interactive=False)
            with gr.Tab("Model card"):
                card = gr.Markdown(first.card)
        with gr.Column(visible=False):  # inputs of the API-only /predict endpoint
            api_in = [
                key,
                *(gr.File(label=k, type="filepath") for k in ("video", "audio", "image")),
                gr.Textbox(label="text", value=""),
                gr.Dropdown(list(MODALITIES), value=None, multiselect=True, label="modalities"),
            ]
            api_out, api_run = gr.JSON(), gr.Button()
        fns = handlers(pool)
        private = {"api_visibility": "private", "show_progress": "minimal"}
        ui_in = [ui.video, ui.audio, ui.image, ui.text, ui.toggles, key]
        ui_out = [ui.fused, *ui.cards, ui.sources, ui.chart, ui.frames, ui.raw]
        # One listener for every trigger: a session's runs never overlap, and the last one wins.
        gr.on(
            [ui.run.click, ui.text.submit, ui.toggles.change, *(x.change for x in (ui.video, ui.audio, ui.image))],
            fns.predict_ui,
            ui_in,
            ui_out,
            preprocess=False,
            trigger_mode="always_last",
            **private,
        )
        api_run.click(fns.predict, api_in, api_out, api_name="predict")
        view = [card, ui.toggles, ui.video, ui.audio, ui.image, ui.text, *ui.cards]
        hidden = {"api_visibility": "private"}
        model_events = [
            (load.click, ref, {"api_name": "load_model"}, {"api_name": "robustness"}),
            (choice.input, choice, hidden, hidden),
        ]  # the same chain, public once
        for trigger, source, load_api, robustness_api in model_events:
            (
                trigger(fns.load_model, source, [key, status], **load_api)
                .success(fns.show_model, key, view, **hidden)
                .success(fns.robustness, key, [rob_table, rob_plot, rob_caption], **robustness_api)
            )
    return demo


def handlers(pool: PredictorPool) -> SimpleNamespace:
    """The event functions; ``k`` is the session's checkpoint key (a gr.State, hidden from the API)."""

    @readable
    def predict_ui(v, a, i, t, enabled, k):
        modalities = pool.get(k).predictor.modalities
        enabled = [m for m in enabled or [] if m in modalities]
        inputs = make_inputs(v, a, i, t)
        if not any(inputs.values()):
            return result_views(None, modalities, enabled, "*Give an input (or pick an example) to see predictions.*")
        if not enabled:
            return result_views(None, modalities, enabled, "*Every modality is switched off.*")
        return result_views(pool.predict(k, inputs, enabled), modalities, enabled)

    @readable
    def predict(k, video=None, audio=None, image=None, text=None, modalities=None):
        """Classify from any subset of modalities: each branch alone and the fused result.

        Args:
            video: a video file; its frames feed the image branch and its soundtrack the audio branch.
            audio: an audio file (replaces a video's soundtrack).
            image: an image file (replaces a video's frames).
            text: text input; empty = absent.
            modalities: the enabled modalities; empty or omitted = all of the checkpoint's.
        """
        return pool.predict(k, make_inputs(video, audio, image, text), modalities or None).to_dict()

    def load_model(checkpoint):
        """Load a checkpoint for this session: a folder under checkpoints/, a local path or a Hub repo id."""
        item = pool.get(checkpoint)
        return checkpoint.strip(), status_line(item)

    def show_model(k):
        m = pool.get(k).predictor.modalities
        return [
            pool.get(k).card,
            gr.update(choices=m, value=m),
            *input_visibility(m),
            *(gr.update(visible=x in m) for x in MODALITIES),
        ]

    def robustness(k):
        """The loaded checkpoint's stored evaluation: accuracy with all modalities, without each one, and
        over a missing-rate sweep (table, curve, caption)."""
        return robustness_views(pool.get(k))

    return SimpleNamespace(
        predict_ui=predict_ui, predict=predict, load_model=load_model, show_model=show_model, robustness=robustness
    )


def launch_app(demo: gr.Blocks, max_file_mb: float = 50, **kwargs: Any) -> Any:
    """Launch with the app's theme, upload cap and readable errors (``kwargs`` go to ``launch``)."""
    return demo.queue(default_concurrency_limit=4).launch(
        theme=gr.themes.Soft(),
        css=CSS,
        show_error=True,
        max_file_size=int(max_file_mb * 2**20),
        allowed_paths=[str(ASSETS)],
        **kwargs,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="UME-MMA Studio (Gradio app)")
    ap.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="checkpoint folder or Hub repo id")
    ap.add_argument("--host", default=None, help="server name, e.g. 0.0.0.0")
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--share", action="store_true", help="create a public gradio.live link")
    ap.add_argument("--mcp", action="store_true", help="also serve the public endpoints as an MCP server")
    ap.add_argument("--max-file-mb", type=float, default=50, help="upload size cap (MB)")
    ap.add_argument("--max-video-seconds", type=float, default=60, help="video duration cap (s)")
    args = ap.parse_args(argv)
    try:
        demo = build_demo(args.checkpoint, args.max_file_mb, args.max_video_seconds)
    except gr.Error as exc:
        found = ", ".join(list_checkpoints()) or "none"
        raise SystemExit(f"app.py: {exc.message}\nCheckpoints under {ROOT / 'checkpoints'}: {found}") from None
    launch_app(
        demo, args.max_file_mb, server_name=args.host, server_port=args.port, share=args.share, mcp_server=args.mcp
    )


if __name__ == "__main__":
    main()
