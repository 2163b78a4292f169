"""The branch guard of a fine-tune: a branch's new version replaces the base's only where it is not worse.

A fine-tune on a few annotations can make a branch that was right worse (its head moves to fit fifty items). Before
the fusion is trained, each branch's fine-tuned version is compared with the base's own branch by K-fold
cross-validation over the annotations' groups (train and validation rows of the new data): fold ``k``'s rows are
predicted by a copy fine-tuned on the other folds, and by the base branch. Annotations chosen where the base was
wrong cannot show what a fine-tune loses where it was right, so rows of the base's own domain are scored too: the
replay memory's held-out rows (:mod:`ume_mma.replaymemory`: validation rows neither the base nor any copy trained
on), dealt into the same folds; where the memory has none, the base's rows in the training split (the memory's
training rows, or replay of ``base_data``), fold ``k``'s never trained on by fold ``k``'s copy. The branch keeps
the base's encoder and head unless the pooled fine-tuned accuracy is above the base's on the annotations beyond
chance (:func:`ume_mma.evidence.paired_worse`, McNemar's exact test), and where it is below the base's on the
held-out rows by more than :data:`BASE_TOLERANCE` (:func:`heldout_worse`; on training rows: and beyond chance, since
the base is ~100% right there); kept branches stay frozen (and in eval mode) while the fusion is refitted (MMA), so
the saved checkpoint's branch is the base's, bit for bit. With ``wise_ft`` the same folds also score branches
between the base's weights and the fine-tuned ones (:mod:`ume_mma.keepskills`) and the best mix that passes those
tests is taken.

The same folds then choose between UME and MMA (:func:`choose_fusion`): a validation split of a few annotations
(often one item) cannot tell them apart, and an MMA refitted on fifty items can fall below both of its branches.
A fusion worse than the other on the held-out rows (or the base's rows, by the same tests) is not chosen. With an
MMA base the refitted MMA replaces the base's fusion (over the guarded branches, not refitted) only where it is
better on the annotations beyond chance and not worse on the held-out rows (``refit_guard``).

With fewer than :data:`MIN_ROWS` rows or two groups there is nothing to tell: the branch is fine-tuned as before,
the choice is made on validation, and the verdict says so. The verdicts go into ``metrics.json`` and the model
card (:func:`notes`).
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ume_mma import finetune, keepskills
from ume_mma.evaluate import model_features
from ume_mma.evidence import paired_worse
from ume_mma.features import ModalityInputs, concat, take
from ume_mma.models import MultiModalModel
from ume_mma.progress import ProgressLog

if TYPE_CHECKING:
    from ume_mma.train import Job

MIN_ROWS = 10  # fewer annotated rows than this: too few to tell a better branch from a worse one
BASE_TOLERANCE = 0.01  # a new branch or fusion may lose at most this much accuracy on the base's held-out rows
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


def deal(n: int, k: int, seed: int) -> list[list[int]]:
    """Indices ``0..n-1`` shuffled with ``seed`` and dealt round-robin into ``k`` folds (each sorted)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def _unimodal(job: Job, m: str, base: MultiModalModel) -> MultiModalModel:
    return finetune.init_unimodal(MultiModalModel(job.model_config([m], "ume")), base)


@dataclass
class Folds:
    """The annotations a fine-tune cross-validates on: the new data's train rows and its validation rows
    (``pool``: modality -> their inputs, ``targets`` ``Tensor[N]``), dealt into folds by group, and the train
    split's base rows (replay memory or replay of ``base_data``; ``base_inputs``, ``base_targets`` ``Tensor[M]``)
    dealt into as many folds: fold ``k`` scores its annotations and its base rows, trained on by no copy of
    fold ``k``."""

    pool: dict[str, ModalityInputs]
    targets: torch.Tensor
    folds: list[list[int]]  # row indices into pool
    base_inputs: dict[str, ModalityInputs]
    base_targets: torch.Tensor
    base_folds: list[list[int]]  # row indices into base_inputs
    # the replay memory's held-out rows (never trained on by the base nor by any copy), dealt into as many folds
    held_inputs: dict[str, ModalityInputs] = dataclasses.field(default_factory=dict)
    held_targets: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    held_folds: list[list[int]] = dataclasses.field(default_factory=list)

    def scored(self, k: int) -> list[tuple[str, dict[str, ModalityInputs], torch.Tensor, list[int]]]:
        """Fold ``k``'s scored rows: ``(name, inputs, targets, rows)`` for the annotations (``""``), the base's
        rows in the training split (``"base_rows."``) and the memory's held-out rows (``"heldout_rows."``)."""
        out = [("", self.pool, self.targets, self.folds[k]),
               ("base_rows.", self.base_inputs, self.base_targets, self.base_folds[k])]  # fmt: skip
        if self.held_folds:
            out.append(("heldout_rows.", self.held_inputs, self.held_targets, self.held_folds[k]))
        return out


def make_folds(job: Job, annotated_train: int) -> Folds | None:
    """The folds of ``cfg.cv_folds`` over the annotations' groups (the train split's rows after the first
    ``annotated_train`` are the base's, dealt into as many folds), or None when there are fewer than
    :data:`MIN_ROWS` rows or two groups (nothing to tell)."""
    cfg = job.cfg
    train = job.inputs[cfg.train_split]
    head, tail = torch.arange(annotated_train), torch.arange(annotated_train, len(job.targets[cfg.train_split]))
    pool = {m: concat(take(train[m], head), job.inputs[cfg.val_split][m]) for m in job.specs}
    targets = torch.cat([job.targets[cfg.train_split][:annotated_train], job.targets[cfg.val_split]])
    groups = list(job.groups[cfg.train_split][:annotated_train]) + list(job.groups[cfg.val_split])
    folds = group_folds(groups, cfg.cv_folds, cfg.seed)
    if len(targets) < MIN_ROWS or len(folds) < 2:
        return None
    base_inputs = {m: take(train[m], tail) for m in job.specs}
    base_targets = job.targets[cfg.train_split][tail]
    out = Folds(pool, targets, folds, base_inputs, base_targets, deal(len(tail), len(folds), cfg.seed))
    if job.memory_heldout is not None:
        out.held_inputs, out.held_targets = job.memory_heldout
        out.held_folds = deal(len(out.held_targets), len(folds), cfg.seed)
    return out


@contextmanager
def _fold_training(job: Job, folds: Folds, k: int, mods: list[str]) -> Iterator[str]:
    """A temporary training split of fold ``k`` (every other fold's annotations and base rows) for ``mods``; the
    run's config, progress log and random stream are as they were afterwards, and the fold leaves no state behind."""
    cfg = job.cfg
    held, held_base = set(folds.folds[k]), set(folds.base_folds[k])
    fit = torch.tensor([i for i in range(len(folds.targets)) if i not in held], dtype=torch.long)
    fit_base = torch.tensor([i for i in range(len(folds.base_targets)) if i not in held_base], dtype=torch.long)
    split = f"{CV}{'+'.join(mods)}-{k}"
    job.inputs[split] = {m: concat(take(folds.pool[m], fit), take(folds.base_inputs[m], fit_base)) for m in mods}
    job.targets[split] = torch.cat([folds.targets[fit], folds.base_targets[fit_base]])
    saved, rng = (job.cfg, job.progress), torch.get_rng_state()
    job.cfg = dataclasses.replace(cfg, train_split=split, save_all=False, repair=None)
    job.progress = ProgressLog(None)  # the folds are not phases of the run
    try:
        yield split
    finally:
        job.cfg, job.progress = saved
        torch.set_rng_state(rng)
        del job.inputs[split], job.targets[split]
        shutil.rmtree(job.out / "state" / split, ignore_errors=True)  # nothing resumes a fold


@torch.no_grad()
def _hits(
    model: MultiModalModel, inputs: dict[str, ModalityInputs], targets: torch.Tensor, rows: list[int], mods: list[str]
) -> torch.Tensor:
    """``Tensor[len(rows)]`` of bools: whether ``model`` answers each of ``rows`` (indices into ``inputs``,
    ``targets`` ``Tensor[N]``) right with ``mods`` as present as they are (a row with none of them: wrong)."""
    if not rows:
        return torch.zeros(0, dtype=torch.bool)
    index = torch.tensor(rows)
    scored = {m: take(inputs[m], index) for m in mods}
    dev = model.heads[mods[0]].weight.device
    feats = {m: f.to(dev) for m, f in model_features(model, scored).items()}
    present = {m: x.present.to(dev) for m, x in scored.items()}
    out = model.forward_features(feats, present).fused.argmax(-1).cpu() == targets[index]
    return out & torch.stack([x.present for x in scored.values()]).any(dim=0)


def _with(inputs: dict[str, ModalityInputs], m: str, rows: list[int]) -> list[int]:
    return [i for i in rows if bool(inputs[m].present[i])]


def heldout_worse(base_hits: torch.Tensor, new_hits: torch.Tensor, tolerance: float = BASE_TOLERANCE) -> bool:
    """Whether a new model loses more than ``tolerance`` of accuracy on rows the base never trained on
    (``Tensor[N]`` of bools each): rows lost minus rows won, over N. No test of chance: there the base is as right
    as on new inputs of its own domain, and a fine-tune is never to be worse where it was right."""
    n = len(base_hits)
    return bool(n) and int((base_hits & ~new_hits).sum()) - int((new_hits & ~base_hits).sum()) > tolerance * n


def _acc(hits: torch.Tensor) -> float:
    return round(hits.double().mean().item(), 4) if len(hits) else 0.0


def check_branch(
    job: Job, m: str, base: MultiModalModel, folds: Folds | None
) -> tuple[dict[str, Any], list[MultiModalModel]]:
    """The verdict for branch ``m`` — ``{"kept": "base"|"finetuned", "alpha", "base": acc, "finetuned": acc,
    "rows": n, "folds": k}`` (accuracies over the annotations with ``m``, each predicted by a copy fine-tuned
    without its fold), with ``"base_rows"`` and ``"heldout_rows"``: ``{"base", "finetuned", "rows"}`` (the same
    over the base's rows in the training split, and over the memory's held-out rows) where there are such rows,
    and ``"worse_on"`` when the base is kept; or ``{"kept": "finetuned", "rows": n, "reason": ...}`` when there
    are too few annotations — and the folds' models (at the chosen ``alpha``).

    ``alpha`` (WiSE-FT, ``cfg.wise_ft``: from :data:`ume_mma.keepskills.ALPHAS`, else 0 or 1): the branch is
    ``(1 - alpha) * base + alpha * finetuned``; the chosen one is the most accurate on the annotations among those
    better than the base there beyond chance (:func:`paired_worse`: over some forty annotations a win by an item or
    two is noise) and not worse on the held-out rows (:func:`heldout_worse`; without them: not worse on the base's
    rows beyond chance); alpha = 0 (the base's branch, ``"kept": "base"``) when none is.
    ``"finetuned"`` etc. are alpha = 1's accuracies; ``"alphas"`` lists each alpha's."""
    if folds is None:
        rows = job.annotated_train + len(job.targets[job.cfg.val_split])
        return {"kept": "finetuned", "rows": rows, "reason": "too few annotations to tell"}, []
    base_model, models = _unimodal(job, m, base), []
    alphas = keepskills.ALPHAS if job.cfg.wise_ft else (0.0, 1.0)
    hits: dict[float, dict[str, list[torch.Tensor]]] = {a: {} for a in alphas}
    for k in range(len(folds.folds)):
        with _fold_training(job, folds, k, [m]) as split:
            models.append(job.train(split, _unimodal(job, m, base), job.unimodal_epochs(m), job.lr([m]), 0.0))
        for a in alphas:
            model = _mix(job, m, base, base_model, models[-1], a)
            for prefix, inputs, targets, rows in folds.scored(k):
                hits[a].setdefault(prefix, []).append(_hits(model, inputs, targets, _with(inputs, m, rows), [m]))
    h = {a: {name: torch.cat(v) for name, v in hits[a].items()} for a in alphas}
    base_h, tuned_h = h[0.0], h[1.0]
    if len(base_h[""]) < MIN_ROWS:
        return {"kept": "finetuned", "rows": len(base_h[""]), "reason": "too few annotations to tell"}, models

    def worse_on(a: float) -> str | None:
        if not paired_worse(h[a][""], base_h[""], 0.0):  # a win by an item or two on forty annotations is noise
            return "annotations"
        if "heldout_rows." in base_h:  # rows the base never trained on say what a fine-tune loses
            return "held-out rows" if heldout_worse(base_h["heldout_rows."], h[a]["heldout_rows."]) else None
        if paired_worse(base_h["base_rows."], h[a]["base_rows."], BASE_TOLERANCE):
            return "base rows"
        return None

    ok = [a for a in alphas if a > 0 and worse_on(a) is None]
    held = "heldout_rows." if "heldout_rows." in base_h else "base_rows."
    alpha = max(ok, key=lambda a: (_acc(h[a][""]), _acc(h[a][held]), -a)) if ok else 0.0
    verdict: dict[str, Any] = {"kept": "finetuned" if alpha else "base", "alpha": alpha, "base": _acc(base_h[""]),
                               "finetuned": _acc(tuned_h[""]), "rows": len(base_h[""]),
                               "folds": len(folds.folds)}  # fmt: skip
    if not alpha:
        verdict["worse_on"] = worse_on(1.0) or "annotations"
    for prefix in ("base_rows.", "heldout_rows."):
        if n := len(base_h.get(prefix, ())):
            verdict[prefix[:-1]] = {"base": _acc(base_h[prefix]), "finetuned": _acc(tuned_h[prefix]), "rows": n}
    if job.cfg.wise_ft:
        verdict["alphas"] = {str(a): {name[:-1] or "annotations": _acc(v) for name, v in h[a].items()}
                             for a in alphas}  # fmt: skip
    return verdict, [_mix(job, m, base, base_model, f, alpha) for f in models]


def _mix(job: Job, m: str, base: MultiModalModel, base_model: MultiModalModel, tuned: MultiModalModel,
         alpha: float) -> MultiModalModel:  # fmt: skip
    """Branch ``m`` at WiSE-FT ``alpha`` between ``base_model`` (0) and ``tuned`` (1): those two as they are, else a
    new model."""
    if alpha in (0.0, 1.0):
        return base_model if alpha == 0.0 else tuned
    return keepskills.interpolate(base_model, tuned, alpha, _unimodal(job, m, base).to(_device(tuned)))


def _device(model: MultiModalModel) -> torch.device:
    return model.heads[model.modalities[0]].weight.device


def choose_fusion(
    job: Job,
    base: MultiModalModel,
    folds: Folds,
    fold_models: dict[str, list[MultiModalModel]],
    choose: Callable[[dict[str, float], str], str],
    tie: str,
) -> dict[str, Any]:
    """UME or MMA by the same cross-validation: per fold, UME and MMA are built from that fold's branches (the
    base's where the guard kept it) and MMA is refitted on the fold's training rows; both answer the held-out
    fold with every modality as present as it is, and so do the fold's base rows. ``{"chosen", "ume": acc, "mma":
    acc, "rows", "folds"}`` (plus ``"base_rows": {"ume", "mma", "rows"}`` where there are base rows). The base's
    fusion ``tie`` is kept unless the other is better on the annotations beyond chance
    (:func:`ume_mma.evidence.paired_worse`: a fold of forty items moves in steps of two or three points, so a win
    by an item or two is noise); a fusion worse than the other on the base rows by the same test is not chosen.
    ``choose``: the run's UME-MMA rule (``ume_mma.train.choose_ume_mma``), for a base fused otherwise."""
    cfg, mods = job.cfg, sorted(job.specs)
    hits: dict[str, list[torch.Tensor]] = {"ume": [], "mma": [], "kept": []}
    on_base: dict[str, list[torch.Tensor]] = {"ume": [], "mma": [], "kept": []}
    on_held: dict[str, list[torch.Tensor]] = {"ume": [], "mma": [], "kept": []}
    for k, fold in enumerate(folds.folds):
        uni = {m: _unimodal(job, m, base) if m in job.keep_base or not fold_models.get(m) else fold_models[m][k]
               for m in mods}  # fmt: skip
        ume = job.fused_from_unimodal(uni, "ume", fill="drop")
        kept = job.fused_from_unimodal(uni, "mma", fill=cfg.fill)  # the base's MMA fusion, not refitted
        with _fold_training(job, folds, k, mods) as split:
            mma = job.train(split, job.fused_from_unimodal(uni, "mma", fill=cfg.fill), cfg.mma_epochs, cfg.mma_lr,
                            cfg.dropout_p)  # fmt: skip
        for name, model in (("ume", ume), ("mma", mma), ("kept", kept)):
            hits[name].append(_hits(model, folds.pool, folds.targets, fold, mods))
            on_base[name].append(_hits(model, folds.base_inputs, folds.base_targets, folds.base_folds[k], mods))
            if folds.held_folds:
                on_held[name].append(_hits(model, folds.held_inputs, folds.held_targets, folds.held_folds[k], mods))
    h = {name: torch.cat(v) for name, v in hits.items()}
    kept_h = h.pop("kept")
    acc = {name: round(v.double().mean().item(), 4) for name, v in h.items()}
    if tie in h:
        other = {"ume": "mma", "mma": "ume"}[tie]
        chosen = other if paired_worse(h[other], h[tie], 0.0) else tie
    else:
        chosen = choose(acc, tie)
    out = {"chosen": chosen, **acc, "rows": len(folds.targets), "folds": len(folds.folds)}
    if n := len(folds.base_targets):
        b = {name: torch.cat(v) for name, v in on_base.items()}
        out["base_rows"] = {**{name: round(v.double().mean().item(), 4) for name, v in b.items()}, "rows": n}
        other = {"ume": "mma", "mma": "ume"}[out["chosen"]]
        if not folds.held_folds and paired_worse(b[other], b[out["chosen"]], BASE_TOLERANCE):
            out["chosen"] = other
    held = {name: torch.cat(v) for name, v in on_held.items()} if folds.held_folds else {}
    if held:
        out["heldout_rows"] = {**{n: _acc(v) for n, v in held.items() if n != "kept"}, "rows": len(folds.held_targets)}
        other = {"ume": "mma", "mma": "ume"}[out["chosen"]]
        if heldout_worse(held[other], held[out["chosen"]]):
            out["chosen"] = other
    if tie == "mma" and cfg.refit_guard and not job.finetune.added_labels:  # a new label needs the refit
        out["kept"] = _acc(kept_h)
        # the refitted MMA fusion replaces the base's only where it is better on the annotations, beyond chance
        better = paired_worse(h["mma"], kept_h, 0.0)
        out["refit"] = better and not (held and heldout_worse(held["kept"], held["mma"]))
    return out


def notes(verdicts: dict[str, dict[str, Any]], choice: dict[str, Any] | None = None) -> str:
    """The model card's lines on the branch guard and the cross-validated UME/MMA choice."""
    lines = ["", "Branch guard (a branch's fine-tuned version replaces the base's only where it is not worse):", ""]
    for m, v in sorted(verdicts.items()):
        if "reason" in v:
            lines.append(f"- **{m}:** fine-tuned ({v['reason']}: {v['rows']} rows)")
            continue
        what = "kept from the base" if v["kept"] == "base" else "fine-tuned"
        line = (
            f"- **{m}:** {what} ({v['folds']}-fold cross-validation over {v['rows']} annotations: "
            f"base {100 * v['base']:.1f}%, fine-tuned {100 * v['finetuned']:.1f}%"
        )
        for key, what in (("base_rows", "of the base's rows"), ("heldout_rows", "held-out rows")):
            if key in v:
                b = v[key]
                line += f"; over {b['rows']} {what}: base {100 * b['base']:.1f}%, "
                line += f"fine-tuned {100 * b['finetuned']:.1f}%"
        if 0 < v.get("alpha", 1.0) < 1:
            line += f"; weights {v['alpha']:g} of the way from the base's to the fine-tuned (WiSE-FT)"
        lines.append(line + (f"; worse on the {v['worse_on']})" if v.get("worse_on") else ")"))
    if choice:
        line = (
            f"- **fusion:** `{choice['chosen']}` by the same cross-validation over {choice['rows']} annotations "
            f"(UME {100 * choice['ume']:.1f}%, MMA {100 * choice['mma']:.1f}%"
        )
        for key, what in (("base_rows", "of the base's rows"), ("heldout_rows", "held-out rows")):
            if key in choice:
                b = choice[key]
                line += f"; over {b['rows']} {what}: UME {100 * b['ume']:.1f}%, MMA {100 * b['mma']:.1f}%"
        if "refit" in choice:
            line += f"; the base's MMA fusion, not refitted: {100 * choice['kept']:.1f}%, "
            line += "replaced by the refit" if choice["refit"] else "kept (the refit was worse)"
        lines.append(line + ")")
    return "\n".join(lines)
