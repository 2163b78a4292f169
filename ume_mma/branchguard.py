"""The branch guard of a fine-tune: a branch's new version replaces the base's only where it is not worse.

A fine-tune on a few annotations can make a branch that was right worse (its head moves to fit fifty items). Before
the fusion is trained, each branch's fine-tuned version is compared with the base's own branch by K-fold
cross-validation over the annotations' groups (train and validation rows of the new data; the replay rows of the
base data, when there are any, are always trained on and never scored): fold ``k``'s rows are predicted by a copy
fine-tuned on the other folds, and by the base branch. Where the pooled fine-tuned accuracy is below the base's,
the branch keeps the base's encoder and head, and they stay frozen (and in eval mode) while the fusion is refitted
(MMA), so the saved checkpoint's branch is the base's, bit for bit.

With fewer than :data:`MIN_ROWS` rows or two groups there is nothing to tell: the branch is fine-tuned as before,
and the verdict says so. The verdicts go into ``metrics.json`` and the model card (:func:`notes`).
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from typing import TYPE_CHECKING, Any

import torch

from ume_mma.evaluate import fused_accuracy, model_features
from ume_mma.features import ModalityInputs
from ume_mma.models import MultiModalModel
from ume_mma.progress import ProgressLog

if TYPE_CHECKING:
    from ume_mma.train import Job

MIN_ROWS = 10  # fewer annotated rows than this: too few to tell a better branch from a worse one
CV = "cv-"  # prefix of the cross-validation folds' temporary training splits


def group_folds(groups: list[str | None], k: int, seed: int) -> list[list[int]]:
    """Row indices of ``k`` folds (fewer when there are fewer groups): every group's rows in one fold, groups
    shuffled with ``seed`` and dealt round-robin by size so folds are about equal. A row without a group is a
    group of its own."""
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g if g is not None else f"\0row{i}", []).append(i)
    names = sorted(by_group)
    random.Random(seed).shuffle(names)
    names.sort(key=lambda g: -len(by_group[g]))  # stable: shuffled order within one size
    folds: list[list[int]] = [[] for _ in range(min(k, len(names)))]
    for g in names:
        min(folds, key=len).extend(by_group[g])
    return [sorted(f) for f in folds]


def _take(x: ModalityInputs, rows: torch.Tensor) -> ModalityInputs:
    return ModalityInputs(x.rows(rows), x.present[rows], x.is_features)


def _cat(a: ModalityInputs, b: ModalityInputs) -> ModalityInputs:
    if isinstance(a.data, dict):
        data: Any = {k: torch.cat([a.data[k], b.data[k]]) for k in a.data}
    else:
        data = torch.cat([a.data, b.data])
    return ModalityInputs(data, torch.cat([a.present, b.present]), a.is_features)


def _unimodal(job: Job, m: str, base: MultiModalModel) -> MultiModalModel:
    from ume_mma import finetune

    return finetune.init_unimodal(MultiModalModel(job.model_config([m], "ume")), base)


def check_branch(job: Job, m: str, base: MultiModalModel, annotated_train: int) -> dict[str, Any]:
    """The verdict for branch ``m``: ``{"kept": "base"|"finetuned", "base": acc, "finetuned": acc, "rows": n,
    "folds": k}`` (accuracies pooled over the folds, 0..1), or ``{"kept": "finetuned", "rows": n, "reason": ...}``
    when there are too few rows. ``annotated_train``: how many of the train split's first rows are the new data's
    (the rest are replay rows). The main random stream is left as it was (a run with and without the guard trains
    the same models)."""
    cfg = job.cfg
    train, val = job.inputs[cfg.train_split][m], job.inputs[cfg.val_split][m]
    head = torch.arange(annotated_train)
    pool = _cat(_take(train, head), val)
    targets = torch.cat([job.targets[cfg.train_split][:annotated_train], job.targets[cfg.val_split]])
    groups = list(job.groups[cfg.train_split][:annotated_train]) + list(job.groups[cfg.val_split])
    rows = [i for i in range(len(targets)) if bool(pool.present[i])]
    folds = group_folds([groups[i] for i in rows], cfg.cv_folds, cfg.seed)
    if len(rows) < MIN_ROWS or len(folds) < 2:
        return {"kept": "finetuned", "rows": len(rows), "reason": "too few annotations to tell"}
    replay = torch.arange(annotated_train, len(job.targets[cfg.train_split]))
    base_model = _unimodal(job, m, base)
    right = {"base": 0, "finetuned": 0}
    rng = torch.get_rng_state()
    saved = job.cfg, job.progress
    job.progress = ProgressLog(None)  # the folds are not phases of the run
    try:
        for k, fold in enumerate(folds):
            held = torch.tensor([rows[i] for i in fold])
            fit = torch.tensor(sorted(set(rows) - set(held.tolist())))
            split = f"{CV}{m}-{k}"
            job.inputs[split] = {m: _cat(_take(pool, fit), _take(train, replay))}
            job.targets[split] = torch.cat([targets[fit], job.targets[cfg.train_split][replay]])
            job.cfg = dataclasses.replace(saved[0], train_split=split, save_all=False, repair=None)
            tuned = job.train(split, _unimodal(job, m, base), job.unimodal_epochs(m), job.lr([m]), 0.0)
            scored = {m: _take(pool, held)}
            for name, model in (("base", base_model), ("finetuned", tuned)):
                feats = model_features(model, scored)
                dev = model.heads[m].weight.device
                acc = fused_accuracy(
                    model, {m: feats[m].to(dev)}, {m: scored[m].present.to(dev)}, targets[held].to(dev)
                )
                right[name] += round(acc * len(held))
            del job.inputs[split], job.targets[split]
    finally:
        job.cfg, job.progress = saved
        torch.set_rng_state(rng)
        for k in range(len(folds)):  # the folds' resumable states: nothing resumes them
            shutil.rmtree(job.out / "state" / f"{CV}{m}-{k}", ignore_errors=True)
    acc = {name: right[name] / len(rows) for name in right}
    kept = "base" if acc["finetuned"] < acc["base"] else "finetuned"
    return {"kept": kept, **{k: round(v, 4) for k, v in acc.items()}, "rows": len(rows), "folds": len(folds)}


def notes(verdicts: dict[str, dict[str, Any]]) -> str:
    """The model card's lines on the branch guard."""
    lines = ["", "Branch guard (a branch's fine-tuned version replaces the base's only where it is not worse):", ""]
    for m, v in sorted(verdicts.items()):
        if "reason" in v:
            lines.append(f"- **{m}:** fine-tuned ({v['reason']}: {v['rows']} rows)")
            continue
        what = "kept from the base" if v["kept"] == "base" else "fine-tuned"
        lines.append(
            f"- **{m}:** {what} ({v['folds']}-fold cross-validation over {v['rows']} annotations: "
            f"base {100 * v['base']:.1f}%, fine-tuned {100 * v['finetuned']:.1f}%)"
        )
    return "\n".join(lines)
