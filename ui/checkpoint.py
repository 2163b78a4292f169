"""What the UI shows about a loaded checkpoint: the list of shipped ones, its card, status line and stored
evaluation (robustness table and missing-rate curve)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

from ume_mma.fusion import get_fusion
from ume_mma.pool import Loaded
from ume_mma.predictor import Predictor
from ume_mma.report import accuracy_columns, column_title, missing_rate_figure

ROOT = Path(__file__).resolve().parent.parent


def list_checkpoints(root: Path = ROOT) -> list[str]:
    """``checkpoints/<name>`` for every subfolder holding a config.json."""
    folder = root / "checkpoints"
    return sorted(f"checkpoints/{p.parent.name}" for p in folder.glob("*/config.json")) if folder.is_dir() else []


def model_card(predictor: Predictor) -> str:
    """The checkpoint's model card without its YAML front matter, else a summary of its config."""
    text = predictor.card
    if text:
        if text.startswith("---"):
            text = text.split("---", 2)[-1]
        return text.strip()
    cfg = predictor.model.config
    return (
        f"# {cfg.task}\n\n- **Fusion:** `{cfg.fusion}`\n- **Labels:** {', '.join(cfg.labels)}\n"
        f"- **Encoders:** " + ", ".join(f"{m}: `{cfg.encoders[m]['name']}`" for m in cfg.modalities)
    )


def robustness_views(item: Loaded) -> tuple[Any, Any, str]:
    """(table rows, missing-rate curve image, caption) of the checkpoint's stored evaluation."""
    import pandas as pd
    from PIL import Image

    m = item.metrics
    if not m or "accuracy" not in m:
        return (
            pd.DataFrame(columns=["condition", "accuracy (%)"]),
            None,
            ("No evaluation is stored with this checkpoint (`metrics.json`); run `python -m ume_mma.evaluate`."),
        )
    acc = m["accuracy"]
    rows = [(condition_name(c), round(100 * acc[c], 1)) for c in accuracy_columns(acc)]
    rows += [(f"{b} branch alone", round(100 * v, 1)) for b, v in sorted(m.get("branches", {}).items())]
    png = BytesIO()  # rendered in memory: no temporary file
    missing_rate_figure({item.predictor.name: acc}, title="accuracy vs missing rate").savefig(png, format="png")
    curve = Image.open(png).convert("RGB")
    caption = (
        f"Test accuracy of `{item.predictor.name}` over {m.get('n', '?')} samples: with every modality, "
        "without each one, and when each modality of each sample is missing with the given rate."
    )
    return pd.DataFrame(rows, columns=["condition", "accuracy (%)"]), curve, caption


def condition_name(column: str) -> str:
    """``full`` -> all modalities, ``missing_rate_0.25`` -> missing rate 25%, ``without_x`` -> without x."""
    if column == "full":
        return "all modalities"
    title = column_title(column)
    return f"missing rate {title[2:]}%" if column.startswith("missing_rate_") else title


def status_line(item: Loaded) -> str:
    p = item.predictor
    config = p.model.config
    fusion = config.fusion
    kind = f"{fusion.upper()} ({get_fusion(fusion).description})"
    if fusion == "reliability":  # the base mode it weighs, and how strongly
        rel = config.reliability
        kind = f"{rel['base'].upper()} weighted by branch reliability (alpha {rel['alpha']:g}, chosen on validation)"
    if fusion == "correctness":
        est = config.correctness
        tau = f", tau {est['tau']:g}" if "tau" in est else ""
        kind = (
            f"{est['base'].upper()} weighted by each branch's estimated correctness (alpha {est['alpha']:g}{tau}, "
            "chosen on validation and held-out drift)"
        )
    return f"**Loaded** `{p.name}` · {kind} · modalities: {', '.join(p.modalities)} · {len(p.labels)} labels"
