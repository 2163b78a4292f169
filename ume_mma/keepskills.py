"""Keeping a base checkpoint's skills without its data while fine-tuning on a few annotations.

Three ways, each a :class:`~ume_mma.trainconfig.TrainConfig` knob of a fine-tune (``init_from``):

- **Distillation** (LwF-style, ``distill`` = weight, ``distill_t`` = temperature): every training batch (the new
  inputs and the replay rows) adds ``distill * T² * KL(p_base || p)`` between the base's and the model's
  temperature-softened predictions (:func:`distill_loss`). The teacher is the base restricted to the phase's
  modalities (its branch for a uni-modal phase, the whole base for the fused one), under the same modality
  dropout and augmentation as the student.
- **L2-SP** (``l2sp`` = weight): ``l2sp * Σ ||θ - θ_base||²`` over the trained parameters the base has under the
  same name and shape (:func:`l2sp_penalty`): a pull toward the starting point, not toward zero.
- **WiSE-FT** (``wise_ft``): a branch's weights become ``(1 - α) θ_base + α θ_finetuned`` (:func:`interpolate`),
  α chosen from :data:`ALPHAS` by the branch guard's cross-validation folds (:mod:`ume_mma.branchguard`); α = 0 is
  the base's branch, α = 1 the fine-tuned one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the WiSE-FT mixing coefficients the folds choose from


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² * KL(softmax(teacher / T) || softmax(student / T))``, mean over the batch (``student``, ``teacher``:
    ``Tensor[B, C]`` scores; the teacher gets no gradient). The T² keeps the gradient's scale as T changes."""
    t = temperature
    target = F.log_softmax(teacher.detach() / t, dim=-1)
    return F.kl_div(F.log_softmax(student / t, dim=-1), target, log_target=True, reduction="batchmean") * t * t


def anchor_of(model: nn.Module, base: nn.Module) -> dict[str, torch.Tensor]:
    """The base's copy (detached) of each trainable parameter of ``model`` that the base has with the same name
    and shape: what :func:`l2sp_penalty` pulls toward."""
    own = dict(base.named_parameters())
    return {
        name: own[name].detach().clone()
        for name, p in model.named_parameters()
        if p.requires_grad and name in own and own[name].shape == p.shape
    }


def l2sp_penalty(model: nn.Module, anchor: dict[str, torch.Tensor]) -> torch.Tensor:
    """``Σ ||θ - θ_anchor||²`` over the parameters of ``model`` named in ``anchor`` (a 0-dim tensor)."""
    params = dict(model.named_parameters())
    terms = [(params[n] - a.to(params[n].device)).pow(2).sum() for n, a in anchor.items() if n in params]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


@torch.no_grad()
def interpolate(base: nn.Module, tuned: nn.Module, alpha: float, into: nn.Module) -> nn.Module:
    """``into``'s floating-point weights and buffers set to ``(1 - alpha) * base + alpha * tuned`` (the three
    modules share one architecture; integer buffers such as batch-norm counters are ``tuned``'s). Returns
    ``into``."""
    b, t = base.state_dict(), tuned.state_dict()
    out = {}
    for name, value in t.items():
        out[name] = torch.lerp(b[name].to(value), value, alpha) if value.is_floating_point() else value.clone()
    into.load_state_dict(out)
    return into
