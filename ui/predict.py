"""The Predict tab: inputs, modality toggles, per-checkpoint examples, cards, sources, chart and frames.

Component values are built by :mod:`ui.views`; the event functions live in ``app.handlers``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from ui.views import CHART_CSS, probability_chart, sources_table, views_payload
from ume_mma.registry import MODALITIES

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
FRAME_HEIGHT = 128  # pixels: the gallery's frame thumbnails
# The uploaded video's file value -> the player's value, in the browser (no server round trip): shown while a
# video is there, hidden once it is cleared. Both components hold a FileData.
PREVIEW_JS = """(file) => ({"__type__": "update", "value": file || null, "visible": file ? true : "hidden"})"""
# Components shown only after a prediction are rendered hidden from the start ("hidden": in the page, not shown), so
# the browser has loaded their code before the first answer instead of fetching it while that answer is drawn.
LATER = "hidden"


def file_path(value: Any) -> str | None:
    """A path from a component value: a str, or an unprocessed FileData dict (UI events skip preprocess)."""
    if isinstance(value, dict):
        if value.get("path") is None and value.get("url"):
            raise gr.Error("This input could not be read as a file; upload it instead.")
        return value.get("path")
    return value or None


def make_inputs(video: Any, audio: Any, image: Any, text: str | None) -> dict[str, Any]:
    return {"video": file_path(video), "audio": file_path(audio), "image": file_path(image), "text": text or ""}


def input_visibility(modalities: list[str]) -> list[Any]:
    """Video, audio, image, text inputs: shown only when the checkpoint uses them; the video input says
    which branches its frames and soundtrack feed."""
    return [video_input(modalities), *(gr.update(visible=m in modalities) for m in ("audio", "image", "text"))]


def video_input(modalities: list[str]) -> Any:
    """The video input's update: visible when the model uses its frames or soundtrack, labelled with which
    branch each feeds (``Video (frames → image, soundtrack → audio)``)."""
    routes = (("image", "frames"), ("audio", "soundtrack"), ("video", "clip"))
    fed = [f"{what} → {m}" for m, what in routes if m in modalities]
    return gr.update(visible=bool(fed), label=f"Video ({', '.join(fed)})" if fed else "Video")


def load_examples(task: str) -> tuple[list[list[Any]], list[str]]:
    """The checkpoint task's examples in ``assets/examples.json`` (``{task: [rows]}``) as
    [video, audio, image, text] rows (paths under assets/), and their labels. Unknown task: none."""
    index = ASSETS / "examples.json"
    rows = json.loads(index.read_text()).get(task, []) if index.is_file() else []
    keys = ("video", "audio", "image", "text")
    return (
        [[str(ASSETS / r[k]) if r.get(k) and k != "text" else (r.get(k) or None) for k in keys] for r in rows],
        [r["label"] for r in rows],
    )


def examples_update(task: str) -> Any:
    samples, labels = load_examples(task)
    return gr.update(samples=samples or [[None, None, None, None]], sample_labels=labels or None, visible=bool(samples))


def props(update: dict[str, Any]) -> dict[str, Any]:
    """A ``gr.update(...)`` as constructor keyword arguments (one place says what a component shows)."""
    return {k: v for k, v in update.items() if k != "__type__"}


def thumbnails(frames: list[Any], height: int = FRAME_HEIGHT) -> list[Any]:
    """Copies of the sampled frames at gallery size: the browser gets small PNGs, not full frames."""
    out = []
    for frame in frames:
        small = frame.copy()
        small.thumbnail((4 * height, height))
        out.append(small)
    return out


def make_render(fused: gr.Label, raw: gr.JSON) -> Callable[..., Any]:
    """``render(kind, value, **props)`` for :func:`ui.views.view_values`: each view value in the form the
    browser takes (the components' own postprocessing), so the toggle handler can set it without a server."""

    def render(kind: str, value: Any, **props: Any) -> Any:
        if kind in ("card", "fused"):  # every card is a gr.Label like the fused one (same top-3 cut)
            if set(value) == {""}:  # no result: the card shows the reason as its label, with no bars
                return {"__type__": "update", "value": {"label": value[""], "confidences": []}, **props}
            return {"__type__": "update", "value": fused.postprocess(value).model_dump(), **props}
        if kind == "raw":
            return raw.postprocess(value).model_dump()
        return value  # markdown and HTML strings are sent as they are

    return render


def predict_tab(mods: list[str], task: str, labels: list[str] | None = None, annotate: bool = False) -> SimpleNamespace:
    """Inputs, modality toggles and examples on the left; cards, sources, chart and frames on the right."""
    ui = SimpleNamespace()
    with gr.Row():
        with gr.Column(scale=2):
            # The video is uploaded through a file input and shown by a non-interactive player: Gradio's
            # interactive gr.Video mounts a trimming tool that fetches and compiles ffmpeg.wasm (31 MB) on the first
            # upload, which held the first answer back by ~450 ms. The player plays the clip with its sound.
            with gr.Column(visible=video_input(mods)["visible"], elem_id="video-box") as ui.video_box:
                ui.video = gr.File(
                    file_types=["video"], type="filepath", height=90, elem_id="video-input", **props(video_input(mods))
                )
                ui.video_preview = gr.Video(
                    label="The video (plays with its sound)",
                    interactive=False,
                    height=200,
                    visible=LATER,
                    elem_id="video-preview",
                )
            ui.video.change(None, ui.video, ui.video_preview, js=PREVIEW_JS, queue=False, api_visibility="private")
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
            ui.text = gr.Textbox(label="Text (Enter to predict)", visible="text" in mods, elem_id="text-input")
            ui.toggles = gr.CheckboxGroup(
                mods,
                value=mods,
                elem_id="toggles",
                label="Modalities in use (switch one off: the result updates at once, in the browser)",
            )
            ui.run = gr.Button("Predict", variant="primary")
            ui.examples = gr.Dataset(
                components=[ui.video_preview, ui.audio, ui.image, ui.text],  # a video example shows as a clip
                label="Examples for this checkpoint (held-out test data)",
                type="index",
                elem_id="examples",
                **props(examples_update(task)),
            )
        with gr.Column(scale=3):
            with gr.Row():
                ui.fused = gr.Label(label="fused", num_top_classes=3, elem_classes="card", elem_id="fused-card")
                ui.cards = [
                    gr.Label(label=m, num_top_classes=3, visible=m in mods, elem_classes="card", elem_id=f"{m}-card")
                    for m in MODALITIES
                ]
            ui.sources = gr.Markdown(sources_table(None, mods, mods), elem_id="sources")
            ui.chart = gr.HTML(probability_chart(None), css_template=CHART_CSS, elem_id="chart", padding=False)
            ui.frames = gr.Gallery(
                label="Frames sampled from the video (fed to the image branch)",
                columns=8,
                height=130,
                object_fit="contain",
                visible=LATER,
                elem_id="frames",
            )
            with gr.Accordion("Raw result (the /predict API returns this JSON)", open=False):
                ui.raw = gr.JSON()
            with gr.Row(visible=annotate, elem_id="annotate-this"):  # label this sample into the annotation store
                ui.annotate_label = gr.Dropdown(labels or [], label="Its true label", scale=2, elem_id="annotate-label")
                ui.annotate_note = gr.Textbox(label="Note", scale=2)
                ui.annotate_btn = gr.Button("Annotate this", scale=1, elem_id="annotate-this-btn")
            ui.annotate_status = gr.Markdown(visible=annotate)
    ui.inputs = [ui.video, ui.audio, ui.image, ui.text]
    ui.render = make_render(ui.fused, ui.raw)
    ui.views = gr.JSON(views_payload(None, mods, ui.render), visible=False)  # every toggle combination's view
    return ui
