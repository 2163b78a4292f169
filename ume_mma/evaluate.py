"""Evaluation under missing modalities: ``python -m ume_mma.evaluate CHECKPOINT DATA_DIR --out metrics.json``.

Protocol (also in docs/training.md):
- ``full``: every modality a sample has is given.
- ``without_<m>``: modality ``m`` is removed from every sample; samples left with nothing are skipped.
- ``missing_rate_<r>``: each sample independently loses one of its present modalities (chosen
  uniformly) with probability ``r``; a sample never loses all of them. Averaged over ``repeats`` seeded draws.
- ``branches``: accuracy of each uni-modal branch alone, on the samples that have that modality.
- ``reliability`` (checkpoints with reliability fields only): per branch, the mean reliability and the share of
  samples flagged ``off_distribution``, on the samples that have that modality.
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
def fused_accuracy(
    model: MultiModalModel, feats: dict[str, torch.Tensor], present: Mask, targets: torch.Tensor
) -> float:
    """Accuracy of the fused prediction over the samples that keep at least one modality (NaN if none does)."""
    keep = torch.stack([present[m] for m in model.modalities if m in present]).any(dim=0)  # (N,)
    if not bool(keep.any()):
        return float("nan")
    out = model.forward_features({m: f[keep] for m, f in feats.items()}, {m: p[keep] for m, p in present.items()})
    return float((out.fused.argmax(-1) == targets[keep]).float().mean())


@torch.no_grad()
def missing_rate_accuracy(
    model: MultiModalModel,
    feats: dict[str, torch.Tensor],
    present: Mask,
    targets: torch.Tensor,
    rate: float,
    seed: int = 0,
    repeats: int = 3,
) -> float:
    """Mean fused accuracy over ``repeats`` seeded draws of the missing-rate-``rate`` protocol."""
    runs = []
    for k in range(repeats):
        g = torch.Generator().manual_seed(seed * 1000 + k)
        drawn = missing_rate_mask({m: p.cpu() for m, p in present.items()}, rate, g)
        mask = {m: v.to(targets.device) for m, v in drawn.items()}
        runs.append(fused_accuracy(model, feats, mask, targets))
    return sum(runs) / len(runs)


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
    device = model.heads[model.modalities[0]].weight.device
    mods = [m for m in model.modalities if m in present]
    feats = {m: f.to(device) for m, f in feats.items()}
    present = {m: present[m].bool().to(device) for m in mods}
    targets = targets.to(device)
    accuracy: dict[str, float] = {"full": fused_accuracy(model, feats, present, targets)}
    if len(mods) > 1:
        for m in mods:
            without = {**present, m: torch.zeros_like(present[m])}
            accuracy[f"without_{m}"] = fused_accuracy(model, feats, without, targets)
        for r in MISSING_RATES:
            accuracy[f"missing_rate_{r}"] = missing_rate_accuracy(model, feats, present, targets, r, seed, repeats)
    out = model.forward_features(feats, {m: torch.ones_like(p) for m, p in present.items()})
    branches = {
        m: float((out.branches[m].argmax(-1)[present[m]] == targets[present[m]]).float().mean())
        for m in mods
        if bool(present[m].any())
    }
    result = {"n": int(len(targets)), "accuracy": accuracy, "branches": branches}
    if out.reliability:
        result["reliability"] = {
            m: {"mean": float(r[present[m]].mean()), "off_distribution": float((r[present[m]] < 0.5).float().mean())}
            for m, r in out.reliability.items()
            if m in present and bool(present[m].any())
        }
    names = sorted({g for g in groups or [] if g is not None})
    if 1 < len(names) <= MAX_GROUPS:
        result["branches_by_group"] = {
            m: {
                g: float((out.branches[m].argmax(-1)[rows] == targets[rows]).float().mean())
                for g in names
                if bool((rows := present[m] & torch.tensor([x == g for x in groups], device=device)).any())
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


def select_samples(data: Any, split: str) -> tuple[list[Any], str]:
    """The samples to evaluate and the split they are: ``all`` (every sample) when ``split`` is ``all`` or
    when no sample of the dataset has a split; otherwise the samples of ``split`` (none: DatasetFormatError)."""
    from ume_mma.errors import DatasetFormatError

    if split == "all" or not data.splits:
        return data.samples, "all"
    samples = data.split(split).samples
    if not samples:
        raise DatasetFormatError(f"{data.root}: no samples with split {split!r} (splits: {data.splits})")
    return samples, split


def main(argv: list[str] | None = None) -> int:
    """CLI. Exit status: 0 done, 1 the checkpoint or data could not be used, 2 bad arguments or device."""
    from ume_mma.checkpoint import from_pretrained, load_config
    from ume_mma.compat import Fit
    from ume_mma.data.format import SPLITS, load_dataset
    from ume_mma.device import DEVICE_CHOICES, resolve_device
    from ume_mma.errors import UmeMmaError
    from ume_mma.report import metrics_table, plot_missing_rate_curve

    ap = argparse.ArgumentParser(prog="python -m ume_mma.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="checkpoint folder or Hub repo id")
    ap.add_argument("data", help="dataset folder (metadata.jsonl)")
    ap.add_argument(
        "--split",
        default="test",
        choices=[*SPLITS, "all"],
        help="split to evaluate ('all' for every sample; a dataset without splits is evaluated whole)",
    )
    ap.add_argument("--out", default="metrics.json")
    ap.add_argument("--plot", default=None, help="write the missing-rate curve as a PNG")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto: the GPU when there is one")
    args = ap.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except UmeMmaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        config, _ = load_config(args.checkpoint)  # labels and modalities, before any weight or file is read
        data = load_dataset(args.data)
        samples, split = select_samples(data, args.split)
        where = args.data if split == "all" else f"{args.data} ({split} split)"
        Fit.of(config, f"checkpoint {args.checkpoint}").check(
            {s.label for s in samples}, {m for s in samples for m in s.present}, where
        )
        if split != args.split:
            print(f"note: no sample of {args.data} has a split: evaluating all {len(samples)} samples")
        model = from_pretrained(args.checkpoint).to(device)
        metrics = evaluate_samples(model, samples, seed=args.seed, repeats=args.repeats)
    except UmeMmaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    metrics["split"] = split
    if split != args.split:
        metrics["split_note"] = f"no sample has a split: all samples evaluated instead of split {args.split!r}"
    Path(args.out).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(metrics_table(metrics))
    if args.plot:
        plot_missing_rate_curve({model.config.fusion: metrics["accuracy"]}, args.plot, title=model.config.task)
    return 0


if __name__ == "__main__":
    from ume_mma.cli import main_quietly

    main_quietly(main)
