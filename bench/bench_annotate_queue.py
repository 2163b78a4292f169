"""Annotation queue benchmark: building and ordering an N-item queue vs the encoders' own time on its items.

    python bench/bench_annotate_queue.py [--n 2000] [--checkpoint checkpoints/av-digits] [--db URL --media-dir D]
                                         [--save]

Items are N distinct image + speech pairs made from the assets/ examples (each file perturbed by a tiny
noise, so no two items share content and the predictor's cache cannot skip any encoder call); half of the
pairs disagree (image 2 + spoken 5). Measured, on one fresh store (SQLite in a temp folder by default):
- import: reading metadata.jsonl, checking and decoding every file, content-addressed copies, DB rows;
- prediction pass (``predict_queue``): predictions of every item stored, then ranked disagreement-first;
  inside it, the encoders' own time (their ``preprocess`` of decoded inputs + ``forward``, wrapped, as in
  bench_predict.py) and the predictor's (``predict_many`` or ``predict``, wrapped):
  what remains is the queue's own cost (reading samples, writing predictions, ranking);
- ordering alone: ``order_queue`` for each order (median of 5);
- one annotation: ``next_item`` + ``submit`` (median of 200; SQLite commits are fsynced).
Goal: the queue's own cost (store + ordering) adds at most 10% over the encoders. Writes
bench/results/annotate_queue.json only with --save.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from PIL import Image  # noqa: E402

from ume_mma.annotate import ORDERS, AnnotationQueue, import_dataset, open_store, order_queue, predict_queue  # noqa: E402
from ume_mma.predictor import Predictor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [
    ("agree_7_image_7.png", "agree_7_speech_7_en_US_f_Allison.wav"),
    ("disagree_2_5_image_2.png", "disagree_2_5_speech_5_es_MX_f_Allison.wav"),
]


def make_items(folder: Path, n: int, seed: int = 0) -> Path:
    """``folder/metadata.jsonl`` with n distinct image + audio pairs derived from the assets."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "wav").mkdir(exist_ok=True)
    bases = [(np.asarray(Image.open(ROOT / "assets" / i).convert("L")), sf.read(ROOT / "assets" / a)) for i, a in PAIRS]
    lines = []
    for k in range(n):
        img, (wav, rate) = bases[k % 2]
        noisy = np.clip(img.astype(np.int16) + rng.integers(-2, 3, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / "img" / f"{k}.png")
        sf.write(folder / "wav" / f"{k}.wav", wav + rng.normal(0, 1e-4, wav.shape), rate)
        lines.append(json.dumps({"image": f"img/{k}.png", "audio": f"wav/{k}.wav", "group": f"g{k // 10}"}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def timed(obj: object, name: str, spent: dict[str, float], key: str) -> None:
    """Wrap ``obj.name`` so that its wall time accumulates in ``spent[key]``."""
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - t

    setattr(obj, name, wrapper)


def run(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    data = make_items(tmp / "data", args.n)
    store = open_store(args.db or tmp / "bench.db", args.media_dir)
    predictor = Predictor.from_pretrained(args.checkpoint, cache_size=4 * args.n)
    spent = {"encoders": 0.0, "predict": 0.0}
    for enc in predictor.model.encoders.values():
        timed(enc, "preprocess", spent, "encoders")
        timed(enc, "forward", spent, "encoders")
    predictor.predict({"image": str(data / "img/0.png"), "audio": str(data / "wav/0.wav")})  # warm-up
    predictor.clear_cache()
    spent.update(encoders=0.0, predict=0.0)
    timed(predictor, "predict_many" if hasattr(predictor, "predict_many") else "predict", spent, "predict")
    t = time.perf_counter()
    import_dataset(store, data, queue="bench")
    import_s = time.perf_counter() - t
    t = time.perf_counter()
    predict_queue(store, predictor, "bench", batch_size=64, show_progress=False)
    pass_s = time.perf_counter() - t
    orders = {}
    for order in ORDERS:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            order_queue(store, "bench", order)
            times.append(time.perf_counter() - t)
        orders[order] = statistics.median(times)
    queue_own = pass_s - spent["predict"]
    queue, cycles = AnnotationQueue(store, "bench"), []
    for _ in range(min(200, args.n)):
        t = time.perf_counter()
        item = queue.next_item("bench")
        queue.submit(item.id, item.prediction["fused"]["label"], "bench")
        cycles.append(time.perf_counter() - t)
    return {
        "n": args.n,
        "checkpoint": args.checkpoint,
        "store": store.dialect,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "import_s": import_s,
        "prediction_pass_s": pass_s,
        "predict_calls_s": spent["predict"],
        "encoders_s": spent["encoders"],
        "queue_own_s": queue_own,
        "order_s": orders,
        "next_item_and_submit_ms": 1000 * statistics.median(cycles),
        "queue_own_over_encoders": queue_own / spent["encoders"],
        "order_over_encoders": orders["disagreement"] / spent["encoders"],
        "pass_over_encoders": pass_s / spent["encoders"],
        "import_and_pass_over_encoders": (import_s + pass_s) / spent["encoders"],
    }


def table(r: dict) -> str:
    """The results as a markdown table (seconds and the ratio to the encoders' own time)."""
    e = r["encoders_s"]
    rows = [
        ("encoders' own time (preprocess + forward)", e, ""),
        ("predictor calls (decode + encoders + heads)", r["predict_calls_s"], ""),
        ("queue's own cost in the pass (store + ranking)", r["queue_own_s"], "<= 0.10"),
        ("prediction pass, total", r["prediction_pass_s"], ""),
        *((f"order_queue {o} alone (median of 5)", s, "") for o, s in r["order_s"].items()),
        ("import (check, decode, copy, insert)", r["import_s"], ""),
        ("import + prediction pass", r["import_s"] + r["prediction_pass_s"], ""),
    ]
    lines = [f"| measure ({r['n']} items, {r['store']}) | seconds | / encoders | goal |", "|---|---|---|---|"]
    lines += [f"| {name} | {s:.3f} | {s / e:.4f} | {goal} |" for name, s, goal in rows]
    lines.append(
        f"| next_item + submit, one annotation (median of 200) | {r['next_item_and_submit_ms'] / 1000:.4f} | | |"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "av-digits"))
    ap.add_argument("--db", default=None, help="database path or postgresql:// URL (default: SQLite in a temp dir)")
    ap.add_argument("--media-dir", default=None)
    ap.add_argument("--save", action="store_true", help="write bench/results/annotate_queue.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-annotate-") as tmp:
        if args.db and "://" in args.db and not args.media_dir:
            args.media_dir = str(Path(tmp) / "media")
        r = run(args, Path(tmp))
    print(table(r))
    if args.save:
        out = ROOT / "bench" / "results" / "annotate_queue.json"
        out.write_text(json.dumps(r, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
