"""GPU check: the same predictions on the CPU and on the GPU, and the throughput of each.

    HF_HUB_OFFLINE=1 python bench/gpu_check.py [--checkpoint checkpoints/av-digits] [--save]

What it compares: the checkpoint is loaded twice, with ``device="cpu"`` and (when ``torch.cuda.is_available()``)
with ``device="cuda"``; both predict the examples of assets/examples.json (image + speech pairs and videos), every
subset of modalities fused. It reports the largest absolute difference between the two devices' probabilities
(fused, per branch and per subset) and, per device, predictions/s for 16 distinct image + speech requests
served one by one (``predict``) and in one ``predict_many`` call, cache cleared. Without a GPU it runs the CPU
half and says so. Writes bench/results/gpu_check.json only with ``--save``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from bench_predict import distinct_requests, throughput  # noqa: E402  (bench/ is on sys.path as a script)

from ume_mma.predictor import Prediction, Predictor  # noqa: E402


def example_requests() -> list[dict[str, str]]:
    """The app's examples (assets/examples.json) as predictor inputs."""
    requests = []
    for ex in json.loads((ROOT / "assets" / "examples.json").read_text())["av-digits"]:
        r = {k: str(ROOT / "assets" / ex[k]) for k in ("video", "audio", "image") if ex.get(k)}
        if ex.get("text"):
            r["text"] = ex["text"]
        requests.append(r)
    return requests


def probabilities(p: Prediction) -> dict[str, float]:
    """Every probability of a prediction, keyed ``where/label`` (fused, branches, subsets)."""
    out = {f"fused/{k}": v for k, v in p.fused.confidences.items()}
    for name, group in (("branch", p.branches), ("subset", p.subsets)):
        for m, r in group.items():
            out |= {f"{name}:{m}/{k}": v for k, v in r.confidences.items()}
    return out


def run_device(checkpoint: str, device: str, repeats: int, folder: Path) -> tuple[list[dict[str, float]], dict]:
    """Probabilities of every example, and the throughput, on one device."""
    predictor = Predictor.from_pretrained(checkpoint, device=device)
    probs = [probabilities(predictor.predict(r, subsets=True)) for r in example_requests()]
    requests = distinct_requests(predictor.modalities, folder)
    throughput(predictor, requests, 1)  # warm-up (kernels, allocations)
    return probs, {"device": str(predictor.device), **throughput(predictor, requests, repeats)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "av-digits"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--save", action="store_true", help="write bench/results/gpu_check.json")
    args = ap.parse_args()
    gpu = torch.cuda.is_available()
    result: dict[str, object] = {"checkpoint": args.checkpoint, "gpu": torch.cuda.get_device_name() if gpu else None}
    with tempfile.TemporaryDirectory() as tmp:
        cpu_probs, result["cpu"] = run_device(args.checkpoint, "cpu", args.repeats, Path(tmp))
        if gpu:
            gpu_probs, result["cuda"] = run_device(args.checkpoint, "cuda", args.repeats, Path(tmp))
            diffs = [abs(c[k] - g[k]) for c, g in zip(cpu_probs, gpu_probs) for k in c.keys() | g.keys()]
            result["max_abs_prob_diff"] = max(diffs)
            result["compared_probabilities"] = len(diffs)
    print(f"checkpoint {args.checkpoint}: {len(cpu_probs)} examples of assets/examples.json, every modality subset")
    print("| device | sequential predictions/s | predict_many predictions/s |\n|---|---|---|")
    for d in ("cpu", "cuda"):
        if d in result:
            r = result[d]
            print(f"| {r['device']} | {r['sequential_per_s']:.1f} | {r['predict_many_per_s']:.1f} |")
    if gpu:
        n = result["compared_probabilities"]
        print(f"max |p_cpu - p_cuda| over {n} probabilities: {result['max_abs_prob_diff']:.2e} ({result['gpu']})")
    else:
        print("no GPU here (torch.cuda.is_available() is False): ran the CPU half only, nothing compared")
    if args.save:
        out = ROOT / "bench" / "results" / "gpu_check.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved {out}")


if __name__ == "__main__":
    main()
