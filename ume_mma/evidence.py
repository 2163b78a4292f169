"""How much a fine-tune's held-out annotations can tell: accuracies with a 95% interval, and whether the change
from the base is larger than what so few items can show.

A fine-tune on fifty annotations holds out a handful of them (the export's test split): an accuracy on six items
moves in steps of 17 points. :func:`held_out_evidence` gives each accuracy its Wilson score interval
(``scipy.stats.binomtest(...).proportion_ci(method="wilson")``) and a verdict: ``better`` or ``worse`` only when
the fine-tuned model's interval excludes the base's accuracy on the same items, else ``too few to tell`` (always
below :data:`MIN_ITEMS` items).
"""

from __future__ import annotations

from typing import Any

MIN_ITEMS = 20  # fewer held-out annotations than this: too few to tell, whatever the accuracies
CONFIDENCE = 0.95


def interval(correct: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of ``correct / n`` (0..1)."""
    from scipy.stats import binomtest

    ci = binomtest(correct, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def held_out_evidence(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    """From the base's and the fine-tuned model's evaluations on the held-out annotations (``{"n", "accuracy":
    {"full": ...}}``): ``{"n", "before", "after", "after_interval", "before_interval", "verdict"}``, or None
    without both."""
    if not before or not after or not after.get("n"):
        return None
    n = int(after["n"])
    b, a = float(before["accuracy"]["full"]), float(after["accuracy"]["full"])
    low, high = interval(round(a * n), n)
    if n < MIN_ITEMS or low <= b <= high:
        verdict = "too few to tell"
    else:
        verdict = "better" if a > b else "worse"
    return {
        "n": n,
        "before": b,
        "after": a,
        "after_interval": [round(low, 4), round(high, 4)],
        "before_interval": [round(x, 4) for x in interval(round(b * n), n)],
        "verdict": verdict,
    }


def paired_worse(base_hits: Any, new_hits: Any, tolerance: float, confidence: float = CONFIDENCE) -> bool:
    """Whether a new model is worse than the base on the same rows (``base_hits``, ``new_hits``: ``Tensor[N]`` of
    bools, right or wrong per row) by more than ``tolerance`` and beyond chance: McNemar's exact test (the rows
    only the base gets right against those only the new model gets right, two-sided, at ``confidence``)."""
    from scipy.stats import binomtest

    n = len(base_hits)
    if not n:
        return False
    lost = int((base_hits & ~new_hits).sum())
    won = int((new_hits & ~base_hits).sum())
    if (lost - won) / n <= tolerance:
        return False
    return bool(binomtest(lost, lost + won, 0.5).pvalue < 1 - confidence)
