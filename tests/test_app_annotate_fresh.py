"""The annotation API of a fresh app (nothing imported yet), through the launched app and gradio_client: a
queue that does not exist reads as empty, /import_queue makes one from a folder (refused where folders on
the server may not be named, and for a folder the checkpoint does not fit), the counts stay disjoint after
/undo_last, and no message names the database file."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from tests.test_app_annotate import ASSETS, AV, ROOT, USERS, as_space, dataset  # noqa: E402
from tests.tiny import make_tiny_dataset  # noqa: E402
from ui.annotate import Access  # noqa: E402
from ume_mma.annotate import open_store  # noqa: E402
from ume_mma.predictor import Limits  # noqa: E402

ZERO = {"total": 0, "labelled": 0, "pending": 0, "leased": 0, "disagreements_left": 0, "annotators": {}, "overlap": 1,
        "labels_given": 0}  # fmt: skip


def counts(stats: dict) -> dict:
    """/annotation_stats without its agreement report (checked to rest on no item)."""
    assert stats["agreement"]["items"] == 0 and stats["agreement"]["krippendorff_alpha"] is None
    return {k: v for k, v in stats.items() if k != "agreement"}


def launch_fresh(tmp_path, access: Access, auth=None):
    store = open_store(tmp_path / "fresh.db")
    demo = app.build_demo(AV, pool=app.PredictorPool(Limits()), store=store, access=access)
    app.launch_app(demo, prevent_thread_lock=True, quiet=True, auth=auth)
    return demo, store


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fresh")
    demo, store = launch_fresh(tmp, Access("local", "carol"))
    try:
        yield demo, store, tmp
    finally:
        demo.close()


def test_a_fresh_app_answers_the_queue_api_as_an_empty_queue(fresh):
    demo, store, _ = fresh
    c = Client(demo.local_url, verbose=False)
    assert c.predict("default", api_name="/next_item") is None
    assert c.predict("default", api_name="/undo_last") is None
    assert counts(c.predict("default", api_name="/annotation_stats")) == ZERO
    assert counts(c.predict("app", api_name="/annotation_stats")) == ZERO  # /annotate's queue, before any annotation
    with pytest.raises(AppError, match="queue 'nope' has no item 4") as exc:
        c.predict(4, "7", {}, "", "nope", api_name="/submit_item")
    assert "fresh.db" not in str(exc.value) and str(store.display) not in str(exc.value)
    assert store.counts()["queues"] == 0  # reading made nothing


def test_import_queue_then_annotate_undo_and_disjoint_counts(fresh):
    demo, store, tmp = fresh
    c = Client(demo.local_url, verbose=False)
    folder = dataset(tmp / "unlabelled")
    r = c.predict(str(folder), "default", "disagreement", "", api_name="/import_queue")
    assert r == {"queue": "default", "added": 3, "duplicates": 0, "total": 3, "new_labels": [], "note": ""}
    again = c.predict(str(folder), "default", "disagreement", "", api_name="/import_queue")
    assert (again["added"], again["duplicates"], again["total"]) == (0, 3, 3)  # nothing twice
    stats = c.predict("default", api_name="/annotation_stats")
    assert (stats["total"], stats["pending"], stats["leased"], stats["disagreements_left"]) == (3, 3, 0, 1)
    item = c.predict("default", api_name="/next_item")
    assert item["source_id"] == "s2" and item["prediction"]["checkpoint"]  # predicted: disagreement first
    c.predict(item["id"], "2", {}, "", "default", api_name="/submit_item")
    assert c.predict("default", api_name="/undo_last")["id"] == item["id"]
    stats = c.predict("default", api_name="/annotation_stats")
    assert (stats["total"], stats["labelled"], stats["pending"], stats["leased"]) == (3, 0, 2, 1)


def test_import_queue_refuses_a_folder_the_checkpoint_does_not_fit(fresh, tmp_path):
    """A folder without a modality the checkpoint reads is refused (labels it does not know are not: they are
    choices of the queue, tests/test_app_import.py)."""
    demo, store, _ = fresh
    before = store.counts()
    data = make_tiny_dataset(tmp_path / "letters", {"train": 1})
    text_only = tmp_path / "text"
    text_only.mkdir()
    (text_only / "metadata.jsonl").write_text('{"id": "t", "label": "7", "text": "seven"}\n')
    with pytest.raises(AppError, match=r"text has text, but checkpoint checkpoints/av-digits reads audio, image: no"):
        Client(demo.local_url, verbose=False).predict(str(text_only), "t", "file", "", api_name="/import_queue")
    with pytest.raises(AppError, match="unknown order 'sideways'"):
        Client(demo.local_url, verbose=False).predict(str(data), "letters", "sideways", "", api_name="/import_queue")
    with pytest.raises(AppError, match="give the path of a dataset folder"):
        Client(demo.local_url, verbose=False).predict("", "letters", "file", "", api_name="/import_queue")
    assert store.counts() == before


def test_import_queue_needs_a_sign_in_and_a_non_public_app(tmp_path, monkeypatch):
    folder = dataset(tmp_path / "unlabelled")
    as_space(monkeypatch)
    demo, store = launch_fresh(tmp_path / "oauth", Access("oauth"))
    try:
        with pytest.raises(AppError, match="Sign in with Hugging Face"):
            Client(demo.local_url, verbose=False).predict(str(folder), "q", "file", "", api_name="/import_queue")
    finally:
        demo.close()
    demo, store2 = launch_fresh(tmp_path / "public", Access("login", server_paths=False), auth=USERS)
    try:
        with pytest.raises(AppError, match="does not read folders on the server"):
            Client(demo.local_url, auth=USERS[0], verbose=False).predict(
                str(folder), "q", "file", "", api_name="/import_queue"
            )
    finally:
        demo.close()
    assert store.counts()["queues"] == store2.counts()["queues"] == 0


def test_the_readme_annotation_example_runs_as_pasted_against_a_fresh_app(tmp_path, monkeypatch):
    """The README's annotation block (assets/queue-example as the folder), against a fresh local app."""
    monkeypatch.chdir(ROOT)  # the server reads a relative folder from its working directory: the checkout
    demo, store = launch_fresh(tmp_path, Access("local", "dana"))
    try:
        client = Client(demo.local_url, verbose=False)
        assert counts(client.predict("default", api_name="/annotation_stats")) == ZERO
        assert client.predict("default", api_name="/next_item") is None
        r = client.predict("assets/queue-example", "default", "disagreement", "", api_name="/import_queue")
        assert r == {"queue": "default", "added": 3, "duplicates": 0, "total": 3, "new_labels": [], "note": ""}
        item = client.predict("default", api_name="/next_item")
        assert item["source_id"] == "disagree-2-5"  # disagreements first
        client.predict(item["id"], item["prediction"]["fused"]["label"], {}, "", "default", api_name="/submit_item")
        assert client.predict("default", api_name="/undo_last")["id"] == item["id"]
        stats = client.predict("default", api_name="/annotation_stats")
        assert (stats["total"], stats["labelled"], stats["pending"], stats["leased"]) == (3, 0, 2, 1)
        done = client.predict(
            image=handle_file(str(ASSETS / "disagree_2_5_image_2.png")),
            audio=handle_file(str(ASSETS / "disagree_2_5_speech_5_es_MX_f_Allison.wav")),
            label="2", flags={"audio": ["irrelevant"]}, note="the speech says five",
            api_name="/annotate",
        )  # fmt: skip
        assert done["annotator"] == "dana"
        assert client.predict("app", api_name="/annotation_stats")["labelled"] == 1
    finally:
        demo.close()


def test_a_locked_database_is_named_without_its_folder(tmp_path):
    """A store error reaches the client with the database's file name, not its place on the server."""
    import sqlite3

    store = open_store(tmp_path / "deep" / "locked.db", busy_timeout=0.2)
    demo = app.build_demo(AV, pool=app.PredictorPool(Limits()), store=store, access=Access("local", "eve"))
    app.launch_app(demo, prevent_thread_lock=True, quiet=True)
    holder = sqlite3.connect(tmp_path / "deep" / "locked.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        with pytest.raises(AppError, match="database locked.db is locked") as exc:
            Client(demo.local_url, verbose=False).predict("default", api_name="/annotation_stats")
        assert str(tmp_path) not in str(exc.value)
    finally:
        holder.rollback()
        holder.close()
        demo.close()
