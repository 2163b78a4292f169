"""Predict's own work, this checkout against another one (``--before DIR``: a checkout or ``git archive`` of the
code before a change), interleaved in one run so that both see the same load: two worker processes load the
checkpoint once each and take turns running ``--n`` first predicts (cache cleared), ``--rounds`` times, the
order swapped every round. Prints a markdown table; writes bench/results/predict_ab.json only with ``--save``
(or to ``--out``).

    python bench/bench_predict_ab.py --before /tmp/before [--rounds 10] [--n 20] [--save]

"Own work" is as in bench_predict.py: the calling thread's CPU time in ``predict`` outside the encoders'
``preprocess`` and ``forward`` (which other processes change little; its minimum over the runs is the least
disturbed reading), with the predict / encoders wall-time ratio beside it (which load moves a lot).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def worker(code: Path, checkpoint: str) -> None:
    """Serve runs on stdin ("N" -> N first predicts), answering one JSON line each, with ``code``'s library."""
    sys.path[:0] = [str(code), str(code / "bench")]
    import bench_predict as bp  # the other checkout's, with its encoder timing

    from ume_mma.predictor import Predictor

    predictor = Predictor.from_pretrained(checkpoint, device="cpu")
    # this checkout's example files (the other checkout may be a bare copy of the code)
    inputs = {m: str(ROOT / Path(v).relative_to(bp.ROOT)) for m, v in bp.default_inputs(predictor.modalities).items()}
    spent = bp.timed_encoders(predictor)
    for _ in range(3):  # warm-up, as bench_predict
        predictor.clear_cache()
        predictor.predict(inputs)
    print("ready", flush=True)
    for line in sys.stdin:
        own, wall, enc = [], [], []
        for _ in range(int(line)):
            predictor.clear_cache()
            spent["s"] = spent["cpu_s"] = 0.0
            t, c = time.perf_counter(), time.thread_time()
            predictor.predict(inputs)
            wall.append(time.perf_counter() - t)
            own.append(time.thread_time() - c - spent["cpu_s"])
            enc.append(spent["s"])
        print(json.dumps({"own": own, "wall": wall, "enc": enc}), flush=True)


def summary(runs: dict[str, list[float]]) -> dict[str, float]:
    own = [1000 * v for v in runs["own"]]
    return {
        "own_cpu_min_ms": min(own),
        "own_cpu_median_ms": statistics.median(own),
        "predict_over_encoders_median": statistics.median(w / e for w, e in zip(runs["wall"], runs["enc"])),
        "encoders_median_ms": 1000 * statistics.median(runs["enc"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, help="the other checkout (its ume_mma/ and bench/)")
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "av-digits"))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--n", type=int, default=20, help="first predicts per turn")
    ap.add_argument("--before-label", default="", help="what --before is (a commit), for the JSON")
    ap.add_argument("--save", action="store_true", help="write bench/results/predict_ab.json")
    ap.add_argument("--out", type=Path, help="write the JSON here (implies saving)")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.checkpoint)
    if args.before is None:
        ap.error("--before DIR is required")
    load = os.getloadavg()[0]
    procs = {
        name: subprocess.Popen(
            [sys.executable, __file__, "--worker", str(code), "--checkpoint", args.checkpoint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, code in (("before", args.before.resolve()), ("after", ROOT))
    }
    runs = {name: {"own": [], "wall": [], "enc": []} for name in procs}
    try:
        for proc in procs.values():
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit("a worker failed to start")
        for r in range(args.rounds):
            for name in list(procs) if r % 2 == 0 else list(procs)[::-1]:
                procs[name].stdin.write(f"{args.n}\n")
                procs[name].stdin.flush()
                for key, values in json.loads(procs[name].stdout.readline()).items():
                    runs[name][key] += values
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    result: dict[str, object] = {
        "checkpoint": str(Path(args.checkpoint).resolve().relative_to(ROOT)),
        "before_code": args.before_label,
        "rounds": args.rounds,
        "n": args.n,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load,
        "load_average_after": os.getloadavg()[0],
        **{name: summary(r) for name, r in runs.items()},
    }
    before, after = summary(runs["before"]), summary(runs["after"])
    result["own_cpu_min_saved_ms"] = before["own_cpu_min_ms"] - after["own_cpu_min_ms"]
    out = args.out or (ROOT / "bench" / "results" / "predict_ab.json" if args.save else None)
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| {args.rounds} x {args.n} first predicts each, interleaved | before | after |\n|---|---|---|")
    for key, what in (
        ("own_cpu_min_ms", "own work, CPU ms (min)"),
        ("own_cpu_median_ms", "own work, CPU ms (median)"),
        ("predict_over_encoders_median", "predict / encoders (median)"),
        ("encoders_median_ms", "encoders, ms (median)"),
    ):
        print(f"| {what} | {before[key]:.3f} | {after[key]:.3f} |")
    print(f"\nload average {load:.2f} -> {result['load_average_after']:.2f}; saved to: {out or 'nothing (use --save)'}")


if __name__ == "__main__":
    main()
