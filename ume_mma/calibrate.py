"""Fitting calibration and reliability for a trained model, and choosing the reliability-aware fusion.

Used by ``python -m ume_mma.train`` after training, and for checkpoints trained before these fields existed by
``python -m ume_mma.calibrate CHECKPOINT DATA_DIR --out NEW`` (:func:`main`). Everything is fitted on
in-distribution data only: the feature statistics on the ``stats`` split (train), the temperatures, the
reliability thresholds and ``alpha`` on the validation split. No shifted data is used.

``alpha`` (:func:`choose_alpha`): for each value of :data:`ALPHAS` the reliability-aware model is scored on
validation (1) with every modality (``full``) and (2) under **synthetic drift** of each modality m in turn: on the
rows that have every modality, m's feature is replaced by the feature of a random validation row *of another
label* plus Gaussian noise of ``s`` times m's per-dimension validation standard deviation, for each ``s`` in
:data:`DRIFT_SCALES` (:func:`synthetic_drift`): a branch that is wrong and more or less off its feature
distribution, like a branch fed by a new source. The chosen ``alpha`` has the best mean drift accuracy among the
values whose ``full`` accuracy is not below the base mode's (``alpha = 0``); ties go to the larger value (more
protection at no in-distribution cost). The reliability-aware mode is adopted when ``alpha > 0``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ume_mma.evaluate import fused_accuracy
from ume_mma.models import MultiModalModel
from ume_mma.reliability import (
    RANK,
    SCORE,
    BranchStats,
    auroc,
    fit_norm,
    fit_temperature,
    log_score,
    nll,
    thresholds,
)

ALPHAS = (0.0, 0.5, 1.0, 2.0, 4.0)
DRIFT_SCALES = (0.25, 0.5, 1.0)  # noise of the synthetic drift, in per-dimension standard deviations
REL_RULE = (
    "the UME-MMA choice is kept with reliability-weighted branches (fusion 'reliability') when validation picks "
    "alpha > 0: the alpha with the best synthetic-drift accuracy among those whose full-modality validation "
    "accuracy is not below the UME-MMA choice's"
)
DRIFT = (
    "feature of a random validation row of another label + Gaussian noise of 0.25, 0.5 and 1 times the feature's "
    "per-dimension std"
)


@dataclass
class FeatureSet:
    """Encoder outputs of one split: ``feats`` modality -> ``Tensor[N, D_m]`` (missing rows are placeholders),
    ``present`` modality -> ``BoolTensor[N]``, ``targets`` ``LongTensor[N]``."""

    feats: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    targets: torch.Tensor

    def rows(self, m: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [n, D], targets [n])`` of the rows that have modality ``m``."""
        keep = self.present[m].bool().cpu()
        return self.feats[m].cpu()[keep], self.targets.cpu()[keep]


def base_mode(model: MultiModalModel) -> str:
    """The mode a weighing model weighs: its own fusion, or the base of a ``reliability`` or ``correctness``
    model."""
    cfg = model.config
    if cfg.fusion == "correctness":
        return cfg.correctness["base"]
    return cfg.reliability["base"] if cfg.fusion == "reliability" else cfg.fusion


@torch.no_grad()
def fit_branches(
    model: MultiModalModel, stats_set: FeatureSet, val: FeatureSet, rank: int = RANK, cross_fit: bool = False
) -> tuple[dict[str, dict[str, Any]], dict[str, BranchStats], dict[str, dict[str, float]]]:
    """Per branch with at least 2 rows in both sets: temperature (on ``val``), statistics (on ``stats_set``),
    thresholds (scores of ``val``; with ``cross_fit``, when both sets are the same split, the scores are
    out-of-fold: statistics of one half score the other). Returns (config ``branches``, statistics, report)."""
    branches, stats, report = {}, {}, {}
    c = len(model.labels)
    for m in model.modalities:
        if m not in stats_set.feats or m not in val.feats:
            continue
        (xs, ys), (xv, yv) = stats_set.rows(m), val.rows(m)
        if len(xs) < 2 or len(xv) < 2:
            continue
        head = model.heads[m]
        logits = head(xv.to(head.weight.device)).cpu()
        t = fit_temperature(logits, yv)
        stats[m] = BranchStats.fit(xs, ys, c, rank)
        u = _oof_scores(xv, yv, c, rank) if cross_fit else log_score(stats[m], xv)
        branches[m] = {"temperature": t, "rank": int(stats[m].basis.shape[1]), **thresholds(u)}
        branches[m]["norm"] = fit_norm(xs, xv)  # the feature-norm check: center on the statistics' split
        report[m] = {"temperature": t, "nll_before": nll(logits, yv), "nll_after": nll(logits, yv, t)}
    return branches, stats, report


def _oof_scores(x: torch.Tensor, y: torch.Tensor, c: int, rank: int) -> torch.Tensor:
    """Scores of every row from statistics fitted on the other half (rows alternate between two halves)."""
    halves = [torch.arange(len(x)) % 2 == k for k in (0, 1)]
    u = torch.empty(len(x), dtype=torch.float64)
    for k in (0, 1):
        fitted = BranchStats.fit(x[halves[1 - k]], y[halves[1 - k]], c, rank)
        u[halves[k]] = log_score(fitted, x[halves[k]])
    return u


def attach(
    model: MultiModalModel,
    branches: dict[str, dict[str, Any]],
    stats: dict[str, BranchStats],
    fitted_on: dict[str, Any],
    fusion: str | None = None,
    alpha: float = 0.0,
) -> MultiModalModel:
    """``model`` with these reliability fields (sharing its encoders and heads). ``fusion``: ``"reliability"``
    weighs the model's base mode with ``alpha``; another name sets that mode; None keeps the model's fusion.
    A correctness estimate rests on the old fields, so it is dropped (refit it: :mod:`ume_mma.correctness_fit`);
    a ``correctness`` model falls back to its base mode."""
    base = base_mode(model)
    mode = fusion or model.config.fusion
    mode = base if mode == "correctness" else mode
    rel = {"score": SCORE, "fitted_on": fitted_on, "branches": branches}
    if mode == "reliability":
        alpha = alpha if fusion else float(model.config.reliability["alpha"])
        rel |= {"base": base, "alpha": float(alpha)}
    config = dataclasses.replace(model.config, fusion=mode, reliability=rel, correctness=None)
    new = model.derive(config)
    for m, s in stats.items():
        new.reliability[m].load_state_dict(s.state_dict())
    return new.to(model.heads[model.modalities[0]].weight.device)


def synthetic_drift(feats: torch.Tensor, targets: torch.Tensor, g: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """``feats`` ``[N, D]`` drifted: each row replaced by a random row of another label (when there is one) plus
    Gaussian noise of ``scale`` times the per-dimension std of ``feats``. ``targets`` ``[N]``; seeded by ``g``."""
    n = len(feats)
    pick = torch.randint(n, (n,), generator=g)
    for _ in range(20):  # redraw rows that picked their own label
        same = targets[pick] == targets
        if not bool(same.any()):
            break
        pick[same] = torch.randint(n, (int(same.sum()),), generator=g)
    noise = torch.randn(feats.shape, generator=g) * feats.std(0, keepdim=True) * scale
    return feats[pick] + noise


@torch.no_grad()
def choose_alpha(
    model: MultiModalModel,
    val: FeatureSet,
    seed: int = 0,
    alphas: tuple[float, ...] = ALPHAS,
    tolerance: float = 0.0,
) -> tuple[float, dict[str, Any]]:
    """The ``alpha`` of the reliability-aware version of ``model`` (which has reliability statistics), chosen on
    ``val`` as in this module's docstring; ``tolerance``: how much full-modality validation accuracy (0..1) a value
    may lose against the base's (default none). Returns ``(alpha, {str(alpha): {"full", "drift": {m: acc}}})``."""
    mods = [m for m in model.modalities if m in val.feats and m in model.reliability]
    full_rows = torch.stack([val.present[m].bool().cpu() for m in model.modalities]).all(0)
    if len(mods) < 2 or int(full_rows.sum()) < 2:
        return 0.0, {}
    dev = model.heads[model.modalities[0]].weight.device
    y = val.targets.cpu()[full_rows].to(dev)
    feats = {m: val.feats[m].cpu()[full_rows] for m in model.modalities}
    ones = {m: torch.ones(len(y), dtype=torch.bool, device=dev) for m in model.modalities}
    g = torch.Generator().manual_seed(seed)
    drifted = {(m, s): {**feats, m: synthetic_drift(feats[m], y.cpu(), g, s)} for m in mods for s in DRIFT_SCALES}
    stats = {m: model.reliability[m] for m in model.reliability}
    rel = attach(model, model.config.reliability["branches"], stats, {}, "reliability", 0.0)
    table: dict[str, Any] = {}
    for a in alphas:
        rel.fusion.alpha = float(a)
        full = fused_accuracy(rel, {m: f.to(dev) for m, f in feats.items()}, ones, y)
        acc = {k: fused_accuracy(rel, {n: f.to(dev) for n, f in d.items()}, ones, y) for k, d in drifted.items()}
        drift = {m: sum(acc[m, s] for s in DRIFT_SCALES) / len(DRIFT_SCALES) for m in mods}
        table[str(a)] = {"full": full, "drift": drift}
    base = table[str(alphas[0])]["full"] if alphas[0] == 0 else None
    ok = [a for a in alphas if base is None or table[str(a)]["full"] >= base - tolerance - 1e-9]
    best = max(ok, key=lambda a: (round(sum(table[str(a)]["drift"].values()), 9), a))
    table["drift_auroc"] = {}
    for m, s in drifted:  # how well the reliability tells real validation features from drifted ones
        clean_r = rel.reliability({m: feats[m].to(dev)})[m]
        drift_r = rel.reliability({m: drifted[m, s][m].to(dev)})[m]
        table["drift_auroc"][f"{m}@{s}"] = auroc(clean_r.cpu(), drift_r.cpu())
    return float(best), table


def calibrate(
    model: MultiModalModel,
    stats_set: FeatureSet,
    val: FeatureSet,
    seed: int = 0,
    fusion: str = "auto",
    rank: int = RANK,
    cross_fit: bool = False,
    fitted_on: dict[str, Any] | None = None,
    tolerance: float = 0.0,
    alpha: float | None = None,
) -> tuple[MultiModalModel, dict[str, Any]]:
    """``model`` with calibration and reliability fitted (see the module docstring) and its record (for
    ``metrics.json``). ``fusion``: ``auto`` adopts the reliability-aware mode when validation picks
    ``alpha > 0`` (else the base mode); ``keep`` keeps the model's fusion (and a ``reliability`` model's alpha).
    ``tolerance``: see :func:`choose_alpha`; ``alpha``: use this value instead of choosing one (recorded as
    ``"alpha_given"``: not fitted)."""
    branches, stats, report = fit_branches(model, stats_set, val, rank, cross_fit)
    fitted_on = dict(fitted_on or {}) | {"n_stats": len(stats_set.targets), "n_val": len(val.targets)}
    calibrated = attach(model, branches, stats, fitted_on, base_mode(model) if fusion == "auto" else None)
    record: dict[str, Any] = {"rule": REL_RULE, "drift": DRIFT, "base": base_mode(model), "branches": report}
    if fusion != "auto":
        record |= {"adopted": calibrated.config.fusion == "reliability", "alpha": None}
        return calibrated, record
    chosen, table = choose_alpha(calibrated, val, seed, tolerance=tolerance)
    alpha = chosen if alpha is None else float(alpha)
    record |= {"alpha": alpha, "alphas": table, "adopted": alpha > 0, "tolerance": tolerance}
    record |= {"alpha_given": alpha != chosen} if alpha != chosen else {}
    if alpha > 0:
        calibrated = attach(calibrated, branches, stats, fitted_on, "reliability", alpha)
    return calibrated, record


def split_features(model: MultiModalModel, samples: list[Any], cache_dir: str | None, label: str = "") -> FeatureSet:
    """Decode, encode (or read cached features of) ``samples`` for every modality of ``model``."""
    from pathlib import Path

    from ume_mma.evaluate import model_features, targets_of
    from ume_mma.features import prepare

    cache = Path(cache_dir).expanduser() if cache_dir else None
    inputs = {m: prepare(samples, m, model.encoders[m], cache, label) for m in model.modalities}
    present = {m: x.present for m, x in inputs.items()}
    return FeatureSet(model_features(model, inputs), present, targets_of(samples, model.labels))


def notes(record: dict[str, Any]) -> str:
    """The model card's section on calibration, reliability and the alpha choice."""
    lines = ["## Calibration and reliability", "", "| branch | temperature | val NLL before | val NLL after |"]
    lines.append("|---|---|---|---|")
    for m, b in sorted(record["branches"].items()):
        lines.append(f"| {m} | {b['temperature']:.3f} | {b['nll_before']:.3f} | {b['nll_after']:.3f} |")
    if record.get("alphas"):
        lines += [
            "",
            f"Synthetic drift on validation: {record['drift']}.",
            "",
            "| alpha | full | drift (per modality) |",
        ]
        lines.append("|---|---|---|")
        for a, row in record["alphas"].items():
            if a != "drift_auroc":
                drift = ", ".join(f"{m} {100 * v:.1f}" for m, v in sorted(row["drift"].items()))
                lines.append(f"| {a} | {100 * row['full']:.1f} | {drift} |")
        lines += ["", f"Chosen alpha: {record['alpha']} ({'adopted' if record['adopted'] else 'not adopted'}: "]
        lines[-1] += f"{record['rule']})."
    return "\n".join(lines)


def carried_notes(checkpoint: str, replaced: str = "## Calibration and reliability") -> str:
    """The sections of a local checkpoint's model card that a recalibrated copy keeps: those between its
    evaluation table and its usage (the training run's table, data notes), without an older ``replaced``
    section (the one the copy writes anew). ``""`` for a Hub id or a folder without a card."""
    import re
    from pathlib import Path

    card = Path(checkpoint) / "README.md"
    if not card.is_file():
        return ""
    parts = re.split(r"(?m)^(?=## )", card.read_text(encoding="utf-8"))
    skip = ("## Evaluation", "## Usage", replaced)
    return "\n".join(p.strip() + "\n" for p in parts[1:] if not p.startswith(skip)).strip()


def open_fitting(checkpoint: str, data_dir: str, device: Any) -> tuple[MultiModalModel, Any]:
    """A checkpoint's model on ``device`` and the dataset it is fitted on, for the fitting CLIs (this one and
    :mod:`ume_mma.drift_choice`): labels and modalities that do not fit are refused before any weights load."""
    from ume_mma.checkpoint import from_pretrained, load_config
    from ume_mma.compat import Fit
    from ume_mma.data.format import load_dataset

    config, _ = load_config(checkpoint)
    data = load_dataset(data_dir)
    Fit.of(config, f"checkpoint {checkpoint}").check(data.labels, data.modalities, data_dir)
    return from_pretrained(checkpoint).to(device), data


def main(argv: list[str] | None = None) -> int:
    """CLI: fit calibration and reliability for a checkpoint on its dataset and write a new checkpoint.
    Exit status: 0 done, 1 the checkpoint or data could not be used, 2 bad arguments or device."""
    import argparse
    import json
    import sys

    from ume_mma.device import DEVICE_CHOICES, resolve_device
    from ume_mma.errors import DatasetFormatError, UmeMmaError
    from ume_mma.evaluate import evaluate_samples
    from ume_mma.trainstate import save_checkpoint

    ap = argparse.ArgumentParser(prog="python -m ume_mma.calibrate", description=main.__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="checkpoint folder or Hub repo id")
    ap.add_argument("data", help="its dataset folder (metadata.jsonl)")
    ap.add_argument("--out", required=True, help="folder of the new checkpoint")
    ap.add_argument("--split", default="val", help="temperatures, thresholds and alpha are fitted here")
    ap.add_argument("--stats-split", default="train", help="feature statistics (= --split: thresholds out-of-fold)")
    ap.add_argument("--fusion", default="auto", choices=["auto", "keep"], help="auto: adopt reliability if alpha > 0")
    ap.add_argument("--test-split", default="test", help="evaluate before and after there ('none': skip)")
    ap.add_argument("--test-meta", nargs="*", default=[], metavar="KEY=VALUE", help="keep test rows whose meta match")
    ap.add_argument("--rank", type=int, default=RANK)
    ap.add_argument("--tolerance", type=float, default=0.0, help="validation accuracy alpha may cost (0..1)")
    ap.add_argument("--alpha", type=float, default=None, help="use this alpha instead of choosing it (not fitted)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many samples per split")
    ap.add_argument("--cache-dir", default="~/.cache/ume_mma/features", help="feature cache ('' to disable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    args = ap.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except UmeMmaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        model, data = open_fitting(args.checkpoint, args.data, device)  # a misfit is refused before any encoding

        def samples(split: str) -> list[Any]:
            rows = data.split(split).samples[: args.limit]
            if not rows:
                raise DatasetFormatError(f"{args.data}: no samples in split {split!r} (splits: {data.splits})")
            return rows

        sets = {s: split_features(model, samples(s), args.cache_dir, s) for s in {args.split, args.stats_split}}
        fitted_on = {"data": str(args.data), "stats": args.stats_split, "val": args.split, "from": str(args.checkpoint)}
        new, record = calibrate(
            model, sets[args.stats_split], sets[args.split], args.seed, args.fusion, args.rank,
            cross_fit=args.split == args.stats_split, fitted_on=fitted_on, tolerance=args.tolerance, alpha=args.alpha,
        )  # fmt: skip
        metrics: dict[str, Any] = {}
        if args.test_split != "none" and args.test_split in data.splits:
            meta = dict(kv.split("=", 1) for kv in args.test_meta)
            test = [s for s in samples(args.test_split) if all(str(s.meta.get(k)) == v for k, v in meta.items())]
            if not test:
                raise DatasetFormatError(f"{args.data}: no {args.test_split} rows with meta {meta}")
            before = evaluate_samples(model, test, seed=args.seed)
            metrics = evaluate_samples(new, test, seed=args.seed) | {"split": args.test_split}
            record["test_before"] = before["accuracy"]
        metrics["calibration"] = record
        kept = carried_notes(args.checkpoint)
        card = (kept + "\n\n" if kept else "") + notes(record)
        save_checkpoint(new, args.out, metrics=metrics if "accuracy" in metrics else None, card_notes=card)
    except UmeMmaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(notes(record))
    if "accuracy" in metrics:
        print(json.dumps({"test_before": record["test_before"], "test_after": metrics["accuracy"]}, indent=1))
    print(f"wrote {args.out} (fusion {new.config.fusion})")
    return 0


if __name__ == "__main__":
    from ume_mma.cli import main_quietly

    main_quietly(main)
