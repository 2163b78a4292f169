"""The first result for an uploaded video in Chromium, this checkout against another one, in alternating runs.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_first_video.py --before /path/to/an/older/checkout [--pages 6]
                                                                 [--save]

Serves ``app.py`` of both checkouts at once (each in its own process, the shipped ``checkpoints/av-digits``),
then opens fresh pages in headless Chromium, alternating between the two servers (so that other load on a shared
machine falls on both alike), and times from handing a 10 s clip (320x240, 25 fps, with sound; a clip neither
server has seen) to the page's video input until the fused card shows a label, inside the page as
``bench_toggle.py`` does. Prints the medians; ``--save`` writes bench/results/first_video.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_toggle import RESULT_JS, first_result  # noqa: E402
from serve import serve_app  # noqa: E402

from tests.chromium import ARGS, CHROMIUM  # noqa: E402


def serve(folder: Path, port: int, checkpoint: str) -> subprocess.Popen:
    """``folder``'s ``app.py`` on ``port`` (its own library on the path), once it answers."""
    return serve_app(port, "--checkpoint", checkpoint, env={"PYTHONPATH": str(folder)}, wait_s=180, folder=folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="the other checkout (its app.py and ume_mma)")
    ap.add_argument("--checkpoint", default="checkpoints/av-digits")
    ap.add_argument("--pages", type=int, default=6, help="fresh pages per checkout")
    ap.add_argument("--save", action="store_true", help="write bench/results/first_video.json")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from tests.media import make_video

    assert RESULT_JS  # the same in-page timing as bench_toggle
    folder = Path(tempfile.mkdtemp())
    clips = [
        make_video(folder / f"ten_seconds_{i}.mp4", seconds=10.0, size=(320, 240), fps=25, tone_hz=300.0 + 10 * i)
        for i in range(2 * args.pages)
    ]
    load = os.getloadavg()[0]
    servers = {"before": (args.before.resolve(), 7893), "after": (ROOT, 7894)}
    procs = {k: serve(f, port, args.checkpoint) for k, (f, port) in servers.items()}
    times: dict[str, list[float]] = {k: [] for k in servers}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            for i in range(args.pages):
                for j, k in enumerate(("before", "after") if i % 2 == 0 else ("after", "before")):
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.goto(f"http://127.0.0.1:{servers[k][1]}/")
                    page.locator("#toggles").wait_for()
                    page.wait_for_timeout(1500)
                    times[k].append(first_result(page, clips[2 * i + j]))
                    page.close()
            browser.close()
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
    result = {
        "checkpoint": args.checkpoint,
        "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
        "load_average_before": round(load, 2),
        "pages": args.pages,
        **{f"{k}_ms": [round(x, 1) for x in v] for k, v in times.items()},
        **{f"{k}_median_ms": round(statistics.median(v), 1) for k, v in times.items()},
    }
    print("| checkout | first result, median of fresh pages | range |\n|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {statistics.median(v):.0f} ms | {min(v):.0f}–{max(v):.0f} ms |")
    print(f"\nload average before: {load:.2f}")
    if args.save:
        out = ROOT / "bench" / "results" / "first_video.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
