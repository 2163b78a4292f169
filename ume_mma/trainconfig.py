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

from ume_mma.errors import UmeMmaError


class ConfigError(UmeMmaError, ValueError):
    """A training config file or ``key=value`` override is missing, unreadable or invalid."""


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
    # column name -> dataset folder whose test split has one modality shifted (``python -m ume_mma.data build
    # shifted``): every model is scored there after training; never used for fitting or choosing
    shifted: dict[str, str] = field(default_factory=dict)
    cache_dir: str | None = "~/.cache/ume_mma/features"
    eval_repeats: int = 3
    save_all: bool = True  # also save every trained model, not only the chosen one
    init_from: str | None = None  # fine-tune: a UME-MMA checkpoint (folder or Hub id) to start from
    replay: float = 0.0  # fine-tune: share of base_data's train split mixed into training (keeps old skills)
    base_data: str | None = None  # fine-tune: the base checkpoint's dataset folder (for replay)
    # fine-tune: a branch keeps the base's encoder and head where its fine-tuned version is worse by K-fold
    # cross-validation over the annotations' groups (ume_mma.branchguard); cv_folds = K
    branch_guard: bool = True
    # fine-tune without base_data: mix in the replay memory the base checkpoint carries (ume_mma.replaymemory)
    replay_memory: bool = True
    cv_folds: int = 5
    # fine-tune: keeping the base's skills without its data (ume_mma.keepskills). distill: weight of the KL to the
    # base's predictions softened by temperature distill_t on every training batch (LwF; 0 = off); l2sp: weight of
    # the squared distance to the base's weights (L2-SP; 0 = off); wise_ft: a branch's weights interpolated
    # between the base's and the fine-tuned ones, the mix chosen by the branch guard's folds (needs branch_guard)
    distill: float = 0.0
    distill_t: float = 2.0
    l2sp: float = 0.0
    wise_ft: bool = False
    # fine-tune with an MMA base: the refitted fusion replaces the base's (over the guarded branches) only where it is
    # not worse by the branch guard's folds on the annotations and the held-out rows
    refit_guard: bool = True
    # after calibration, fit the per-branch correctness estimate on validation + the fitting drift families and
    # choose the fusion (base, reliability or correctness weighting, and its strength) on validation + the
    # held-out families (ume_mma.drift_choice), on at most drift_choice_rows validation rows
    drift_choice: bool = False
    drift_choice_rows: int = 200

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _kinds(kind: Any) -> tuple[Any, bool]:
    """``(the type, whether None is allowed)`` of a field annotation such as ``int | None``."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(kind))
    return kind, False


def _coerce(value: str, kind: Any) -> Any:
    """The typed value of an override's text, e.g. ``"3"`` -> 3 for an ``int`` field."""
    kind, optional = _kinds(kind)
    if optional and value.lower() in ("none", "null"):
        return None
    if kind is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"expected true/false, got {value!r}")
        return value.lower() in ("true", "1")
    if kind in (int, float, str):
        try:
            return kind(value)
        except ValueError:
            raise ConfigError(f"expected {kind.__name__}, got {value!r}") from None
    if typing.get_origin(kind) is dict or kind is dict:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f"expected a JSON object, got {value!r}") from None
    return value


def _check_type(key: str, value: Any, kind: Any) -> None:
    """A value read from a file must have its field's type (an int is accepted for a float)."""
    kind, optional = _kinds(kind)
    if value is None and optional:
        return
    expected = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}.get(kind, (dict,))
    if isinstance(value, bool) and kind is not bool or not isinstance(value, expected):
        raise ConfigError(f"config key {key!r}: expected {getattr(kind, '__name__', kind)}, got {value!r}")


def _read(path: str | Path) -> dict[str, Any]:
    """The table of a TOML (``.toml``) or JSON config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    toml = path.suffix == ".toml"
    try:
        data = tomllib.loads(text) if toml else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: invalid {'TOML' if toml else 'JSON'} ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a table of key = value, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None, overrides: list[str] = (), **defaults: Any) -> TrainConfig:
    """Read a TOML or JSON config, apply ``key=value`` overrides (``encoders.audio=name`` sets one
    entry of a dict field). Any problem (unreadable file, unknown key, wrong type, missing required
    key) raises :class:`ConfigError` with a one-line message."""
    data: dict[str, Any] = dict(defaults)
    if path is not None:
        data |= _read(path)
    hints = typing.get_type_hints(TrainConfig)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}; known: {sorted(hints)}")
    for key, value in data.items():
        _check_type(key, value, hints[key])
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        top, _, sub = key.partition(".")
        if top not in hints:
            raise ConfigError(f"unknown config key {top!r}; known: {sorted(hints)}")
        try:
            data[top] = {**data.get(top, {}), sub: value} if sub else _coerce(value, hints[top])
        except ConfigError as exc:
            raise ConfigError(f"override {item!r}: {exc}") from None
    required = [
        f.name for f in dataclasses.fields(TrainConfig) if f.default is f.default_factory is dataclasses.MISSING
    ]
    if data.get("init_from"):
        data = _finetune_defaults(data)
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"missing required config keys {missing}")
    cfg = TrainConfig(**data)
    _check_finetune(cfg)
    return cfg


def _finetune_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A fine-tuning config takes ``task``, ``encoders`` and ``fill`` from the base checkpoint unless it sets
    them; ``encoders`` it sets must be the base's (a fine-tune cannot swap an encoder). A base checkpoint
    whose config does not load is a :class:`ConfigError`."""
    from ume_mma.checkpoint import load_config as load_model_config
    from ume_mma.fusion import get_fusion

    try:
        base, _ = load_model_config(data["init_from"])
    except UmeMmaError as exc:
        raise ConfigError(f"init_from={data['init_from']!r}: the base checkpoint does not load: {exc}") from None
    names = {m: base.spec(m).name for m in base.modalities}
    if "encoders" in data and data["encoders"] != names:
        raise ConfigError(f"encoders {data['encoders']} differ from the base checkpoint's {names}")
    fill = base.fill if get_fusion(base.fusion).uses_fill else "zero"  # a UME base has no fill of its own
    return {"task": base.task, "encoders": names, "fill": fill} | data


def _check_finetune(cfg: TrainConfig) -> None:
    """Replay needs a base dataset and a base checkpoint, and a share in [0, 1]."""
    if not 0.0 <= cfg.replay <= 1.0:
        raise ConfigError(f"replay must be a share between 0 and 1, got {cfg.replay}")
    if (cfg.replay > 0 or cfg.base_data) and not cfg.init_from:
        raise ConfigError("replay and base_data only apply to a fine-tune: set init_from=CHECKPOINT")
    if cfg.distill < 0 or cfg.l2sp < 0 or cfg.distill_t <= 0:
        raise ConfigError(f"distill and l2sp must be >= 0 and distill_t > 0, got distill={cfg.distill}, "
                          f"l2sp={cfg.l2sp}, distill_t={cfg.distill_t}")  # fmt: skip
    if (cfg.distill > 0 or cfg.l2sp > 0 or cfg.wise_ft) and not cfg.init_from:
        raise ConfigError("distill, l2sp and wise_ft keep a base's skills: set init_from=CHECKPOINT")
    if cfg.replay > 0 and not cfg.base_data:
        raise ConfigError(f"replay={cfg.replay} needs base_data=DIR (the base checkpoint's dataset folder)")
