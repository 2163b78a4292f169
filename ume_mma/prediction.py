"""What a prediction is: the fused and per-branch results, as the app, the API and scripts receive them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from ume_mma.errors import InputError

__all__ = ["BranchResult", "Prediction", "calibrated_result", "fused_result", "modality_list", "result_of"]


@dataclass
class BranchResult:
    """One branch's (or the fused) result. The last three fields are set only for a branch of a checkpoint with
    calibration and reliability fields (:mod:`ume_mma.reliability`); ``to_dict`` then adds them as keys:

    - ``calibrated_confidence``: the top-class probability after the branch's temperature scaling, fitted on
      validation (the label is the same; ``confidences`` stay the raw softmax);
    - ``reliability``: 0..1, how close the branch's input is to its training data (0.95 at the median of
      validation inputs, 0.5 at their 95th percentile, towards 0 beyond);
    - ``off_distribution``: ``reliability < 0.5``, i.e. farther than 95% of validation inputs.

    ``fusion_weight`` (key only for a checkpoint whose fusion mode weighs branches, ``reliability`` or
    ``correctness``): how much the branch counted in the fused answer, 0..1 (1 = as in the base fusion; the
    branch weighed highest has 1).

    ``estimated_accuracy`` (key only for a branch of a checkpoint with a correctness estimate,
    :mod:`ume_mma.correctness`): the estimated probability that this branch's answer is right on this input.

    For a fused result of such a checkpoint: ``uncertain`` (no present branch is estimated more likely right
    than the checkpoint's abstain threshold) and, for a weighing mode, ``weights`` (modality -> its weight in
    this fused answer).
    """

    label: str
    confidences: dict[str, float]  # label -> probability, sorted by probability
    calibrated_confidence: float | None = None
    reliability: float | None = None
    off_distribution: bool | None = None
    fusion_weight: float | None = None
    estimated_accuracy: float | None = None
    uncertain: bool | None = None
    weights: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "confidences": self.confidences}
        if self.reliability is not None:
            out |= {
                "calibrated_confidence": self.calibrated_confidence,
                "reliability": self.reliability,
                "off_distribution": self.off_distribution,
            }
        if self.fusion_weight is not None:
            out["fusion_weight"] = self.fusion_weight
        if self.estimated_accuracy is not None:
            out["estimated_accuracy"] = self.estimated_accuracy
        if self.uncertain is not None:
            out["uncertain"] = self.uncertain
        if self.weights is not None:
            out["weights"] = self.weights
        return out


@dataclass
class Prediction:
    """What one predict call returns. ``sources``: modality -> which input fed that branch, or why an input that
    was given feeds none (``"text": "not used: this checkpoint has no text branch"``; keys only for inputs given
    or branches fed)."""

    checkpoint: str
    fusion: str
    modalities_used: list[str]
    fused: BranchResult
    branches: dict[str, BranchResult]
    sources: dict[str, str]
    frames: list[Image.Image] = field(default_factory=list)  # frames sampled from a video, if any
    # Fused result for every non-empty subset of ``modalities_used`` ("audio+image" -> result), when asked
    # for: a UI can then switch modalities off without another call (branches do not depend on the subset).
    subsets: dict[str, BranchResult] = field(default_factory=dict)

    @property
    def uncertain(self) -> bool | None:
        """Whether no present branch is trustworthy (None: the checkpoint has no correctness estimate)."""
        return self.fused.uncertain

    def to_dict(self) -> dict[str, Any]:
        out = {
            "checkpoint": self.checkpoint,
            "fusion": self.fusion,
            "modalities_used": self.modalities_used,
            "fused": self.fused.to_dict(),
            "branches": {m: b.to_dict() for m, b in self.branches.items()},
            "sources": self.sources,
        }
        if self.uncertain is not None:
            out["uncertain"] = self.uncertain
        return out


def modality_list(modalities: str | Iterable[str] | None) -> list[str] | None:
    """Enabled modalities as a list, None meaning all. A string is one name or comma-separated names
    (``"image"``, ``"audio, image"``), never split into letters; a blank string means all (None). Entries
    that are not strings raise InputError."""
    if modalities is None:
        return None
    if isinstance(modalities, str):
        return [m.strip() for m in modalities.split(",") if m.strip()] or None
    names = list(modalities)
    odd = [m for m in names if not isinstance(m, str)]
    if odd:
        raise InputError(f"modalities are names such as 'image' or 'audio'; got {odd[0]!r}")
    return names


def result_of(probs: torch.Tensor, labels: list[str], top_k: int | None) -> BranchResult:
    """``probs`` (``Tensor[C]``, any device) -> labels ranked by probability, as plain Python floats. Scores
    that are not finite raise InputError (a NaN would reach a client as a null confidence)."""
    if probs.dtype != torch.float32 or probs.device.type != "cpu":
        probs = probs.float().cpu()
    return _ranked(probs.tolist(), labels, top_k)


def _ranked(values: list[float], labels: list[str], top_k: int | None) -> BranchResult:
    """:func:`result_of` of probabilities already read out as Python floats."""
    if not all(map(math.isfinite, values)):
        raise InputError("the model gave NaN or infinite scores for these inputs; check them for corrupt data")
    order = sorted(range(len(values)), key=values.__getitem__, reverse=True)[: top_k or len(labels)]
    return BranchResult(label=labels[order[0]], confidences={labels[i]: round(values[i], 6) for i in order})


def calibrated_result(
    logits: torch.Tensor,
    labels: list[str],
    top_k: int | None,
    temperature: float | None,
    reliability: float | None,
    weight: float | None = None,
    estimate: float | None = None,
) -> BranchResult:
    """A branch's result from its logits (``Tensor[C]``), with the calibrated confidence, reliability and
    off-distribution flag when the checkpoint has a ``temperature`` and the branch a ``reliability``, and its
    fusion ``weight`` when the fusion mode weighs branches and its correctness ``estimate`` when the checkpoint
    has one. The calibrated confidence is computed in Python floats from the logits read out once (a batch of
    one: no tensor operations to dispatch)."""
    result = result_of(logits.softmax(-1), labels, top_k)
    result.fusion_weight = None if weight is None else round(float(weight), 6)
    result.estimated_accuracy = None if estimate is None else round(float(estimate), 6)
    if temperature is not None and reliability is not None:
        result.calibrated_confidence = round(top_probability(logits.cpu().tolist(), temperature), 6)  # exact floats
        result.reliability = round(float(reliability), 6)
        result.off_distribution = bool(reliability < 0.5)
    return result


def fused_result(
    probs: torch.Tensor,
    labels: list[str],
    top_k: int | None,
    uncertain: bool | None = None,
    weights: dict[str, float] | None = None,
) -> BranchResult:
    """The fused result from its probabilities (``Tensor[C]``), with the ``uncertain`` flag and the present
    branches' ``weights`` where the checkpoint gives them."""
    result = result_of(probs, labels, top_k)
    result.uncertain = None if uncertain is None else bool(uncertain)
    result.weights = None if weights is None else {m: round(float(w), 6) for m, w in sorted(weights.items())}
    return result


def top_probability(logits: list[float], temperature: float) -> float:
    """The largest probability of ``softmax(logits / temperature)`` (``logits``: C finite floats)."""
    top = max(logits)
    return 1.0 / math.fsum(math.exp((z - top) / temperature) for z in logits)
