"""Fine-tuning from an existing UME-MMA checkpoint (``init_from``), with optional replay of the base data.

The base checkpoint gives every part a fine-tune starts from: the encoders and branch heads (the uni-modal
models start from them), the fusion's own parameters, the UME weights and the learned missing-modality
tokens (the MMA model gets them). Labels are the base's, in the base's order, then the data's labels the base
does not know (sorted): the heads grow by one row each (:mod:`ume_mma.labelgrow`: the old rows and the base's
answers are kept) and the config and card record the label history. Data that shares no label with the base
(the wrong checkpoint?), or whose new label has no training row, is refused (:class:`LabelMismatchError`).
``replay`` mixes a seeded share of the base dataset's train split into training, so that the model keeps what it
knew.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ume_mma import labelgrow
from ume_mma.checkpoint import from_pretrained
from ume_mma.errors import UmeMmaError
from ume_mma.evidence import held_out_evidence
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.report import accuracy_table
from ume_mma.trainconfig import ConfigError, TrainConfig

# Fine-tuning on a few annotations (tens to hundreds): the settings bench/bench_annotation_loop.py --sweep chose on
# the pool's validation of the av-digits-shift domain (never on its held-out part); the app's Train tab and
# /start_job start from them. Heads move slowly (head_lr, 2 epochs of frozen-encoder heads), MMA trains longer
# with strong modality dropout, and a little replay of the base data keeps the old test accuracy. Each branch may
# be WiSE-FT-interpolated toward the base, the mix chosen by the branch guard's folds; distillation and L2-SP
# (ume_mma.keepskills) stay off: bench/results/fewlabel_sweep.json, docs/finetune.md.
ANNOTATION_RECIPE: dict[str, Any] = {
    "replay": 0.1,
    "epochs": 8,
    "head_epochs": 2,
    "mma_epochs": 10,
    "batch_size": 32,
    "head_lr": 3e-3,
    "mma_lr": 1e-3,
    "dropout_p": 0.8,
    "wise_ft": True,
}


class LabelMismatchError(ConfigError):
    """The data's labels cannot extend the base checkpoint's: none in common, a new label without training rows,
    or replayed base data with a label the base does not know (a usage error: exit status 2)."""


class BaseLoadError(ConfigError):
    """The base checkpoint of a fine-tune does not load (a usage error: exit status 2)."""


@dataclass
class FineTune:
    """What a fine-tune run knows about its parent and its data (recorded in metrics and the model card)."""

    init_from: str
    base: MultiModalModel
    data: str
    base_data: str | None = None
    replay: float = 0.0
    replay_ids: list[str] = field(default_factory=list)
    before: dict[str, Any] | None = None  # the base checkpoint on this run's test split
    base_before: dict[str, Any] | None = None  # the base checkpoint on base_data's test split (with base_data)
    base_after: dict[str, Any] | None = None  # the chosen model on base_data's test split
    memory: dict[str, Any] | None = None  # the base checkpoint's replay memory mixed in (rows, source, licence)
    base_labels: list[str] = field(default_factory=list)  # the base checkpoint's own labels (before growing)
    added_labels: list[str] = field(default_factory=list)  # the data's labels the base did not know

    def record(self, after: dict[str, Any]) -> dict[str, Any]:
        """The ``finetune`` entry of metrics.json and of the checkpoint's metrics.json; ``evidence``: what the
        held-out annotations can tell (:func:`ume_mma.evidence.held_out_evidence`)."""
        return {
            "evidence": held_out_evidence(self.before, after),
            "init_from": self.init_from,
            "data": self.data,
            "base_data": self.base_data,
            "replay": self.replay,
            "replay_rows": len(self.replay_ids),
            "replay_memory": self.memory,
            "before": self.before,
            "after": after,
            "base_before": self.base_before,
            "base_after": self.base_after,
            "base_labels": self.base_labels,
            "added_labels": self.added_labels,
        }


def load_base(ref: str) -> MultiModalModel:
    """The base checkpoint (weights of frozen pre-trained encoders are not needed: their features are cached)."""
    try:
        return from_pretrained(ref, load_encoder_weights=False)
    except UmeMmaError as exc:
        raise BaseLoadError(f"init_from={ref!r}: the base checkpoint does not load: {exc}") from None


def check_labels(labels: Iterable[str], base_labels: list[str], where: str) -> None:
    """Every label of ``where`` must be one of the base checkpoint's own ``base_labels`` (replayed base data)."""
    unknown = sorted(set(labels) - set(base_labels))
    if unknown:
        raise LabelMismatchError(
            f"{where} has labels {unknown} that the base checkpoint does not know (it knows {base_labels}); "
            "replayed base data must be the base checkpoint's own data"
        )


def check_new_labels(labels: Iterable[str], train_labels: Iterable[str], base: MultiModalModel | ModelConfig,
                     where: str) -> list[str]:  # fmt: skip
    """The labels of ``where`` the base does not know (sorted; the heads grow by them). Refused: data that shares
    no label with the base (the base knows none of it: a new task, not a fine-tune), and a new label without a
    row in the train split (``train_labels``: nothing would teach it)."""
    labels = sorted(set(labels))
    added = labelgrow.added_labels(base.labels, labels)
    if added and len(added) == len(labels):
        raise LabelMismatchError(
            f"{where} has labels {added} that the base checkpoint does not know (it knows {base.labels}); no label "
            "in common: is this the base of this data? A fine-tune adds labels to a base that knows some of them"
        )
    untaught = sorted(set(added) - set(train_labels))
    if untaught:
        raise LabelMismatchError(
            f"{where}: new labels {untaught} (the base checkpoint does not know them) have no training rows: "
            "a new label needs examples in the train split"
        )
    return added


def start(cfg: TrainConfig, data_labels: list[str], train_labels: Iterable[str] | None = None) -> FineTune:
    """Load and check the base of a fine-tune (:func:`check_new_labels`; ``train_labels`` default: every label)
    and grow its heads by the data's new labels."""
    assert cfg.init_from
    base = load_base(cfg.init_from)
    added = check_new_labels(data_labels, data_labels if train_labels is None else train_labels, base, cfg.data)
    own = list(base.labels)
    base = labelgrow.grow(base, added, parent=cfg.init_from, source=cfg.data)
    return FineTune(cfg.init_from, base, cfg.data, cfg.base_data, cfg.replay, base_labels=own, added_labels=added)


def replay_samples(cfg: TrainConfig, ft: FineTune) -> list[Any]:
    """A seeded ``cfg.replay`` share of the base dataset's train split (file order kept), or nothing."""
    if not cfg.replay or not cfg.base_data:
        return []
    from ume_mma.data.format import load_dataset

    rows = load_dataset(cfg.base_data).split(cfg.train_split).samples
    check_labels({s.label for s in rows}, ft.base_labels, f"base_data {cfg.base_data}")
    k = round(cfg.replay * len(rows))
    picked = sorted(random.Random(cfg.seed).sample(range(len(rows)), k))
    samples = [rows[i] for i in picked]
    ft.replay_ids = [s.id or f"{cfg.base_data}#{i}" for s, i in zip(samples, picked)]
    return samples


def init_unimodal(model: MultiModalModel, base: MultiModalModel) -> MultiModalModel:
    """A uni-modal model starts from the base checkpoint's encoder and branch head of its modality."""
    (m,) = model.modalities
    model.encoders[m].load_state_dict(base.encoders[m].state_dict())
    model.heads[m].load_state_dict(base.heads[m].state_dict())
    return model


def init_fused(model: MultiModalModel, base: MultiModalModel) -> MultiModalModel:
    """A fused model takes the base's fusion parameters (same mode) and missing-modality tokens (same fill)."""
    if model.config.fusion == base.config.fusion:
        model.fusion.load_state_dict(base.fusion.state_dict())
    if model.config.fill == base.config.fill:
        for m, token in base.missing_tokens.items():
            if m in model.missing_tokens:
                model.missing_tokens[m].data.copy_(token.data)
    return model


def ume_weights(base: MultiModalModel) -> dict[str, float] | None:
    """The base's UME weights (when it is a UME model, or a reliability-weighted one over UME), for the fine-tuned
    UME model."""
    from ume_mma.calibrate import base_mode

    return base.config.ume_weights if base_mode(base) == "ume" else None


def notes(record: dict[str, Any]) -> str:
    """The model card's fine-tune section: parent, data, replay, and the test accuracy before and after."""
    lines = [
        f"## Fine-tuned from `{record['init_from']}`",
        "",
        f"- **Data:** `{record['data']}`",
    ]
    if record["replay_rows"]:
        lines.append(
            f"- **Replay:** {record['replay_rows']} rows ({record['replay']:.0%} of the train split) "
            f"of `{record['base_data']}`"
        )
    if record.get("added_labels"):
        lines.append(
            f"- **New labels:** {', '.join(record['added_labels'])} (the heads grew by one row each; the parent's "
            f"labels {', '.join(record['base_labels'])} kept their rows)"
        )
    if record.get("replay_memory"):
        mem = record["replay_memory"]
        what = [f"{mem['rows']} training rows"] if mem["rows"] else []
        if mem.get("heldout_rows"):
            what.append(f"{mem['heldout_rows']} held-out rows (never trained on: scored by the branch guard)")
        lines.append(
            f"- **Replay memory:** {' and '.join(what)} carried by the parent (`{mem['source']}`; {mem['licence']})"
        )
    rows = [(["before (parent)"], "before", [record["before"]["accuracy"]])] if record.get("before") else []
    rows.append((["after"], "after", [record["after"]["accuracy"]]))
    lines += ["", "Test split of the new data:", "", accuracy_table(["model"], rows)]
    if record.get("base_before") and record.get("base_after"):
        base_rows = [(["before (parent)"], "before", [record["base_before"]["accuracy"]]),
                     (["after"], "after", [record["base_after"]["accuracy"]])]  # fmt: skip
        lines += ["", f"Test split of the base data `{record['base_data']}`:", "", accuracy_table(["model"], base_rows)]
    return "\n".join(lines)
