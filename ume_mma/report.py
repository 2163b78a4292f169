"""Turning evaluation metrics into tables and plots (markdown + matplotlib)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

MISSING_RATES = (0.25, 0.5, 0.75)
TableRow = tuple[list[str], str, list[dict[str, float]]]  # leading cells, model name, accuracies per run


def accuracy_columns(accuracy: dict[str, float]) -> list[str]:
    """Column order: full, without_<m> (sorted), missing_rate_<r> (ascending)."""
    without = sorted(k for k in accuracy if k.startswith("without_"))
    rates = sorted((k for k in accuracy if k.startswith("missing_rate_")), key=lambda k: float(k.rsplit("_", 1)[1]))
    return [k for k in ["full"] if k in accuracy] + without + rates


def column_title(key: str) -> str:
    if key.startswith("without_"):
        return "without " + key[len("without_") :]
    if key.startswith("missing_rate_"):
        return f"MR{round(float(key.rsplit('_', 1)[1]) * 100)}"
    return key


def model_accuracy(model: str, accuracy: dict[str, float], column: str) -> float | None:
    """The value of one table cell: ``accuracy[column]`` when the model has it. A uni-modal model
    (``<m>-only``) has no missing-modality columns of its own: removing another modality leaves its full
    accuracy, removing its own leaves it no input, and it has no missing-rate value (both None)."""
    if column in accuracy:
        return accuracy[column]
    own = f"without_{model.removesuffix('-only')}"
    if model.endswith("-only") and column.startswith("without_") and column != own:
        return accuracy["full"]
    return None


def _cell(values: list[float], spread: bool) -> str:
    """Percent: the mean, with ``± std`` over the runs when ``spread``; ``-`` when there is no value."""
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    if not spread:
        return f"{mean:.1f}"
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


def accuracy_table(
    titles: list[str], rows: list[TableRow], columns: list[str] | None = None, spread: bool = False
) -> str:
    """The one markdown accuracy table (evaluation, model card, results).

    ``titles``: headers of the leading columns; ``rows``: (leading cells, model name, one accuracy dict per
    run/seed); ``columns``: accuracy keys (default: those of the row with the most). Cells are percentages
    (:func:`model_accuracy`), the mean over runs, with ``± std`` when ``spread``.
    """
    if columns is None:
        columns = accuracy_columns(max((a for _, _, runs in rows for a in runs), key=len, default={}))
    lines = [
        "| " + " | ".join([*titles, *(column_title(c) for c in columns)]) + " |",
        "|" + "---|" * (len(titles) + len(columns)),
    ]
    for cells, model, runs in rows:
        values = [[v for a in runs if (v := model_accuracy(model, a, c)) is not None] for c in columns]
        lines.append("| " + " | ".join([*cells, *(_cell(v, spread) for v in values)]) + " |")
    return "\n".join(lines)


def metrics_table(metrics: dict[str, Any]) -> str:
    """Markdown table of one evaluation (``metrics.json`` layout), accuracies in percent."""
    rows = [accuracy_table(["model"], [(["fused"], "fused", [metrics["accuracy"]])])]
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
    for name, accuracy in curves.items():
        xs = [0.0] + [r for r in MISSING_RATES if f"missing_rate_{r}" in accuracy]
        ys = [accuracy["full"]] + [accuracy[f"missing_rate_{r}"] for r in xs[1:]]
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
