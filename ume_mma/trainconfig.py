"""The typed training configuration: a TOML/JSON file plus ``key=value`` overrides; unknown keys are errors."""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    """Everything one training run needs. Saved as ``train_config.json`` beside the outputs."""

    task: str
    data: str  # dataset folder (metadata.jsonl)
    out: str  # output folder
    encoders: dict[str, str]  # modality -> registered encoder name
    seed: int = 0
    batch_size: int = 64
    epochs: int = 8  # uni-modal models and the naive fusion baseline
    head_epochs: int | None = None  # uni-modal models whose encoder is frozen (default: epochs)
    mma_epochs: int = 4  # MMA fine-tuning
    lr: float = 2e-3
    mma_lr: float = 5e-4  # MMA fine-tuning from the uni-modal models
    head_lr: float = 1e-2  # for models whose encoders are all frozen
    weight_decay: float = 1e-4
    dropout_p: float = 0.5  # MMA: probability that a sample loses one modality
    fill: str = "zero"  # late fusion fill for missing modalities
    repair: str | None = None  # modality re-paired within its label every epoch (av-digits)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    test_meta: dict[str, Any] = field(default_factory=dict)  # keep test rows whose meta matches (e.g. style)
    limit: int | None = None  # cap samples per split (smoke runs, tests)
    cache_dir: str | None = "~/.cache/ume_mma/features"
    eval_repeats: int = 3
    save_all: bool = True  # also save every trained model, not only the chosen one
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if value.lower() in ("none", "null") and type(None) in typing.get_args(kind):
        return None
    if origin is typing.Union or origin is types.UnionType:
        kind = args[0]
        origin = typing.get_origin(kind)
    if kind is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true/false, got {value!r}")
        return value.lower() in ("true", "1")
    if kind in (int, float, str):
        return kind(value)
    if origin is dict or kind is dict:
        return json.loads(value)
    return value


def load_config(path: str | Path | None, overrides: list[str] = (), **defaults: Any) -> TrainConfig:
    """Read a TOML or JSON config, apply ``key=value`` overrides (``encoders.audio=name`` sets one
    entry of a dict field). Unknown keys raise ``ValueError`` naming the known ones."""
    data: dict[str, Any] = dict(defaults)
    if path is not None:
        text = Path(path).read_text()
        data |= tomllib.loads(text) if str(path).endswith(".toml") else json.loads(text)
    hints = typing.get_type_hints(TrainConfig)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        top, _, sub = key.partition(".")
        if top not in hints:
            raise ValueError(f"unknown config key {top!r}; known: {sorted(hints)}")
        if sub:
            data[top] = {**data.get(top, {}), sub: value}
        else:
            data[top] = _coerce(value, hints[top])
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known: {sorted(hints)}")
    return TrainConfig(**data)
