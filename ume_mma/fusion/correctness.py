"""``correctness``: a base fusion mode whose present branches are weighed by the estimated probability that each
is right on this input (:mod:`ume_mma.correctness`), so a branch that is probably wrong fades and one that is
probably right counts, on one scale for every modality.

Per sample, each present branch m has an estimate ``c_m = P(branch m is right | input)`` and the weight
``w_m = min(1, (c_m / (tau * max_present c)) ** alpha)`` (:func:`ume_mma.fusion.reliability.branch_weights`):
the branch most likely right keeps weight exactly 1, and so does every branch within a factor ``tau`` of it
(``tau`` < 1 keeps the base's complementary fusion of branches that are both fairly likely right and fades only
a branch far less likely right than the best). Unlike the ``reliability`` mode, which weighs by how *familiar* an input
is (a Mahalanobis percentile, not comparable from one encoder to another), the estimate is a probability of
being right, fitted on validation data plus simulated drift. The weights go to the base mode
(``ModelConfig.correctness["base"]``: ``mma``, ``naive`` or ``ume``). Hence:

- a sample with one present branch fuses bitwise as the base mode (its weight is 1);
- a missing modality behaves exactly as in the base mode (presence masks and ``fill`` as before);
- ``alpha = 0``, or branches equally likely right, give the base mode's output;
- large ``alpha`` follows the branch most likely right.

``alpha`` is chosen on in-distribution validation *and* held-out simulated drift families
(:mod:`ume_mma.drift_choice`) and stored in the config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ume_mma.fusion.base import FusionInputs, WeighingFusion, get_fusion, register_fusion
from ume_mma.fusion.reliability import branch_weights, check_weighing

if TYPE_CHECKING:
    from ume_mma.models import ModelConfig


@register_fusion("correctness")
class CorrectnessFusion(WeighingFusion):
    """A base mode (``config.correctness["base"]``) with present branches weighed by ``(c_m / c_max) ** alpha``."""

    description = "a base fusion whose present branches are weighed by the estimated chance each is right"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.check_config(config)
        self.base = get_fusion(config.correctness["base"])(config)
        self.alpha = float(config.correctness["alpha"])
        self.tau = float(config.correctness.get("tau", 1.0))

    @classmethod
    def check_config(cls, config: ModelConfig) -> None:
        check_weighing(cls, config, config.correctness, "a correctness estimate")
        est = config.correctness
        if not 0 < float(est.get("tau", 1.0)) <= 1:
            raise ValueError(f"correctness tau must be in (0, 1], got {est.get('tau')!r}")

    def weights(self, x: FusionInputs) -> dict[str, torch.Tensor]:
        return branch_weights(x.correctness or {}, x.present, self.alpha, self.tau)
