"""Fitting the per-branch correctness estimate (:mod:`ume_mma.correctness`) on validation data plus simulated drift.

For each branch with reliability fields: the validation rows that have its modality are decoded through the
library's one decode path (:class:`~ume_mma.decode.Decoder`), passed as they are and through every **fitting**
drift family of that modality (:func:`ume_mma.drift.list_drifts` with ``split="fit"``) at each severity of
:data:`SEVERITIES` (seeded per row), encoded, and their signals and right/wrong outcomes collected; the
logistic model is fitted on all of them. Held-out families, test splits and shifted sets are never read:
:func:`fit_on_dataset` loads one split and refuses ``test`` and shifted folders.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ume_mma.correctness import FEATURES, MODEL, Correctness, branch_signals, fit_logistic
from ume_mma.decode import Decoder
from ume_mma.drift import Drift, apply_drift, list_drifts
from ume_mma.evaluate import targets_of
from ume_mma.models import MultiModalModel

SEVERITIES = (0.5, 1.0)
CHUNK = 64


@torch.no_grad()
def drifted_features(
    model: MultiModalModel,
    samples: Sequence[Any],
    modality: str,
    drift: Drift | None = None,
    seed: int = 0,
    decoder: Decoder | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder outputs ``[n, D]`` and targets ``[n]`` of the ``samples`` that have ``modality``, each decoded, passed
    through ``drift`` (None: as they are; seeded by ``[seed, row index]``) and encoded by ``model``'s encoder."""
    encoder = model.encoders[modality]
    encoder.eval()
    decoder = decoder or Decoder.for_encoders(dict(model.encoders))
    rows = [i for i, s in enumerate(samples) if getattr(s, modality, None) is not None]
    out = []
    for start in range(0, len(rows), CHUNK):
        raws = []
        for i in rows[start : start + CHUNK]:
            raw = decoder.sample(samples[i], modality)
            raws.append(raw if drift is None else apply_drift(raw, drift.name, drift.severity, [seed, i]))
        out.append(encoder(_to(encoder.preprocess(raws), encoder.device)).float().cpu())
    dim = encoder.embed_dim
    feats = torch.cat(out) if out else torch.zeros(0, dim)
    return feats, targets_of([samples[i] for i in rows], model.labels)


def _to(batch: Any, device: Any) -> Any:
    return {k: v.to(device) for k, v in batch.items()} if isinstance(batch, dict) else batch.to(device)


def outcomes(model: MultiModalModel, feats: torch.Tensor, targets: torch.Tensor, modality: str) -> torch.Tensor:
    """``BoolTensor[n]``: whether the branch's answer on ``feats`` is ``targets``."""
    head = model.heads[modality]
    with torch.no_grad():
        return head(feats.to(head.weight.device)).argmax(-1).cpu() == targets


def fit_rows(
    model: MultiModalModel,
    samples: Sequence[Any],
    severities: Sequence[float] = SEVERITIES,
    seed: int = 0,
) -> dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """modality -> condition (``"clean"`` or a drift such as ``"image.blur@0.5"``) -> (signals ``[n, F]``, right
    ``[n]``), for every branch with reliability fields, over the fitting families only."""
    if model.reliability is None:
        raise ValueError("a correctness estimate needs the model's reliability fields (python -m ume_mma.calibrate)")
    decoder = Decoder.for_encoders(dict(model.encoders))
    out: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
    for m in model.modalities:
        if m not in model.reliability:
            continue
        drifts = [None] + [Drift(n, s) for n in list_drifts(m, "fit") for s in severities]
        for d in drifts:
            feats, y = drifted_features(model, samples, m, d, seed, decoder)
            if len(y):
                sig = branch_signals(model, {m: feats})[m]
                out.setdefault(m, {})["clean" if d is None else str(d)] = (sig, outcomes(model, feats, y, m))
    return out


def fit_correctness(
    model: MultiModalModel,
    samples: Sequence[Any],
    severities: Sequence[float] = SEVERITIES,
    seed: int = 0,
    fitted_on: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(ModelConfig.correctness, report)`` fitted on validation ``samples`` and their fitting drifts. A branch
    whose rows are all right (or all wrong) gets no estimate; the report says so."""
    rows = fit_rows(model, samples, severities, seed)
    branches, report = {}, {}
    for m, conds in rows.items():
        sig = torch.cat([s for s, _ in conds.values()])
        right = torch.cat([r for _, r in conds.values()])
        acc = {c: float(r.double().mean()) for c, (_, r) in conds.items()}
        report[m] = {"rows": len(right), "accuracy": acc}
        try:
            branches[m] = fit_logistic(sig, right)
        except ValueError as exc:
            report[m]["skipped"] = str(exc)
    if not branches:
        raise ValueError("no branch could be fitted: every condition was all right or all wrong")
    families = {m: list_drifts(m, "fit") for m in rows}
    held_out = {m: list_drifts(m, "heldout") for m in rows}
    info = dict(fitted_on or {}) | {"n": len(samples), "severities": list(severities), "seed": seed}
    info |= {"families": families, "held_out_families": held_out}
    data = {"model": MODEL, "features": list(FEATURES), "fitted_on": info, "branches": branches}
    Correctness(data)  # checks what was fitted
    return data, report


def with_correctness(model: MultiModalModel, data: dict[str, Any] | None) -> MultiModalModel:
    """``model`` with ``ModelConfig.correctness`` set to ``data`` (None removes it), sharing its weights. A model
    that fuses by correctness keeps its fusion's keys (base, alpha, tau, abstain) where ``data`` has none, and
    falls back to its base mode when the estimate is removed."""
    cfg, fusion = model.config, model.config.fusion
    if fusion == "correctness" and data is not None:
        data = {k: v for k, v in cfg.correctness.items() if k in ("base", "alpha", "tau", "abstain")} | data
    elif fusion == "correctness":
        fusion = cfg.correctness["base"]
    new = model.derive(dataclasses.replace(cfg, correctness=data, fusion=fusion))
    if model.reliability is not None:
        new.reliability.load_state_dict(model.reliability.state_dict())
    return new


def fit_on_dataset(
    model: MultiModalModel,
    data_dir: str | Path,
    split: str = "val",
    limit: int | None = None,
    severities: Sequence[float] = SEVERITIES,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`fit_correctness` on ``split`` of the dataset at ``data_dir`` (its first ``limit`` rows). Only that
    split is read; ``test`` and shifted sets (``build_info.json`` of a ``*-shifted`` benchmark) are refused."""
    from ume_mma.data.format import load_dataset

    if split == "test":
        raise ValueError("a correctness estimate is never fitted on a test split: use the validation split")
    info = Path(data_dir) / "build_info.json"
    if info.is_file() and str(json.loads(info.read_text()).get("benchmark", "")).endswith("shifted"):
        raise ValueError(f"{data_dir} is a shifted set, kept for measuring: fit on the base's validation split")
    samples = load_dataset(data_dir, split=split).samples[:limit]
    if not samples:
        raise ValueError(f"{data_dir}: no samples in split {split!r}")
    return fit_correctness(model, samples, severities, seed, {"data": str(data_dir), "split": split})
