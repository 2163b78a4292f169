"""The fusion registry: a fusion mode is a small ``nn.Module`` registered under a name.

A mode turns branch logits (plus features, presence masks, the model's heads and missing tokens when it
needs them) into fused scores ``Tensor[B, C]``. It carries its own one-line ``description`` (model cards,
the app). This module imports no mode: each mode module registers itself (see ``ume_mma/fusion/__init__.py``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from ume_mma.models import ModelConfig

#: How late fusion treats a missing modality: ``drop`` its term, feed a ``zero`` feature, or a learned ``token``.
FILLS: tuple[str, ...] = ("drop", "zero", "token")


@dataclass(frozen=True)
class FusionInputs:
    """Everything a fusion mode may use, for a batch of B samples and C classes (keys sorted by modality).

    Attributes:
        branches: modality -> ``Tensor[B, C]`` logits of each branch that has features (rows of missing
            samples are meaningless: read them through ``present``).
        feats: modality -> ``Tensor[B, D_m]`` encoder outputs; a modality missing in every sample may be absent.
        present: modality -> ``BoolTensor[B]`` for every modality of the model (at least one True per sample).
        heads: modality -> the branch head ``nn.Linear(D_m, C)``.
        missing_tokens: modality -> learned ``Parameter[D_m]`` (only when the mode uses ``fill="token"``).
        fill: the model's fill strategy (one of :data:`FILLS`).
        num_classes: C.
        reliability: modality -> ``Tensor[B]`` in [0, 1] (1 = like the training data), for the branches the
            model has reliability statistics for (:mod:`ume_mma.reliability`); None when it has none.
        correctness: modality -> ``Tensor[B]`` in [0, 1], the estimated probability that the branch is right
            (:mod:`ume_mma.correctness`), for the branches the model has an estimate for; None when it has none.
    """

    branches: dict[str, torch.Tensor]
    feats: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    heads: nn.ModuleDict
    missing_tokens: nn.ParameterDict
    fill: str
    num_classes: int
    reliability: dict[str, torch.Tensor] | None = None
    correctness: dict[str, torch.Tensor] | None = None


class Fusion(nn.Module):
    """Base of the fusion modes. Subclasses set ``description`` and implement ``forward``.

    ``uses_fill``: whether the model's ``fill`` applies (late fusion); when False the mode must ignore
    missing branches itself and the model creates no missing tokens. Parameters a mode creates in
    ``__init__`` are saved in checkpoints under ``fusion.``.

    ``takes_weights``: whether ``forward(x, weights)`` accepts per-sample branch weights (modality ->
    ``Tensor[B]``, 1 = the branch counts as usual); a weight of exactly 1 everywhere must give bitwise the
    unweighted output. The ``reliability`` mode weighs such a base mode.
    """

    name: ClassVar[str] = ""  # set by register_fusion
    description: ClassVar[str] = ""
    uses_fill: ClassVar[bool] = False
    takes_weights: ClassVar[bool] = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def check_config(cls, config: ModelConfig) -> None:
        """Raise ``ValueError`` when ``config`` lacks what this mode needs (called when a config is built)."""

    def branch_weights(self, x: FusionInputs) -> dict[str, torch.Tensor] | None:
        """Per-sample weights this mode gives the branches (modality -> ``Tensor[B]``), for reports; None when it
        weighs none (the default)."""
        return None

    def forward(self, x: FusionInputs) -> torch.Tensor:  # pragma: no cover - abstract
        """Fused scores ``Tensor[B, C]`` (log-probability-like: argmax = prediction, softmax = probabilities)."""
        raise NotImplementedError


class WeighingFusion(Fusion):
    """Base of the modes that weigh a base mode's present branches per sample (``reliability``,
    ``correctness``): ``weights(x)`` computes them, ``branch_weights(x)`` returns them, computed once per
    :class:`FusionInputs` (the model reports the weights its forward used without computing them again)."""

    uses_fill = True  # the base's fill applies (a UME base records fill="drop": it drops missing branches)
    base: Fusion

    def weights(self, x: FusionInputs) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def branch_weights(self, x: FusionInputs) -> dict[str, torch.Tensor]:
        memo = getattr(self, "_memo", None)
        if memo is not None and memo[0]() is x:
            return memo[1]
        w = self.weights(x)
        self._memo = (weakref.ref(x), w)
        return w

    def forward(self, x: FusionInputs) -> torch.Tensor:
        return self.base(x, self.branch_weights(x))  # (B, C)


FUSIONS: dict[str, type[Fusion]] = {}


def register_fusion(name: str) -> Callable[[type[Fusion]], type[Fusion]]:
    """Class decorator: ``@register_fusion("ume")`` adds a :class:`Fusion` subclass under ``name``."""

    def wrap(cls: type[Fusion]) -> type[Fusion]:
        if not (isinstance(cls, type) and issubclass(cls, Fusion)):
            raise TypeError(f"fusion {name!r}: {cls!r} is not a Fusion subclass")
        if not cls.description or "\n" in cls.description:
            raise ValueError(f"fusion {name!r}: needs a one-line description")
        if FUSIONS.get(name, cls) is not cls:
            raise ValueError(f"fusion {name!r} is already registered")
        cls.name = name
        FUSIONS[name] = cls
        return cls

    return wrap


def get_fusion(name: str) -> type[Fusion]:
    """The fusion class registered under ``name``; unknown names raise ``ValueError`` listing the known ones."""
    try:
        return FUSIONS[name]
    except KeyError:
        raise ValueError(f"unknown fusion {name!r}; known: {', '.join(list_fusions())}") from None


def list_fusions() -> list[str]:
    return sorted(FUSIONS)
