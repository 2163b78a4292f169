"""Content-addressed media: every input file is checked (exists, size cap, decodes through the one decode path
with the same limits as training and prediction) and stored once, under its SHA-256, in a media folder.

A file is written durably: copied to a temporary file in the media folder, fsynced, renamed to its final
name (atomic), and the folder fsynced, so a stored reference never points at a partial file.

Several processes (two app servers on one PostgreSQL) may share one media folder: a name is its content's
hash, every writer writes its own temporary file and renames it into place, so concurrent writers of the same
content leave one whole file, and a reader never sees a partial one. Storing content that is already there
touches the file; a writer that undoes its own new file (its database row was not committed: ``discard``)
deletes it only if nobody touched it since, so it never takes a file from under another process's row.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ume_mma.data.format import FILE_MODALITIES
from ume_mma.decode import SAMPLE_KIND, Decoder, Limits
from ume_mma.errors import DecodeError, InputError, StoreError
from ume_mma.registry import MODALITIES

CHUNK = 1 << 20


def media_folder(where: str | os.PathLike[str]) -> Path:
    """The media folder named by a path or a ``file://`` URL (``file:///srv/media``: a folder every server of
    a team reaches). Another URL scheme raises ``StoreError`` (an object store is not supported yet)."""
    text = os.fspath(where)
    if "://" not in text:
        return Path(text)
    parts = urlsplit(text)
    if parts.scheme != "file":
        raise StoreError(
            f"media URL scheme {parts.scheme!r} is not supported: give a folder, as a path or a file:// URL "
            "(for several servers, one they all reach)"
        )
    if parts.netloc not in ("", "localhost") or not parts.path:
        raise StoreError(f"not a local file:// URL: {text!r} (file:///folder)")
    return Path(unquote(parts.path))


def check_inputs(inputs: Mapping[str, Any], limits: Limits | None = None) -> dict[str, Any]:
    """Validate one sample's inputs (``image``/``audio``/``video``: paths or None, ``text``: str or None).

    Returns modality -> Path (files) or str (text) for the present modalities. Raises ``InputError`` for an
    unknown modality, a non-string text or a sample with no input, and ``DecodeError`` for a file that does
    not exist, is over ``limits.max_file_bytes`` or does not decode (the predictor's decoders and caps).
    """
    limits = limits or Limits()
    unknown = sorted(set(inputs) - set(MODALITIES))
    if unknown:
        raise InputError(f"unknown modality {unknown}; known: {', '.join(MODALITIES)}")
    present: dict[str, Any] = {}
    for m in FILE_MODALITIES:
        value = inputs.get(m)
        if value is None or value == "":
            continue
        if not isinstance(value, str | os.PathLike):
            raise InputError(f"{m}: expected a file path, got {type(value).__name__}")
        present[m] = _check_file(Path(value), m, limits)
    text = inputs.get("text")
    if text is not None:
        if not isinstance(text, str):
            raise InputError(f"text: expected a string or None, got {type(text).__name__}")
        present["text"] = text
    if not present:
        raise InputError(f"the sample has no input (give at least one of {', '.join(MODALITIES)})")
    return present


def _check_file(path: Path, modality: str, limits: Limits) -> Path:
    """Exists, within the size cap, and decodes through the one decode path (``ume_mma.decode.Decoder``) with
    the same limits as training and prediction (one video frame suffices to know that a video decodes)."""
    if not path.is_file():
        raise DecodeError(path, "file does not exist" if not path.exists() else "is not a regular file")
    Decoder(limits=limits, num_frames=1, soundtrack=False)(SAMPLE_KIND[modality], path)  # raises DecodeError
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MediaStore:
    """A folder of files named by content: ``<root>/<sha[:2]>/<sha256><ext>``; a reference is the part
    after ``root``. Writing the same content twice stores it once."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._made: dict[str, int] = {}  # ref -> mtime_ns of the files this object created (for remove)

    def path(self, ref: str) -> Path:
        """Absolute path of a stored reference."""
        if "/" not in ref or ".." in ref or ref.startswith("/"):
            raise InputError(f"not a media reference: {ref!r}")
        return self.root / ref

    def put(self, source: str | os.PathLike[str]) -> tuple[str, bool]:
        """Store a copy of ``source``; returns (reference, whether a new file was created). A media folder
        that cannot be written (full, read-only) raises ``StoreError``."""
        try:
            return self._put(Path(source))
        except OSError as exc:
            raise StoreError(f"media folder {self.root}: cannot store {Path(source).name} ({exc})") from exc

    def _put(self, source: Path) -> tuple[str, bool]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=self.root)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            ref = f"{sha[:2]}/{sha}{source.suffix.lower()[:10]}"
            final = self.root / ref
            if final.exists():
                os.utime(final)  # in use again: a writer undoing its own copy must leave it (see remove)
                return ref, False
            shard_new = not final.parent.exists()
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
            self._made[ref] = final.stat().st_mtime_ns
            _fsync_dir(final.parent)
            if shard_new:
                _fsync_dir(self.root)
            return ref, True
        finally:
            Path(tmp).unlink(missing_ok=True)

    def remove(self, ref: str) -> None:
        """Delete a stored file (the orphan sweep: no row refers to it and it is old)."""
        self._made.pop(ref, None)
        self.path(ref).unlink(missing_ok=True)

    def discard(self, ref: str) -> None:
        """Undo a write whose database row was not committed: delete a file this store created, unless it was
        stored again since (by this or another process sharing the folder: a row of theirs may use it)."""
        path, made = self.path(ref), self._made.pop(ref, None)
        try:
            if made is None or path.stat().st_mtime_ns != made:
                return
        except FileNotFoundError:
            return
        path.unlink(missing_ok=True)

    def refs(self) -> list[str]:
        """Every stored reference (for checks and clean-up)."""
        if not self.root.is_dir():
            return []
        return sorted(f"{p.parent.name}/{p.name}" for p in self.root.glob("*/*") if p.is_file())
