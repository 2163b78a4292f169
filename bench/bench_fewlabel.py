"""Fifty labels that never break what worked (issue 20), measured: the branch guard on and off, with and without base
data, on av-digits-shift's three shifts (a script, not a test).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_fewlabel.py --work ~/.cache/ume_mma/loop [--seeds 3] [--k 50] \\
        [--shifts both image audio] [--save]

For each shift (``python -m ume_mma.data build av-digits-shift``, built under ``--work``), seed, base-data setting
(none: a new user's case, the small-data recipe without replay; ``replay``: 10% of the original av-digits train
split) and guard setting (``branch_guard`` on/off): a queue of the shift's pool is imported and predicted with the
shipped checkpoint, a simulated annotator labels K items in the queue's order (``--order``, default: the app's), a
job fine-tunes the shipped checkpoint on them through the local runner, and the result is scored on the shift's
held-out part (fused and per branch) and on the original av-digits test split. The targets of issue 20 are computed
against the shipped checkpoint on the same sets. ``--save`` writes bench/results/fewlabel.json. ``--guards on``
runs the guarded setting alone, ``--set KEY=JSON`` overrides the recipe (sweeps), and ``--merge A.json B.json
--save`` joins runs over other shifts made side by side (``--shifts both --out A.json``, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_annotation_loop import (  # noqa: E402
    CHECKPOINT,
    Evaluator,
    annotate,
    ensure_base_data,
    machine,
    part_view,
    predict,
    run_job,
)

from ume_mma.annotate.rank import DEFAULT_ORDER, ORDERS  # noqa: E402
from ume_mma.finetune import ANNOTATION_RECIPE  # noqa: E402


def ensure_shift(work: Path, shift: str, seed: int = 0, limit: int | None = None) -> Path:
    """av-digits-shift ``--shift shift`` under ``work`` (built once)."""
    from ume_mma.data import shift as shift_lib

    out = work / (f"av-digits-shift-{shift}-s{seed}" + (f"-l{limit}" if limit else ""))
    if not (out / "build_info.json").is_file():
        shift_lib.build_shift(out, shift, seed=seed, limit=limit)
    return out


def settings(
    replay: bool, guard: bool, seed: int, base: Path, cache: Path, extra: dict[str, Any] | None = None
) -> dict:
    """The Train tab's overrides (ANNOTATION_RECIPE and ``extra`` over it; without a base data folder, no
    replay)."""
    out = {k: v for k, v in (ANNOTATION_RECIPE | (extra or {})).items() if k != "replay"}
    out |= {"init_from": str(ROOT / CHECKPOINT), "seed": seed, "eval_repeats": 1, "cache_dir": str(cache)}
    out["branch_guard"] = guard
    if replay:
        out |= {"base_data": str(base), "replay": ANNOTATION_RECIPE["replay"]}
    return out


def targets(runs: list[dict], shipped: dict[str, dict]) -> dict[str, Any]:
    """Issue 20's targets per shift and setting, by the mean and the worst seed."""
    out: dict[str, Any] = {}
    for key in sorted({(r["shift"], r["base_data"], r["guard"]) for r in runs}):
        shift, base_data, guard = key
        rows = [r for r in runs if (r["shift"], r["base_data"], r["guard"]) == key]
        ship = shipped[shift]
        h = ship["heldout"]
        best = max(h["fused"], h["image"], h["audio"])
        fused = [r["accuracy"]["heldout"]["fused"] for r in rows]
        mean = sum(fused) / len(fused)
        goal = h["fused"] + 0.15 if shift == "both" else best + 0.02
        drops = {m: max(h[m] - r["accuracy"]["heldout"][m] for r in rows) for m in ("image", "audio")}
        orig = max(ship["original_test"]["fused"] - r["accuracy"]["original_test"]["fused"] for r in rows)
        out[f"{shift}/{base_data}/guard-{'on' if guard else 'off'}"] = {
            "seeds": len(rows),
            "heldout_fused_mean": mean,
            "heldout_fused_worst": min(fused),
            "heldout_goal": goal,
            "goal_met_mean": mean >= goal,
            "goal_met_worst": min(fused) >= goal,
            "worst_branch_drop": drops,
            "branch_drop_met": all(d <= 0.01 for d in drops.values()),
            "original_test_worst_drop": orig,
            "original_test_met": orig <= 0.01,
            "kept_from_base": [r["kept"] for r in rows],
        }
    return out


def table(result: dict[str, Any]) -> str:
    """Markdown: per shift and setting, the held-out fused accuracy (mean, worst seed), each branch (mean) and the
    original test (mean), against the shipped checkpoint's."""
    lines = ["| shift | base data | guard | held-out fused, mean (worst) | audio | image | original test | kept |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for shift, ship in result["shipped"].items():
        h, o = ship["heldout"], ship["original_test"]
        lines.append(f"| {shift} | shipped | - | {100 * h['fused']:.1f} | {100 * h['audio']:.1f} | "
                     f"{100 * h['image']:.1f} | {100 * o['fused']:.1f} | - |")  # fmt: skip
        for key, t in result["targets"].items():
            if not key.startswith(f"{shift}/"):
                continue
            _, base_data, guard = key.split("/")
            rows = [r for r in result["runs"] if r["shift"] == shift and r["base_data"] == base_data
                    and r["guard"] == (guard == "guard-on")]  # fmt: skip
            mean = {m: sum(r["accuracy"]["heldout"][m] for r in rows) / len(rows) for m in ("audio", "image")}
            orig = sum(r["accuracy"]["original_test"]["fused"] for r in rows) / len(rows)
            kept = ",".join(sorted({m for r in rows for m in r["kept"]})) or "-"
            lines.append(f"| {shift} | {base_data} | {guard[6:]} | {100 * t['heldout_fused_mean']:.1f} "
                         f"({100 * t['heldout_fused_worst']:.1f}) | {100 * mean['audio']:.1f} | "
                         f"{100 * mean['image']:.1f} | {100 * orig:.1f} | {kept} |")  # fmt: skip
    return "\n".join(lines)


def goals(result: dict[str, Any]) -> str:
    """Markdown: one line per shift and setting, each of issue 20's targets met or missed, with the numbers
    (points: accuracy x 100; a drop below 0 is a gain)."""

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    lines = []
    for key, t in result["targets"].items():
        shift, base_data, guard = key.split("/")
        drops = ", ".join(f"{m} {100 * d:+.1f}" for m, d in sorted(t["worst_branch_drop"].items()))
        lines.append(
            f"- `{shift}`, {'no base data' if base_data == 'none' else '10% replay'}, guard {guard[6:]}: held-out "
            f"fused {100 * t['heldout_fused_mean']:.1f} (worst seed {100 * t['heldout_fused_worst']:.1f}) for a "
            f"goal of {100 * t['heldout_goal']:.1f}: {verdict(t['goal_met_mean'])} by the mean, "
            f"{verdict(t['goal_met_worst'])} by the worst seed; worst branch drop {drops} (at most 1): "
            f"{verdict(t['branch_drop_met'])}; original test worst drop {100 * t['original_test_worst_drop']:+.1f} "
            f"(at most 1): {verdict(t['original_test_met'])}"
        )
    return "\n".join(lines)


def merge(paths: list[Path]) -> dict[str, Any]:
    """One result from several runs of this bench over other shifts (run side by side on a busy machine): their
    shipped scores and runs together, the targets recomputed."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    first = parts[0]
    for part in parts[1:]:
        for key in ("checkpoint", "k", "seeds", "order", "recipe"):
            if part[key] != first[key]:
                raise SystemExit(f"{key} differs between the merged results: {first[key]!r} and {part[key]!r}")
    shipped = {shift: v for part in parts for shift, v in part["shipped"].items()}
    runs = [r for part in parts for r in part["runs"]]
    return {**{k: first[k] for k in ("checkpoint", "k", "seeds", "order", "recipe")}, "shipped": shipped,
            "runs": runs, "targets": targets(runs, shipped), "machine": first["machine"],
            "command": [part["command"] for part in parts],
            "elapsed_s": max(part["elapsed_s"] for part in parts)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("~/.cache/ume_mma/loop"), help="data and feature cache")
    ap.add_argument("--base-data", default=None, help="the original av-digits folder (default: built in --work)")
    ap.add_argument("--shifts", nargs="+", default=["both", "image", "audio"], choices=["both", "image", "audio"])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--base-settings", nargs="+", default=["none", "replay"], choices=["none", "replay"])
    ap.add_argument("--order", choices=sorted(ORDERS), default=DEFAULT_ORDER, help="the queue's order")
    ap.add_argument("--limit", type=int, default=None, help="rows per split of the data (tests)")
    ap.add_argument("--guards", nargs="+", default=["on", "off"], choices=["on", "off"], help="branch_guard settings")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON", help="recipe overrides (sweeps)")
    ap.add_argument("--merge", nargs="+", type=Path, default=None, help="merge these results files (see merge)")
    ap.add_argument("--save", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fewlabel.json")
    args = ap.parse_args(argv)
    from ume_mma.annotate import AnnotationQueue, import_dataset, open_store
    from ume_mma.data.format import load_dataset

    if args.merge:
        result = merge(args.merge)
        print(table(result))
        if args.save:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return result
    extra = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.set)}
    t0, load_before = time.time(), os.getloadavg()[0]
    work = args.work.expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    base, cache = ensure_base_data(work, args.base_data, args.limit), work / "features"
    original = load_dataset(base).split("test").samples
    tmp = Path(tempfile.mkdtemp(prefix="bench-fewlabel-"))
    store = open_store(tmp / "annotations.db")
    shipped: dict[str, dict] = {}
    runs: list[dict[str, Any]] = []
    for shift in args.shifts:
        folder = ensure_shift(work, shift, 0, args.limit)
        evaluate = Evaluator({"heldout": load_dataset(folder).split("test").samples, "original_test": original}, cache)
        shipped[shift] = evaluate(ROOT / CHECKPOINT)
        print(shift, "shipped:", json.dumps(shipped[shift]), flush=True)
        pool = part_view(folder, "train", tmp / f"pool-{shift}")
        for seed in range(args.seeds):
            name = f"{shift}-s{seed}"
            import_dataset(store, pool, queue=name, order=args.order, seed=seed)
            predict(store, name)
            labelled = annotate(AnnotationQueue(store, name), args.k)
            for base_data in args.base_settings:
                for guard in [g == "on" for g in args.guards]:
                    status = run_job(store, name, settings(base_data == "replay", guard, seed, base, cache, extra))
                    guard_record = status["metrics"].get("finetune", {}).get("branch_guard", {})
                    row = {"shift": shift, "seed": seed, "k": len(labelled), "base_data": base_data, "guard": guard,
                           "job_wall_s": round(status["wall_s"], 1), "chosen": status["metrics"]["chosen"],
                           "kept": sorted(m for m, v in guard_record.items() if v["kept"] == "base"),
                           "branch_guard": guard_record,
                           "cv_choice": status["metrics"].get("finetune", {}).get("cv_choice"),
                           "accuracy": evaluate(status["checkpoint"])}  # fmt: skip
                    runs.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k not in ("branch_guard", "cv_choice")}),
                          flush=True)  # fmt: skip
    result = {
        "checkpoint": CHECKPOINT,
        "k": args.k,
        "seeds": args.seeds,
        "order": args.order,
        "recipe": ANNOTATION_RECIPE | extra,
        "shipped": shipped,
        "runs": runs,
        "targets": targets(runs, shipped),
        "machine": machine() | {"load_avg_1min_before": load_before},
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_fewlabel.py " + " ".join(sys.argv[1:]),
        "elapsed_s": round(time.time() - t0, 1),
    }
    print(json.dumps(result["targets"], indent=1))
    print(table(result))
    if args.save:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    store.close()
    return result


if __name__ == "__main__":
    main()
