"""A folder of class subfolders, or a CSV of file paths and labels, into the dataset format.

Folder layout: ``SRC/<label>/<file>`` or, with splits, ``SRC/<split>/<label>/<file>`` (``train``, ``val`` or
``validation``, ``test``). Files of one label folder that share a stem are one sample with several modalities
(``cat/001.png`` + ``cat/001.wav`` + ``cat/001.txt``: image, audio, text); the modality of a file comes from its
content (:func:`ume_mma.io.probe_kind`), ``.txt`` files are text. Without split folders, a seeded hash of
``label/stem`` assigns 80/10/10.

CSV: one row per sample, a header naming the columns: ``label`` (or ``--label COL``) and any of ``image``,
``audio``, ``video`` (file paths, relative to the CSV's folder or ``root``), ``text``, ``split``, ``group``,
``id``; an empty cell is a missing modality.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

from ume_mma import io
from ume_mma.data.format import FILE_MODALITIES, Sample
from ume_mma.data.imports.staging import ImportRefused, Staging, hashed_split, require_labels, split_name
from ume_mma.errors import DecodeError

TEXT_SUFFIXES = (".txt",)


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _label_dirs(src: Path) -> list[tuple[str | None, Path]]:
    """(split or None, label folder) pairs: split folders when every top-level folder is a split name."""
    tops = [p for p in _visible(src) if p.is_dir()]
    if not tops:
        raise ImportRefused(f"{src}: no class subfolders (expected SRC/<label>/<file> or SRC/<split>/<label>/<file>)")
    splits = {p.name.lower() for p in tops}
    aliases = {"train", "val", "valid", "validation", "dev", "test"}
    if splits <= aliases:
        return [(split_name(t.name, str(t)), d) for t in tops for d in _visible(t) if d.is_dir()]
    return [(None, d) for d in tops]


def _kind(path: Path) -> str:
    if path.suffix.lower() in TEXT_SUFFIXES:
        return "text"
    try:
        return io.probe_kind(path)
    except DecodeError as exc:
        raise ImportRefused(f"{path}: not an image, audio, video or .txt file ({exc.problem})") from None


def import_folder(src: str | os.PathLike[str], out: str | os.PathLike[str], seed: int = 0) -> Path:
    """Import a folder of class subfolders into ``out`` (new); returns ``out``."""
    root = Path(src).expanduser().resolve()
    if not root.is_dir():
        raise ImportRefused(f"{src}: not a folder")
    pairs = _label_dirs(root)
    with Staging(out, seed=seed) as st:
        for split, folder in pairs:
            stems: dict[str, dict[str, Path]] = defaultdict(dict)
            for f in _visible(folder):
                if f.is_dir():
                    raise ImportRefused(f"{f}: a folder inside label folder {folder.name!r} (one level of labels)")
                kind = _kind(f)
                if kind in stems[f.stem]:
                    raise ImportRefused(f"{f}: a second {kind} for sample {folder.name}/{f.stem}")
                stems[f.stem][kind] = f
            for stem, files in sorted(stems.items()):
                key = f"{folder.name}/{stem}"
                where = f"{folder.relative_to(root)}/{stem}"
                media = {m: st.add_file(p, m, where, stem=f"{folder.name}-{stem}")
                         for m, p in files.items() if m in FILE_MODALITIES}  # fmt: skip
                text = files["text"].read_text(encoding="utf-8").strip() if "text" in files else None
                st.add(Sample(label=folder.name, text=text, split=split or hashed_split(key, seed), id=key, **media))
        require_labels(st.samples, str(src))
    return st.out


def import_csv(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    label: str = "label",
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    unlabelled: bool = False,
) -> Path:
    """Import a CSV of file paths and labels into ``out`` (new); paths are relative to ``root`` (default: the
    CSV's folder). ``unlabelled``: an empty label cell is a row to annotate (a folder for an annotation queue),
    not an error. Returns ``out``."""
    csv_path = Path(path).expanduser().resolve()
    if not csv_path.is_file():
        raise ImportRefused(f"{path}: no such CSV file")
    base = Path(root).expanduser().resolve() if root else csv_path.parent
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        rows = list(reader)
    if label not in columns:
        raise ImportRefused(f"{path}: no label column {label!r}; the columns are {columns}")
    used = {label, *FILE_MODALITIES, "text", "split", "group", "id"}
    if not set(columns) & {*FILE_MODALITIES, "text"}:
        raise ImportRefused(f"{path}: no input column (image, audio, video or text); the columns are {columns}")
    unknown = sorted(set(columns) - used)
    with Staging(out, seed=seed, unlabelled=unlabelled) as st:
        for n, row in enumerate(rows, start=2):  # line 1 is the header
            where = f"{csv_path.name} line {n}"
            value = (row.get(label) or "").strip() or None
            if value is None and not unlabelled:
                raise ImportRefused(f"{where}: empty label")
            media = {}
            for m in FILE_MODALITIES:
                cell = (row.get(m) or "").strip()
                if cell:
                    file = Path(cell) if Path(cell).is_absolute() else base / cell
                    media[m] = st.add_file(file, m, where, stem=f"{n:06d}-{file.stem}")
            text = row.get("text") or None
            sid = (row.get("id") or "").strip() or f"{csv_path.stem}-{n}"
            split = split_name(row.get("split"), where) or hashed_split(sid, seed)
            meta = {k: row[k] for k in unknown if row.get(k)}
            st.add(Sample(label=value, text=text, split=split, group=(row.get("group") or None), id=sid, meta=meta,
                          **media))  # fmt: skip
        if not unlabelled:
            require_labels(st.samples, str(path))
    return st.out
