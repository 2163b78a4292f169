"""The drift registry: a drift family is a small registered function on one modality's *decoded* input.

A family turns what :class:`~ume_mma.decode.Decoder` returns for one input (a ``PIL.Image`` for ``image``, an
:class:`~ume_mma.io.Audio` for ``audio``, a ``str`` for ``text``, an :class:`~ume_mma.io.VideoClip` for
``video``) into a drifted input of the same type, at a **severity** in [0, 1]: 0 is the identity (the input
itself is returned, no function runs), 1 the strongest drift the family models. Every family is seeded: the
same input, severity and seed give the same output (:func:`apply_drift`), and families chain
(:func:`compose`).

Each family belongs to one **split**: ``fit`` (what a later fit may learn from) or ``heldout`` (kept for
choosing and evaluating, never fitted on), so that no family is tuned to the data it is judged on.

This module imports no family: each family module registers itself (see ``ume_mma/drift/__init__.py``).
Names are ``modality.family`` (``image.blur``, ``audio.mp3``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ume_mma import io

MODALITIES = ("audio", "image", "text", "video")
SPLITS = ("fit", "heldout")
#: What each modality's families take and return (the decoded types of :mod:`ume_mma.decode`).
TYPES: dict[str, tuple[type, str]] = {
    "audio": (io.Audio, "an ume_mma.io.Audio"),
    "text": (str, "a str"),
    "video": (io.VideoClip, "an ume_mma.io.VideoClip"),
}

DriftFn = Callable[[Any, float, np.random.Generator], Any]


@dataclass(frozen=True)
class DriftFamily:
    """One registered family: ``fn(raw, severity, rng) -> raw`` for ``severity`` in (0, 1]."""

    name: str
    modality: str
    split: str
    description: str
    fn: DriftFn

    def __call__(self, raw: Any, severity: float, seed: int | Sequence[int] = 0) -> Any:
        return apply_drift(raw, self.name, severity, seed)


DRIFTS: dict[str, DriftFamily] = {}


def register_drift(name: str, split: str, description: str) -> Callable[[DriftFn], DriftFn]:
    """Function decorator: ``@register_drift("image.blur", "fit", "Gaussian blur ...")`` registers ``fn``."""
    modality = name.split(".", 1)[0]
    if modality not in MODALITIES or "." not in name:
        raise ValueError(f"drift {name!r}: names are 'modality.family' with a modality in {MODALITIES}")
    if split not in SPLITS:
        raise ValueError(f"drift {name!r}: split must be one of {SPLITS}, got {split!r}")
    if not description or "\n" in description:
        raise ValueError(f"drift {name!r}: needs a one-line description")

    def wrap(fn: DriftFn) -> DriftFn:
        if name in DRIFTS and DRIFTS[name].fn is not fn:
            raise ValueError(f"drift {name!r} is already registered")
        DRIFTS[name] = DriftFamily(name, modality, split, description, fn)
        return fn

    return wrap


def get_drift(name: str) -> DriftFamily:
    """The family registered under ``name``; unknown names raise ``ValueError`` listing the known ones."""
    try:
        return DRIFTS[name]
    except KeyError:
        raise ValueError(f"unknown drift {name!r}; known: {', '.join(list_drifts())}") from None


def list_drifts(modality: str | None = None, split: str | None = None) -> list[str]:
    """Registered family names, sorted; only those of ``modality`` and/or ``split`` when given."""
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown drift split {split!r}; known: {', '.join(SPLITS)}")
    return sorted(n for n, f in DRIFTS.items() if modality in (None, f.modality) and split in (None, f.split))


def check_severity(severity: Any) -> float:
    """``severity`` as a float if it is a finite number in [0, 1], else ``ValueError`` saying so."""
    if isinstance(severity, bool) or not isinstance(severity, (int, float, np.floating, np.integer)):
        raise ValueError(f"a drift severity is a number in [0, 1], got {severity!r}")
    s = float(severity)
    if not (math.isfinite(s) and 0.0 <= s <= 1.0):
        raise ValueError(f"a drift severity is a number in [0, 1], got {severity!r}")
    return s


def _check_raw(family: DriftFamily, raw: Any) -> None:
    if family.modality == "image":
        from PIL import Image

        ok, what = isinstance(raw, Image.Image), "a PIL.Image"
    else:
        kind, what = TYPES[family.modality]
        ok = isinstance(raw, kind)
    if not ok:
        raise ValueError(f"drift {family.name!r} takes {what} (a decoded {family.modality}), got {type(raw).__name__}")


def rng_for(name: str, seed: int | Sequence[int]) -> np.random.Generator:
    """The generator of family ``name`` under ``seed`` (an int or a sequence, e.g. ``[seed, row]``): each family
    draws from its own stream, so chaining families does not shift another's draws."""
    parts = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if any(p < 0 for p in parts):
        raise ValueError(f"a drift seed is a non-negative int or a sequence of them, got {seed!r}")
    return np.random.default_rng([*parts, zlib.crc32(name.encode())])


def apply_drift(raw: Any, name: str, severity: float, seed: int | Sequence[int] = 0) -> Any:
    """``raw`` drifted by family ``name`` at ``severity`` (0: ``raw`` itself), seeded by ``seed``."""
    family = get_drift(name)
    s = check_severity(severity)
    _check_raw(family, raw)
    if s == 0.0:
        return raw
    return family.fn(raw, s, rng_for(name, seed))


@dataclass(frozen=True)
class Drift:
    """One step of a drift: a family and its severity (checked when built). ``str()``: ``"image.blur@0.5"``."""

    name: str
    severity: float

    def __post_init__(self) -> None:
        get_drift(self.name)
        object.__setattr__(self, "severity", check_severity(self.severity))

    @property
    def modality(self) -> str:
        return DRIFTS[self.name].modality

    @classmethod
    def parse(cls, text: str) -> Drift:
        """``"image.blur@0.5"`` -> ``Drift("image.blur", 0.5)``."""
        name, sep, sev = text.partition("@")
        try:
            value = float(sev) if sep else None
        except ValueError:
            value = None
        if value is None:
            raise ValueError(f"a drift is written 'modality.family@severity' (e.g. image.blur@0.5), got {text!r}")
        return cls(name, value)

    def __str__(self) -> str:
        return f"{self.name}@{self.severity:g}"


def compose(raw: Any, drifts: Sequence[Drift], seed: int | Sequence[int] = 0) -> Any:
    """``raw`` through every drift in order (all of one modality), each seeded by ``seed`` and its position."""
    modalities = {d.modality for d in drifts}
    if len(modalities) > 1:
        raise ValueError(f"a composed drift acts on one modality, got {sorted(modalities)}")
    base = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    for k, d in enumerate(drifts):
        raw = apply_drift(raw, d.name, d.severity, [*base, k])
    return raw
