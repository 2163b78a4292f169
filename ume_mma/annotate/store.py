"""The annotation store: SQLAlchemy Core on SQLite (embedded default) or PostgreSQL (a team server).

``open_store(path)`` opens SQLite in WAL mode with ``synchronous=FULL``: a committed transaction is on disk
before the call returns, so an acknowledged annotation survives the process being killed (SIGKILL) or the
machine losing power. ``open_store("postgresql://user@host/db", media_dir=...)`` uses psycopg 3; PostgreSQL
is durable by default (``synchronous_commit=on``). Every SQLite transaction starts with ``BEGIN IMMEDIATE``
(it takes the write lock at once, so read-then-update sequences cannot interleave); a writer waits up to
``busy_timeout`` seconds for another one, then gets ``StoreError``. Back-ends: ``ume_mma.annotate.backends``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ume_mma.annotate import schema
from ume_mma.annotate.backends import backend_for
from ume_mma.annotate.media import MediaStore, check_inputs
from ume_mma.data.format import FILE_MODALITIES
from ume_mma.decode import Limits
from ume_mma.errors import StoreError

Clock = Callable[[], float]


def _describe(exc: BaseException) -> str:
    """A short reason for a driver error: locked, full, unreachable, read-only, or the driver's words."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    low = text.lower()
    if "locked" in low or "lock timeout" in low:
        return f"is locked by another writer ({text})"
    if "full" in low or "no space" in low:
        return f"is full: no space left ({text})"
    if "readonly" in low or "read-only" in low or "permission denied" in low:
        return f"cannot be written ({text})"
    if "unable to open" in low or "connection" in low or "could not" in low or "no such file" in low:
        return f"cannot be reached ({text})"
    return f"failed: {text}"


class Store:
    """A database (``engine``) plus the media folder its samples' files live in. Thread-safe: every method
    runs in its own transaction. ``clock`` (seconds since the epoch) is injectable for tests of leases."""

    def __init__(self, engine: sa.Engine, media: MediaStore, display: str, clock: Clock = time.time) -> None:
        self.engine = engine
        self.media = media
        self.display = display  # the URL or path without any password, for messages
        self.clock = clock
        self.limits = Limits()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One transaction (committed on success, rolled back on any exception); driver errors become
        ``StoreError`` naming the database and the problem (locked, full, unreachable...)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"database {self.display} {_describe(exc)}") from exc

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ samples
    def add_sample(
        self,
        inputs: Mapping[str, Any],
        conn: sa.Connection | None = None,
        *,
        label: str | None = None,
        group: str | None = None,
        source_id: str | None = None,
        meta: Mapping[str, Any] | None = None,
        created: list[str] | None = None,
    ) -> int:
        """Check and store one sample (``image``/``audio``/``video`` paths, ``text``); returns its id.

        Bad input (see ``check_inputs``) raises before anything is written. Files are copied into the
        media folder. With a caller's transaction ``conn``, pass ``created`` (a list, e.g. from
        ``media_guard``): the refs of newly written files are appended, so that the caller can remove them
        if its transaction fails. Called without ``conn``, it commits itself and cleans up on failure.
        """
        if conn is None:
            with self.media_guard() as created, self.transaction() as own:
                return self._insert_sample(own, inputs, created, label, group, source_id, meta)
        return self._insert_sample(conn, inputs, created, label, group, source_id, meta)

    @contextmanager
    def media_guard(self) -> Iterator[list[str]]:
        """Collects media refs created inside the block; on an exception they are deleted again (unless a
        committed sample row uses them), so failed writes leave no file behind."""
        created: list[str] = []
        try:
            yield created
        except BaseException:
            self.discard_media(created)
            raise

    def discard_media(self, refs: list[str]) -> None:
        """Delete the given media files unless a sample row refers to them."""
        if not refs:
            return
        cols = [schema.samples.c[m] for m in FILE_MODALITIES]
        try:
            with self.engine.connect() as conn:
                used = {r for c in cols for r in conn.execute(sa.select(c).where(c.in_(refs))).scalars()}
        except sa.exc.DBAPIError:
            used = set()  # cannot tell: deleting an unreferenced file is the safe side of "no file left behind"
        for ref in refs:
            if ref not in used:
                self.media.discard(ref)

    def _insert_sample(
        self,
        conn: sa.Connection,
        inputs: Mapping[str, Any],
        created: list[str] | None,
        label: str | None,
        group: str | None,
        source_id: str | None,
        meta: Mapping[str, Any] | None,
    ) -> int:
        present = check_inputs(inputs, self.limits)
        row: dict[str, Any] = {"text": present.get("text"), "names": {}}
        for m in FILE_MODALITIES:
            if m in present:
                ref, new = self.media.put(present[m])
                if new and created is not None:
                    created.append(ref)
                row[m] = ref
                row["names"][m] = Path(present[m]).name
        key = {m: row.get(m) for m in (*FILE_MODALITIES, "text")}
        row["content_key"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        row.update(given_label=label, group=group, source_id=source_id, meta=dict(meta or {}))
        row["created_at"] = self.clock()
        return conn.execute(schema.samples.insert().values(**row)).inserted_primary_key[0]

    def sample(self, sample_id: int, conn: sa.Connection | None = None) -> dict[str, Any]:
        """A sample row as a dict, with ``inputs``: modality -> absolute media path or text."""
        if conn is None:
            with self.transaction() as own:
                return self.sample(sample_id, own)
        row = conn.execute(sa.select(schema.samples).where(schema.samples.c.id == sample_id)).mappings().first()
        if row is None:
            raise KeyError(f"no sample {sample_id}")
        return sample_dict(self.media, row)

    def sweep_media(self, min_age_seconds: float = 3600.0) -> list[str]:
        """Delete media files no sample refers to, and temporary files, older than ``min_age_seconds``
        (a process killed between writing a file and committing its row leaves one; younger files may
        belong to an import in progress). Returns the deleted references."""
        cols = [schema.samples.c[m] for m in FILE_MODALITIES]
        with self.transaction() as conn:
            used = {r for c in cols for r in conn.execute(sa.select(c).where(c.is_not(None))).scalars()}
        cutoff = time.time() - min_age_seconds
        stale = [p for p in self.media.root.glob(".incoming-*") if p.stat().st_mtime < cutoff]
        for p in stale:
            p.unlink(missing_ok=True)
        orphans = [r for r in self.media.refs() if r not in used and self.media.path(r).stat().st_mtime < cutoff]
        for ref in orphans:
            self.media.remove(ref)
        return sorted(orphans + [p.name for p in stale])

    def counts(self) -> dict[str, int]:
        """Rows per table (for checks and the CLI)."""
        with self.transaction() as conn:
            return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in _TABLES}


_TABLES = (schema.samples, schema.queues, schema.queue_items, schema.annotations)


def sample_dict(media: MediaStore, row: Mapping[str, Any]) -> dict[str, Any]:
    """A samples row as a dict plus ``inputs`` (modality -> absolute media path as str, or the text)."""
    out = dict(row)
    inputs: dict[str, Any] = {m: str(media.path(row[m])) for m in FILE_MODALITIES if row[m]}
    if row["text"] is not None:
        inputs["text"] = row["text"]
    out["inputs"] = inputs
    return out


def open_store(
    url_or_path: str | os.PathLike[str],
    media_dir: str | os.PathLike[str] | None = None,
    *,
    busy_timeout: float = 5.0,
    clock: Clock = time.time,
    limits: Limits | None = None,
) -> Store:
    """Open (creating or migrating it) the annotation store.

    ``url_or_path``: a file path -> SQLite (media beside it in ``<name>.media/`` unless ``media_dir``);
    ``postgresql://user[:password]@host[:port]/db`` (or ``?host=/socket/dir``) -> PostgreSQL through
    psycopg 3 (``media_dir`` required). See ``ume_mma.annotate.backends``. ``busy_timeout``: seconds a
    writer waits for a lock (SQLite) or for a connection (PostgreSQL). ``limits``: the input caps
    (default: the predictor's). Raises ``StoreError`` when the database cannot be opened, is locked,
    unreachable, or has an unknown schema.
    """
    backend = backend_for(os.fspath(url_or_path), media_dir, busy_timeout)
    store = Store(backend.engine, MediaStore(backend.media_dir), backend.display, clock)
    if limits is not None:
        store.limits = limits
    try:
        with store.transaction() as conn:
            schema.ensure_schema(conn)
    except BaseException:
        backend.engine.dispose()
        raise
    return store
