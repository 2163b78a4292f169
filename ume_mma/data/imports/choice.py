"""Every importer behind one name (the app's importer choice and ``/import_data``): a registry of
:class:`Importer` specs, the options each takes, and a summary of what an import wrote.

    folder, skipped = run_import("csv", "list.csv", "data/my-clips", {"label": "class", "root": "media/"})
    summary = summarize(load_dataset(folder), skipped)  # rows, labels, modalities, splits, what was left out

Names: ``dataset`` (a folder in our format, copied and checked), ``folder`` (class subfolders), ``csv``,
``hf`` (a Hugging Face dataset: a local copy, parquet files) and ``label-studio`` (a JSON export). Options are
the command line's (``python -m ume_mma.data import KIND ...``): ``label``, ``root``, ``media_root``,
``from_name``, ``image``/``audio``/``video``/``text`` (columns or keys) and ``seed``; one an importer does not
take is refused in words. Every importer writes through :class:`~ume_mma.data.imports.staging.Staging`: bad
input imports nothing.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ume_mma.data.format import FILE_MODALITIES, MODALITIES, SPLITS, Sample, load_dataset
from ume_mma.data.imports.staging import ImportRefused, Staging

MAX_OPTION_CHARS = 512  # a column name, key or folder given as an option
Run = Callable[[Path, Path, dict[str, Any], bool], tuple[Path, list[str]]]  # (source, out, options, unlabelled)


@dataclass(frozen=True)
class Importer:
    """One importer: its ``name`` (the CLI's), a ``title`` for a choice list, the ``options`` it takes, what its
    ``source`` is (for messages) and ``run``."""

    name: str
    title: str
    source: str
    options: tuple[str, ...]
    run: Run


def _dataset(src: Path, out: Path, opts: dict[str, Any], unlabelled: bool) -> tuple[Path, list[str]]:
    return import_dataset_folder(src, out), []


def _folder(src: Path, out: Path, opts: dict[str, Any], unlabelled: bool) -> tuple[Path, list[str]]:
    from ume_mma.data.imports.folders import import_folder

    return import_folder(src, out, seed=opts.get("seed", 0)), []


def _csv(src: Path, out: Path, opts: dict[str, Any], unlabelled: bool) -> tuple[Path, list[str]]:
    from ume_mma.data.imports.folders import import_csv

    label, root, seed = opts.get("label", "label"), opts.get("root"), opts.get("seed", 0)
    return import_csv(src, out, label=label, root=root, seed=seed, unlabelled=unlabelled), []


def _hf(src: Path, out: Path, opts: dict[str, Any], unlabelled: bool) -> tuple[Path, list[str]]:
    from ume_mma.data.imports.hf import import_hf

    columns = {f: opts[f] for f in ("label", *MODALITIES) if opts.get(f)}
    return import_hf(str(src), out, columns, seed=opts.get("seed", 0)), []


def _label_studio(src: Path, out: Path, opts: dict[str, Any], unlabelled: bool) -> tuple[Path, list[str]]:
    from ume_mma.data.imports.labelstudio import import_label_studio

    keys = {m: opts[m] for m in MODALITIES if opts.get(m)}
    folder, n = import_label_studio(src, out, opts.get("media_root"), keys, opts.get("from_name"),
                                    seed=opts.get("seed", 0), unlabelled=unlabelled)  # fmt: skip
    why = f"{n} task{'' if n == 1 else 's'} without an annotation (no label): left out"
    return folder, [why] if n and not unlabelled else []


COLUMNS = ("image", "audio", "video", "text")
IMPORTERS: dict[str, Importer] = {
    i.name: i
    for i in (
        Importer("dataset", "dataset folder (ours)", "a folder with metadata.jsonl", (), _dataset),
        Importer("folder", "class subfolders", "a folder of class subfolders", ("seed",), _folder),
        Importer("csv", "CSV of paths and labels", "a CSV file", ("label", "root", "seed"), _csv),
        Importer("hf", "Hugging Face dataset (local copy / parquet)",
                 "a save_to_disk folder, parquet files or a dataset folder", ("label", *COLUMNS, "seed"), _hf),
        Importer("label-studio", "Label Studio export (JSON)", "a Label Studio JSON export",
                 ("media_root", "from_name", *COLUMNS, "seed"), _label_studio),
    )
}  # fmt: skip


def importer(name: str) -> Importer:
    """The importer called ``name`` (or its title), else :class:`ImportRefused` listing them."""
    for spec in IMPORTERS.values():
        if name in (spec.name, spec.title):
            return spec
    known = ", ".join(f"{i.name!r} ({i.title})" for i in IMPORTERS.values())
    raise ImportRefused(f"unknown importer {name!r}; the importers are {known}")


def check_options(spec: Importer, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` for ``spec``: known names only, text values (``seed`` a whole number); None or empty: none."""
    out: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if key not in spec.options:
            takes = ", ".join(spec.options) or "no options"
            raise ImportRefused(f"option {key!r} is not one of the {spec.name} importer's ({takes})")
        if value is None or value == "":
            continue
        if key == "seed":
            if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
                raise ImportRefused(f"option seed must be a whole number, got {value!r}")
            out[key] = int(value)
        elif not isinstance(value, str) or len(value) > MAX_OPTION_CHARS:
            raise ImportRefused(f"option {key!r} must be text of at most {MAX_OPTION_CHARS} characters")
        else:
            out[key] = value.strip()
    return out


def run_import(
    name: str,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: Mapping[str, Any] | None = None,
    unlabelled: bool = False,
) -> tuple[Path, list[str]]:
    """Import ``source`` with the importer ``name`` into the new folder ``out``. Returns ``(out, skipped)``:
    what was left out and why (Label Studio tasks without an annotation); anything else bad refuses it all.
    ``unlabelled``: rows without a label (an empty CSV cell, a task without an annotation) are kept without one:
    a folder for an annotation queue alone (``ume_mma.annotate.ingest.read_unlabelled`` reads it)."""
    spec = importer(name)
    opts = check_options(spec, options)
    text = os.fspath(source).strip()
    if not text:
        raise ImportRefused(f"give the source: {spec.source}")
    path = Path(text).expanduser()
    if not path.exists() and not (spec.name == "hf" and "/" in text and not path.is_absolute()):  # a Hub id
        raise ImportRefused(f"{text}: no such file or folder")
    return spec.run(path, Path(out), opts, unlabelled)


def import_dataset_folder(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Copy a dataset folder in our format into ``out`` (new): every line validated by ``load_dataset``, every
    file decoded as its modality on the way. Splits, groups, ids and meta are kept."""
    data = load_dataset(src)
    with Staging(out) as st:
        for n, s in enumerate(data.samples, start=1):
            where = f"metadata.jsonl line {n}"
            media = {m: st.add_file(s.path(m), m, where, stem=f"{n:06d}-{s.path(m).stem}")
                     for m in FILE_MODALITIES if s.has(m)}  # fmt: skip
            st.add(Sample(label=s.label, text=s.text, split=s.split, group=s.group, id=s.id, meta=dict(s.meta),
                          **media))  # fmt: skip
    return st.out


def summarize(samples: Iterable[Sample], skipped: list[str] | None = None) -> dict[str, Any]:
    """What an import holds: ``rows``, ``labels`` (label -> rows), ``unlabelled`` (rows without a label: a queue's
    folder may have them), ``modalities`` (modality -> rows that have it), ``splits`` (split -> rows) and
    ``skipped`` (what the import left out, and why)."""
    rows = list(samples)
    mods = Counter(m for s in rows for m in s.present)
    splits = Counter(s.split or "(none)" for s in rows)
    return {
        "rows": len(rows),
        "labels": dict(sorted(Counter(s.label for s in rows if s.label is not None).items())),
        "unlabelled": sum(s.label is None for s in rows),
        "modalities": {m: mods[m] for m in MODALITIES if mods[m]},
        "splits": {s: splits[s] for s in (*SPLITS, "(none)") if splits[s]},
        "skipped": list(skipped or []),
    }
