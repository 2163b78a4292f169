"""Predictor benchmark (library level): predict time vs the encoders' own time, a toggled repeat vs a first
predict, 16 requests served one by one vs in one ``predict_many`` call, and (for a checkpoint with reliability
fields) the time of the per-branch reliability scores against the encoders'. Prints a markdown table; writes
bench/results/predict.json only with ``--save`` (or to ``--out``).

    python bench/bench_predict.py [--checkpoint checkpoints/av-digits] [--repeats 60] [--save]

"Encoders' own time" is the time spent inside each encoder's ``preprocess`` (of the decoded input) and
``forward``, measured in the same calls by wrapping them; everything else in ``predict`` (hashing, decoding
files, resampling, heads, fusion, bookkeeping) is the predictor's overhead. The ratio is reported as the
median over repeats with its interquartile range and min-max, since single runs on a shared machine vary.
Other load slows the encoders (threaded) more than the overhead, so the ratio also reads lower on a busy
machine: the overhead is also given in milliseconds, and as the CPU time of the calling thread outside the
encoders (``overhead_cpu_ms``), which other processes change little.
The reliability scores' time is measured the same way, inside ``model.reliability``'s ``checks`` (the feature
statistics of every branch) in the same calls; goal: at most 5% of the encoders' time. So is the correctness
estimate's (its signals from those checks and the logits, and its logistic model) for a checkpoint that has
one; goal: 5%.
The predictor's own work is also split by stage (``own_cpu_ms``, CPU time of the calling thread, median over
repeats): ``plan`` (routes, file checks, hashing), ``decode`` (cache lookups and decoding the files),
``finish`` (heads, the reliability checks, the estimate, fusion and the results) and ``rest`` (the encoder calls'
own bookkeeping, locking, memory trimming).
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
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's ume_mma, not an installed one

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from PIL import Image  # noqa: E402

from ume_mma.predictor import Predictor  # noqa: E402

BATCH = 16  # what the app's /predict batches (gradio max_batch_size)


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
    """Wrap each encoder's ``preprocess`` and ``forward`` to accumulate their wall time in the returned dict
    (``s``; the calling thread's CPU time in them: ``cpu_s``), and the reliability module's ``forward``
    (``reliability_s``) when the model has one."""
    spent = {"s": 0.0, "cpu_s": 0.0, "reliability_s": 0.0, "correctness_s": 0.0}

    def timing(fn: Callable, key: str = "s") -> Callable:
        def wrapper(*args, **kwargs):
            t, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t
                if key == "s":
                    spent["cpu_s"] += time.thread_time() - c

        return wrapper

    for enc in predictor.model.encoders.values():
        enc.preprocess = timing(enc.preprocess)
        enc.forward = timing(enc.forward)
    if predictor.model.reliability is not None:
        # both checks (the distance and the feature norm): what the reliability and the estimate's signals read
        predictor.model.reliability.checks = timing(predictor.model.reliability.checks, "reliability_s")
    if predictor.model.correctness is not None:  # the estimate's signals (both checks) and its logistic model
        from ume_mma import models
        from ume_mma.correctness import Correctness

        models.branch_signals = timing(models.branch_signals, "correctness_s")
        Correctness.__call__ = timing(Correctness.__call__, "correctness_s")
    return spent


def distinct_requests(modalities: list[str], folder: Path, n: int = BATCH) -> list[dict[str, str]]:
    """``n`` requests with distinct content (so no cache hit): the image + speech examples of assets/, each
    copied with a slightly changed gain and one changed pixel."""
    rows = json.loads((ROOT / "assets" / "examples.json").read_text())["av-digits"]
    pairs = [e for e in rows if e["image"] and e["audio"]]
    requests = []
    for i in range(n):
        ex = pairs[i % len(pairs)]
        image = np.array(Image.open(ROOT / "assets" / ex["image"]))
        image.flat[i] = (int(image.flat[i]) + 1) % 256
        Image.fromarray(image).save(folder / f"{i}.png")
        wave, rate = sf.read(ROOT / "assets" / ex["audio"], dtype="float32")
        sf.write(folder / f"{i}.wav", wave * (1 - 0.001 * (i + 1)), rate)
        files = {"image": str(folder / f"{i}.png"), "audio": str(folder / f"{i}.wav")}
        requests.append({m: p for m, p in files.items() if m in modalities})
    return requests


def _rel(path: str) -> str:
    """``path`` relative to the repository when inside it (result files do not name a checkout)."""
    p = Path(path)
    return str(p.relative_to(ROOT)) if p.is_absolute() and p.is_relative_to(ROOT) else path


def spread(values: list[float]) -> dict[str, float]:
    """Median, interquartile range and min-max of ``values``."""
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": med, "q1": q1, "q3": q3, "min": min(values), "max": max(values)}


def timed_stages(predictor: Predictor) -> dict[str, float]:
    """Wrap the predictor's stages (``_plan``, ``_decode``, ``_finish``) to accumulate the calling thread's CPU
    time in each (seconds) into the returned dict."""
    stages = {"plan": 0.0, "decode": 0.0, "finish": 0.0}

    def timing(fn: Callable, key: str) -> Callable:
        def wrapper(*args, **kwargs):
            c = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                stages[key] += time.thread_time() - c

        return wrapper

    for key in stages:
        setattr(predictor, f"_{key}", timing(getattr(predictor, f"_{key}"), key))
    return stages


def bench_overhead(predictor: Predictor, repeats: int) -> dict[str, object]:
    """First predict (cache cleared) vs the encoders' time inside it, and a toggled repeat."""
    inputs = default_inputs(predictor.modalities)
    spent = timed_encoders(predictor)
    stages = timed_stages(predictor)
    for _ in range(3):  # warm-up: lazy imports, first-call allocations, resampling kernels
        predictor.clear_cache()
        predictor.predict(inputs)
    first, encoders, toggled, scores, overhead_cpu, estimates = [], [], [], [], [], []
    by_stage: dict[str, list[float]] = {k: [] for k in (*stages, "rest")}
    for _ in range(repeats):
        predictor.clear_cache()
        spent["s"] = spent["cpu_s"] = spent["reliability_s"] = spent["correctness_s"] = 0.0
        stages.update(dict.fromkeys(stages, 0.0))
        t, c = time.perf_counter(), time.thread_time()
        predictor.predict(inputs)
        first.append(time.perf_counter() - t)
        overhead_cpu.append(time.thread_time() - c - spent["cpu_s"])
        for key, v in stages.items():
            by_stage[key].append(v)
        by_stage["rest"].append(overhead_cpu[-1] - sum(stages.values()))
        encoders.append(spent["s"])
        scores.append(spent["reliability_s"])
        estimates.append(spent["correctness_s"])
        t = time.perf_counter()
        predictor.predict(inputs, predictor.modalities[:1])
        toggled.append(time.perf_counter() - t)
    reliability = {}
    if predictor.model.reliability is not None:
        reliability = {
            "reliability_ms": 1000 * statistics.median(scores),
            "reliability_over_encoders": spread([r / e for r, e in zip(scores, encoders)]),
        }
    if predictor.model.correctness is not None:
        reliability |= {
            "correctness_ms": 1000 * statistics.median(estimates),
            "correctness_over_encoders": spread([r / e for r, e in zip(estimates, encoders)]),
        }
    return reliability | {
        "inputs": {m: _rel(v) for m, v in inputs.items()},
        "first_predict_ms": 1000 * statistics.median(first),
        "encoders_ms": 1000 * statistics.median(encoders),
        "toggled_repeat_ms": 1000 * statistics.median(toggled),
        "predict_over_encoders": spread([f / e for f, e in zip(first, encoders)]),
        "overhead_ms": 1000 * statistics.median(f - e for f, e in zip(first, encoders)),
        "overhead_cpu_ms": 1000 * statistics.median(overhead_cpu),
        "overhead_cpu_min_ms": 1000 * min(overhead_cpu),
        "own_cpu_ms": {k: 1000 * statistics.median(v) for k, v in by_stage.items()},
        "toggled_over_first": statistics.median(t / f for t, f in zip(toggled, first)),
    }


def throughput(predictor: Predictor, requests: list[dict[str, str]], repeats: int) -> dict[str, float]:
    """Predictions/s for ``requests``, one by one and in one ``predict_many`` call (cache cleared each time)."""
    seq, many = [], []
    for _ in range(repeats):
        predictor.clear_cache()
        t = time.perf_counter()
        for r in requests:
            predictor.predict(r)
        seq.append(time.perf_counter() - t)
        predictor.clear_cache()
        t = time.perf_counter()
        predictor.predict_many(requests)
        many.append(time.perf_counter() - t)
    n = len(requests)
    return {"sequential_per_s": n / statistics.median(seq), "predict_many_per_s": n / statistics.median(many)}


def bench_batching(predictor: Predictor, repeats: int) -> dict[str, float]:
    """``BATCH`` distinct requests, cache cleared: sequential ``predict`` vs one ``predict_many``."""
    with tempfile.TemporaryDirectory() as tmp:
        requests = distinct_requests(predictor.modalities, Path(tmp))
        return {"batch": len(requests), **throughput(predictor, requests, repeats)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "av-digits"))
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--batch-repeats", type=int, default=5)
    ap.add_argument("--save", action="store_true", help="write bench/results/predict.json")
    ap.add_argument("--out", type=Path, help="write the JSON here (implies saving)")
    args = ap.parse_args()

    result: dict[str, object] = {
        "checkpoint": _rel(args.checkpoint),
        "repeats": args.repeats,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": os.getloadavg()[0],
    }
    result |= bench_batching(Predictor.from_pretrained(args.checkpoint, device="cpu"), args.batch_repeats)
    result |= bench_overhead(Predictor.from_pretrained(args.checkpoint, device="cpu"), args.repeats)
    out = args.out or (ROOT / "bench" / "results" / "predict.json" if args.save else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    r = result["predict_over_encoders"]
    print("| measure | value | goal |\n|---|---|---|")
    print(f"| first predict (median of {args.repeats}) | {result['first_predict_ms']:.1f} ms | |")
    print(f"| encoders' own time in it | {result['encoders_ms']:.1f} ms | |")
    print(
        f"| predict / encoders | {r['median']:.3f}x (IQR {r['q1']:.3f}-{r['q3']:.3f}, "
        f"min-max {r['min']:.3f}-{r['max']:.3f}) | <= 1.10x |"
    )
    print(
        f"| predict's own work (outside the encoders) | {result['overhead_ms']:.2f} ms; CPU time of the calling "
        f"thread: {result['overhead_cpu_ms']:.2f} ms (hardly changed by other load) | |"
    )
    own = result["own_cpu_ms"]
    print(
        f"| own work by stage (CPU, medians) | plan {own['plan']:.2f} ms, decode {own['decode']:.2f} ms, finish "
        f"{own['finish']:.2f} ms, rest {own['rest']:.2f} ms (min of the total: "
        f"{result['overhead_cpu_min_ms']:.2f} ms) | |"
    )
    if "reliability_ms" in result:
        q = result["reliability_over_encoders"]
        print(f"| reliability scores in it | {result['reliability_ms']:.2f} ms | |")
        print(
            f"| reliability / encoders | {100 * q['median']:.2f}% (IQR {100 * q['q1']:.2f}-{100 * q['q3']:.2f}%) "
            "| <= 5% |"
        )
    else:
        print("| reliability scores | - (the checkpoint has no reliability fields) | |")
    if "correctness_ms" in result:
        q = result["correctness_over_encoders"]
        print(f"| correctness estimate in it | {result['correctness_ms']:.2f} ms | |")
        print(
            f"| correctness estimate / encoders | {100 * q['median']:.2f}% (IQR {100 * q['q1']:.2f}-"
            f"{100 * q['q3']:.2f}%) | <= 5% |"
        )
    print(f"| toggled repeat | {result['toggled_repeat_ms']:.2f} ms | |")
    print(f"| toggled repeat / first predict | 1/{1 / result['toggled_over_first']:.0f} | <= 1/20 |")
    print(f"| {result['batch']} requests, sequential predict | {result['sequential_per_s']:.1f} predictions/s | |")
    print(f"| {result['batch']} requests, one predict_many | {result['predict_many_per_s']:.1f} predictions/s | |")
    print(f"\nload average before: {result['load_average_before']:.2f}; saved to: {out or 'nothing (use --save)'}")


if __name__ == "__main__":
    main()
