"""Where the app and the command lines keep what they write: the annotation database, its media and jobs.

The data folder is, in order: ``$UME_MMA_HOME`` when it is set; ``/data`` on a Hugging Face Space that has
persistent storage (mounted there); else the user's data folder (``platformdirs``: ``~/.local/share/ume-mma``
on Linux, ``~/Library/Application Support/ume-mma`` on macOS, ``%LOCALAPPDATA%\\ume-mma`` on Windows). Inside
it: ``annotations.db`` (SQLite), ``annotations.db.media/`` (its files), ``annotations.db.jobs/`` (one
folder per job) and ``annotations.db.datasets/`` (the dataset folders the app's importers write); a PostgreSQL
store keeps its media in ``annotations.media/``, jobs in ``annotations.jobs/`` and datasets in
``annotations.datasets/``. Never inside the checkout. ``--db`` and ``--media-dir`` still choose another database.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ENV_HOME = "UME_MMA_HOME"
SPACE_DATA = Path("/data")
DB_NAME = "annotations.db"


def data_home(space_data: Path = SPACE_DATA) -> Path:
    """The data folder (not created here): ``$UME_MMA_HOME``, ``/data`` on a Space, or the user's one."""
    env = os.environ.get(ENV_HOME, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    if os.environ.get("SPACE_ID") and space_data.is_dir():
        return space_data
    return Path(platformdirs.user_data_dir("ume-mma", appauthor=False))


def default_db(space_data: Path = SPACE_DATA) -> Path:
    """The default annotation database: ``annotations.db`` in :func:`data_home`."""
    return data_home(space_data) / DB_NAME


def default_media(db: str) -> Path | None:
    """Media folder of a PostgreSQL store (``annotations.media`` in the data folder); SQLite keeps its media
    beside its file, so None."""
    return default_db().with_name("annotations.media") if "://" in db else None


def datasets_root(media_root: Path) -> Path:
    """Where the app's importers write dataset folders, beside a store's media folder (``annotations.db.media``
    -> ``annotations.db.datasets``), as its jobs are."""
    media = Path(media_root)
    return media.with_name(media.name.removesuffix(".media") + ".datasets")
