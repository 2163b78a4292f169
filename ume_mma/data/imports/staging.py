"""Building a dataset folder all at once: files checked as their modality, then renamed into place."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from ume_mma.data.format import FILE_MODALITIES, METADATA, SPLITS, Sample, load_dataset, parse_sample, write_dataset
from ume_mma.decode import SAMPLE_KIND, Decoder, Limits
from ume_mma.errors import DatasetFormatError, DecodeError, UmeMmaError

MEDIA = "media"
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test"}  # fmt: skip


class ImportRefused(UmeMmaError, ValueError):
    """Input an importer cannot take (the message says which file, row or column, and why)."""


def split_name(name: str | None, where: str) -> str | None:
    """Our split for a source's split name (``validation`` -> ``val``); None stays None; others are refused."""
    if name is None or name == "":
        return None
    split = SPLIT_ALIASES.get(str(name).strip().lower())
    if split is None:
        raise ImportRefused(f"{where}: split {name!r} is not one of {', '.join(sorted(SPLIT_ALIASES))}")
    return split


def hashed_split(key: str, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """A seeded SHA-256 of ``key`` cut at ``fractions`` (the export's rule: a group never straddles splits)."""
    u = int(hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()[:16], 16) / 2**64
    edge = 0.0
    for name, share in zip(SPLITS, fractions, strict=True):
        edge += share
        if u < edge:
            return name
    return SPLITS[-1]


SHARES = {"train": 0.8, "val": 0.1, "test": 0.1}


def complete_splits(samples: list[Sample], seed: int = 0) -> list[str]:
    """Where the source's own splits leave ``val`` or ``test`` empty (a dataset with ``train`` and ``test`` only),
    its ``train`` rows are split by :func:`hashed_split` among ``train`` and the missing splits, in the proportions
    of 80/10/10 (train/test sources: 1 in 9 train rows becomes val). Returns the splits filled."""
    have = {s.split for s in samples}
    missing = [name for name in SPLITS if name not in have]
    if not missing or "train" not in have:
        return []
    names = ["train", *missing]
    total = sum(SHARES[n] for n in names)
    fractions = tuple(SHARES[n] / total if n in names else 0.0 for n in SPLITS)
    for s in samples:
        if s.split == "train":
            s.split = hashed_split(s.group or s.id or s.label, seed, fractions)
    return missing


def check_decodes(
    path: Path, modality: str, where: str, limits: Limits | None = None, shown: str | None = None
) -> None:
    """``path`` decodes as ``modality`` through the one decode path (an image column holding audio does not);
    ``shown``: how the message names the file (default: its path)."""
    if not path.is_file():
        raise ImportRefused(f"{where}: {shown or path}: file does not exist")
    try:
        Decoder(limits=limits or Limits(), num_frames=1, soundtrack=False)(SAMPLE_KIND[modality], path)
    except DecodeError as exc:
        raise ImportRefused(f"{where}: {shown or path} is not a readable {modality} ({exc.problem})") from None


class Staging:
    """A dataset folder under construction beside ``out`` (``with Staging(out) as st: ...``): ``add_file`` and
    ``add_bytes`` place checked media under ``media/<modality>/``; ``samples`` collects the lines; leaving the
    block fills empty splits from train (:func:`complete_splits`, ``seed``), writes ``metadata.jsonl``, reads it
    back and renames the folder to ``out``. Any error removes it all. ``out`` must be new or an empty folder.
    ``unlabelled``: samples may have no label (``label=None``: a folder for an annotation queue alone, which
    ``ume_mma.annotate.ingest.read_unlabelled`` reads; not a training set)."""

    def __init__(
        self, out: str | os.PathLike[str], limits: Limits | None = None, seed: int = 0, unlabelled: bool = False
    ) -> None:
        self.out = Path(out).expanduser().resolve()
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ImportRefused(f"{self.out} exists and is not an empty folder: choose a new output folder")
        self.limits, self.seed, self.unlabelled = limits or Limits(), seed, unlabelled
        self.samples: list[Sample] = []
        self.tmp: Path | None = None

    def __enter__(self) -> Staging:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=self.out.parent))
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self.tmp is not None
        try:
            if kind is None:
                self._finish()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        if kind is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _finish(self) -> None:
        if not self.samples:
            raise ImportRefused("nothing to import: no samples")
        complete_splits(self.samples, self.seed)
        if self.unlabelled:
            write_unlabelled(self.tmp, self.samples)
        else:
            write_dataset(self.tmp, self.samples)
            load_dataset(self.tmp)  # what we wrote must read back
        if self.out.exists():
            self.out.rmdir()
        os.replace(self.tmp, self.out)

    def _target(self, modality: str, stem: str, suffix: str) -> tuple[Path, str]:
        if modality not in FILE_MODALITIES:
            raise ImportRefused(f"{modality!r} is not a file modality ({', '.join(FILE_MODALITIES)})")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or "file"
        rel = f"{MEDIA}/{modality}/{safe}{suffix.lower()}"
        n = 1
        while (self.tmp / rel).exists():
            rel, n = f"{MEDIA}/{modality}/{safe}-{n}{suffix.lower()}", n + 1
        (self.tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        return self.tmp / rel, rel

    def add_file(self, source: Path, modality: str, where: str, stem: str | None = None) -> str:
        """Copy ``source`` (checked as ``modality``) into the folder; returns its relative path."""
        check_decodes(source, modality, where, self.limits)
        target, rel = self._target(modality, stem or source.stem, source.suffix)
        shutil.copyfile(source, target)
        return rel

    def add_bytes(self, data: bytes, modality: str, where: str, stem: str, suffix: str) -> str:
        """Write ``data`` (checked as ``modality``) as a file of the folder; returns its relative path."""
        target, rel = self._target(modality, stem, suffix or ".bin")
        target.write_bytes(data)
        try:
            check_decodes(target, modality, where, self.limits, shown=f"the {modality} bytes")
        except ImportRefused:
            target.unlink()
            raise
        return rel

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def extend(self, samples: Iterable[Sample]) -> None:
        self.samples.extend(samples)


def write_unlabelled(folder: Path, samples: list[Sample]) -> None:
    """``folder/metadata.jsonl`` where a line may have no label; every other field checked as ``write_dataset``
    checks it (files included)."""
    lines = []
    for n, s in enumerate(samples, start=1):
        obj = s.to_json()
        parse_sample({**obj, "label": obj.get("label") or "unlabelled"}, f"sample {n}", folder)
        lines.append(json.dumps(obj, ensure_ascii=False))
    (folder / METADATA).write_text("\n".join(lines) + "\n", encoding="utf-8")


def require_labels(samples: list[Sample], where: str) -> None:
    """At least two labels (a classifier needs them)."""
    labels = sorted({s.label for s in samples})
    if len(labels) < 2:
        raise DatasetFormatError(f"{where}: needs at least two labels, found {labels}")
