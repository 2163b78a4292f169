"""Does a checkpoint fit a dataset? Checked from the config and the metadata alone, before anything is
decoded or encoded, so that ``evaluate``, ``annotate import`` and jobs refuse a mismatch in a second.

A dataset fits a model when every label it has is one of the model's labels (a model cannot score, and a
fine-tune keeps, only its own labels) and it has at least one modality the model reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ume_mma.errors import UmeMmaError


class IncompatibleDataError(UmeMmaError, ValueError):
    """A dataset's labels or modalities do not fit a checkpoint (the message names both)."""


def few(values: Sequence[str], limit: int = 8) -> str:
    """``['a', 'b', ...]`` cut to ``limit`` items: ``['a', 'b', … 40 in all]``."""
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{f', … {len(values)} in all' if len(values) > limit else ''}]"


def check_modalities(model_modalities: Iterable[str], data_modalities: Iterable[str], *, model: str, data: str) -> None:
    """Raise :class:`IncompatibleDataError` unless the data has a modality the model reads."""
    mods, data_mods = sorted(model_modalities), sorted(data_modalities)
    if not set(mods) & set(data_mods):
        raise IncompatibleDataError(
            f"{data} has {', '.join(data_mods) or 'no modality'}, but {model} reads {', '.join(mods)}: "
            "no modality in common"
        )


def check_labels(model_labels: Iterable[str], data_labels: Iterable[str], *, model: str, data: str) -> None:
    """Raise :class:`IncompatibleDataError` unless every label of the data is one of the model's."""
    labels = sorted(model_labels)
    unknown = sorted(set(data_labels) - set(labels))
    if unknown:
        hint = "" if set(data_labels) & set(labels) else " (no label in common: is this the checkpoint of this data?)"
        raise IncompatibleDataError(
            f"{data} has labels {few(unknown)} that {model} does not know; it knows {few(labels)}{hint}"
        )


def check_fit(
    model_labels: Iterable[str],
    model_modalities: Iterable[str],
    data_labels: Iterable[str],
    data_modalities: Iterable[str],
    *,
    model: str,
    data: str,
) -> None:
    """Both checks: a shared modality first, then the labels. ``model`` and ``data`` name the two in the
    message (e.g. ``"checkpoint checkpoints/x"`` and the folder given)."""
    check_modalities(model_modalities, data_modalities, model=model, data=data)
    check_labels(model_labels, data_labels, model=model, data=data)


@dataclass(frozen=True)
class Fit:
    """What a model accepts (its labels and modalities), named for messages (``checkpoint checkpoints/x``)."""

    name: str
    labels: tuple[str, ...]
    modalities: tuple[str, ...]

    @classmethod
    def of(cls, model: Any, name: str) -> Fit:
        """From anything with ``labels`` and ``modalities``: a ModelConfig, a model, a Predictor."""
        return cls(name, tuple(model.labels), tuple(model.modalities))

    def check(self, data_labels: Iterable[str], data_modalities: Iterable[str], data: str) -> None:
        """:func:`check_fit` of this model and a dataset's labels and modalities."""
        check_fit(self.labels, self.modalities, data_labels, data_modalities, model=self.name, data=data)
