"""Error detection per branch: how well the correctness estimate tells a branch's wrong answers from its right
ones, next to the reliability score and plain max-softmax confidence (issue 19; a script, not a test).

    python bench/bench_correctness.py --data DIR [--checkpoints av-digits emoji-vl] [--limit-val N]
        [--limit-test N] [--severities 0.5 1] [--save]

``DIR`` holds the data sets the project builds (``python -m ume_mma.data build ...``; the names below). For each
shipped checkpoint the estimate is fitted in memory (the checkpoint is not changed) on the base set's
**validation** split plus its fitting drift families (:mod:`ume_mma.correctness_fit`), then scored, per branch,
on: the base test split (``in-distribution``), the test split through each **held-out** drift family at each
severity (``heldout:<family>@<s>``), and every shifted set that exists under ``DIR``. For each: the branch's
accuracy and the AUROC (right answers as positives) of the estimate, of the reliability ``sigmoid(-z)`` and of
the max softmax of the raw logits; ``pooled``: a branch's rows of every set together, except the sets that shift
another modality (their rows of this branch are the in-distribution ones again). ``--save`` writes
bench/results/correctness.json.

Folders under ``DIR`` (build them with, e.g. ``python -m ume_mma.data build av-digits DIR/av-clean --limit 400``):

- av-digits: ``av-clean`` (base: av-digits clean), ``av-shifted-image`` / ``av-shifted-audio`` (``build shifted
  --base DIR/av-clean --shift image|audio``), ``avds-image`` / ``avds-audio`` (``build av-digits-shift
  --shift image|audio --limit 200``: their ``test`` split, the held-out writers / speakers);
- emoji-vl: ``emoji-vl`` (base, full build: a limited build would re-split the emoji; in-distribution = its
  Twitter-style test rows, the training style; its Google-style test rows are the ``cross-style`` set),
  ``emoji-shifted-image`` / ``emoji-shifted-text``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's ume_mma, not an installed one

from ume_mma import correctness_fit as cf  # noqa: E402
from ume_mma.checkpoint import from_pretrained  # noqa: E402
from ume_mma.correctness import Correctness, branch_signals  # noqa: E402
from ume_mma.data.format import load_dataset  # noqa: E402
from ume_mma.decode import Decoder  # noqa: E402
from ume_mma.drift import Drift, list_drifts  # noqa: E402
from ume_mma.reliability import auroc  # noqa: E402

SETS = {
    "av-digits": {
        "base": "av-clean",
        "shifted": {
            "shifted image (OpenCV digits)": ("av-shifted-image", "image"),
            "shifted audio (telephone speakers)": ("av-shifted-audio", "audio"),
            "av-digits-shift image": ("avds-image", "image"),
            "av-digits-shift audio": ("avds-audio", "audio"),
        },
    },
    "emoji-vl": {
        "base": "emoji-vl",
        "base_meta": {"style": "twitter"},  # the training style; the Google drawings are a shift of their own
        "shifted": {
            "cross-style test (Google drawings)": ("emoji-vl", "image", {"style": "google"}),
            "shifted image (OpenMoji)": ("emoji-shifted-image", "image"),
            "shifted text (French)": ("emoji-shifted-text", "text"),
        },
    },
}
SCORES = ("estimate", "reliability", "max_softmax")


def _auroc(score: torch.Tensor, right: torch.Tensor) -> float | None:
    return auroc(score[right], score[~right]) if 0 < int(right.sum()) < len(right) else None


@torch.no_grad()
def score_rows(model: Any, est: Correctness, samples: list, m: str, drift: Drift | None, dec: Decoder) -> dict:
    """One branch on ``samples`` (through ``drift``): right [n] and the three scores [n] each."""
    feats, y = cf.drifted_features(model, samples, m, drift, seed=0, decoder=dec)
    logits = model.heads[m](feats)
    right = logits.argmax(-1) == y
    sig = branch_signals(model, {m: feats})
    return {
        "right": right,
        "estimate": est(sig)[m].double(),
        "reliability": model.reliability({m: feats})[m].double(),
        "max_softmax": logits.softmax(-1).max(-1).values.double(),
    }


def summary(rows: dict) -> dict[str, Any]:
    right = rows["right"]
    out: dict[str, Any] = {"n": len(right), "accuracy": float(right.double().mean()) if len(right) else None}
    out |= {f"auroc_{k}": _auroc(rows[k], right) for k in SCORES}
    out["mean_estimate"] = float(rows["estimate"].mean()) if len(right) else None
    return out


def bench_checkpoint(name: str, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    spec = SETS[name]
    model = from_pretrained(ROOT / "checkpoints" / name).eval()
    base = data / spec["base"]
    t0 = time.time()
    config, report = cf.fit_on_dataset(model, base, "val", args.limit_val, tuple(args.severities))
    fit_s = time.time() - t0
    est = Correctness(config)
    dec = Decoder.for_encoders(dict(model.encoders))
    test = _rows(base, spec.get("base_meta"), args.limit_test)
    sets: dict[str, list] = {"in-distribution": test}
    shifts: dict[str, str] = {}  # set -> the modality it shifts
    for title, (folder, modality, *meta) in spec["shifted"].items():
        if (data / folder).is_dir():
            sets[title] = _rows(data / folder, meta[0] if meta else None, args.limit_test)
            shifts[title] = modality
    out: dict[str, Any] = {"fit": {"seconds": round(fit_s, 1), "report": report, "config": config}, "branches": {}}
    for m in est.modalities:
        results, pooled = {}, []
        conditions = [(t, s, None) for t, s in sets.items()]
        conditions += [
            (f"heldout:{Drift(n, v)}", test, Drift(n, v)) for n in list_drifts(m, "heldout") for v in args.severities
        ]
        for title, samples, drift in conditions:
            t1 = time.time()
            rows = score_rows(model, est, samples, m, drift, dec)
            results[title] = summary(rows) | {"seconds": round(time.time() - t1, 1)}
            if title in shifts:
                results[title]["shifts"] = shifts[title]
            if shifts.get(title, m) == m:  # a set that shifts another modality repeats in-distribution rows
                pooled.append(rows)
            print(f"{name} {m:6s} {title:40s} {_fmt(results[title])}", flush=True)
        results["pooled"] = summary({k: torch.cat([r[k] for r in pooled]) for k in pooled[0]})
        print(f"{name} {m:6s} {'pooled':40s} {_fmt(results['pooled'])}", flush=True)
        out["branches"][m] = results
    fit_rows = {m: r["rows"] for m, r in report.items()}
    out["sizes"] = {"val": config["fitted_on"]["n"], "fit_rows": fit_rows, "sets": {t: len(s) for t, s in sets.items()}}
    return out


def _rows(folder: Path, meta: dict[str, str] | None, limit: int) -> list:
    """The first ``limit`` test rows of ``folder`` whose ``meta`` match."""
    rows = load_dataset(folder, split="test").samples
    return [s for s in rows if all(s.meta.get(k) == v for k, v in (meta or {}).items())][:limit]


def _fmt(r: dict[str, Any]) -> str:
    def f(v: float | None) -> str:
        return "  -  " if v is None else f"{v:.3f}"

    return f"n={r['n']:4d} acc={f(r['accuracy'])} " + " ".join(f"{k}={f(r[f'auroc_{k}'])}" for k in SCORES)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="folder holding the built data sets (see the docstring)")
    ap.add_argument("--checkpoints", nargs="*", default=list(SETS), choices=list(SETS))
    ap.add_argument("--limit-val", type=int, default=300, help="validation rows the estimate is fitted on")
    ap.add_argument("--limit-test", type=int, default=300, help="rows per evaluated set")
    ap.add_argument("--severities", type=float, nargs="*", default=list(cf.SEVERITIES))
    ap.add_argument("--save", action="store_true", help="write bench/results/correctness.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    report: dict[str, Any] = {
        "what": "AUROC (right answers positive) of each branch's correctness estimate, reliability and max softmax",
        "limit_val": args.limit_val,
        "limit_test": args.limit_test,
        "severities": args.severities,
        "fit_families": {m: list_drifts(m, "fit") for m in ("audio", "image", "text", "video")},
        "heldout_families": {m: list_drifts(m, "heldout") for m in ("audio", "image", "text", "video")},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
        "checkpoints": {},
    }
    for name in args.checkpoints:
        report["checkpoints"][name] = bench_checkpoint(name, Path(args.data), args)
    report["seconds"] = round(time.time() - t0, 1)
    if args.save:
        out = ROOT / "bench" / "results" / "correctness.json"
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
