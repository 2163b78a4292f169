"""The annotation store on real SQLite and real PostgreSQL: schema, media, bad input, errors, migration,
durability under SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from tests.pg import private_server
from tests.tiny import make_tiny_dataset
from ume_mma.annotate import AnnotationQueue, import_dataset, open_store, schema
from ume_mma.decode import Limits
from ume_mma.errors import DecodeError, InputError, StoreError

ROOT = Path(__file__).resolve().parents[1]


def _open(store_url, **kw):
    url, media = store_url
    return open_store(url, media, **kw)


@pytest.fixture
def files(tmp_path):
    make_tiny_dataset(tmp_path / "src", {"train": 1})
    return {"image": tmp_path / "src/images/train-a-0.png", "audio": tmp_path / "src/audio/train-a-0.wav"}


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path):
    store = open_store(tmp_path / "sub" / "a.db")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    with store.transaction() as conn:
        assert schema.current_version(conn) == schema.SCHEMA_VERSION
    assert store.media.root == tmp_path / "sub" / "a.db.media"


def test_media_is_stored_once_by_content(store_url, files):
    store = _open(store_url)
    first = store.sample(store.add_sample({**files, "text": "hello"}, label="a"))
    second = store.sample(store.add_sample({"image": files["image"]}))
    assert first["image"] == second["image"] and first["image"].endswith(".png")
    assert Path(first["inputs"]["image"]).read_bytes() == files["image"].read_bytes()
    assert first["inputs"]["text"] == "hello" and first["given_label"] == "a" and "text" not in second["inputs"]
    assert sorted(store.media.refs()) == sorted([first["image"], first["audio"]])
    assert not list(store.media.root.glob(".incoming-*"))  # no temporary file left


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    return path


BAD_INPUTS = {
    "no input": (lambda f, t: {}, InputError, "no input"),
    "only a missing text": (lambda f, t: {"text": None, "image": None}, InputError, "no input"),
    "unknown modality": (lambda f, t: {"image": f["image"], "smell": "x"}, InputError, "unknown modality"),
    "file does not exist": (lambda f, t: {"image": f["image"], "audio": t / "nope.wav"}, DecodeError, "does not exist"),
    "file does not decode": (lambda f, t: {"audio": f["audio"], "image": _garbage(t)}, DecodeError, "broken.png"),
    "text is not a string": (lambda f, t: {"image": f["image"], "text": 3}, InputError, "text"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_stores_nothing(store_url, files, tmp_path, case):
    store = _open(store_url)
    make, error, match = BAD_INPUTS[case]
    with pytest.raises(error, match=match):
        store.add_sample(make(files, tmp_path))
    assert store.counts()["samples"] == 0
    assert store.media.refs() == []


def test_file_over_the_size_cap_stores_nothing(store_url, files):
    store = _open(store_url, limits=Limits(max_file_bytes=100))
    with pytest.raises(DecodeError, match="the limit is"):
        store.add_sample({"text": "ok", "image": files["image"]})
    assert store.counts()["samples"] == 0 and store.media.refs() == []


def test_image_over_the_pixel_cap_stores_nothing(store_url, tmp_path):
    store = _open(store_url, limits=Limits(max_image_pixels=64 * 64))
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(DecodeError, match="pixels"):
        store.add_sample({"image": tmp_path / "big.png"})
    assert store.counts()["samples"] == 0 and store.media.refs() == []


def test_a_failed_transaction_leaves_no_media_file(store_url, files):
    store = _open(store_url)
    with pytest.raises(RuntimeError, match="after the insert"):
        with store.media_guard() as created, store.transaction() as conn:
            store.add_sample(files, conn, created=created)
            assert len(created) == 2 and len(store.media.refs()) == 2
            raise RuntimeError("after the insert")
    assert store.counts()["samples"] == 0 and store.media.refs() == []


def test_locked_sqlite_database_is_a_clear_error(tmp_path):
    db = tmp_path / "a.db"
    open_store(db).close()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match=r"a\.db is locked by another writer"):
            open_store(db, busy_timeout=0.2)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    open_store(db).close()  # usable again once the lock is gone


def test_unreachable_postgresql_is_a_clear_error(tmp_path):
    pytest.importorskip("psycopg")
    url = f"postgresql://someone:secret@/db?host={tmp_path}/nowhere&port=1"
    with pytest.raises(StoreError, match="cannot be reached") as err:
        open_store(url, tmp_path / "media", busy_timeout=1)
    assert "secret" not in str(err.value)  # the password never reaches a message


def test_bad_urls_and_missing_media_dir(tmp_path):
    with pytest.raises(StoreError, match="unsupported database URL scheme .mysql."):
        open_store("mysql://u@h/db")
    with pytest.raises(StoreError, match="media_dir"):
        open_store("postgresql://u@/db?host=/tmp")
    with pytest.raises(StoreError, match="cannot create its folder"):
        (tmp_path / "file").write_text("x")
        open_store(tmp_path / "file" / "a.db")


def _raw_engine(store_url) -> sa.Engine:
    url = store_url[0]
    return sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://") if "://" in url else f"sqlite:///{url}"
    )


def test_migrates_a_version_1_database(store_url, files):
    v1 = schema.build_tables(sa.MetaData(), 1)
    assert "undone_at" not in v1["annotations"].c
    engine = _raw_engine(store_url)
    with engine.begin() as conn:
        schema.create_schema(conn, version=1)
        conn.execute(
            v1["queues"].insert().values(id=1, name="old", labels=["a", "b"], order="file", seed=0, created_at=1)
        )
        conn.execute(
            v1["samples"].insert().values(id=1, content_key="k", text="t", names={}, meta={}, created_at=1)
        )  # fmt: skip
        for i, state in ((1, "done"), (2, "pending")):
            conn.execute(v1["queue_items"].insert().values(id=i, queue_id=1, sample_id=1, position=i, rank=i,
                                                           state=state, skips=0, updated_at=1))  # fmt: skip
        conn.execute(v1["annotations"].insert().values(id="x1", item_id=1, sample_id=1, label="a", flags={}, note="n",
                                                       annotator="ann", created_at=5))  # fmt: skip
    engine.dispose()
    store = _open(store_url)  # migrates
    with store.transaction() as conn:
        versions = conn.execute(sa.select(schema.schema_version.c.version).order_by("version")).scalars().all()
        assert versions == list(range(1, schema.SCHEMA_VERSION + 1))
        row = conn.execute(sa.select(schema.annotations)).mappings().one()
        assert (row["id"], row["label"], row["note"], row["undone_at"]) == ("x1", "a", "n", None)
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("queue_items")}
        assert "ix_items_next" in indexes
    queue = AnnotationQueue(store, "old")
    assert queue.stats().labelled == 1
    assert queue.undo_last("ann").id == 1  # v2 behaviour on v1 data: the annotation is kept, marked undone
    with store.transaction() as conn:
        assert conn.execute(sa.select(schema.annotations.c.undone_at)).scalar_one() is not None
    store.close()
    _open(store_url).close()  # opening a current database again changes nothing
    with _raw_engine(store_url).connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(schema.schema_version)).scalar_one()
        assert count == schema.SCHEMA_VERSION


def test_refuses_a_database_from_a_newer_version(store_url):
    _open(store_url).close()
    engine = _raw_engine(store_url)
    with engine.begin() as conn:
        conn.execute(schema.schema_version.insert().values(version=99, applied_at=0))
    engine.dispose()
    with pytest.raises(StoreError, match="schema version 99, newer than this code"):
        _open(store_url)


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from ume_mma.annotate import AnnotationQueue, import_dataset, open_store
    url, media, data = sys.argv[1], sys.argv[2] or None, sys.argv[3]
    store = open_store(url, media)
    import_dataset(store, data)
    queue = AnnotationQueue(store)
    item = queue.next_item("alice")
    print(queue.submit(item.id, "b", "alice", note="before the kill"), flush=True)  # acknowledged
    time.sleep(120)
    """
)


def test_an_acknowledged_annotation_survives_sigkill(store_url, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", {"train": 1})
    url, media = store_url
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", KILLED_WRITER, url, str(media or ""), str(data)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        ack = proc.stdout.readline().strip()
        assert len(ack) == 32, proc.stderr.read() if proc.poll() is not None else ack
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    store = _open(store_url)
    with store.transaction() as conn:
        row = conn.execute(sa.select(schema.annotations).where(schema.annotations.c.id == ack)).mappings().one()
    assert (row["label"], row["annotator"], row["note"]) == ("b", "alice", "before the kill")
    assert AnnotationQueue(store).stats().labelled == 1


def test_import_is_all_or_nothing(store_url, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", {"train": 2})
    (data / "images" / "train-b-1.png").unlink()  # line 4 of 6 points at a missing file
    store = _open(store_url)
    with pytest.raises(DecodeError, match="train-b-1.png: file does not exist"):
        import_dataset(store, data)
    assert store.counts() == {"samples": 0, "queues": 0, "queue_items": 0, "annotations": 0}
    assert store.media.refs() == []
    result = import_dataset(store, data, skip_bad=True)
    assert result.added == 5 and len(result.skipped) == 1 and result.skipped[0].startswith("line 4:")
    assert store.counts()["queue_items"] == 5


def test_a_full_sqlite_database_is_a_clear_error_and_stores_nothing(tmp_path, files):
    store = open_store(tmp_path / "a.db")
    with store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()

    @sa.event.listens_for(store.engine, "connect")
    def _cap(dbapi_conn, _record):  # the database may not grow: it is "full"
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    store.engine.dispose()
    big = "x" * 200_000  # a text that needs more pages than the file has
    with pytest.raises(StoreError, match=r"a\.db is full"):
        store.add_sample({**files, "text": big})
    assert store.counts()["samples"] == 0 and store.media.refs() == []


def test_an_unwritable_media_folder_is_a_clear_error(tmp_path, files):
    (tmp_path / "media").write_text("a file where the media folder should be")
    store = open_store(tmp_path / "a.db", tmp_path / "media")
    with pytest.raises(StoreError, match="media folder .*: cannot store train-a-0"):
        store.add_sample(files)
    assert store.counts()["samples"] == 0


def test_sweep_media_removes_old_orphans_only(store_url, files, tmp_path):
    store = _open(store_url)
    kept = store.sample(store.add_sample({"image": files["image"]}))["image"]
    orphan, _ = store.media.put(files["audio"])  # as if killed before the row was committed
    (tmp_path / "young.png").write_bytes(files["image"].read_bytes() + b"\0")
    young, _ = store.media.put(tmp_path / "young.png")
    incoming = store.media.root / ".incoming-crashed"
    incoming.write_bytes(b"partial")
    old = 1_000_000_000
    for path in (store.media.path(kept), store.media.path(orphan), incoming):
        os.utime(path, (old, old))
    assert store.sweep_media() == sorted([orphan, ".incoming-crashed"])
    assert sorted(store.media.refs()) == sorted([kept, young]) and not incoming.exists()


def test_an_acknowledged_annotation_survives_a_killed_postgresql_server(tmp_path):
    """The PostgreSQL server itself is SIGKILLed (postmaster and every backend) right after the commit."""
    servers = private_server()  # a server of its own: the shared one stays up
    server = next(servers)
    try:
        url = server.create_database()
        store = open_store(url, tmp_path / "media")
        import_dataset(store, make_tiny_dataset(tmp_path / "data", {"train": 1}))
        queue = AnnotationQueue(store)
        ack = queue.submit(queue.next_item("alice").id, "c", "alice", note="acknowledged")
        server.kill()
        with pytest.raises(StoreError, match="database postgresql\\+psycopg://ume@/t_"):
            queue.stats()
        server.start()  # crash recovery replays the write-ahead log
        with store.transaction() as conn:
            row = conn.execute(sa.select(schema.annotations).where(schema.annotations.c.id == ack)).mappings().one()
        assert (row["label"], row["note"]) == ("c", "acknowledged")
        assert queue.stats().labelled == 1
        store.close()
    finally:
        next(servers, None)  # stop and remove it


def test_videos_are_checked_through_the_shared_decoder(store_url, files):
    store = _open(store_url)
    sample = store.sample(store.add_sample({"video": ROOT / "assets" / "silent_video_4.mp4"}))
    assert sample["video"].endswith(".mp4") and Path(sample["inputs"]["video"]).is_file()
    with pytest.raises(DecodeError, match="no video stream"):
        store.add_sample({"video": files["audio"]})
    assert store.counts()["samples"] == 1 and store.media.refs() == [sample["video"]]
