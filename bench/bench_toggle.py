"""How fast the Predict view reacts in a real browser (Playwright + Debian Chromium), as a user would see it.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_toggle.py [--checkpoint checkpoints/av-digits] [--repeats 5]
                                                            [--save]

Starts ``python app.py`` in its own process, opens it in headless Chromium, uploads a 10 s video with sound
and measures, inside the page (``performance.now()`` and one ``requestAnimationFrame`` check per frame, since
Playwright's own waits poll at 100 ms+):
- toggle: untick / re-tick "image" until the image card, the sources table and the chart have ALL changed
  (median and range of ``--repeats`` of each);
- first result: from handing the file to the page until the fused card shows a label (goal: 300 ms), the
  median over ``--first-repeats`` fresh pages (each the page's first upload, of a clip the server has not seen:
  one run varies by hundreds of ms on a shared machine), against the encoders' own time on the same video
  (measured in this process on a fresh predictor) plus the upload alone (POST of the same file to the app's
  upload route).
Prints a table; ``--save`` writes bench/results/toggle.json.
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

from serve import serve_app  # noqa: E402  (bench/ is on sys.path when run as a script)

from tests.chromium import ARGS, CHROMIUM  # noqa: E402

# Click a toggle and resolve with the ms until every watched element's content changed (-1: timeout).
TOGGLE_JS = """async ([label, watch]) => {
  const box = [...document.querySelectorAll('#toggles label')].find((l) => l.innerText.trim() === label)
    .querySelector('input');
  const read = () => watch.map((sel) => { const e = document.querySelector(sel); return e ? e.innerHTML : ''; });
  const before = read();
  const t0 = performance.now();
  box.click();
  return await new Promise((resolve) => {
    const check = () => {
      const now = read();
      if (now.every((v, i) => v !== before[i])) resolve(performance.now() - t0);
      else if (performance.now() - t0 > 20000) resolve(-1);
      else requestAnimationFrame(check);
    };
    requestAnimationFrame(check);
  });
}"""

# Resolve with the ms until the fused card shows a label (the input was handed over at t0 = window.__t0).
RESULT_JS = """async () => await new Promise((resolve) => {
  const check = () => {
    const v = document.querySelector("#fused-card [data-testid='label-output-value']");
    if (v && v.innerText.trim()) resolve(performance.now() - window.__t0);
    else if (performance.now() - window.__t0 > 60000) resolve(-1);
    else requestAnimationFrame(check);
  };
  check();
})"""
WATCH = ["#image-card", "#sources", "#chart"]


def encoder_time(checkpoint: str, video: Path, repeats: int = 3) -> float:
    """Seconds the encoders themselves take on ``video`` (fresh predictor each time: no cache)."""
    from bench_predict import timed_encoders  # bench/ is on sys.path when run as a script

    from ume_mma.predictor import Predictor

    times = []
    for _ in range(repeats):
        predictor = Predictor.from_pretrained(ROOT / checkpoint)
        spent = timed_encoders(predictor)
        predictor.predict({"video": str(video)})
        times.append(spent["s"])
    return statistics.median(times)


def upload_time(url: str, video: Path, repeats: int = 3) -> float:
    import httpx

    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        with video.open("rb") as f:
            httpx.post(f"{url}gradio_api/upload", files={"files": (video.name, f, "video/mp4")}, timeout=60)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def first_result(page, video: Path) -> float:
    """Ms from handing ``video`` to the page's video input until the fused card shows a label."""
    page.evaluate("() => { window.__t0 = performance.now(); }")
    page.locator("#video-input input[type=file]").set_input_files(str(video))
    return page.evaluate(RESULT_JS)


def measure(page, video: Path, repeats: int) -> dict:
    first_ms = first_result(page, video)
    page.wait_for_timeout(500)
    off, on = [], []
    for _ in range(repeats):
        off.append(page.evaluate(TOGGLE_JS, ["image", WATCH]))
        page.wait_for_timeout(300)
        on.append(page.evaluate(TOGGLE_JS, ["image", WATCH]))
        page.wait_for_timeout(300)
    return {"first_result_ms": first_ms, "toggle_off_ms": off, "toggle_on_ms": on}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="checkpoints/av-digits")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--port", type=int, default=7871)
    ap.add_argument("--first-repeats", type=int, default=5, help="first results, each on a fresh page")
    ap.add_argument("--save", action="store_true", help="write bench/results/toggle.json")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from tests.media import make_video

    folder = Path(tempfile.mkdtemp())
    video = make_video(folder / "ten_seconds.mp4", seconds=10.0, size=(320, 240), fps=25)
    others = [  # the same clip with another tone: other content, so no cached features
        make_video(folder / f"ten_seconds_{i}.mp4", seconds=10.0, size=(320, 240), fps=25, tone_hz=440.0 + 20 * i)
        for i in range(1, args.first_repeats)
    ]
    load = os.getloadavg()[0]
    proc = serve_app(args.port, "--checkpoint", args.checkpoint)
    url = f"http://127.0.0.1:{args.port}/"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.locator("#toggles").wait_for()
            got = measure(page, video, args.repeats)
            firsts = [got["first_result_ms"]]
            for clip in others:  # a fresh page each: the first upload of that page, a clip the server has not seen
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                page.locator("#toggles").wait_for()
                page.wait_for_timeout(1000)
                firsts.append(first_result(page, clip))
                page.close()
            browser.close()
        upload_s = upload_time(url, video)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    enc_s = encoder_time(args.checkpoint, video)
    toggles = got["toggle_off_ms"] + got["toggle_on_ms"]
    result = {
        "checkpoint": args.checkpoint,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "toggle_median_ms": round(statistics.median(toggles), 1),
        "toggle_range_ms": [round(min(toggles), 1), round(max(toggles), 1)],
        **{k: [round(x, 1) for x in v] if isinstance(v, list) else round(v, 1) for k, v in got.items()},
        "first_result_ms": round(statistics.median(firsts), 1),  # the median of the fresh pages
        "first_results_ms": [round(x, 1) for x in firsts],
        "load_average_before": round(load, 2),
        "encoders_ms": round(1000 * enc_s, 1),
        "upload_ms": round(1000 * upload_s, 1),
        "first_result_vs_encoders_plus_upload": round(statistics.median(firsts) / (1000 * (enc_s + upload_s)), 2),
        "first_result_budget_ms": round(1000 * (1.5 * enc_s + upload_s), 1),
    }
    print("| measure | result |\n|---|---|")
    print(
        f"| toggle (median of {len(toggles)}, in the browser) | {result['toggle_median_ms']} ms "
        f"(range {result['toggle_range_ms'][0]}–{result['toggle_range_ms'][1]}) |"
    )
    print(
        f"| first result, 10 s video (median of {len(firsts)} fresh pages; range {min(firsts):.0f}–{max(firsts):.0f}) "
        f"| {result['first_result_ms']} ms (goal 300 ms; encoders {result['encoders_ms']} ms, upload "
        f"{result['upload_ms']} ms) |"
    )
    print(f"\nload average before: {result['load_average_before']}")
    if args.save:
        out = ROOT / "bench" / "results" / "toggle.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
