"""Uploaded files as an importer's source: plain files side by side, zip archives unpacked safely.

``gather(files, into)`` puts each plain file at ``into/<its name>`` and unpacks each ``.zip`` into ``into``
(keeping its folders). A zip is refused before anything is written when it holds an absolute or ``..`` path,
a link, more than ``max_files`` members, a member over ``max_file_bytes`` or more than ``max_bytes`` in all
(the sizes are counted again while unpacking: a header cannot lie its way past them). macOS resource files
(``__MACOSX/``, ``._*``) and ``.DS_Store`` are left out and reported. ``source_in(name, folder)`` then finds
the importer's source there: the one CSV, the one JSON, the folder holding ``metadata.jsonl``...
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from ume_mma.data.imports.staging import ImportRefused

MAX_FILES = 20_000  # members of all the zips of one import
MAX_BYTES = 2**30  # unpacked bytes of all the zips of one import (1 GiB)
CHUNK = 2**20


def _junk(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and (parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store")


def _members(archive: zipfile.ZipFile, shown: str, max_file_bytes: int) -> tuple[list[zipfile.ZipInfo], int]:
    """The members to unpack (files), checked; and how many junk members were left out."""
    keep, junk = [], 0
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
            raise ImportRefused(f"{shown}: member {name!r} points outside the archive")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ImportRefused(f"{shown}: member {name!r} is a link (not taken)")
        if info.is_dir():
            continue
        if _junk(name):
            junk += 1
            continue
        if info.file_size > max_file_bytes:
            mb = max_file_bytes / 2**20
            raise ImportRefused(f"{shown}: member {name!r} is over the {mb:g} MB cap of one file")
        keep.append(info)
    return keep, junk


def _unzip(file: Path, into: Path, budget: list[int], max_file_bytes: int) -> int:
    """Unpack ``file`` into ``into``; ``budget`` = [files left, bytes left]. Returns the junk members left out."""
    shown = file.name
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImportRefused(f"{shown}: not a zip archive ({exc})") from None
    with archive:
        members, junk = _members(archive, shown, max_file_bytes)
        if len(members) > budget[0]:
            raise ImportRefused(f"{shown}: more than {MAX_FILES} files in the uploads")
        if sum(m.file_size for m in members) > budget[1]:
            raise ImportRefused(f"{shown}: unpacks to more than {MAX_BYTES / 2**30:g} GiB")
        budget[0] -= len(members)
        for info in members:
            target = into / info.filename.replace("\\", "/")
            if target.exists():
                raise ImportRefused(f"{shown}: {info.filename!r} is in the uploads twice")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, target.open("wb") as dst:
                written = 0
                while chunk := src.read(CHUNK):
                    written += len(chunk)
                    if written > min(max_file_bytes, budget[1]):
                        raise ImportRefused(f"{shown}: {info.filename!r} unpacks to more than it says")
                    dst.write(chunk)
            budget[1] -= written
    return junk


def gather(files: Iterable[str | Path], into: str | Path, max_file_bytes: int) -> list[str]:
    """Place the uploads ``files`` in the folder ``into`` (see the module docstring). Returns what was left out
    and why (the skipped lines of an import summary)."""
    root, budget, junk = Path(into), [MAX_FILES, MAX_BYTES], 0
    root.mkdir(parents=True, exist_ok=True)
    for f in files:
        file = Path(f)
        if not file.is_file():
            raise ImportRefused(f"{file.name}: the upload is gone (upload it again)")
        if file.suffix.lower() == ".zip":
            junk += _unzip(file, root, budget, max_file_bytes)
        elif (root / file.name).exists():
            raise ImportRefused(f"{file.name}: two uploads with this name")
        else:
            shutil.copyfile(file, root / file.name)
    if not junk:
        return []
    return [f"{junk} macOS resource file{'' if junk == 1 else 's'} (__MACOSX/, ._*, .DS_Store): left out"]


def _descend(folder: Path) -> Path:
    """The folder itself, or its one subfolder when it holds nothing else (a zip of ``clips/``)."""
    while True:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        folder = entries[0]


def _one(folder: Path, suffix: str, what: str) -> Path:
    found = sorted(p for p in folder.rglob(f"*{suffix}") if p.is_file() and not p.name.startswith("."))
    found = [p for p in found if p.suffix.lower() == suffix]
    if len(found) != 1:
        names = ", ".join(p.name for p in found[:5]) or "none"
        raise ImportRefused(f"the uploads need exactly one {what} ({suffix}); found {len(found)}: {names}")
    return found[0]


def source_in(name: str, folder: str | Path) -> Path:
    """The source of importer ``name`` among the uploads unpacked in ``folder``."""
    root = Path(folder)
    if name == "csv":
        return _one(root, ".csv", "CSV file")
    if name == "label-studio":
        return _one(root, ".json", "Label Studio JSON export")
    top = _descend(root)
    if name == "dataset":
        found = sorted(p.parent for p in root.rglob("metadata.jsonl"))
        if len(found) != 1:
            raise ImportRefused(f"the uploads need exactly one metadata.jsonl (a dataset folder); found {len(found)}")
        return found[0]
    return top  # class subfolders; parquet files or a save_to_disk folder


def import_uploads(
    name: str, files: Iterable[str | Path], out: str | Path, work: str | Path, max_file_bytes: int,
    options: dict | None = None, unlabelled: bool = False,
) -> tuple[Path, list[str]]:  # fmt: skip
    """:func:`~ume_mma.data.imports.choice.run_import` on uploads: ``files`` are gathered in the new folder
    ``work`` (removed by the caller), the source found there; ``root``/``media_root`` options are folders inside
    the uploads; ``unlabelled`` as there. Returns ``(out, skipped)``."""
    from ume_mma.data.imports.choice import importer, run_import

    spec = importer(name)
    files = list(files)
    if not files:
        raise ImportRefused(f"upload the files to import ({spec.source}), or name them on the server")
    where = Path(work)
    skipped = gather(files, where, max_file_bytes)
    opts = dict(options or {})
    for key in ("root", "media_root"):
        value = opts.get(key)
        if isinstance(value, str) and value.strip():
            inside = PurePosixPath(value.strip().replace("\\", "/"))
            if inside.is_absolute() or ".." in inside.parts:
                raise ImportRefused(f"option {key} names a folder inside the uploads (such as media/), got {value!r}")
            opts[key] = str(where / inside)
    folder, more = run_import(spec.name, source_in(spec.name, where), out, opts, unlabelled)
    return folder, skipped + more
