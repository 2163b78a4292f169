"""Comparing predictions made by different arithmetic paths (a batch against one-at-a-time calls, another
device): batched matrix products may round differently in the last digits, so floats are compared within
:data:`TOL` while everything else (labels, the ranking of labels, sources, flags, keys) must be equal."""

from __future__ import annotations

import math
from typing import Any

TOL = 1e-5  # absolute: confidences, reliabilities and weights are rounded to 6 decimals


def assert_close(got: Any, want: Any, tol: float = TOL, where: str = "") -> None:
    """``got`` equals ``want`` up to ``tol`` on every float, recursively through dicts, lists and dataclasses
    (``to_dict()`` results, ``subsets``); dict keys must match in order (a ranking of labels is exact)."""
    if hasattr(want, "to_dict") and hasattr(got, "to_dict"):
        got, want = got.to_dict(), want.to_dict()
    if isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, rel_tol=0, abs_tol=tol), f"{where}: {got} vs {want} (tolerance {tol})"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{where}: keys {list(got)} vs {list(want)}"
        for k in want:
            assert_close(got[k], want[k], tol, f"{where}.{k}")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), f"{where}: {got!r} vs {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, tol, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} vs {want!r}"
