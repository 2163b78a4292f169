"""``reliability``: a base fusion mode whose present branches are weighed by how close their inputs are to the
training data, so that a branch whose input drifted counts less.

Per sample, each present branch m has a reliability ``r_m`` in [0, 1] (:mod:`ume_mma.reliability`) and the
weight ``w_m = (r_m / max_present r) ** alpha``: the most reliable present branch keeps weight exactly 1, the
others are scaled down. The weights go to the base mode (``ModelConfig.reliability["base"]``: ``mma``,
``naive`` or ``ume``), which applies them to the present branches' terms (late fusion: logits; UME:
probabilities). Hence:

- a sample with one present branch fuses bitwise as the base mode (its weight is 1);
- a missing modality behaves exactly as in the base mode (presence masks and ``fill`` as before);
- ``alpha = 0``, or branches that are equally reliable, give the base mode's output;
- a branch far from its training distribution (``r`` near 0) next to an in-distribution one fades out.

``alpha`` is chosen on validation (:func:`ume_mma.calibrate.choose_alpha`) and stored in the config.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from ume_mma.fusion.base import Fusion, FusionInputs, WeighingFusion, get_fusion, register_fusion

if TYPE_CHECKING:
    from ume_mma.models import ModelConfig

R_MIN = 1e-6  # reliabilities are clamped here before the log: weights stay finite


def branch_weights(
    reliability: dict[str, torch.Tensor], present: dict[str, torch.Tensor], alpha: float, tau: float = 1.0
) -> dict[str, torch.Tensor]:
    """``w_m = min(1, (r_m / (tau * max over present r)) ** alpha)``: modality -> ``Tensor[B]`` in (0, 1], exactly
    1 for the most reliable present branch, for those within a factor ``tau`` (0 < tau <= 1) of it and for rows
    where m is missing. Modalities without a reliability count as r = 1. Float32; in numpy for CPU tensors that
    need no gradient (a predict's batch of one: a dozen numpy calls instead of a dozen torch dispatches; the same
    arithmetic, equal to the torch path within float32 rounding of ``log``/``exp``)."""
    mods = sorted(present)
    tensors = [*present.values(), *reliability.values()]
    if all(t.device.type == "cpu" and not t.requires_grad for t in tensors):
        return _branch_weights_np(reliability, present, mods, alpha, tau)
    ones = torch.ones_like(present[mods[0]], dtype=torch.float32)
    log_w = torch.stack(
        [alpha * reliability[m].float().clamp_min(R_MIN).log() if m in reliability else 0 * ones for m in mods]
    )  # (M, B)
    mask = torch.stack([present[m] for m in mods])  # (M, B)
    top = log_w.masked_fill(~mask, float("-inf")).amax(0)  # (B,)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    rel = (log_w - top - alpha * math.log(tau)).clamp_max(0.0) if tau != 1.0 else log_w - top
    w = rel.exp().where(mask, torch.ones_like(log_w))  # (M, B)
    return {m: w[i] for i, m in enumerate(mods)}


def _branch_weights_np(
    reliability: dict[str, torch.Tensor], present: dict[str, torch.Tensor], mods: list[str], alpha: float, tau: float
) -> dict[str, torch.Tensor]:
    """:func:`branch_weights` of CPU tensors in float32 numpy (the torch path's operations, one for one)."""
    mask = np.stack([present[m].numpy() for m in mods]).astype(bool, copy=False)  # (M, B)
    log_w = np.zeros(mask.shape, dtype=np.float32)  # (M, B); 0: no reliability (r = 1)
    for i, m in enumerate(mods):
        if m in reliability:
            r = reliability[m].detach().numpy().astype(np.float32, copy=False)
            log_w[i] = np.float32(alpha) * np.log(np.maximum(r, np.float32(R_MIN)))
    top = np.where(mask, log_w, np.float32(-np.inf)).max(0)  # (B,)
    top = np.where(np.isfinite(top), top, np.float32(0))
    rel = log_w - top
    if tau != 1.0:
        rel = np.minimum(rel - np.float32(alpha * math.log(tau)), np.float32(0))
    w = np.where(mask, np.exp(rel), np.float32(1))  # (M, B)
    return {m: torch.from_numpy(w[i]) for i, m in enumerate(mods)}


def check_weighing(cls: type[Fusion], config: ModelConfig, fields: dict | None, what: str) -> None:
    """Raise ``ValueError`` unless ``fields`` (the config's ``reliability`` or ``correctness``) name a ``base``
    mode that takes weights (with the fill it needs) and an ``alpha`` >= 0, for the weighing mode ``cls``."""
    fields = fields or {}
    if "base" not in fields or "alpha" not in fields:
        raise ValueError(f"fusion {cls.name!r} needs {what} with a 'base' mode and 'alpha'")
    base = get_fusion(fields["base"])
    if base is cls or not base.takes_weights:
        raise ValueError(f"fusion {cls.name!r} cannot weigh the branches of {fields['base']!r}")
    if not base.uses_fill and config.fill != "drop":
        raise ValueError(f"fusion {cls.name!r} on {fields['base']!r} (which drops missing branches) needs fill='drop'")
    if not float(fields["alpha"]) >= 0:
        raise ValueError(f"{cls.name} alpha must be >= 0, got {fields['alpha']!r}")


@register_fusion("reliability")
class ReliabilityFusion(WeighingFusion):
    """A base mode (``config.reliability["base"]``) with present branches weighed by ``(r_m / r_max) ** alpha``."""

    description = "a base fusion whose present branches are weighed by their per-sample reliability"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.check_config(config)
        self.base = get_fusion(config.reliability["base"])(config)
        self.alpha = float(config.reliability["alpha"])

    @classmethod
    def check_config(cls, config: ModelConfig) -> None:
        check_weighing(cls, config, config.reliability, "reliability statistics")

    def weights(self, x: FusionInputs) -> dict[str, torch.Tensor]:
        return branch_weights(x.reliability or {}, x.present, self.alpha)
