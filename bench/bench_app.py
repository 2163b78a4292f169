"""Benchmark of the app on one checkpoint (a script, not a test).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_app.py [--checkpoint checkpoints/av-digits]

Measures: the first predict vs a toggled repeat (a modality switched off: cached encoder outputs);
a cold predict vs the encoders' own time (preprocess + forward, measured directly); a 60 s vs a 10 s
video; the resident memory of the process after warm-up; and, against ``python app.py`` started in its
own process, 16 concurrent gradio_client calls to /predict with the same files and with 16 distinct ones, then
one call with each other checkpoint (``--also``; default: every other folder under checkpoints/) and the app's
resident memory after them (``server.rss_mb_after_all_checkpoints``: the app after using both shipped ones).
Prints a markdown table; ``--save`` writes bench/results/app.json.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gradio as gr  # noqa: E402
from bench_predict import default_inputs, timed_encoders  # noqa: E402  (bench/ is on sys.path when run as a script)
from serve import serve_app  # noqa: E402  (bench/ is on sys.path when run as a script)

import app  # noqa: E402
from ui.views import views_payload  # noqa: E402
from ume_mma.predictor import Limits  # noqa: E402


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def median_time(fn, repeats: int, before=None) -> float:
    times = []
    for _ in range(repeats):
        if before:
            before()
        times.append(timed(fn)[0])
    return statistics.median(times)


def bench_predictor(pool, ref: str, repeats: int) -> dict[str, float]:
    item = pool.get(ref)
    predictor = item.predictor
    inputs = default_inputs(predictor.modalities)
    keep = sorted(inputs)[:1]  # the toggle: every other modality switched off

    def clear() -> None:
        predictor.clear_cache()
        predictor.frames.clear()

    clear()
    first, pred = timed(pool.predict, ref, inputs, None, True)
    toggled = median_time(lambda: pool.predict(ref, inputs, keep), repeats)
    render = app.make_render(gr.Label(num_top_classes=3), gr.JSON())
    # The UI renders every toggle combination once per prediction (the browser then swaps between them).
    views = median_time(lambda: views_payload(pred, predictor.modalities, render), repeats)
    spent = timed_encoders(predictor)  # the encoders' own time, measured inside the same calls
    cold, enc = [], []
    for _ in range(repeats):
        clear()
        spent["s"] = 0.0
        cold.append(timed(pool.predict, ref, inputs, None)[0])
        enc.append(spent["s"])
    return {
        "first_predict_s": first,
        "toggled_repeat_s": toggled,
        "first_vs_toggled_ratio": first / toggled,
        "ui_views_render_s": views,
        "cold_predict_s": statistics.median(cold),
        "encoders_own_s": statistics.median(enc),
        "cold_predict_vs_encoders_ratio": statistics.median(c / e for c, e in zip(cold, enc)),
        "toggle_keeps": keep[0],
    }


def bench_video(pool, ref: str, repeats: int, tmp: Path) -> dict[str, float]:
    from tests.media import make_video

    predictor = pool.get(ref).predictor
    out = {}
    for seconds in (10, 60):
        path = make_video(tmp / f"v{seconds}.mp4", seconds=seconds, size=(320, 240), fps=25)

        def clear() -> None:
            predictor.clear_cache()
            predictor.frames.clear()

        out[f"video_{seconds}s_predict_s"] = median_time(
            lambda p=path: pool.predict(ref, {"video": str(p)}, None), repeats, before=clear
        )
    out["video_60s_vs_10s_ratio"] = out["video_60s_predict_s"] / out["video_10s_predict_s"]
    return out


def distinct_inputs(modalities: list[str], n: int, folder: Path) -> list[dict[str, str]]:
    """``n`` requests whose files all differ in content (shifted image, scaled audio): every one is an
    encoder cache miss, so the encoders work on each."""
    import numpy as np
    import soundfile as sf
    from PIL import Image

    base = default_inputs(modalities)
    out = []
    for i in range(n):
        req = dict(base)
        if "image" in base:
            img = np.roll(np.asarray(Image.open(base["image"])), i % 5 - 2, axis=1)
            req["image"] = str(folder / f"img{i}.png")
            Image.fromarray(img).save(req["image"])
        if "audio" in base:
            wave, sr = sf.read(base["audio"], dtype="float32")
            req["audio"] = str(folder / f"aud{i}.wav")
            sf.write(req["audio"], wave * (0.6 + 0.02 * i), sr)
        if "text" in base:
            req["text"] = f"{base['text']} {i}"
        out.append(req)
    return out


def bench_concurrent(url: str, requests: list[dict[str, str]]) -> dict[str, float]:
    """``len(requests)`` gradio_client clients call /predict at the same moment, each with its request."""
    from gradio_client import Client, handle_file

    def args(inputs: dict[str, str]) -> dict[str, object]:
        return {k: (handle_file(v) if k != "text" else v) for k, v in inputs.items()}

    clients = [Client(url, verbose=False) for _ in requests]
    clients[0].predict(**args(default_inputs(list(requests[0]))), api_name="/predict")  # warm-up

    def one(pair) -> bool:
        client, inputs = pair
        try:
            return "fused" in client.predict(**args(inputs), api_name="/predict")
        except Exception as exc:  # noqa: BLE001 - a failure is counted, not raised
            print("call failed:", exc, file=sys.stderr)
            return False

    with ThreadPoolExecutor(len(requests)) as ex:
        wall, ok = timed(lambda: list(ex.map(one, zip(clients, requests))))
    return {"failures": len(requests) - sum(ok), "wall_s": wall, "calls_per_s": len(requests) / wall}


def use_checkpoints(url: str, refs: list[str]) -> None:
    """One /predict per checkpoint of ``refs`` (``checkpoint=``), with its modalities' example inputs."""
    from gradio_client import Client, handle_file

    from ume_mma.checkpoint import load_config

    client = Client(url, verbose=False)
    for ref in refs:
        inputs = default_inputs(load_config(ROOT / ref)[0].modalities)
        args = {k: (handle_file(v) if k != "text" else v) for k, v in inputs.items()}
        client.predict(**args, checkpoint=ref, api_name="/predict")


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` (MiB, psutil)."""
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def bench_server(
    checkpoint: str, modalities: list[str], also: list[str], calls: int = 16, port: int = 7875
) -> dict[str, object]:
    """16 concurrent calls with the same files (encoder cache hits after the first) and with distinct files
    (every call runs the encoders: the server batches the calls that overlap); then one call with each checkpoint
    of ``also``. The app's resident memory is read after the calls and after the other checkpoints."""
    proc = serve_app(port, "--checkpoint", checkpoint)
    url = f"http://127.0.0.1:{port}/"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            same = bench_concurrent(url, [default_inputs(modalities)] * calls)
            distinct = bench_concurrent(url, distinct_inputs(modalities, calls, Path(tmp)))
        rss_calls = rss_mb(proc.pid)
        use_checkpoints(url, also)
        rss_all = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return (
        {"concurrent_calls": calls}
        | {f"same_files_{k}": v for k, v in same.items()}
        | {f"distinct_files_{k}": v for k, v in distinct.items()}
        | {"rss_mb_after_calls": rss_calls, "also_used": also, "rss_mb_after_all_checkpoints": rss_all}
    )


def run_all(pool, ref: str, repeats: int) -> dict[str, object]:
    results: dict[str, object] = bench_predictor(pool, ref, repeats)
    with tempfile.TemporaryDirectory() as tmp:
        if {"image", "audio"} & set(pool.get(ref).predictor.modalities):
            results |= bench_video(pool, ref, repeats, Path(tmp))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=app.DEFAULT_CHECKPOINT)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--torch-threads",
        type=int,
        nargs="+",
        default=[0, 1],
        help="torch intra-op thread counts to measure (0 = torch's default)",
    )
    ap.add_argument(
        "--also",
        nargs="*",
        default=None,
        help="checkpoints the served app is then called with once each (default: every other one under checkpoints/)",
    )
    ap.add_argument("--save", action="store_true", help="write the results file (--out); default: print only")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "app.json")
    args = ap.parse_args()
    import psutil
    import torch

    default_threads = torch.get_num_threads()
    pool = app.PredictorPool(Limits(max_video_seconds=120))
    load_s, _ = timed(pool.get, args.checkpoint)
    runs = {}
    for n in args.torch_threads:
        torch.set_num_threads(n or default_threads)
        runs[f"torch_threads={n or default_threads}"] = run_all(pool, args.checkpoint, args.repeats)
    torch.set_num_threads(default_threads)
    also = args.also if args.also is not None else [c for c in app.list_checkpoints() if c != args.checkpoint]
    server = bench_server(args.checkpoint, pool.get(args.checkpoint).predictor.modalities, also)
    results = {
        "checkpoint": args.checkpoint,
        "load_s": load_s,
        "rss_mb_after_warmup": psutil.Process().memory_info().rss / 2**20,
        "runs": runs,
        "server": server,
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1min": os.getloadavg()[0],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    if args.save:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"checkpoint {args.checkpoint}: loaded in {load_s:.2f} s, RSS after warm-up "
        f"{results['rss_mb_after_warmup']:.0f} MB, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| metric | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs))
    for key in next(iter(runs.values())):
        cells = [f"{r[key]:.4g}" if isinstance(r[key], float) else str(r[key]) for r in runs.values()]
        print(f"| {key} | " + " | ".join(cells) + " |")
    print("\n| `python app.py` in its own process, 16 concurrent gradio_client calls | |\n|---|---|")
    for key, value in server.items():
        print(f"| {key} | {value:.4g} |" if isinstance(value, float | int) else f"| {key} | {value} |")
    print(f"\nwritten to {args.out}" if args.save else "\n(not saved: --save writes bench/results/app.json)")


if __name__ == "__main__":
    main()
