"""Database back-ends of the annotation store, a small registry: URL scheme -> engine factory.

``sqlite``: a file path (or ``sqlite:///path``), WAL journal, ``synchronous=FULL`` (every commit is fsynced:
an acknowledged write survives SIGKILL or power loss), ``BEGIN IMMEDIATE`` transactions (the write lock is
taken at the start, so a read-then-update cannot interleave with another writer), a busy timeout.
``postgresql``: ``postgresql://user[:password]@host[:port]/db`` or ``?host=/socket/dir``, through psycopg 3;
durable by default (``synchronous_commit=on``); media files need an explicit folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from ume_mma.annotate.media import media_folder
from ume_mma.errors import MissingDependencyError, StoreError


@dataclass
class Backend:
    engine: sa.Engine
    media_dir: Path
    display: str  # the path or URL without any password, for messages


Factory = Callable[[str, "os.PathLike[str] | str | None", float], Backend]
BACKENDS: dict[str, Factory] = {}


def register_backend(scheme: str) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        BACKENDS[scheme] = factory
        return factory

    return add


@register_backend("sqlite")
def sqlite_backend(target: str, media_dir: os.PathLike[str] | str | None, busy_timeout: float) -> Backend:
    """``target``: a file path or ``sqlite:///path``; media beside it in ``<name>.media/`` by default."""
    if "://" in target:
        target = make_url(target).database or ""
    if not target or target == ":memory:":
        raise StoreError("an SQLite store needs a file path (an in-memory database would not be durable)")
    path = Path(target).expanduser().resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"database {path}: cannot create its folder ({exc})") from exc
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": busy_timeout, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver's own BEGIN handling off: ours below is used
        cur = dbapi_conn.cursor()
        try:
            mode = cur.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"database {path}: cannot use WAL mode (journal_mode is {mode})")
            cur.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    media = Path(media_dir) if media_dir is not None else path.with_name(path.name + ".media")
    return Backend(engine, media, str(path))


@register_backend("postgresql")
def postgresql_backend(target: str, media_dir: os.PathLike[str] | str | None, busy_timeout: float) -> Backend:
    """``target``: a ``postgresql://`` URL; ``media_dir`` is required (the folder of the media files)."""
    url = make_url(target).set(drivername="postgresql+psycopg")
    if media_dir is None:
        raise StoreError("a PostgreSQL store needs media_dir: the folder that holds its media files")
    try:
        import psycopg  # noqa: F401  (the driver SQLAlchemy loads)
    except ImportError as exc:
        raise MissingDependencyError("PostgreSQL stores need psycopg 3: pip install 'psycopg[binary]==3.3.9'") from exc
    connect_args = {"connect_timeout": max(1, int(busy_timeout))}
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    return Backend(engine, Path(media_dir), url.render_as_string(hide_password=True))


def backend_for(url_or_path: str, media_dir: os.PathLike[str] | str | None, busy_timeout: float) -> Backend:
    """The engine, media folder and display name for a path (SQLite) or a URL of a registered scheme."""
    scheme = "sqlite"
    if "://" in url_or_path:
        try:
            scheme = make_url(url_or_path).get_backend_name()
        except sa.exc.ArgumentError as exc:
            raise StoreError(f"not a database URL: {exc}") from exc
    if scheme not in BACKENDS:
        raise StoreError(f"unsupported database URL scheme {scheme!r}: use a path, or one of {sorted(BACKENDS)}://")
    if media_dir is not None:
        media_dir = media_folder(media_dir)  # a path or file:// URL; checked before anything is created
    return BACKENDS[scheme](url_or_path, media_dir, busy_timeout)
