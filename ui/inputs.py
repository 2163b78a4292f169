"""The public endpoints' inputs, checked by the handlers themselves: a value of the wrong type, too long or
out of range is refused in our words (a ``gr.Error`` naming the input and what it takes), never with
Gradio's "Could not preprocess input component" or Python's own exception text. The API components are
plain (``gr.JSON``, ``gr.Textbox``) so that every value reaches these checks.
"""

from __future__ import annotations

import math
from typing import Any

import gradio as gr

from ume_mma.annotate import FLAGS
from ume_mma.registry import MODALITIES

NOTE_MAX_CHARS = 2000  # an annotation's note
LABEL_MAX_CHARS = 200  # a label (the store's column)
NAME_MAX_CHARS = 200  # a queue name, a runner, a flavor
TEXT_MAX_CHARS = 10_000  # the text input of /predict and /annotate
REF_MAX_CHARS = 512  # a checkpoint reference or a folder
EPOCHS_RANGE = (0, 1000)  # epochs and mma_epochs of /start_job
ID_MAX = 2**63 - 1  # an item or job id


def refuse(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def text(value: Any, name: str, max_chars: int, default: str = "") -> str:
    """A string input (None = ``default``), at most ``max_chars`` characters."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise refuse(f"{name} must be text, got {type(value).__name__}")
    if len(value) > max_chars:
        raise refuse(f"{name} is at most {max_chars} characters; got {len(value)}")
    return value


def whole(value: Any, name: str, low: int, high: int, default: int | None = None) -> int | None:
    """A whole number in ``[low, high]``; None or "" = ``default``. ``"3"`` and ``3.0`` are 3; ``"nope"``,
    ``3.5``, ``True`` and numbers out of range are refused."""
    if value is None or value == "":
        return default
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise refuse(f"{name} must be a whole number from {low} to {high}, got {shorten(value)}")
    if number != int(number) or not low <= number <= high:
        raise refuse(f"{name} must be a whole number from {low} to {high}, got {shorten(value)}")
    return int(number)


def number(value: Any, name: str, low: float, high: float, default: float) -> float:
    """A number in ``[low, high]``; None or "" = ``default``."""
    if value is None or value == "":
        return default
    try:
        x = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x) or not low <= x <= high:
        raise refuse(f"{name} must be a number from {low:g} to {high:g}, got {shorten(value)}")
    return x


def item_id(value: Any, name: str = "item_id") -> int:
    """The id of a queue item or a job (a positive whole number)."""
    what = "a job number" if name == "job_id" else "the id of a queue item (a number)"
    try:
        found = whole(value, name, 1, ID_MAX)
    except gr.Error:
        found = None
    if found is None:
        raise refuse(f"{name} must be {what}, got {shorten(value)}")
    return found


def flags(value: Any) -> dict[str, list[str]]:
    """``{"audio": ["noisy"], ...}``: a modality -> a list of flag names; None, ``{}`` or ``[]`` = none."""
    if value in (None, "", [], {}):
        return {}
    shape = f'flags is a mapping from a modality to a list of flags ({", ".join(FLAGS)}), e.g. {{"audio": ["noisy"]}}'
    if not isinstance(value, dict):
        raise refuse(f"{shape}; got {shorten(value)}")
    for modality, names in value.items():  # the names themselves are checked by the store (unknown flag...)
        if not isinstance(names, list) or not all(isinstance(n, str) and len(n) <= NAME_MAX_CHARS for n in names):
            raise refuse(f"{shape}; got {shorten(names)} for {shorten(modality)}")
    return value


def modalities(value: Any) -> str | list[str] | None:
    """``/predict``'s enabled modalities: a list of names or one string (``"image"``, ``"audio, image"``);
    the checkpoint then says which of them it has."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str) and len(value) <= 100:
        return value
    if isinstance(value, list) and len(value) <= len(MODALITIES) * 2 and all(isinstance(m, str) for m in value):
        return value
    raise refuse(f"modalities is a list of names such as ['image', 'audio']; got {shorten(value)}")


def shorten(value: Any, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[: limit - 1]}… ({len(shown)} characters)"
