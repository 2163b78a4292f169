"""Checkpoints as Hub-style folders: ``config.json`` + ``model.safetensors`` + ``README.md`` model card
(+ ``metrics.json`` when an evaluation exists). Loading is strict and never unpickles anything."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ume_mma import __version__, hub
from ume_mma.errors import CheckpointError
from ume_mma.fusion import get_fusion
from ume_mma.labelhistory import card_line
from ume_mma.memory import release_free_memory
from ume_mma.models import FORMAT_VERSION, ModelConfig, MultiModalModel

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
METRICS_NAME = "metrics.json"


def save_pretrained(
    model: MultiModalModel, folder: str | Path, metrics: dict[str, Any] | None = None, card_notes: str = ""
) -> Path:
    """Write ``model`` as a Hub-style folder. Existing files of the same names are replaced atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict() | {"library": "ume_mma", "library_version": __version__}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.persistent_state_dict().items()}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        save_file(
            tensors,
            Path(tmp) / WEIGHTS_NAME,
            metadata={"format": "pt", "ume_mma_format": str(model.config.format_version)},
        )
        _write_text(Path(tmp) / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
        _write_text(Path(tmp) / CARD_NAME, render_model_card(model.config, metrics, card_notes))
        if metrics is not None:
            _write_text(Path(tmp) / METRICS_NAME, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        for f in Path(tmp).iterdir():
            f.chmod(0o644)
            os.replace(f, folder / f.name)
    return folder


def load_config(ref: str | Path) -> tuple[ModelConfig, Path]:
    """Read and validate ``config.json`` of a local folder or Hub repo id."""
    folder = hub.resolve(ref)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME}; is this a UME-MMA checkpoint folder?")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from exc
    data = {k: v for k, v in data.items() if k not in ("library", "library_version")}
    version = data.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version} is newer than this library supports ({FORMAT_VERSION}); upgrade ume_mma"
        )
    try:
        return ModelConfig.from_dict(data), folder
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def from_pretrained(ref: str | Path, load_encoder_weights: bool = True) -> MultiModalModel:
    """Load a checkpoint from a local folder or a Hub repo id (``org/name`` or ``hf-hub:org/name``).

    Builds the architecture from ``config.json`` (no download), loads frozen pretrained encoders from
    their own source when ``load_encoder_weights``, then loads ``model.safetensors`` strictly: every
    stored tensor must match a parameter and every persistent parameter must be stored. Freed memory is handed
    back to the OS afterwards (:func:`ume_mma.memory.release_free_memory`).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config, folder = load_config(ref)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{folder}: no {WEIGHTS_NAME}")
    model = MultiModalModel(config)
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc})") from exc
    expected = model.persistent_state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    wrong = [k for k, v in state.items() if v.shape != expected[k].shape]
    if wrong:
        raise CheckpointError(f"{weights}: shape mismatch for {wrong[:5]}")
    if load_encoder_weights:
        model.load_encoder_weights()
    model.load_state_dict(state, strict=False)
    model.eval()
    del state
    release_free_memory()  # the load's temporaries (random inits replaced by weights, file buffers) go back
    return model


def load_metrics(folder: str | Path) -> dict[str, Any] | None:
    """The evaluation stored beside a checkpoint, or None."""
    path = hub.resolve(folder) / METRICS_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def render_model_card(config: ModelConfig, metrics: dict[str, Any] | None, notes: str = "") -> str:
    """Markdown model card with Hub YAML metadata and, if given, the robustness table."""
    from ume_mma.report import metrics_table

    fusion = get_fusion(config.fusion)
    lines = [
        "---",
        "library_name: ume_mma",
        "license: mit",
        "tags:",
        "- multimodal",
        "- missing-modality",
        f"- {config.fusion}",
        "---",
        "",
        f"# UME-MMA checkpoint: {config.task}",
        "",
        f"- **Fusion:** `{config.fusion}` ({fusion.description})",
        f"- **Missing-modality fill:** `{config.fill}`"
        + ("" if fusion.uses_fill else f" ({config.fusion.upper()} always drops missing branches)"),
        f"- **Labels ({len(config.labels)}):** {', '.join(config.labels)}",
        *card_line(config.label_history),
        *_reliability_lines(config),
        "- **Encoders:**",
    ]
    for m in config.modalities:
        spec = config.spec(m)
        lines.append(
            f"  - {m}: `{spec.name}` ({spec.embed_dim}-d, {'frozen' if spec.frozen else 'trained'}"
            f"{', weights ' + spec.pretrained if spec.pretrained else ''}) {spec.description}"
        )
    if metrics:
        lines += ["", "## Evaluation", "", metrics_table(metrics)]
    if notes:
        lines += ["", notes]
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from ume_mma.predictor import Predictor",
        "",
        'p = Predictor.from_pretrained("PATH_OR_REPO_ID")',
        'print(p.predict({"image": "digit.png", "audio": "digit.wav"}).to_dict())',
        "```",
        "",
    ]
    return "\n".join(lines)


def _reliability_lines(config: ModelConfig) -> list[str]:
    """The card's lines on calibration and reliability (none for a checkpoint without them)."""
    rel = config.reliability
    if not rel:
        return []
    temps = ", ".join(f"{m} {b['temperature']:.2f}" for m, b in sorted(rel["branches"].items()))
    norm = all("norm" in b for b in rel["branches"].values())
    lines = [
        f"- **Calibration:** per-branch temperatures fitted on validation ({temps})",
        "- **Reliability:** distance of each branch's feature to its training statistics; a branch farther than "
        "95% of validation inputs"
        + (" (or whose feature norm is beyond 99% of them)" if norm else "")
        + " is reported off its training distribution",
    ]
    if config.fusion == "reliability":
        lines.append(f"- **Reliability weighting:** base `{rel['base']}`, alpha {rel['alpha']} (chosen on validation)")
    return lines


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
