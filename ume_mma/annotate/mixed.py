"""The ``mixed`` queue order: disagreement first, balanced over the fused labels, spread over the model's confusions.

Disagreement-first alone hands out fifty copies of one confusion (the 3s, 5s and 7s a shifted image branch mixes
up). ``mixed`` picks one item at a time:

1. **class balance**: from the fused label that has had the fewest picks so far (a tie goes to the label whose most
   uncertain item ranks first);
2. **uncertainty**: among that label's :data:`WINDOW` most uncertain remaining items (branches disagree first, then
   the smallest fused margin: the ``disagreement`` order);
3. **diversity**: the most uncertain of those that are not near-copies of what was picked: an item whose distance to
   the nearest picked item is under half the window's largest such distance is passed over (k-center greedy with
   uncertainty first). Distances are L1 in the space of the stored prediction — the fused and every branch's
   probabilities over the queue's labels — so items the model confuses in the same way lie close together.

Items without a prediction come last, in file order. Deterministic: ties are broken by the uncertainty rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

WINDOW = 5  # candidates per pick: the most uncertain remaining items of the chosen label


def embedding(prediction: Mapping[str, Any], labels: Sequence[str], branches: Sequence[str]) -> np.ndarray:
    """``[(1 + B) * C]``: the fused and each of ``branches``' probabilities over ``labels`` (zeros for a branch the
    item has no input for)."""
    given = prediction.get("branches", {})
    parts = [prediction["fused"].get("confidences", {}), *(given.get(b, {}).get("confidences", {}) for b in branches)]
    return np.array([p.get(label, 0.0) for p in parts for label in labels], dtype=np.float64)


def rank(rows: Sequence[Mapping[str, Any]], uncertainty: Any) -> list[Mapping[str, Any]]:
    """``rows`` (with ``prediction``, ``disagree``, ``margin``, ``confidence``, ``position``) in ``mixed`` order;
    ``uncertainty``: the sort key of the ``disagreement`` order."""
    usable = [r["confidence"] is not None and "fused" in (r["prediction"] or {}) for r in rows]
    predicted = sorted((r for r, ok in zip(rows, usable, strict=True) if ok), key=uncertainty)
    rest = sorted((r for r, ok in zip(rows, usable, strict=True) if not ok), key=lambda r: r["position"])
    if not predicted:
        return rest
    labels = sorted({lab for r in predicted for lab in r["prediction"]["fused"]["confidences"]})
    branches = sorted({b for r in predicted for b in r["prediction"].get("branches", {})})
    emb = np.stack([embedding(r["prediction"], labels, branches) for r in predicted])
    fused = [r["prediction"]["fused"]["label"] for r in predicted]
    buckets: dict[str, list[int]] = {}
    for i, label in enumerate(fused):  # each bucket in uncertainty order
        buckets.setdefault(label, []).append(i)
    picks: dict[str, int] = dict.fromkeys(buckets, 0)
    nearest = np.full(len(predicted), np.inf)  # distance to the nearest picked item
    order: list[int] = []
    while len(order) < len(predicted):
        label = min((b for b in buckets if buckets[b]), key=lambda b: (picks[b], buckets[b][0]))
        window = buckets[label][:WINDOW]
        far = max(nearest[i] for i in window)
        best = next(i for i in window if nearest[i] >= far / 2)  # the most uncertain that is not a near-copy
        buckets[label].remove(best)
        picks[label] += 1
        order.append(best)
        nearest = np.minimum(nearest, np.abs(emb - emb[best]).sum(axis=1))
    return [predicted[i] for i in order] + rest
