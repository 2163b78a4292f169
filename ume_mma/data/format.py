"""The one dataset format: a folder with ``metadata.jsonl``, one JSON object per line.

Fields of a line (any other key must go under ``meta``)::

    label   str, required, non-empty
    image   path relative to the folder, or null/absent = modality missing
    audio   same
    video   same
    text    str, or null/absent = missing ("" is a present, empty text, NOT missing)
    split   "train" | "val" | "test", optional
    group   str, optional (speaker, emoji family...: samples of one group share a split)
    id      str, optional, unique
    meta    dict, optional (free-form extra information)

A sample needs at least one modality. Paths may not be absolute or escape the folder.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ume_mma.errors import DatasetFormatError
from ume_mma.registry import MODALITIES

METADATA = "metadata.jsonl"
FILE_MODALITIES = ("audio", "image", "video")
SPLITS = ("train", "val", "test")
FIELDS = ("label", *MODALITIES, "split", "group", "id", "meta")


@dataclass
class Sample:
    """One line of ``metadata.jsonl``. ``None`` means the modality is missing."""

    label: str
    image: str | None = None
    audio: str | None = None
    video: str | None = None
    text: str | None = None
    split: str | None = None
    group: str | None = None
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    root: Path | None = field(default=None, repr=False, compare=False)

    @property
    def present(self) -> tuple[str, ...]:
        """Modalities this sample has (an empty text counts as present)."""
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)

    def has(self, modality: str) -> bool:
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r} (known: {', '.join(MODALITIES)})")
        return getattr(self, modality) is not None

    def path(self, modality: str) -> Path:
        """Absolute path of the file of ``modality`` (audio, image or video)."""
        if modality not in FILE_MODALITIES:
            raise ValueError(f"{modality!r} is not a file modality ({', '.join(FILE_MODALITIES)})")
        rel = getattr(self, modality)
        if rel is None:
            raise ValueError(f"sample {self.id or self.label!r} has no {modality}")
        if self.root is None:
            raise ValueError("sample has no root folder (it was not loaded with load_dataset)")
        return self.root / rel

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this sample (None fields and an empty meta are omitted)."""
        out: dict[str, Any] = {}
        for name in FIELDS:
            value = getattr(self, name)
            if value is None or (name == "meta" and not value):
                continue
            out[name] = value
        return out


@dataclass
class Dataset:
    root: Path
    samples: list[Sample]

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def labels(self) -> list[str]:
        return sorted({s.label for s in self.samples})

    @property
    def modalities(self) -> list[str]:
        return sorted({m for s in self.samples for m in s.present})

    @property
    def splits(self) -> list[str]:
        return sorted({s.split for s in self.samples if s.split is not None})

    def split(self, name: str) -> Dataset:
        return Dataset(self.root, [s for s in self.samples if s.split == name])


def _check_path(where: str, name: str, value: Any, root: Path | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise DatasetFormatError(f"{where}: field '{name}': must be a relative path or null, got {value!r}")
    norm = posixpath.normpath(value.replace("\\", "/"))
    if posixpath.isabs(norm) or os.path.isabs(value) or norm == ".." or norm.startswith("../"):
        raise DatasetFormatError(f"{where}: field '{name}': path {value!r} escapes the dataset folder")
    if root is not None and not (root / value).is_file():
        raise DatasetFormatError(f"{where}: field '{name}': file {value!r} does not exist")
    return value


def _optional_str(where: str, name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise DatasetFormatError(f"{where}: field '{name}': must be a string or null, got {value!r}")
    return value


def parse_sample(obj: Any, where: str, root: Path | None = None) -> Sample:
    """Validate one decoded JSON line. ``root`` given: also check that files exist."""
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in obj:
        if key not in FIELDS:
            raise DatasetFormatError(
                f"{where}: unknown field {key!r} (allowed: {', '.join(FIELDS)}; put extra keys under 'meta')"
            )
    label = obj.get("label")
    if not isinstance(label, str) or not label.strip():
        raise DatasetFormatError(f"{where}: field 'label': must be a non-empty string, got {label!r}")
    files = {m: _check_path(where, m, obj.get(m), root) for m in FILE_MODALITIES}
    text = _optional_str(where, "text", obj.get("text"))
    split = obj.get("split")
    if split is not None and split not in SPLITS:
        raise DatasetFormatError(f"{where}: field 'split': must be one of {', '.join(SPLITS)} or null, got {split!r}")
    meta = obj.get("meta")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise DatasetFormatError(f"{where}: field 'meta': must be a JSON object, got {meta!r}")
    sample = Sample(
        label=label,
        text=text,
        split=split,
        meta=meta,
        root=root,
        group=_optional_str(where, "group", obj.get("group")),
        id=_optional_str(where, "id", obj.get("id")),
        **files,
    )
    if not sample.present:
        raise DatasetFormatError(f"{where}: sample has no modality (needs at least one of {', '.join(MODALITIES)})")
    return sample


def _check_ids(samples: Iterable[tuple[int, Sample]]) -> None:
    seen: dict[str, int] = {}
    for lineno, s in samples:
        if s.id is None:
            continue
        if s.id in seen:
            raise DatasetFormatError(
                f"{METADATA} line {lineno}: field 'id': duplicate id {s.id!r} (first on line {seen[s.id]})"
            )
        seen[s.id] = lineno


def json_lines(folder: str | os.PathLike[str]) -> list[tuple[int, str, Any]]:
    """(line number, "metadata.jsonl line N", parsed JSON) for every non-blank line of ``folder``'s
    metadata.jsonl; a missing file, a line that is not JSON or a file without lines raise DatasetFormatError."""
    meta_path = Path(folder) / METADATA
    if not meta_path.is_file():
        raise DatasetFormatError(f"{folder}: no {METADATA} in this folder")
    out = []
    with meta_path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{METADATA} line {lineno}"
            try:
                out.append((lineno, where, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not out:
        raise DatasetFormatError(f"{meta_path}: no samples")
    return out


def load_dataset(folder: str | os.PathLike[str], split: str | None = None, check_files: bool = True) -> Dataset:
    """Read and validate ``folder/metadata.jsonl``; keep only ``split`` if given."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise DatasetFormatError(f"{folder}: not a directory")
    if split is not None and split not in SPLITS:
        raise DatasetFormatError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    numbered = [(n, parse_sample(obj, where, root if check_files else None)) for n, where, obj in json_lines(root)]
    _check_ids(numbered)
    samples = [s for _, s in numbered]
    for s in samples:
        s.root = root
    if split is not None:
        samples = [s for s in samples if s.split == split]
        if not samples:
            present = sorted({s.split for _, s in numbered if s.split})
            raise DatasetFormatError(f"{folder}: no samples with split {split!r} (splits: {present or 'none'})")
    return Dataset(root, samples)


def write_dataset(folder: str | os.PathLike[str], samples: Iterable[Sample]) -> Path:
    """Validate ``samples`` and write ``folder/metadata.jsonl`` atomically. Returns its path."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    numbered = []
    lines = []
    for lineno, s in enumerate(samples, start=1):
        obj = s.to_json()
        numbered.append((lineno, parse_sample(obj, f"sample {lineno}")))
        lines.append(json.dumps(obj, ensure_ascii=False))
    _check_ids(numbered)
    fd, tmp = tempfile.mkstemp(prefix=".metadata.", suffix=".tmp", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + ("\n" if lines else ""))
        os.replace(tmp, root / METADATA)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return root / METADATA
