"""How fast the Live tab follows the camera, in a real browser with a fake camera and microphone.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_live.py [--seconds 15] [--save]

Serves the app (checkpoints/av-digits) in this process and opens the Live tab in headless Chromium, whose fake
camera plays a handwritten 7 for 1 s, then a 2 for 1 s with a marker lit in the frame's corner (outside the
centre square the model sees), looped; the fake microphone says "seven" every 1.5 s. Inside the page, on every
``requestAnimationFrame``, the camera's video element is read (the marker says which digit it shows) and the
image card's top label is read; the latency of one switch is from the first frame of the new digit on screen
to the card showing that digit (median and p95 over the run; a switch the card never showed, or showed more
than a cycle late, is counted as missed and not timed). With one session, then four at once (four
browser contexts, each its own camera stream and server session):

- updates per second per session (the server's count of card updates; dropped updates are not counted);
- server CPU per update: this process's CPU time over the run (the server; Playwright's client in this
  process adds a little) / updates, against the encoders' own time for one audio window and one frame;
- the share of the microphone's sound that reached the server (seconds received / seconds run).

Goals (issue 23): p95 <= 300 ms and >= 4 updates/s for one session. Prints a table; ``--save`` writes
bench/results/live.json with the load average (the machine is shared: re-run it on a quiet one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import app  # noqa: E402
from tests import fakedevices as fake  # noqa: E402
from tests.chromium import ARGS, CHROMIUM  # noqa: E402

CHECKPOINT = "checkpoints/av-digits"
# Four sessions are four browser contexts (windows) of one Chromium: without these flags the ones not in front
# have their timers and capture throttled to about once a second, which would measure Chromium, not the app.
AWAKE = ["--disable-background-timer-throttling", "--disable-renderer-backgrounding",
         "--disable-backgrounding-occluded-windows"]  # fmt: skip
# Watch the camera's video and the image card for ``seconds``; resolve with the switch latencies (ms).
WATCH_JS = """async (seconds) => {
  const video = document.querySelector('#live-cam video');
  const canvas = document.createElement('canvas');
  canvas.width = 16;
  canvas.height = 12;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const label = "#live-image-card [data-testid='label-output-value']";
  const card = () => ((document.querySelector(label) || {}).innerText || '').trim();
  const shown = () => {
    ctx.drawImage(video, 0, 0, 16, 12);
    return ctx.getImageData(0, 0, 1, 1).data[0] > 128 ? '2' : '7';
  };
  const out = [];
  let missed = 0, last = shown(), since = null;
  const t0 = performance.now();
  return await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now(), digit = shown();
      if (digit !== last) {
        if (since !== null) missed += 1;  // the card never showed the previous digit
        since = card() === last ? now : null;  // a card still a cycle behind is not timed
        if (since === null) missed += 1;
        last = digit;
      }
      if (since !== null && card() === last) { out.push(now - since); since = null; }
      if (now - t0 > seconds * 1000) resolve({latencies: out, missed}); else requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}"""


def encoder_times(predictor, audio: Path, repeats: int = 20) -> dict[str, float]:
    """Median ms of one encoder call on one live input: the audio window's utterance and one camera frame."""
    import numpy as np

    from ume_mma import live

    samples, rate = fake.sf.read(audio, dtype="int16")
    window = live.LiveSession(Path(tempfile.mkdtemp()), live.window_seconds(predictor.model.encoders))
    window.push_audio(rate, np.tile(samples, 2))
    window.push_frame(np.repeat(fake.frame(fake.DIGIT_7)[..., None], 3, axis=2))
    found, _ = window.inputs(predictor.modalities)
    out = {}
    for m, path in found.items():
        raws = predictor.decoder(m, Path(path))
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            predictor._encode_batch(m, [raws])
            times.append(1000 * (time.perf_counter() - t))
        out[m] = statistics.median(times)
    return out


def start(browser, url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-cam").get_by_text("Click to Access Webcam").click()
    page.locator("#live-cam button", has_text="Record").click()
    page.locator("#live-mic button.record-button").click()
    page.locator("#live-image-card [data-testid='label-output-value']").wait_for()
    return page


def run(browser, url: str, demo, sessions: int, seconds: float) -> dict:
    pages = [start(browser, url) for _ in range(sessions)]
    time.sleep(2.0)  # every stream running, the audio windows full
    stats = demo.live.stats
    updates, dropped, cpu, wall = stats["updates"], stats["dropped"], time.process_time(), time.monotonic()
    heard = demo.live.sessions.audio_received()
    for p in pages:  # every page watches at once (the promise is awaited afterwards)
        p.evaluate(f"(s) => {{ window.__w = ({WATCH_JS})(s); }}", seconds)
    watched = [p.evaluate("window.__w") for p in pages]
    latencies = [x for w in watched for x in w["latencies"]]
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    heard = demo.live.sessions.audio_received() - heard
    n = stats["updates"] - updates
    for p in pages:
        p.context.close()
    latencies.sort()
    return {
        "sessions": sessions,
        "seconds": round(wall, 1),
        "switches": len(latencies) + sum(w["missed"] for w in watched),
        "switches_missed": sum(w["missed"] for w in watched),  # the card skipped a digit or lagged a cycle
        "latency_median_ms": round(statistics.median(latencies), 1) if latencies else None,
        "latency_p95_ms": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1)
        if latencies
        else None,
        "updates_per_s_per_session": round(n / wall / sessions, 2),
        "dropped_per_s": round((stats["dropped"] - dropped) / wall, 2),
        "server_cpu_ms_per_update": round(1000 * cpu / max(n, 1), 1),
        # the share of the microphone's sound that reached the server (Gradio drops the chunks recorded while
        # the server answers the previous one)
        "audio_received_share": round(heard / (wall * sessions), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="seconds measured per run")
    ap.add_argument("--save", action="store_true", help="write bench/results/live.json")
    args = ap.parse_args()
    from playwright import sync_api

    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    video = fake.alternating(tmp / "7-2.y4m", fake.DIGIT_7, fake.DIGIT_2)
    audio = fake.microphone(tmp / "7.wav", fake.SPEECH_7)
    load_before = os.getloadavg()[0]
    demo = app.build_demo(CHECKPOINT)
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    try:
        from ume_mma.predictor import Predictor

        encoders = encoder_times(Predictor.from_pretrained(ROOT / CHECKPOINT, device="cpu"), fake.SPEECH_7)
        with sync_api.sync_playwright() as p:
            flags = ARGS + AWAKE + fake.chromium_args(video, audio)
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=flags)
            runs = [run(browser, demo.local_url, demo, n, args.seconds) for n in (1, 4)]
            browser.close()
    finally:
        demo.close()
    result = {
        "checkpoint": CHECKPOINT,
        "camera": "fake: a 7 for 1 s, then a 2 for 1 s, 160x120 at 10 fps; microphone: 'seven' every 1.5 s",
        "stream_every_s": dict(app.live_ui.STREAM_EVERY),
        "encoder_ms": {m: round(v, 2) for m, v in encoders.items()},
        "encoders_ms_per_update": round(sum(encoders.values()), 2),
        "runs": runs,
        "goals": {"latency_p95_ms": 300, "updates_per_s_one_session": 4},
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if args.save:
        out = ROOT / "bench" / "results" / "live.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
