"""Hugging Face ``datasets`` in and out of the dataset format.

**In** (:func:`import_hf`): a ``save_to_disk`` folder, parquet files (a file or a folder of them), a dataset
folder ``datasets.load_dataset`` reads, or a Hub id (on a machine that reaches the Hub). Columns map by name:
``label`` (or the one ``ClassLabel`` column), ``image``/``audio``/``video`` (or the one column of that feature
type), ``text``; ``columns`` overrides any of them (``{"label": "fine_label", "image": "img"}``). A column mapped
to a file modality must be of that feature type (an ``Audio`` column is not an image) or hold file bytes or paths,
which are decoded as that modality (audio bytes in an image column are refused). Splits named ``train``,
``validation``/``val``/``dev`` and ``test`` keep their names; a dataset with other or no splits gets a seeded 80/10/10
split. Media are read undecoded (``decode=False``: the bytes as stored; no torchcodec needed).

**Out** (:func:`export_hf`): a dataset folder becomes ``data/<split>-00000-of-00001.parquet`` with typed features
(``label``: ``ClassLabel``, ``image``: ``Image``, ``audio``: ``Audio``, ``video``: ``Video``, ``text``, ``id``,
``group``) and a README whose YAML names the splits' files, so ``datasets.load_dataset(folder)`` reads it (and the
Hub does, once pushed). Written beside an existing folder (``out`` = the folder) or into a new one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ume_mma.data.format import FILE_MODALITIES, SPLITS, Sample, load_dataset
from ume_mma.data.imports.staging import SPLIT_ALIASES, ImportRefused, Staging, hashed_split, require_labels

HF_SPLIT = {"train": "train", "val": "validation", "test": "test"}
FEATURE_OF = {"image": "Image", "audio": "Audio", "video": "Video"}
README_YAML = re.compile(r"\A---\n.*?\n---\n", re.S)


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:  # pragma: no cover - pinned in requirements.txt
        raise ImportRefused("the Hugging Face importer needs the datasets library: pip install datasets") from None
    datasets.disable_progress_bars()
    return datasets


def load_source(source: str, cache_dir: str | None = None) -> dict[str, Any]:
    """split name -> ``datasets.Dataset`` of ``source`` (see the module docstring for what it may be). Local files
    are read through ``cache_dir`` (give a fresh one: the datasets cache keys a local folder by its name and
    patterns, so another folder of the same name could be read from a stale cache)."""
    ds = _datasets()
    path = Path(source).expanduser()
    local = {"cache_dir": cache_dir} if cache_dir else {}
    try:
        if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
            loaded = ds.load_from_disk(str(path))
        elif path.is_file() and path.suffix == ".parquet":
            loaded = ds.load_dataset("parquet", data_files={"train": str(path)}, **local)
        elif path.is_dir() and not (path / "README.md").is_file() and list(path.glob("*.parquet")):
            files = sorted(str(p) for p in path.glob("*.parquet"))
            loaded = ds.load_dataset("parquet", data_files={"train": files}, **local)
        elif path.exists() or "/" in source or not path.is_absolute():
            if not path.exists() and os.environ.get("HF_HUB_OFFLINE") == "1":
                raise ImportRefused(f"{source}: no such folder or file, and the Hub is off (HF_HUB_OFFLINE=1)")
            loaded = ds.load_dataset(str(path), **local) if path.exists() else ds.load_dataset(source)
        else:
            raise ImportRefused(f"{source}: no such folder or file")
    except ImportRefused:
        raise
    except Exception as exc:  # datasets raises many kinds (FileNotFoundError, DatasetNotFoundError, ValueError)
        why = f"{type(exc).__name__}: {exc}"
        raise ImportRefused(f"{source}: not a dataset the datasets library reads ({why})") from None
    return dict(loaded) if isinstance(loaded, ds.DatasetDict) else {"train": loaded}


def _kind(feature: Any) -> str:
    return type(feature).__name__


def map_columns(features: dict[str, Any], columns: dict[str, str] | None, where: str) -> dict[str, str]:
    """Our field (``label`` and modalities) -> the dataset's column, by name, by feature type, then ``columns``."""
    given = dict(columns or {})
    bad = sorted(set(given) - {"label", "text", *FILE_MODALITIES})
    if bad:
        raise ImportRefused(f"unknown field {bad} to map; map label, image, audio, video or text")
    names = list(features)
    out: dict[str, str] = {}
    for field in ("label", "text", *FILE_MODALITIES):
        if field in given:
            out[field] = given[field]
        elif field in features:
            out[field] = field
        else:
            wanted = "ClassLabel" if field == "label" else FEATURE_OF.get(field)
            typed = [c for c in names if wanted and _kind(features[c]) == wanted]
            if len(typed) == 1:
                out[field] = typed[0]
    for field, col in out.items():
        if col not in features:
            raise ImportRefused(f"{where}: no column {col!r} for {field}; the columns are {names}")
        kind = _kind(features[col])
        if field in FILE_MODALITIES and kind in FEATURE_OF.values() and kind != FEATURE_OF[field]:
            raise ImportRefused(f"{where}: column {col!r} holds {kind} data, not {field}: map it to another field")
    if "label" not in out:
        raise ImportRefused(f"{where}: no label column (named 'label', or one ClassLabel column); the columns are "
                            f"{names}: name it with --label COLUMN")  # fmt: skip
    if not set(out) - {"label"}:
        raise ImportRefused(f"{where}: no input column (image, audio, video or text); the columns are {names}")
    return out


def _undecoded(ds: Any, mapping: dict[str, str]) -> Any:
    """``ds`` with its Image/Audio/Video columns read as ``{"bytes", "path"}``."""
    datasets = _datasets()
    for col in mapping.values():
        kind = _kind(ds.features[col])
        if kind in FEATURE_OF.values():
            ds = ds.cast_column(col, getattr(datasets, kind)(decode=False))
    return ds


def _label_of(value: Any, feature: Any, where: str) -> str:
    if value is None or value == "" or (isinstance(value, int) and value < 0):
        raise ImportRefused(f"{where}: no label")
    if _kind(feature) == "ClassLabel":
        return feature.int2str(int(value))
    return str(value)


def _media(st: Staging, value: Any, field: str, where: str, stem: str, base: Path | None) -> str | None:
    """Place one media cell (``{"bytes", "path"}``, bytes, or a path) in the staging folder."""
    if value is None:
        return None
    if isinstance(value, dict):
        data, name = value.get("bytes"), value.get("path")
    elif isinstance(value, bytes | bytearray):
        data, name = bytes(value), None
    elif isinstance(value, str):
        data, name = None, value
    else:
        raise ImportRefused(f"{where}: the {field} cell holds {type(value).__name__}, not a file")
    if data:
        return st.add_bytes(data, field, where, stem, Path(name).suffix if name else ".bin")
    if name:
        file = Path(name) if Path(name).is_absolute() or base is None else base / name
        return st.add_file(file, field, where, stem=stem)
    return None


def import_hf(source: str, out: str | os.PathLike[str], columns: dict[str, str] | None = None, seed: int = 0) -> Path:
    """Import a Hugging Face dataset (``source``) into the folder ``out`` (new); returns ``out``."""
    with tempfile.TemporaryDirectory(prefix="ume-mma-hf-") as cache:
        return _import(load_source(source, cache), source, out, columns, seed)


def _import(parts: dict[str, Any], source: str, out: str | os.PathLike[str], columns: dict[str, str] | None,
            seed: int) -> Path:  # fmt: skip
    ours = {name: SPLIT_ALIASES.get(name.lower()) for name in parts}
    keep_splits = all(ours.values()) and len(set(ours.values())) == len(ours)
    base = Path(source).expanduser() if Path(source).expanduser().is_dir() else None
    seen: set[str] = set()
    with Staging(out, seed=seed) as st:
        for name, ds in parts.items():
            where = f"{source} [{name}]"
            mapping = map_columns(dict(ds.features), columns, where)
            raw = _undecoded(ds, mapping)
            for i, row in enumerate(raw):
                at = f"{where} row {i}"
                sid = str(row.get("id") or f"{name}-{i}")
                media = {m: _media(st, row[col], m, at, f"{name}-{i}", base)
                         for m, col in mapping.items() if m in FILE_MODALITIES}  # fmt: skip
                text = row[mapping["text"]] if "text" in mapping else None
                if text is not None and not isinstance(text, str):
                    raise ImportRefused(f"{at}: the text cell holds {type(text).__name__}, not a string")
                group = row.get("group") if isinstance(row.get("group"), str) else None
                split = ours[name] if keep_splits else hashed_split(group or sid, seed)
                label = _label_of(row[mapping["label"]], ds.features[mapping["label"]], at)
                sid = f"{name}-{sid}" if sid in seen else sid
                seen.add(sid)
                st.add(Sample(label=label, text=text, split=split, group=group, id=sid, **media))
        require_labels(st.samples, source)
    return st.out


def _features(labels: list[str], modalities: list[str]) -> Any:
    datasets = _datasets()
    fields: dict[str, Any] = {"label": datasets.ClassLabel(names=labels)}
    for m in modalities:
        fields[m] = datasets.Value("string") if m == "text" else getattr(datasets, FEATURE_OF[m])()
    fields |= {"id": datasets.Value("string"), "group": datasets.Value("string")}
    return datasets.Features(fields)


def _table(samples: list[Sample], labels: list[str], modalities: list[str]) -> Any:
    import pyarrow as pa

    files = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cols: dict[str, Any] = {"label": pa.array([labels.index(s.label) for s in samples], pa.int64())}
    for m in modalities:
        if m == "text":
            cols[m] = pa.array([s.text for s in samples], pa.string())
        else:
            cells = [{"bytes": s.path(m).read_bytes(), "path": s.path(m).name} if s.has(m) else None for s in samples]
            cols[m] = pa.array(cells, files)
    cols["id"] = pa.array([s.id for s in samples], pa.string())
    cols["group"] = pa.array([s.group for s in samples], pa.string())
    return pa.table(cols)


def _card(old: str, splits: list[str]) -> str:
    """README.md whose YAML names each split's parquet file (the features are in the parquet files' metadata); the
    old card's YAML (tags, name) and body are kept, an old ``configs`` block replaced."""
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in splits:
        lines += [f"  - split: {HF_SPLIT[split]}", f"    path: data/{HF_SPLIT[split]}-*.parquet"]
    head = README_YAML.match(old)
    kept, skipping = [], False
    for line in head.group(0).strip("-\n").splitlines() if head else ["tags:", "- ume-mma"]:
        skipping = line.startswith("configs:") or (skipping and line[:1] in (" ", "-"))
        kept += [] if skipping else [line]
    body = old[head.end() :] if head else old or "Exported by `python -m ume_mma.data export hf`.\n"
    return "\n".join([*lines, *kept, "---", ""]) + body


def export_hf(folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write the dataset folder ``folder`` as a Hugging Face dataset into ``out`` (default: ``folder`` itself,
    beside ``metadata.jsonl``): ``data/<split>-00000-of-00001.parquet`` and the README's YAML. Returns the folder."""
    data = load_dataset(folder)
    missing = [s.id or s.label for s in data if s.split not in SPLITS]
    if missing:
        raise ImportRefused(f"{folder}: samples without a split ({missing[:3]}...): every sample needs one")
    target = Path(out).expanduser().resolve() if out else data.root
    if target != data.root and target.exists() and any(target.iterdir()):
        raise ImportRefused(f"{target} exists and is not an empty folder: choose a new output folder")
    old = target / "data"
    if old.exists() and (not old.is_dir() or any(p.suffix != ".parquet" for p in old.iterdir())):
        raise ImportRefused(f"{old} holds files other than an earlier export's parquet: export into a new folder")
    datasets = _datasets()
    labels, modalities = data.labels, data.modalities
    features = _features(labels, modalities)
    target.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".hf-data.", dir=target))  # complete before it replaces data/
    try:
        splits = [s for s in SPLITS if data.split(s).samples]
        for split in splits:
            table = _table(data.split(split).samples, labels, modalities)
            ds = datasets.Dataset(table.cast(features.arrow_schema), info=datasets.DatasetInfo(features=features))
            ds.to_parquet(str(staged / f"{HF_SPLIT[split]}-00000-of-00001.parquet"))
        readme = target / "README.md"
        card = _card(readme.read_text(encoding="utf-8") if readme.is_file() else "", splits)
        shutil.rmtree(target / "data", ignore_errors=True)
        os.replace(staged, target / "data")
        readme.write_text(card, encoding="utf-8")
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return target
