"""Missing-modality augmentation (modality dropout) as a pure, seeded function."""

from __future__ import annotations

import torch

Mask = dict[str, torch.Tensor]


def modality_dropout(present: Mask, p: float, generator: torch.Generator) -> Mask:
    """Drop modalities at random, never all of a sample's present ones.

    Each sample that has at least two present modalities loses, with probability ``p``, exactly one
    of them, chosen uniformly among its present ones (the MMA recipe: "drop one modality with p").
    Samples with a single present modality are left as they are. Inputs are not modified.

    Args:
        present: modality -> ``BoolTensor[B]`` (True = present).
        p: probability that a sample loses one modality, in [0, 1].
        generator: seeded ``torch.Generator``; same seed and inputs -> same output.
    Returns:
        A new mask dict with the same keys and shapes.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    names = sorted(present)
    if not names:
        return {}
    stacked = torch.stack([present[m].bool() for m in names], dim=1)  # (B, M)
    count = stacked.sum(dim=1)  # (B,)
    drop = (torch.rand(len(stacked), generator=generator) < p) & (count >= 2)  # (B,)
    # Pick one present modality per sample: random scores, absent ones can never win.
    scores = torch.rand(stacked.shape, generator=generator).masked_fill(~stacked, -1.0)  # (B, M)
    victim = torch.nn.functional.one_hot(scores.argmax(dim=1), len(names)).bool()  # (B, M)
    out = stacked & ~(victim & drop.unsqueeze(1))
    return {m: out[:, i].clone() for i, m in enumerate(names)}


def missing_rate_mask(present: Mask, rate: float, generator: torch.Generator) -> Mask:
    """Evaluation protocol "missing rate r": each sample independently loses one of its present
    modalities (uniformly chosen) with probability ``r``; a sample never loses all of them.
    Same mechanics as :func:`modality_dropout`, named for what evaluation reports."""
    return modality_dropout(present, rate, generator)
