"""Evaluation under missing modalities: ``python -m ume_mma.evaluate CHECKPOINT DATA_DIR --out metrics.json``.

Protocol (also in the README):
- ``full``: every modality a sample has is given.
- ``without_<m>``: modality ``m`` is removed from every sample; samples left with nothing are skipped.
- ``missing_rate_<r>``: each sample independently loses one of its present modalities (chosen
  uniformly) with probability ``r``; a sample never loses all of them. Averaged over ``repeats`` seeded draws.
- ``branches``: accuracy of each uni-modal branch alone, on the samples that have that modality.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from ume_mma.augment import missing_rate_mask
from ume_mma.features import ModalityInputs, encode_all, prepare
from ume_mma.models import MultiModalModel
from ume_mma.report import MISSING_RATES

Mask = dict[str, torch.Tensor]
MAX_GROUPS = 20  # per-group branch accuracies are reported for up to this many groups (e.g. speakers)


@torch.no_grad()
def model_features(model: MultiModalModel, inputs: dict[str, ModalityInputs]) -> dict[str, torch.Tensor]:
    """Encoder outputs ``Tensor[N, D]`` per modality, reusing cached features where they exist."""
    model.eval()
    return {
        m: x.data if x.is_features else encode_all(model.encoders[m], x)
        for m, x in inputs.items()
        if m in model.encoders
    }


@torch.no_grad()
def accuracy(model: MultiModalModel, feats: dict[str, torch.Tensor], present: Mask, targets: torch.Tensor) -> float:
    keep = torch.stack([present[m] for m in model.modalities if m in present]).any(dim=0)  # (N,)
    if not bool(keep.any()):
        return float("nan")
    out = model.forward_features({m: f[keep] for m, f in feats.items()}, {m: p[keep] for m, p in present.items()})
    return float((out.fused.argmax(-1) == targets[keep]).float().mean())


@torch.no_grad()
def evaluate_features(
    model: MultiModalModel,
    feats: dict[str, torch.Tensor],
    present: Mask,
    targets: torch.Tensor,
    seed: int = 0,
    repeats: int = 3,
    groups: list[str | None] | None = None,
) -> dict[str, Any]:
    """All metrics of one model from precomputed features (heads and fusion only). With ``groups``
    (e.g. speakers; at most :data:`MAX_GROUPS` of them) branch accuracies are also given per group."""
    mods = [m for m in model.modalities if m in present]
    present = {m: present[m].bool() for m in mods}
    acc: dict[str, float] = {"full": accuracy(model, feats, present, targets)}
    if len(mods) > 1:
        for m in mods:
            acc[f"without_{m}"] = accuracy(model, feats, {**present, m: torch.zeros_like(present[m])}, targets)
        for r in MISSING_RATES:
            runs = [
                accuracy(
                    model, feats, missing_rate_mask(present, r, torch.Generator().manual_seed(seed * 1000 + k)), targets
                )
                for k in range(repeats)
            ]
            acc[f"missing_rate_{r}"] = sum(runs) / len(runs)
    out = model.forward_features(feats, {m: torch.ones_like(p) for m, p in present.items()})
    branches = {
        m: float((out.branches[m].argmax(-1)[present[m]] == targets[present[m]]).float().mean())
        for m in mods
        if bool(present[m].any())
    }
    result = {"n": int(len(targets)), "accuracy": acc, "branches": branches}
    names = sorted({g for g in groups or [] if g is not None})
    if 1 < len(names) <= MAX_GROUPS:
        result["branches_by_group"] = {
            m: {
                g: float((out.branches[m].argmax(-1)[rows] == targets[rows]).float().mean())
                for g in names
                if bool((rows := present[m] & torch.tensor([x == g for x in groups])).any())
            }
            for m in mods
        }
    return result


def targets_of(samples: list[Any], labels: list[str]) -> torch.Tensor:
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({s.label for s in samples} - set(index))
    if unknown:
        from ume_mma.errors import DatasetFormatError

        raise DatasetFormatError(f"labels {unknown} are not among the model's labels {labels}")
    return torch.tensor([index[s.label] for s in samples])


def evaluate_samples(
    model: MultiModalModel, samples: list[Any], cache_dir: Path | None = None, seed: int = 0, repeats: int = 3
) -> dict[str, Any]:
    """Decode, encode and evaluate ``samples`` (dataset rows) with ``model``."""
    inputs = {m: prepare(samples, m, model.encoders[m], cache_dir) for m in model.modalities}
    return evaluate_features(
        model,
        model_features(model, inputs),
        {m: x.present for m, x in inputs.items()},
        targets_of(samples, model.labels),
        seed,
        repeats,
        [s.group for s in samples],
    )


def main(argv: list[str] | None = None) -> int:
    from ume_mma.checkpoint import from_pretrained
    from ume_mma.data.format import load_dataset
    from ume_mma.errors import UmeMmaError
    from ume_mma.report import metrics_table, plot_missing_rate_curve

    ap = argparse.ArgumentParser(prog="python -m ume_mma.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="checkpoint folder or Hub repo id")
    ap.add_argument("data", help="dataset folder (metadata.jsonl)")
    ap.add_argument("--split", default="test", help="split to evaluate ('all' for every sample)")
    ap.add_argument("--out", default="metrics.json")
    ap.add_argument("--plot", default=None, help="write the missing-rate curve as a PNG")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    try:
        model = from_pretrained(args.checkpoint)
        data = load_dataset(args.data, split=None if args.split == "all" else args.split)
        metrics = evaluate_samples(model, data.samples, seed=args.seed, repeats=args.repeats)
    except UmeMmaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    Path(args.out).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(metrics_table(metrics))
    if args.plot:
        plot_missing_rate_curve({model.config.fusion: metrics["accuracy"]}, args.plot, title=model.config.task)
    return 0


if __name__ == "__main__":
    sys.exit(main())
