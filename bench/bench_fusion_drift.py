"""Fusion under drift (issue 19): on every shifted set, the fused answer of plain MMA, of the reliability
weighting and of the fusion by estimated correctness, against the better branch; and each branch's error
detection (AUROC of its correctness estimate). A script, not a test.

    python bench/bench_fusion_drift.py --data DIR --chosen av-digits=CK_AV emoji-vl=CK_EMOJI [--limit N] [--save]

``CK_*``: checkpoints re-chosen by ``python -m ume_mma.drift_choice`` (a correctness estimate fitted on the
base's validation split and its *fitting* drift families, the fusion chosen on validation and the *held-out*
families). Nothing here is fitted: every set below is only measured. ``DIR`` holds the sets
``bench/bench_correctness.py`` names, plus ``avds-both`` and the second sources of ``build shifted --source``
(``av-shifted-image-fonts``, ``av-shifted-audio-festival``, ``emoji-shifted-text-de``, ``-es``). Per set:
each branch's accuracy, ``better_branch``,
the fused accuracy of ``mma`` (the base, as trained), ``reliability@a`` (the shipped weighting, or alpha 2 where
the checkpoint ships none), ``chosen`` (what the rule chose) and ``correctness@a/tau`` for each tried strength
and dead zone;
``gap`` = chosen - better branch (goal >= -1 point), ``cost`` = chosen - mma (goal >= -0.5 points); the AUROC
(right answers positive) of each branch's estimate (goal >= 0.85). ``--save`` writes
bench/results/fusion_drift.json.
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

from ume_mma import drift_choice as dc  # noqa: E402
from ume_mma.calibrate import split_features  # noqa: E402
from ume_mma.checkpoint import from_pretrained  # noqa: E402
from ume_mma.data.format import load_dataset  # noqa: E402
from ume_mma.reliability import auroc  # noqa: E402

SETS = {
    "av-digits": {
        "in-distribution": ("av-digits-clean", None, None),
        "shifted image (OpenCV digits)": ("av-shifted-image", "image", None),
        "shifted audio (telephone speakers)": ("av-shifted-audio", "audio", None),
        "av-digits-shift image (new writers)": ("avds-image", "image", None),
        "av-digits-shift audio (new voices)": ("avds-audio", "audio", None),
        "av-digits-shift both": ("avds-both", "both", None),
        "new source: printed digits (77 fonts)": ("av-shifted-image-fonts", "image", None),
        "new source: Festival voices": ("av-shifted-audio-festival", "audio", None),
    },
    "emoji-vl": {
        "in-distribution": ("emoji-vl", None, {"style": "twitter"}),
        "cross-style (Google drawings)": ("emoji-vl", "image", {"style": "google"}),
        "shifted image (OpenMoji)": ("emoji-shifted-image", "image", None),
        "shifted text (French)": ("emoji-shifted-text", "text", None),
        "new source: German keywords": ("emoji-shifted-text-de", "text", None),
        "new source: Spanish keywords": ("emoji-shifted-text-es", "text", None),
    },
}
GAP_GOAL, COST_GOAL, AUROC_GOAL = -1.0, -0.5, 0.85
RELIABILITY_ALPHA = {"av-digits": 2.0, "emoji-vl": 4.0}


def _rows(folder: Path, meta: dict | None, limit: int) -> list:
    rows = load_dataset(folder, split="test").samples
    return [s for s in rows if all(s.meta.get(k) == v for k, v in (meta or {}).items())][:limit]


@torch.no_grad()
def measure(models: dict[str, Any], samples: list) -> dict[str, Any]:
    """Accuracies (%) of each branch and each fusion on ``samples``, and each branch's estimate AUROC."""
    ref = models["chosen"]
    fs = split_features(ref, samples, None)
    y = fs.targets
    out: dict[str, Any] = {"n": len(y), "branches": {}, "fused": {}, "auroc": {}, "mean_estimate": {}}
    est = ref.forward_features(fs.feats, fs.present)
    for m in ref.modalities:
        keep = fs.present[m].bool()
        right = est.branches[m][keep].argmax(-1) == y[keep]
        out["branches"][m] = 100 * float(right.double().mean())
        if est.correctness and m in est.correctness:
            c = est.correctness[m][keep].double()
            ok = 0 < int(right.sum()) < len(right)
            out["auroc"][m] = auroc(c[right], c[~right]) if ok else None
            out["mean_estimate"][m] = float(c.mean())
    for name, model in models.items():
        pred = model.forward_features(fs.feats, fs.present).fused.argmax(-1)
        out["fused"][name] = 100 * float((pred == y).double().mean())
    out["uncertain"] = 100 * float(est.uncertain.double().mean()) if est.uncertain is not None else None
    if est.uncertain is not None and bool(est.uncertain.any()):
        fused = est.fused.argmax(-1) == y
        out["accuracy_when_uncertain"] = 100 * float(fused[est.uncertain].double().mean())
        sure = ~est.uncertain
        out["accuracy_when_sure"] = 100 * float(fused[sure].double().mean()) if bool(sure.any()) else None
    return out


def bench_checkpoint(name: str, chosen_dir: Path, data: Path, limit: int) -> dict[str, Any]:
    chosen = from_pretrained(chosen_dir).eval()
    record = chosen.config.correctness["choice"]
    models = {"chosen": chosen, "mma": dc.configure(chosen, dc.base_mode(chosen))}
    alpha = RELIABILITY_ALPHA[name]  # the weighting each checkpoint shipped with before (none on av-digits: 2)
    models[f"reliability@{alpha:g}"] = dc.configure(chosen, "reliability", alpha)
    for mode, a, tau in dc.candidates(chosen):
        if mode == "correctness":
            models[dc.key(mode, a, tau)] = dc.configure(chosen, mode, a, tau)
    out: dict[str, Any] = {"chosen": record["chosen"], "choice_table": record["table"], "sets": {}}
    for title, (folder, shifts, meta) in SETS[name].items():
        if not (data / folder).is_dir():
            print(f"skip {title}: {data / folder} missing", flush=True)
            continue
        t0 = time.time()
        r = measure(models, _rows(data / folder, meta, limit))
        better = max(r["branches"].values())
        r |= {"shifts": shifts, "better_branch": better, "seconds": round(time.time() - t0, 1)}
        r["gap"] = r["fused"]["chosen"] - better
        r["gap_mma"] = r["fused"]["mma"] - better
        r["cost"] = r["fused"]["chosen"] - r["fused"]["mma"]
        r["met"] = {"gap": r["gap"] >= GAP_GOAL, "cost": r["cost"] >= COST_GOAL}
        r["met"]["auroc"] = all(v is not None and v >= AUROC_GOAL for v in r["auroc"].values())
        out["sets"][title] = r
        fused = " ".join(f"{k}={v:.1f}" for k, v in r["fused"].items())
        branches = " ".join(f"{k}={v:.1f}" for k, v in r["branches"].items())
        aur = " ".join(f"{k}={v:.2f}" for k, v in r["auroc"].items() if v is not None)
        print(f"{name} {title:40s} n={r['n']} {branches} | {fused} | gap {r['gap']:+.1f} | auroc {aur}", flush=True)
    return out


def table(report: dict[str, Any]) -> str:
    """The docs' table: per checkpoint and set, the branches, the better one, plain MMA, the reliability
    weighting, the chosen fusion, its gap to the better branch and its cost against MMA (points)."""
    lines = [
        "| checkpoint | set | n | branches | better | mma | reliability | chosen | gap | cost | AUROC |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, ck in report["checkpoints"].items():
        for title, r in ck["sets"].items():
            rel = next(v for k, v in r["fused"].items() if k.startswith("reliability@"))
            branches = ", ".join(f"{m} {v:.1f}" for m, v in r["branches"].items())
            aur = ", ".join(f"{m} {v:.2f}" for m, v in r["auroc"].items() if v is not None) or "-"
            lines.append(
                f"| {name} | {title} | {r['n']} | {branches} | {r['better_branch']:.1f} | {r['fused']['mma']:.1f} | "
                f"{rel:.1f} | {r['fused']['chosen']:.1f} | {r['gap']:+.1f} | {r['cost']:+.1f} | {aur} |"
            )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--chosen", nargs="+", required=True, metavar="NAME=FOLDER", help="re-chosen checkpoints")
    ap.add_argument("--limit", type=int, default=400, help="test rows per set")
    ap.add_argument("--save", action="store_true", help="write bench/results/fusion_drift.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    report: dict[str, Any] = {
        "what": "fused accuracy (%) of mma, the reliability weighting and the correctness fusion vs the better branch",
        "goals": {"gap": GAP_GOAL, "cost": COST_GOAL, "auroc": AUROC_GOAL},
        "limit": args.limit,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
        "checkpoints": {},
    }
    for item in args.chosen:
        name, folder = item.split("=", 1)
        report["checkpoints"][name] = bench_checkpoint(name, Path(folder), Path(args.data), args.limit)
    report["seconds"] = round(time.time() - t0, 1)
    if args.save:
        out = ROOT / "bench" / "results" / "fusion_drift.json"
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
