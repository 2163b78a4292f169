"""Turning evaluation metrics into tables and plots (markdown + matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MISSING_RATES = (0.25, 0.5, 0.75)


def accuracy_columns(acc: dict[str, float]) -> list[str]:
    """Column order: full, without_<m> (sorted), missing_rate_<r> (ascending)."""
    without = sorted(k for k in acc if k.startswith("without_"))
    rates = sorted((k for k in acc if k.startswith("missing_rate_")), key=lambda k: float(k.rsplit("_", 1)[1]))
    return [k for k in ["full"] if k in acc] + without + rates


def column_title(key: str) -> str:
    if key.startswith("without_"):
        return "without " + key[len("without_") :]
    if key.startswith("missing_rate_"):
        return f"MR{round(float(key.rsplit('_', 1)[1]) * 100)}"
    return key


def metrics_table(metrics: dict[str, Any]) -> str:
    """Markdown table of one evaluation (``metrics.json`` layout), accuracies in percent."""
    acc = metrics["accuracy"]
    cols = accuracy_columns(acc)
    head = "| model | " + " | ".join(column_title(c) for c in cols) + " |"
    rows = [head, "|" + "---|" * (len(cols) + 1)]
    rows.append("| fused | " + " | ".join(f"{100 * acc[c]:.1f}" for c in cols) + " |")
    branches = metrics.get("branches", {})
    if branches:
        rows += ["", "| branch alone | accuracy |", "|---|---|"]
        rows += [f"| {m} | {100 * v:.1f} |" for m, v in sorted(branches.items())]
    by_group = metrics.get("branches_by_group", {})
    if by_group:
        names = sorted({g for per in by_group.values() for g in per})
        rows += ["", "| branch alone, per group | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        rows += [
            f"| {m} | " + " | ".join(f"{100 * per[g]:.1f}" if g in per else "-" for g in names) + " |"
            for m, per in sorted(by_group.items())
        ]
    rows.append(f"\n{metrics.get('n', '?')} samples.")
    return "\n".join(rows)


def missing_rate_figure(
    curves: dict[str, dict[str, float]], title: str = "", styles: dict[str, dict[str, Any]] | None = None
):
    """Accuracy (%) vs missing rate (0 = full) for one or more models, as a matplotlib ``Figure``
    (object API: no pyplot global state, safe in a server). ``curves``: name -> accuracy dict."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), dpi=120)
    ax = fig.add_subplot()
    for name, acc in curves.items():
        xs = [0.0] + [r for r in MISSING_RATES if f"missing_rate_{r}" in acc]
        ys = [acc["full"]] + [acc[f"missing_rate_{r}"] for r in xs[1:]]
        ax.plot([100 * x for x in xs], [100 * y for y in ys], marker="o", label=name, **(styles or {}).get(name, {}))
    ax.set_xlabel("missing rate (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_missing_rate_curve(
    curves: dict[str, dict[str, float]],
    path: str | Path,
    title: str = "",
    styles: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """:func:`missing_rate_figure` written to ``path`` (PNG)."""
    missing_rate_figure(curves, title, styles).savefig(path)
    return Path(path)
