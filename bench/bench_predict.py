"""Predictor benchmark (library level): predict time vs the encoders' own time, and a toggled
repeat vs a first predict. Writes bench/results/predict.json and prints a markdown table.

    python bench/bench_predict.py [--checkpoint checkpoints/av-digits] [--repeats 20]

"Encoders' own time" is the time spent inside ``Encoder.encode`` (the encoder's preprocessing of the
decoded input + its forward pass), measured in the same calls by wrapping it; everything else in
``predict`` (hashing, decoding files, heads, fusion, bookkeeping) is the predictor's overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ume_mma.predictor import Predictor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def default_inputs(modalities: list[str]) -> dict[str, str]:
    """Example inputs from assets/ for each modality the checkpoint uses (a held-out 7, image and speech)."""
    files = {
        "image": ROOT / "assets" / "agree_7_image_7.png",
        "audio": ROOT / "assets" / "agree_7_speech_7_en_US_f_Allison.wav",
    }
    inputs = {m: str(p) for m, p in files.items() if m in modalities}
    if "text" in modalities:
        inputs["text"] = "smiling face with open hands"
    return inputs


def timed_encoders(predictor: Predictor) -> dict[str, float]:
    """Wrap each encoder's ``encode`` to accumulate its wall time in the returned dict."""
    spent = {"s": 0.0}
    for enc in predictor.model.encoders.values():
        original = enc.encode

        def wrapper(raws, _orig=original):
            t = time.perf_counter()
            try:
                return _orig(raws)
            finally:
                spent["s"] += time.perf_counter() - t

        enc.encode = wrapper
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "av-digits"))
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "predict.json"))
    args = ap.parse_args()

    predictor = Predictor.from_pretrained(args.checkpoint)
    inputs = default_inputs(predictor.modalities)
    spent = timed_encoders(predictor)
    predictor.predict(inputs)  # warm-up: lazy imports, first-call allocations
    first, encoders, toggled = [], [], []
    for _ in range(args.repeats):
        predictor.cache.clear()
        spent["s"] = 0.0
        t = time.perf_counter()
        predictor.predict(inputs)
        first.append(time.perf_counter() - t)
        encoders.append(spent["s"])
        t = time.perf_counter()
        predictor.predict(inputs, predictor.modalities[:1])
        toggled.append(time.perf_counter() - t)
    med = statistics.median
    result = {
        "checkpoint": args.checkpoint,
        "inputs": inputs,
        "repeats": args.repeats,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "first_predict_ms": 1000 * med(first),
        "encoders_ms": 1000 * med(encoders),
        "toggled_repeat_ms": 1000 * med(toggled),
        "predict_over_encoders": med(f / e for f, e in zip(first, encoders)),
        "toggled_over_first": med(t / f for t, f in zip(toggled, first)),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("| measure | value | goal |\n|---|---|---|")
    print(f"| first predict (median of {args.repeats}) | {result['first_predict_ms']:.1f} ms | |")
    print(f"| encoders' own time in it | {result['encoders_ms']:.1f} ms | |")
    print(f"| predict / encoders | {result['predict_over_encoders']:.3f}x | <= 1.10x |")
    print(f"| toggled repeat | {result['toggled_repeat_ms']:.2f} ms | |")
    print(f"| toggled repeat / first predict | 1/{1 / result['toggled_over_first']:.0f} | <= 1/20 |")


if __name__ == "__main__":
    main()
