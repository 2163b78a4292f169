"""Agreement between annotators (nominal labels): Krippendorff's alpha, Fleiss' kappa, Cohen's kappa per
pair and per annotator against the consensus, and accuracy on gold items, each with the number of items it
rests on. Pure formulas first (checked in tests against the ``krippendorff`` package, scikit-learn and the
published worked examples), then :func:`queue_agreement`, which reads a queue of the store.

A *unit* is one item's labels, one per annotator (``["cat", "cat", "dog"]``). A measure that is not defined
(no pairable item; every value one label, so no disagreement could be expected) is ``None``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

import sqlalchemy as sa

from ume_mma.annotate import schema
from ume_mma.annotate.store import Store

a_t, items_t, queues_t, res_t = schema.annotations, schema.queue_items, schema.queues, schema.resolutions


def coincidences(units: Iterable[Sequence[str]]) -> tuple[Counter[tuple[str, str]], int]:
    """Krippendorff's coincidence matrix ``o[(c, k)]`` of the pairable units (two or more values each: a
    unit of ``m`` values adds each ordered pair of values from different annotators with weight 1/(m-1))
    and the number of such units."""
    o: Counter[tuple[str, str]] = Counter()
    used = 0
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        used += 1
        counts = Counter(unit)
        for c, nc in counts.items():
            for k, nk in counts.items():
                o[(c, k)] += (nc * (nc - 1) if c == k else nc * nk) / (m - 1)
    return o, used


def krippendorff_alpha(units: Iterable[Sequence[str]]) -> float | None:
    """Krippendorff's alpha for nominal data: ``1 - (n - 1) * sum_{c!=k} o_ck / sum_{c!=k} n_c n_k``."""
    o, _ = coincidences(units)
    n_c: Counter[str] = Counter()
    for (c, _k), v in o.items():
        n_c[c] += v
    n = sum(n_c.values())
    observed = sum(v for (c, k), v in o.items() if c != k)
    expected = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k)
    if n <= 1 or expected == 0:
        return None
    return 1.0 - (n - 1) * observed / expected


def fleiss_kappa(units: Sequence[Sequence[str]]) -> tuple[float | None, dict[str, float | None]]:
    """Fleiss' kappa of units that all have the same number ``m >= 2`` of values (Fleiss 1971), and the
    kappa of each category (label against the rest). Raises ``ValueError`` for unequal units."""
    sizes = {len(u) for u in units}
    if not units:
        return None, {}
    if len(sizes) != 1 or min(sizes) < 2:
        raise ValueError(f"Fleiss' kappa needs the same number (>= 2) of values per unit, got sizes {sorted(sizes)}")
    m, big_n = sizes.pop(), len(units)
    counts = [Counter(u) for u in units]
    categories = sorted({c for u in units for c in u})
    p = {c: sum(k[c] for k in counts) / (big_n * m) for c in categories}
    p_bar = sum((sum(v * v for v in k.values()) - m) / (m * (m - 1)) for k in counts) / big_n
    p_e = sum(v * v for v in p.values())
    kappa = None if p_e == 1 else (p_bar - p_e) / (1 - p_e)
    per: dict[str, float | None] = {}
    for c in categories:
        spread = big_n * m * (m - 1) * p[c] * (1 - p[c])
        per[c] = None if spread == 0 else 1 - sum(k[c] * (m - k[c]) for k in counts) / spread
    return kappa, per


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items: ``(p_o - p_e) / (1 - p_e)``."""
    if not pairs:
        return None
    n = len(pairs)
    p_o = sum(a == b for a, b in pairs) / n
    left, right = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    p_e = sum(left[c] * right[c] for c in left) / (n * n)
    return None if p_e == 1 else (p_o - p_e) / (1 - p_e)


def majority(labels: Iterable[str]) -> str | None:
    """The label most of ``labels`` have, or None on a tie (or no label)."""
    top = Counter(labels).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def agreement_report(
    labels: Mapping[int, Mapping[str, str]],
    resolved: Mapping[int, str] | None = None,
    gold: Mapping[int, str] | None = None,
    raters: int | None = None,
) -> dict[str, Any]:
    """Agreement from ``labels``: item -> annotator -> label. ``resolved``: item -> a reviewer's label;
    ``gold``: item -> known label; ``raters``: the units' size for Fleiss' kappa (default: the most common
    size of at least 2). An annotator's consensus on an item is the reviewer's label if there is one, else
    the majority of the *other* annotators' labels (a tie: none), so nobody agrees with itself."""
    resolved, gold = dict(resolved or {}), dict(gold or {})
    units = {i: list(by.values()) for i, by in labels.items() if len(by) >= 2}
    sizes = Counter(len(u) for u in units.values())
    m = raters if raters and raters >= 2 else (sizes.most_common(1)[0][0] if sizes else None)
    equal = [u for u in units.values() if len(u) == m]
    kappa, per_label = fleiss_kappa(equal) if equal else (None, {})
    o, _ = coincidences(units.values())
    n_c: Counter[str] = Counter()
    for (c, _k), v in o.items():
        n_c[c] += v
    label_rows = {
        c: {
            "values": int(round(n_c[c])),
            "agreement": _round(o[(c, c)] / n_c[c]),
            "fleiss_kappa": _round(per_label.get(c)),
        }
        for c in sorted(n_c)
    }
    pairs = []
    names = sorted({a for by in labels.values() for a in by})
    for x, y in combinations(names, 2):
        common = [(by[x], by[y]) for by in labels.values() if x in by and y in by]
        if common:
            agree = sum(a == b for a, b in common) / len(common)
            pairs.append({"annotators": [x, y], "items": len(common), "agreement": _round(agree),
                          "cohen_kappa": _round(cohen_kappa(common))})  # fmt: skip
    annotators: dict[str, dict[str, Any]] = {}
    for name in names:
        against = []
        for item, by in labels.items():
            if name not in by:
                continue
            consensus = resolved.get(item) or majority(v for a, v in by.items() if a != name)
            if consensus is not None:
                against.append((by[name], consensus))
        golds = [(by[name], gold[i]) for i, by in labels.items() if name in by and i in gold]
        annotators[name] = {
            "labels": sum(name in by for by in labels.values()),
            "items": len(against),
            "agreement": _round(sum(a == b for a, b in against) / len(against)) if against else None,
            "cohen_kappa": _round(cohen_kappa(against)),
            "gold_items": len(golds),
            "gold_accuracy": _round(sum(a == b for a, b in golds) / len(golds)) if golds else None,
        }
    return {
        "items": len(units),  # items with two labels or more: what alpha rests on
        "krippendorff_alpha": _round(krippendorff_alpha(units.values())),
        "fleiss_kappa": _round(kappa),
        "fleiss_items": len(equal),
        "raters_per_item": m,
        "labels": label_rows,
        "pairs": pairs,
        "annotators": annotators,
        "gold_items": len(gold),
    }


def resolutions(conn: sa.Connection, item_ids: Sequence[int] | sa.Select) -> dict[int, str | None]:
    """item -> its current resolution (the newest change; None where it was withdrawn)."""
    rows = conn.execute(
        sa.select(res_t.c.item_id, res_t.c.label)
        .where(res_t.c.item_id.in_(item_ids))
        .order_by(res_t.c.item_id, res_t.c.seq)
    ).all()
    return {r.item_id: r.label for r in rows}  # the last row of each item wins


def queue_agreement(store: Store, queue: str) -> dict[str, Any]:
    """:func:`agreement_report` of a queue's current labels, reviewer resolutions and gold items (an empty
    report for a queue that does not exist)."""
    with store.transaction() as conn:
        q = conn.execute(sa.select(queues_t.c.id, queues_t.c.overlap).where(queues_t.c.name == queue)).first()
        if q is None:
            return agreement_report({})
        ids = sa.select(items_t.c.id).where(items_t.c.queue_id == q.id)
        rows = conn.execute(
            sa.select(a_t.c.item_id, a_t.c.annotator, a_t.c.label)
            .where(a_t.c.item_id.in_(ids), a_t.c.undone_at.is_(None))
            .order_by(a_t.c.created_at, a_t.c.id)
        ).all()
        gold_rows = sa.select(items_t.c.id, items_t.c.gold).where(
            items_t.c.queue_id == q.id, items_t.c.gold.is_not(None)
        )
        gold = {r.id: r.gold for r in conn.execute(gold_rows)}
        resolved = {i: lab for i, lab in resolutions(conn, ids).items() if lab is not None}
    labels: dict[int, dict[str, str]] = defaultdict(dict)
    for r in rows:
        labels[r.item_id][r.annotator] = r.label
    return agreement_report(labels, resolved, gold, raters=q.overlap)
