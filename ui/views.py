"""What the Predict tab shows, built from a :class:`~ume_mma.predictor.Prediction`: cards, the sources table,
the probability chart (plain HTML bars, drawn by the browser) and the raw JSON.

Switching modalities off must feel instant, so the server renders the view of EVERY on/off combination of
the checkpoint's modalities once per prediction (at most 2^4 = 16; fusion of a subset is one batched call in
the library) and the browser swaps between them (``TOGGLE_JS``): a toggle needs no server round trip.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ume_mma.predictor import Prediction
from ume_mma.registry import MODALITIES

COLORS = {"fused": "#3730a3", "audio": "#f59e0b", "image": "#10b981", "text": "#ef4444", "video": "#8b5cf6"}
TOP_CLASSES = 10

# The toggle handler, run in the browser: pick the pre-rendered view of the enabled modalities.
TOGGLE_JS = """(enabled, views) => {
  const key = (views.order || []).filter((m) => (enabled || []).includes(m)).join("+");
  return views.subsets[key];
}"""

CHART_CSS = """
.pchart {font-size: 12px; padding: 4px 2px}
.pchart .legend {display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 6px}
.pchart .legend i {display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px}
.pchart .plot {display: flex; gap: 6px; align-items: stretch; height: 150px;
  border-bottom: 1px solid var(--border-color-primary); background: repeating-linear-gradient(
  to top, transparent 0, transparent 29px, var(--border-color-primary) 29px, var(--border-color-primary) 30px)}
.pchart .grp {flex: 1 1 0; min-width: 0; display: flex; align-items: flex-end; justify-content: center; gap: 1px}
.pchart .bar {flex: 1 1 0; max-width: 18px; min-height: 1px}
.pchart .names {display: flex; gap: 6px}
.pchart .names span {flex: 1 1 0; min-width: 0; text-align: center; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; padding-top: 2px}
.pchart .empty {color: var(--body-text-color-subdued); padding: 12px 0}
"""


def subset_key(modalities: Sequence[str]) -> str:
    """``["image", "audio"]`` -> ``"audio+image"``: the key of ``Prediction.subsets``."""
    return "+".join(sorted(modalities))


def probability_chart(pred: Prediction | None, top: int = TOP_CLASSES) -> str:
    """Grouped bars as HTML: the top classes by fused probability x the fused result and every branch.
    Class names that do not fit are cut with an ellipsis (the full name is in the tooltip)."""
    if pred is None:
        return '<div class="pchart"><div class="empty">Class probabilities appear here.</div></div>'
    classes = list(pred.fused.confidences)[:top]
    series = {f"fused ({pred.fusion})": ("fused", pred.fused)} | {
        f"{m} branch": (m, r) for m, r in sorted(pred.branches.items())
    }
    legend = "".join(
        f'<span><i style="background:{COLORS.get(kind, "#666")}"></i>{html.escape(name)}</span>'
        for name, (kind, _) in series.items()
    )
    groups, names = [], []
    for c in classes:
        bars = "".join(
            f'<div class="bar" style="height:{100 * r.confidences.get(c, 0.0):.1f}%;'
            f'background:{COLORS.get(kind, "#666")}" title="{html.escape(name)}: {percent(r, c)}"></div>'
            for name, (kind, r) in series.items()
        )
        groups.append(f'<div class="grp" title="{html.escape(c)}">{bars}</div>')
        names.append(f'<span title="{html.escape(c)}">{html.escape(c)}</span>')
    return (
        f'<div class="pchart"><div class="legend">{legend}</div><div class="plot">{"".join(groups)}</div>'
        f'<div class="names">{"".join(names)}</div></div>'
    )


def percent(result: Any, label: str) -> str:
    """A probability as a percentage for a tooltip."""
    return f"{100 * result.confidences.get(label, 0.0):.1f}%"


TRUSTED = 0.5  # a flagged branch whose weight is at least this still counts in the fused answer: say why


def reliability_note(branch: Any, weight: float | None = None) -> str:
    """A branch's state for its card's title and the sources table: its estimated chance of being right (a
    checkpoint with a correctness estimate), its weight in the fused answer (a weighing fusion), how far its
    input is from its training data (reliability statistics); empty for a checkpoint with none of them. A
    branch flagged off its distribution that the fusion still trusts says why: its estimate."""
    parts = []
    est = getattr(branch, "estimated_accuracy", None)
    weight = getattr(branch, "fusion_weight", None) if weight is None else weight
    if est is not None:
        parts.append(f"est. {100 * est:.0f}% right")
    if weight is not None:
        parts.append(f"weight {weight:.2f}")
    r = getattr(branch, "reliability", None)
    if r is not None:
        if branch.off_distribution:
            flag = f"⚠ off its training distribution (reliability {r:.2f})"
            if weight is not None and weight >= TRUSTED and est is not None:
                flag += f", still trusted: its answer is estimated {100 * est:.0f}% likely right"
            parts.append(flag)
        else:
            parts.append(f"reliability {r:.2f}")
    return " · ".join(parts)


def fused_note(fused: Any) -> str:
    """The fused card's warning when no present branch is trustworthy (empty otherwise)."""
    if getattr(fused, "uncertain", None):
        return "⚠ uncertain: no branch is likely right on this input (annotate it to teach the model)"
    return ""


def sources_table(
    pred: Prediction | None, modalities: Sequence[str], enabled: Sequence[str], fused: bool = True
) -> str:
    """Markdown: which input fed each branch, and each branch's answer; then (``fused``) the fused answer."""
    rows = ["| branch | fed by | answer |", "|---|---|---|"]
    for m in modalities:
        if m not in enabled:
            fed, answer = "*switched off*", "–"
        elif pred is not None and m in pred.branches:
            note = reliability_note(pred.branches[m], (pred.fused.weights or {}).get(m))
            fed, answer = pred.sources[m], f"**{pred.branches[m].label}**" + (f" · {note}" if note else "")
        else:
            fed = pred.sources.get(m, "*no input*") if pred is not None else "*no input*"
            answer = "–"
        rows.append(f"| {m} | {fed} | {answer} |")
    for m, note in sorted(pred.sources.items()) if pred is not None else []:
        if m not in modalities:  # an input this checkpoint cannot use: say so
            rows.append(f"| {m} | *{note}* | – |")
    if pred is not None and fused:
        note = fused_note(pred.fused)
        answer = f"**{pred.fused.label}**" + (f" · {note}" if note else "")
        rows.append(f"| **fused** ({pred.fusion}) | {', '.join(pred.modalities_used)} | {answer} |")
    return "\n".join(rows)


def restrict(pred: Prediction, enabled: Sequence[str], modalities: Sequence[str] | None = None) -> Prediction | None:
    """What ``/predict`` would return with only ``enabled`` modalities, from ``pred.subsets`` (fusion of every
    subset, computed with ``pred``); None when no enabled modality has an input."""
    used = [m for m in pred.modalities_used if m in enabled]
    if not used:
        return None
    model = set(modalities) if modalities is not None else set(pred.sources)
    sources = {m: s for m, s in pred.sources.items() if m in enabled or m not in model}  # keep "not used" notes
    if used == pred.modalities_used and sources == pred.sources:
        return pred
    return replace(
        pred,
        modalities_used=used,
        fused=pred.subsets[subset_key(used)] if used != pred.modalities_used else pred.fused,
        branches={m: pred.branches[m] for m in used},
        sources=sources,
    )


def empty_note(pred: Prediction | None, enabled: Sequence[str]) -> str:
    """Why there is no result: no input at all, every modality off, or no input for the enabled ones."""
    if pred is None:
        return "*Give an input (or pick an example) to see predictions.*"
    if not enabled:
        return "*Every modality is switched off.*"
    return "*No input for the modalities switched on.*"


def all_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every combination of ``modalities`` (sorted), the empty one included: 2^M of them."""
    mods = sorted(modalities)
    return [c for r in range(len(mods) + 1) for c in itertools.combinations(mods, r)]


def view_values(pred: Prediction | None, modalities: list[str], enabled: Sequence[str], render: Any) -> list[Any]:
    """Frontend values of: fused card, one card per modality in MODALITIES, sources, chart, raw JSON, for
    ``pred`` seen with only ``enabled`` modalities. A card without a result holds ``{"": reason}`` (never
    None: the browser's update path drops a null value). ``render(kind, value, **props)`` turns each into what the
    browser takes (the app passes the components' own postprocessing)."""
    enabled = [m for m in modalities if m in enabled]
    shown = restrict(pred, enabled, modalities) if pred is not None else None
    cards = []
    for m in MODALITIES:
        branch = shown.branches.get(m) if shown is not None else None
        state = "off" if m not in enabled else ("" if branch else "no input")
        value = branch.confidences if branch else {"": state or "–"}  # a card never goes blank: it says why
        weight = (shown.fused.weights or {}).get(m) if shown is not None else None
        state = state or reliability_note(branch, weight)  # a present branch: its estimate, weight, reliability
        cards.append(render("card", value, label=m + (f" · {state}" if state else "")))
    fused_label = f"fused · {shown.fusion}" if shown is not None else "fused"
    if shown is not None and fused_note(shown.fused):
        fused_label += f" · {fused_note(shown.fused)}"
    fused = render("fused", shown.fused.confidences if shown is not None else {"": "–"}, label=fused_label)
    note = "" if shown is not None else empty_note(pred, enabled) + "\n\n"
    return [
        fused,
        *cards,
        render("sources", note + sources_table(shown or pred, modalities, enabled, fused=shown is not None)),
        render("chart", probability_chart(shown)),
        render("raw", shown.to_dict() if shown is not None else {}),
    ]


def views_payload(pred: Prediction | None, modalities: list[str], render: Any) -> dict[str, Any]:
    """Every combination's view values, for ``TOGGLE_JS``: ``{"order": [...], "subsets": {key: values}}``."""
    return {
        "order": sorted(modalities),
        "subsets": {"+".join(c): view_values(pred, modalities, c, render) for c in all_subsets(modalities)},
    }
