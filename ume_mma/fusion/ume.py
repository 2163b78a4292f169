"""``ume``: the uni-modal ensemble (average of the present branches' class probabilities)."""

from __future__ import annotations

import torch

from ume_mma.fusion.base import Fusion, FusionInputs, register_fusion


@register_fusion("ume")
class UniModalEnsemble(Fusion):
    """Weighted mean of the present branches' probabilities (weights: ``ModelConfig.ume_weights``,
    default 1, times the per-sample ``weights`` when given); missing branches are always dropped. Returns the
    log of that mean, ``Tensor[B, C]``."""

    description = "uni-modal ensemble: mean of the class probabilities of the present modalities"
    takes_weights = True

    def forward(self, x: FusionInputs, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        fixed = self.config.ume_weights or {}
        num: torch.Tensor | float = 0.0
        den: torch.Tensor | float = 0.0
        for m, logits in x.branches.items():
            w = float(fixed.get(m, 1.0)) * x.present[m].to(logits.dtype).unsqueeze(1)  # (B, 1)
            if weights and m in weights:
                w = w * weights[m].unsqueeze(1)
            num = num + w * logits.softmax(dim=-1)
            den = den + w
        return torch.log((num / den).clamp_min(1e-12))  # (B, C)
