"""The data folder (``ume_mma.home``): ``UME_MMA_HOME``, ``/data`` on a Space, else the user's data folder;
never the checkout. The CLIs and the app write there by default (tests point it at a temporary folder)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import platformdirs

import app
from tests.tiny import make_tiny_dataset
from ume_mma.annotate import open_store
from ume_mma.home import data_home, default_db, default_media
from ume_mma.jobs import JobStore

ROOT = Path(__file__).resolve().parents[1]


def test_the_tests_write_into_a_temporary_data_folder():
    home = Path(os.environ["UME_MMA_HOME"])
    assert data_home() == home.resolve() and home.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())


def test_the_order_of_the_data_folders(tmp_path, monkeypatch):
    space = tmp_path / "data"
    space.mkdir()
    monkeypatch.setenv("UME_MMA_HOME", str(tmp_path / "mine"))
    assert default_db(space) == tmp_path / "mine" / "annotations.db"  # the variable wins
    monkeypatch.delenv("UME_MMA_HOME")
    monkeypatch.delenv("SPACE_ID", raising=False)
    user = Path(platformdirs.user_data_dir("ume-mma", appauthor=False))
    assert data_home(space) == user  # a /data folder alone is not a Space
    monkeypatch.setenv("SPACE_ID", "org/studio")
    assert default_db(space) == space / "annotations.db"  # a Space's persistent storage
    assert data_home(tmp_path / "absent") == user  # a Space without persistent storage
    assert not user.is_relative_to(ROOT)
    monkeypatch.setenv("UME_MMA_HOME", str(tmp_path / "mine"))
    assert default_media("postgresql://u@h/db") == tmp_path / "mine" / "annotations.media"
    assert default_media(str(tmp_path / "x.db")) is None  # SQLite keeps its media beside its file


def test_the_annotate_cli_writes_database_media_and_jobs_into_the_data_folder(tmp_path):
    home = tmp_path / "home"
    data = make_tiny_dataset(tmp_path / "data", {"train": 1})
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), UME_MMA_HOME=str(home))
    cmd = [sys.executable, "-m", "ume_mma.annotate", "import", str(data)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"of {home / 'annotations.db'}" in proc.stdout
    assert len([f for f in (home / "annotations.db.media").rglob("*") if f.is_file()]) == 6  # 3 images, 3 sounds
    assert JobStore(open_store(home / "annotations.db")).root == home / "annotations.db.jobs"
    assert not (tmp_path / "data" / "annotations.db").exists()


def test_the_app_says_where_it_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UME_MMA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setattr(app, "build_demo", lambda *a, **k: None)
    monkeypatch.setattr(app, "launch_app", lambda *a, **k: None)
    app.main([])
    out = capsys.readouterr().out
    home = (tmp_path / "home").resolve()
    assert f"writing annotations to {home / 'annotations.db'}, their media to {home / 'annotations.db.media'}" in out
    assert f"jobs to {home / 'annotations.db.jobs'}" in out
