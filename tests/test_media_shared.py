"""One media folder shared by several processes (two app servers on one PostgreSQL): concurrent writers of
the same content leave one whole file, a reader never sees a partial one, and a writer undoing its own new
file never deletes it from under another writer that stored the same content since."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from ume_mma.annotate.media import MediaStore

ROOT = Path(__file__).resolve().parents[1]
WRITER = """
import sys, time
from pathlib import Path
from ume_mma.annotate.media import MediaStore
store, files, start = MediaStore(sys.argv[1]), sorted(Path(sys.argv[2]).iterdir()), float(sys.argv[3])
if sys.argv[4] == "reverse":
    files.reverse()
while time.time() < start:
    time.sleep(0.001)
for _ in range(3):
    for f in files:
        print(store.put(f)[0])
"""


def test_two_processes_writing_the_same_files_leave_whole_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    expected = {}
    for i in range(24):
        data = os.urandom(300_000 + i)  # big enough that a copy takes a while
        (src / f"f{i}.bin").write_bytes(data)
        expected[hashlib.sha256(data).hexdigest()] = len(data)
    media = tmp_path / "media"
    start = time.time() + 3  # both processes start writing at the same moment
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(media), str(src), str(start), order],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for order in ("forward", "reverse")
    ]
    partial = 0
    while any(p.poll() is None for p in procs):  # a reader meanwhile: every named file is whole
        for p in media.glob("*/*"):
            sha = p.name.split(".")[0]
            try:
                if hashlib.sha256(p.read_bytes()).hexdigest() != sha:
                    partial += 1
            except FileNotFoundError:
                pass
    refs = [set(p.communicate()[0].split()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert partial == 0
    assert refs[0] == refs[1] and len(refs[0]) == 24
    store = MediaStore(media)
    assert sorted(store.refs()) == sorted(refs[0])
    for ref in store.refs():
        data = store.path(ref).read_bytes()
        assert expected[hashlib.sha256(data).hexdigest()] == len(data) and ref.split("/")[1].startswith(
            hashlib.sha256(data).hexdigest()
        )
    assert not list(media.glob(".incoming-*"))  # no temporary file left


def test_undoing_a_new_file_keeps_it_when_another_writer_stored_it_since(tmp_path):
    source = tmp_path / "x.png"
    source.write_bytes(b"same content" * 1000)
    a, b = MediaStore(tmp_path / "media"), MediaStore(tmp_path / "media")  # two processes, one folder
    ref, new = a.put(source)
    assert new
    time.sleep(0.01)
    assert b.put(source) == (ref, False)  # B's row will refer to the file A created
    a.discard(ref)  # A's row failed: A undoes its write
    assert a.path(ref).read_bytes() == source.read_bytes()  # B's file is still there
    c = tmp_path / "y.png"
    c.write_bytes(b"only A's")
    ref_c, _ = a.put(c)
    a.discard(ref_c)  # nobody else stored it: undone
    assert not a.path(ref_c).exists()
    b.discard(ref)  # B did not create it: nothing to undo
    assert a.path(ref).exists()


def test_the_media_folder_is_a_path_or_a_file_url(tmp_path):
    import pytest

    from ume_mma.annotate import open_store
    from ume_mma.errors import StoreError

    store = open_store(tmp_path / "a.db", f"file://{tmp_path}/shared%20media")
    assert store.media.root == tmp_path / "shared media"
    store.close()
    for bad, match in (("s3://bucket/prefix", "media URL scheme 's3' is not supported"),
                       ("file://otherhost/srv", "not a local file:// URL")):  # fmt: skip
        with pytest.raises(StoreError, match=match):
            open_store(tmp_path / "b.db", bad)
    assert not (tmp_path / "b.db").exists()  # refused before anything was created
