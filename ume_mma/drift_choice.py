"""A fusion choice that can see drift: the fusion mode and its strength chosen on in-distribution validation
*and* on validation passed through **held-out** simulated drift families (:mod:`ume_mma.drift`), never on a
test split or a shifted set.

The candidates (:func:`candidates`): the model's base mode (``mma``, ``naive`` or ``ume``), the
``reliability`` mode at each ``alpha`` of :data:`ume_mma.calibrate.ALPHAS` (when the model has reliability
fields) and the ``correctness`` mode at each ``alpha`` of :data:`ALPHAS` (when it has a correctness estimate).
Each is scored on the clean validation split with every modality present (``full``) and on each drift
condition: one modality's inputs through one held-out family at one severity, the others clean (``drift``).
With three or more modalities a weighting also decides between the branches that remain when one is missing,
so the conditions also hold each modality missing (``without-text``), on clean validation and under each other
modality's drift (``image.crop@1+without-text``): a weighting that loses there is not taken either. With two,
one missing modality leaves one branch, which every candidate fuses alike.
**Rule** (:data:`RULE`): among the candidates at most :data:`COST` below the base mode on ``full`` and on
*every* drift condition (a weighting that helps on average but loses on one kind of drift is not taken), the
one with the best mean drift accuracy; ties go to the earlier candidate (the base first). The correctness
estimate is fitted on the *fitting* families (:mod:`ume_mma.correctness_fit`) and the choice reads only the
held-out ones, so no family is tuned to.

    python -m ume_mma.drift_choice checkpoints/av-digits data/av-digits-clean --out checkpoints/av-digits

fits the estimate on ``val``, chooses, and writes the checkpoint with the branches' weights untouched; its model
card says what was chosen and why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from ume_mma.calibrate import ALPHAS as RELIABILITY_ALPHAS
from ume_mma.calibrate import FeatureSet, base_mode, carried_notes, split_features
from ume_mma.correctness_fit import SEVERITIES, drifted_features
from ume_mma.decode import Decoder
from ume_mma.drift import Drift, list_drifts
from ume_mma.evaluate import fused_accuracy
from ume_mma.models import MultiModalModel

ALPHAS = (0.5, 1.0, 2.0, 4.0, 8.0)  # strengths of the correctness mode tried
TAUS = (1.0, 0.7, 0.5)  # its dead zones: branches within this factor of the best estimate keep weight 1
COST = 0.005  # accuracy a weighing mode may cost against the base, in-distribution and per drift condition
RULE = (
    "the best mean accuracy over held-out drift families of validation among the candidates at most 0.5 "
    "points below the base mode on full-modality validation and on every held-out drift condition (with three "
    "or more modalities, also with each modality missing; ties: the base, then the earlier candidate)"
)


@dataclasses.dataclass
class DriftSet:
    """Validation features, clean and drifted: ``conditions`` maps ``"image.crop@0.5"`` to the clean features
    with that modality's rows replaced by those of its drifted inputs (presence and targets unchanged), and, with
    three or more modalities, ``"without-text"`` / ``"image.crop@0.5+without-text"`` to those with a modality
    absent (:func:`without`)."""

    clean: FeatureSet
    conditions: dict[str, FeatureSet]


@torch.no_grad()
def drift_set(
    model: MultiModalModel,
    samples: Sequence[Any],
    severities: Sequence[float] = SEVERITIES,
    seed: int = 0,
    split: str = "heldout",
) -> DriftSet:
    """Encode validation ``samples`` clean and through every ``split`` drift family of each modality at each
    severity (seeded per row; one modality drifted at a time)."""
    clean = split_features(model, list(samples), None)
    decoder = Decoder.for_encoders(dict(model.encoders))
    conditions: dict[str, FeatureSet] = {}
    for m in model.modalities:
        rows = clean.present[m].bool().cpu().nonzero().flatten()
        if not len(rows):
            continue
        for name in list_drifts(m, split):
            for s in severities:
                d = Drift(name, s)
                feats, _ = drifted_features(model, samples, m, d, seed, decoder)
                f = clean.feats[m].clone()
                f[rows] = feats.to(f.dtype)
                conditions[str(d)] = FeatureSet({**clean.feats, m: f}, clean.present, clean.targets)
    if len(model.modalities) >= 3:
        drifted = list(conditions.items())
        for k in model.modalities:
            conditions[f"without-{k}"] = without(clean, k)
            for c, fs in drifted:
                if c.split(".")[0] != k:
                    conditions[f"{c}+without-{k}"] = without(fs, k)
    return DriftSet(clean, conditions)


def without(fs: FeatureSet, k: str) -> FeatureSet:
    """``fs`` with modality ``k`` absent (its presence all False), restricted to the rows that keep another
    modality (a row with nothing present has no answer to score)."""
    keep = torch.zeros_like(fs.targets, dtype=torch.bool)
    for m, p in fs.present.items():
        if m != k:
            keep |= p.bool().to(keep.device)
    present = {m: (torch.zeros_like(p) if m == k else p)[keep.to(p.device)] for m, p in fs.present.items()}
    feats = {m: f[keep.to(f.device)] for m, f in fs.feats.items()}
    return FeatureSet(feats, present, fs.targets[keep])


def candidates(model: MultiModalModel) -> list[tuple[str, float, float]]:
    """``(mode, alpha, tau)`` to try: the base mode, then ``reliability`` at each strength and ``correctness`` at
    each dead zone and strength (those the model has the fields for)."""
    out = [(base_mode(model), 0.0, 1.0)]
    if model.reliability is not None:
        out += [("reliability", float(a), 1.0) for a in RELIABILITY_ALPHAS if a > 0]
    if model.config.correctness is not None:
        out += [("correctness", float(a), float(t)) for t in TAUS for a in ALPHAS]
    return out


def configure(
    model: MultiModalModel, mode: str, alpha: float = 0.0, tau: float = 1.0, choice: dict | None = None
) -> MultiModalModel:
    """``model`` with fusion ``mode`` at ``alpha`` (and, for ``correctness``, dead zone ``tau``), sharing its
    encoders, heads and statistics: ``reliability`` and ``correctness`` weigh the model's base mode; any other
    name is that mode. ``choice``: the record to keep in ``correctness["choice"]``."""
    base = base_mode(model)
    rel = model.config.reliability
    est = model.config.correctness
    if rel is not None:
        rel = {k: v for k, v in rel.items() if k not in ("base", "alpha")}
        if mode == "reliability":
            rel |= {"base": base, "alpha": float(alpha)}
    if est is not None:
        est = {k: v for k, v in est.items() if k not in ("base", "alpha", "tau", "choice")}
        if mode == "correctness":
            est |= {"base": base, "alpha": float(alpha)} | ({"tau": float(tau)} if tau != 1.0 else {})
        if choice is not None:
            est["choice"] = choice
    new = model.derive(dataclasses.replace(model.config, fusion=mode, reliability=rel, correctness=est))
    if model.reliability is not None:
        new.reliability.load_state_dict(model.reliability.state_dict())
    return new


def key(mode: str, alpha: float, tau: float = 1.0) -> str:
    """``"mma"``, ``"reliability@2"``, ``"correctness@4"``, ``"correctness@4/0.5"`` (alpha 4, tau 0.5)."""
    if mode not in ("reliability", "correctness"):
        return mode
    return f"{mode}@{alpha:g}" + (f"/{tau:g}" if tau != 1.0 else "")


def score(model: MultiModalModel, data: DriftSet) -> dict[str, Any]:
    """``{"full": acc, "drift": {condition: acc}, "drift_mean": acc}`` of ``model`` on ``data``."""
    full = fused_accuracy(model, data.clean.feats, data.clean.present, data.clean.targets)
    drift = {c: fused_accuracy(model, s.feats, s.present, s.targets) for c, s in data.conditions.items()}
    mean = sum(drift.values()) / len(drift) if drift else float("nan")
    return {"full": full, "drift": drift, "drift_mean": mean}


def choose(model: MultiModalModel, data: DriftSet, cost: float = COST) -> tuple[MultiModalModel, dict[str, Any]]:
    """The candidate :data:`RULE` picks, configured, and the record (every candidate's scores, the choice)."""
    model.eval()
    table: dict[str, dict[str, Any]] = {}
    for mode, alpha, tau in candidates(model):
        scores = score(configure(model, mode, alpha, tau), data)
        table[key(mode, alpha, tau)] = {"mode": mode, "alpha": alpha, "tau": tau} | scores
    base = table[key(base_mode(model), 0.0)]
    for r in table.values():  # the largest loss against the base on any held-out drift condition
        r["worst"] = min((r["drift"][c] - base["drift"][c] for c in r["drift"]), default=0.0)
    admissible = [k for k, r in table.items() if min(r["full"] - base["full"], r["worst"]) >= -cost - 1e-9]
    order = list(table)
    best = max(admissible, key=lambda k: (round(table[k]["drift_mean"], 9), -order.index(k)))
    chosen = table[best]
    record = {
        "rule": RULE,
        "cost": cost,
        "chosen": best,
        "mode": chosen["mode"],
        "alpha": chosen["alpha"],
        "tau": chosen["tau"],
        "base": base_mode(model),
        "conditions": sorted(data.conditions),
        "n_val": len(data.clean.targets),
        "table": {k: {"full": r["full"], "drift_mean": r["drift_mean"], "worst": r["worst"]} for k, r in table.items()},
    }
    return configure(model, chosen["mode"], chosen["alpha"], chosen["tau"], record), record


def notes(record: dict[str, Any]) -> str:
    """The model card's section on the fusion choice."""
    lines = [
        "## Fusion chosen under drift",
        "",
        f"Chosen: **{record['chosen']}** (base {record['base']}). Rule: {record['rule']}.",
        "",
        f"Validation: {record['n_val']} samples, clean and through {len(record['conditions'])} held-out drift "
        f"conditions ({', '.join(record['conditions'])}).",
        "",
        "| candidate | full, % | mean under held-out drift, % | worst condition vs base, points |",
        "|---|---|---|---|",
    ]
    for k, r in record["table"].items():
        mark = " (chosen)" if k == record["chosen"] else ""
        lines.append(f"| {k}{mark} | {100 * r['full']:.1f} | {100 * r['drift_mean']:.1f} | {100 * r['worst']:+.1f} |")
    if "correctness" in record.get("fit", {}):
        lines += ["", f"Correctness estimate fitted on: {record['fit']['correctness']}."]
    return "\n".join(lines)


def carried_files(checkpoint: str) -> dict[str, bytes]:
    """Files of a local checkpoint that a re-chosen copy keeps as they are (its replay memory)."""
    from pathlib import Path

    from ume_mma.publish import OPTIONAL_FILES

    folder = Path(checkpoint)
    return {n: (folder / n).read_bytes() for n in OPTIONAL_FILES if (folder / n).is_file()}


def main(argv: list[str] | None = None) -> int:
    """CLI: fit a checkpoint's correctness estimate and choose its fusion under drift; write the checkpoint.
    Exit status: 0 done, 1 the checkpoint or data could not be used, 2 bad arguments or device."""
    import argparse
    import json
    import sys
    from pathlib import Path

    from ume_mma.calibrate import open_fitting
    from ume_mma.correctness_fit import fit_on_dataset, with_correctness
    from ume_mma.device import DEVICE_CHOICES, resolve_device
    from ume_mma.errors import UmeMmaError
    from ume_mma.evaluate import evaluate_samples
    from ume_mma.trainstate import save_checkpoint

    ap = argparse.ArgumentParser(prog="python -m ume_mma.drift_choice", description=main.__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="checkpoint folder (with reliability fields: python -m ume_mma.calibrate)")
    ap.add_argument("data", help="its dataset folder; only the validation split is read for fitting and choosing")
    ap.add_argument("--out", required=True, help="folder of the new checkpoint (may be the checkpoint itself)")
    ap.add_argument("--split", default="val", help="the estimate is fitted and the fusion chosen here")
    ap.add_argument("--limit", type=int, default=300, help="at most this many validation samples")
    ap.add_argument("--test-split", default="test", help="evaluate the chosen model there ('none': skip)")
    ap.add_argument("--test-meta", nargs="*", default=[], metavar="KEY=VALUE", help="keep test rows whose meta match")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    args = ap.parse_args(argv)
    if args.split == "test":
        print("error: the fusion is never chosen on a test split: use the validation split", file=sys.stderr)
        return 2
    try:
        device = resolve_device(args.device)
    except UmeMmaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        model, data = open_fitting(args.checkpoint, args.data, device)
        model.eval()
        est, fit_report = fit_on_dataset(model, args.data, args.split, args.limit, seed=args.seed)
        model = with_correctness(configure(model, base_mode(model)), est)
        val = data.split(args.split).samples[: args.limit]
        chosen, record = choose(model, drift_set(model, val, seed=args.seed))
        record["fit"] = {"correctness": f"{args.data} split {args.split} ({len(val)} samples) + fitting families"}
        record["fit_report"] = fit_report
        metrics_path = Path(args.checkpoint) / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        if args.test_split != "none" and args.test_split in data.splits:
            meta = dict(kv.split("=", 1) for kv in args.test_meta)
            rows = data.split(args.test_split).samples
            test = [s for s in rows if all(str(s.meta.get(k)) == v for k, v in meta.items())]
            metrics |= evaluate_samples(chosen, test, seed=args.seed) | {"split": args.test_split}
        metrics["fusion_choice"] = {k: v for k, v in record.items() if k != "fit_report"}
        kept = carried_notes(args.checkpoint, "## Fusion chosen under drift")
        card = (kept + "\n\n" if kept else "") + notes(record)
        extras = carried_files(args.checkpoint)  # read before the folder may be replaced
        out = save_checkpoint(chosen, args.out, metrics=metrics if "accuracy" in metrics else None, card_notes=card)
        for name, blob in extras.items():
            (out / name).write_bytes(blob)
    except (UmeMmaError, ValueError) as exc:  # ValueError: a fit without right and wrong answers
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(notes(record))
    print(f"wrote {args.out} (fusion {chosen.config.fusion})")
    return 0


if __name__ == "__main__":
    from ume_mma.cli import main_quietly

    main_quietly(main)
