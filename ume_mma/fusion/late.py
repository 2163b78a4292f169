"""``mma`` and ``naive``: late fusion, the sum of the branch logits, with a fill for missing modalities."""

from __future__ import annotations

import torch

from ume_mma.fusion.base import Fusion, FusionInputs, register_fusion


class LateFusion(Fusion):
    """Sum over modalities of ``head_m(feature_m)`` -> ``Tensor[B, C]``. A missing modality's term is
    dropped (``fill="drop"``) or computed from a zero feature (``"zero"``) or a learned token (``"token"``).

    ``weights`` (modality -> ``Tensor[B]``, optional) scale the terms of present branches; a missing
    modality's fill term is never weighted."""

    uses_fill = True
    takes_weights = True

    def forward(self, x: FusionInputs, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        any_mask = next(iter(x.present.values()))
        b, device = len(any_mask), any_mask.device
        fused: torch.Tensor | None = None  # the sum of the terms so far (the first term itself: no zeros + term)
        for m, present in x.present.items():
            keep = present.unsqueeze(1)  # (B, 1)
            w = weights.get(m) if weights else None
            f = x.feats.get(m)
            if x.fill == "drop":
                if f is None:
                    continue
                term = keep * x.branches[m]
                term = term if w is None else w.unsqueeze(1) * term
            else:
                everywhere = f is not None and bool(present.all())
                if everywhere:  # every sample present: the branch's own logits (no 2nd head), weighed everywhere
                    term = x.branches[m] if w is None else w.unsqueeze(1) * x.branches[m]
                else:
                    head = x.heads[m]
                    if x.fill == "token":
                        fill = x.missing_tokens[m].expand(b, -1)  # (B, D_m)
                    else:
                        fill = torch.zeros(b, head.in_features, device=device)
                    term = head(fill if f is None else torch.where(keep, f, fill))
                    if w is not None:
                        term = torch.where(keep, w.unsqueeze(1), torch.ones_like(w).unsqueeze(1)) * term
            fused = term if fused is None else fused + term
        if fused is None:
            return torch.zeros(b, x.num_classes, device=device)
        return fused.clone() if any(fused is t for t in x.branches.values()) else fused  # never a branch's tensor


@register_fusion("mma")
class MMAFusion(LateFusion):
    """Late fusion initialised from uni-modal models and fine-tuned with modality dropout (the paper's MMA)."""

    description = "late fusion initialised from uni-modal models, fine-tuned with modality dropout"


@register_fusion("naive")
class NaiveFusion(LateFusion):
    """Late fusion trained jointly, without missing-modality augmentation (the baseline)."""

    description = "late fusion trained jointly without missing-modality augmentation"
