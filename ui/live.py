"""The Live tab: a camera and a microphone streamed to the server, the cards updating several times a second.

Each stream chunk is added to the session's :class:`ume_mma.live.LiveSession` (the audio window as long as
the audio encoder reads, the latest frame); then, unless an update of this session is being computed, the
present branches are predicted on and the cards, sources and chart are redrawn (the Predict tab's views,
:func:`ui.views.view_values`). An update that arrives while one is computed is dropped, not queued. A branch
whose input is missing (no camera, black or frozen frame, silence, no microphone) is left out of the inputs
and its card says why; a present branch off its training distribution is *unfamiliar*.

**Snapshot** copies the current window (the latest frame and the audio window) to files and hands them to
the Predict tab (where "Annotate this" puts them in the annotation queue).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from ui.limits import ClientLimiter, client_key
from ui.views import CHART_CSS, probability_chart, sources_table, view_values
from ume_mma.live import LiveSession, Presence, read_wav_chunk, window_seconds
from ume_mma.registry import MODALITIES

# Seconds between the chunks a browser sends (camera, microphone). Gradio's browser code drops a microphone chunk
# recorded while the server still handles the previous one, so the microphone's event only adds its chunk to
# the window and returns (the camera's event updates the cards), and its chunks are long: few fall in that gap.
STREAM_EVERY = {"image": 0.1, "audio": 0.5}
LIVE_SECONDS = 600  # one stream's time limit (press record again after it)
LIVE_STREAMS = 32  # streams served at once, all sessions together (each session has up to two)
IDLE_SECONDS = 120  # a session with no chunk for this long is forgotten (its files removed)
LIVE_FEEDS = ("image", "audio")  # the branches a camera and a microphone feed


def feeds(modalities: list[str]) -> list[str]:
    """The checkpoint's branches that a camera or microphone can feed."""
    return [m for m in LIVE_FEEDS if m in modalities]


class Sessions:
    """The live sessions of one app, by Gradio session hash; idle ones are forgotten after :data:`IDLE_SECONDS`."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="ume-mma-live-"))
        self._by_id: dict[str, tuple[LiveSession, str, float]] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str, checkpoint: str, seconds: float) -> LiveSession:
        """The session's live state for ``checkpoint`` (a new one when the checkpoint changed)."""
        now = time.monotonic()
        with self._lock:
            for sid, (_, _, seen) in list(self._by_id.items()):
                if now - seen > IDLE_SECONDS and sid != session_id:
                    self._drop(sid)
            found = self._by_id.get(session_id)
            if found is None or found[1] != checkpoint:
                if found is not None:
                    self._drop(session_id)
                folder = self.root / f"s{abs(hash(session_id)) % 10**12}-{int(now * 1000)}"
                found = (LiveSession(folder, seconds), checkpoint, now)
            self._by_id[session_id] = (found[0], checkpoint, now)
            return found[0]

    def _drop(self, session_id: str) -> None:
        session, _, _ = self._by_id.pop(session_id)
        shutil.rmtree(session.folder, ignore_errors=True)

    def __len__(self) -> int:
        return len(self._by_id)

    def audio_received(self) -> float:
        """Seconds of microphone sound received by the live sessions (the live bench compares it with the clock)."""
        with self._lock:
            return sum(s.audio.received for s, _, _ in self._by_id.values())


def status_line(states: dict[str, Presence]) -> str:
    """``**image**: present · **audio**: missing (silence)``."""
    parts = [f"**{m}**: {p.state}" + (f" ({p.reason})" if p.reason else "") for m, p in sorted(states.items())]
    return " · ".join(parts) or "*This checkpoint has no branch a camera or a microphone can feed.*"


def live_values(pred: Any, modalities: list[str], states: dict[str, Presence], render: Callable[..., Any]) -> list:
    """Values of fused card, one card per modality in MODALITIES, sources, chart and the status line: the
    Predict tab's views of ``pred`` (None: nothing present), each live branch's card saying present, missing
    (and why) or unfamiliar."""
    values = view_values(pred, modalities, modalities, render)
    fused, cards, sources = values[0], values[1 : 1 + len(MODALITIES)], values[1 + len(MODALITIES)]
    states = dict(states)
    for i, m in enumerate(MODALITIES):
        if m not in states:
            continue
        p = states[m]
        if p.state == "missing":
            cards[i] = render("card", {"": f"missing: {p.reason}"}, label=f"{m} · missing ({p.reason})")
        elif pred is not None and m in pred.branches and pred.branches[m].off_distribution:
            states[m] = Presence("unfamiliar", "off its training distribution")
            label = str(cards[i].get("label", "")) if isinstance(cards[i], dict) else ""
            note = label.split(" · ", 1)[1] if " · " in label else ""
            cards[i] = {**cards[i], "label": f"{m} · unfamiliar" + (f" · {note}" if note else "")}
    if pred is None:
        sources = render("sources", "*Nothing live to predict on.*\n\n" + sources_table(None, modalities, modalities))
    return [fused, *cards, sources, render("chart", probability_chart(pred)), status_line(states)]


def live_tab(mods: list[str], render_factory: Callable[..., Callable[..., Any]]) -> SimpleNamespace:
    """Camera, microphone (and a text box for a text branch) on the left; the live cards, sources and chart on
    the right; Snapshot under the inputs. ``render_factory(fused, raw)``: :func:`ui.predict.make_render`."""
    ui = SimpleNamespace()
    with gr.Row():
        with gr.Column(scale=2):
            ui.cam = gr.Image(
                label="Camera (the centre square feeds the image branch)",
                sources=["webcam"],
                streaming=True,
                type="numpy",
                # not mirrored: the image branch sees what the camera sees (a held-up digit reads as written)
                webcam_options=gr.WebcamOptions(mirror=False),
                height=260,
                elem_id="live-cam",
                visible="image" in mods,
            )
            ui.mic = gr.Audio(
                label="Microphone (the last seconds feed the audio branch)",
                sources=["microphone"],
                streaming=True,
                type="filepath",  # read by ume_mma.live.read_wav_chunk: Gradio's own reading drops samples
                format="wav",
                elem_id="live-mic",
                visible="audio" in mods,
            )
            ui.text = gr.Textbox(label="Text", visible="text" in mods, elem_id="live-text")
            ui.status = gr.Markdown(status_line({}), elem_id="live-status")
            ui.snapshot = gr.Button("Snapshot → Predict", elem_id="live-snapshot")
            ui.snap_note = gr.Markdown(elem_id="live-snap-note")
        with gr.Column(scale=3):
            with gr.Row():
                ui.fused = gr.Label(label="fused", num_top_classes=3, elem_classes="card", elem_id="live-fused-card")
                ui.cards = [
                    gr.Label(
                        label=m, num_top_classes=3, visible=m in mods, elem_classes="card", elem_id=f"live-{m}-card"
                    )
                    for m in MODALITIES
                ]
            ui.sources = gr.Markdown(sources_table(None, mods, mods), elem_id="live-sources")
            ui.chart = gr.HTML(probability_chart(None), css_template=CHART_CSS, elem_id="live-chart", padding=False)
            raw = gr.JSON(visible=False)
    ui.render = render_factory(ui.fused, raw)
    ui.outputs = [ui.fused, *ui.cards, ui.sources, ui.chart, ui.status]
    return ui


def handlers(pool: Any, limiter: ClientLimiter | None = None, sessions: Sessions | None = None) -> SimpleNamespace:
    """The Live tab's event functions. ``pool``: the app's predictor pool; ``limiter``: the per-client limit
    (an update over it is dropped); ``sessions``: where the live state lives."""
    limiter = limiter or ClientLimiter(None)
    sessions = sessions or Sessions()
    stats = {"updates": 0, "dropped": 0}

    def session_of(k: str, request: gr.Request | None) -> tuple[Any, LiveSession]:
        item = pool.get(k)
        sid = getattr(request, "session_hash", None) or "local"
        return item, sessions.get(sid, k, window_seconds(item.predictor.model.encoders))

    def update(item: Any, live: LiveSession, text: str | None, request: gr.Request | None, render: Any) -> Any:
        """Predict on the session's present inputs, unless an update is being computed (then drop this one)."""
        if not live.lock.acquire(blocking=False):
            stats["dropped"] += 1
            return None
        try:
            with limiter.slot(client_key(request, limiter.proxies)):
                predictor = item.predictor
                found, states = live.inputs(predictor.modalities)
                if "text" in predictor.modalities and text and text.strip():
                    found["text"] = text
                pred = predictor.predict(found) if found else None
                stats["updates"] += 1
                return live_values(pred, predictor.modalities, states, render)
        except gr.Error:  # over the per-client limit: this update is dropped
            stats["dropped"] += 1
            return None
        finally:
            live.lock.release()

    def make(render: Any, n_out: int) -> SimpleNamespace:
        def skip() -> list[Any]:
            return [gr.skip()] * n_out

        def on_frame(frame, text, k, request: gr.Request = None):
            item, live = session_of(k, request)
            if frame is not None:
                live.push_frame(frame)
            return update(item, live, text, request, render) or skip()

        def on_audio(chunk, text, k, request: gr.Request = None):
            item, live = session_of(k, request)
            if chunk:
                live.push_audio(*read_wav_chunk(chunk))
            if live.image_presence().reason != "no camera":
                return skip()  # the camera's stream updates the cards: this event returns at once (see above)
            return update(item, live, text, request, render) or skip()

        def snapshot(k, request: gr.Request = None):
            """The current window as files for the Predict tab's image and audio inputs."""
            item, live = session_of(k, request)
            with live.lock:
                found = live.snapshot(Path(tempfile.mkdtemp(prefix="snapshot-", dir=sessions.root)))
            mods = item.predictor.modalities
            if not any(m in found for m in mods):
                raise gr.Error("Nothing to keep yet: start the camera or the microphone first.", print_exception=False)
            note = "Snapshot sent to Predict: " + ", ".join(m for m in sorted(found) if m in mods)
            image, audio = (found.get(m) if m in mods else None for m in ("image", "audio"))
            return image, audio, note

        return SimpleNamespace(on_frame=on_frame, on_audio=on_audio, snapshot=snapshot)

    def show(k):
        """After a checkpoint change: the camera, microphone, text box and cards of its branches."""
        mods = pool.get(k).predictor.modalities
        inputs = [gr.update(visible=m in mods) for m in ("image", "audio", "text")]
        return [*inputs, *(gr.update(visible=m in mods) for m in MODALITIES), status_line({})]

    return SimpleNamespace(make=make, show=show, stats=stats, sessions=sessions)


def wire(
    ui: SimpleNamespace,
    fns: SimpleNamespace,
    key: Any,
    predict_image: Any,
    predict_audio: Any,
    tabs: Any,
    after_snapshot: Callable[[Any], Any],
) -> None:
    """The Live tab's events: both streams into one session; Snapshot into the Predict tab's inputs (then
    ``after_snapshot(event)`` chains the Predict tab's prediction)."""
    f = fns.make(ui.render, len(ui.outputs))
    common = {
        "outputs": ui.outputs,
        "postprocess": False,  # the values are in the browser's form already (ui.predict.make_render)
        "time_limit": LIVE_SECONDS,
        "concurrency_limit": LIVE_STREAMS,
        "concurrency_id": "live",
        "show_progress": "hidden",
        "api_visibility": "private",
    }
    ui.cam.stream(f.on_frame, [ui.cam, ui.text, key], stream_every=STREAM_EVERY["image"], **common)
    ui.mic.stream(f.on_audio, [ui.mic, ui.text, key], stream_every=STREAM_EVERY["audio"], **common)
    snap = ui.snapshot.click(
        f.snapshot, key, [predict_image, predict_audio, ui.snap_note], api_visibility="private"
    ).success(lambda: gr.Tabs(selected="predict"), None, tabs, api_visibility="private")
    after_snapshot(snap)
