"""Two real app processes (``python app.py --db postgresql://... --media-dir SHARED --auth FILE``) on one
private PostgreSQL: three annotators spread over both through gradio_client; leases hold across the
processes, the overlap counts are exact, every acknowledged label is stored, and /annotation_stats from the
two servers agree. (The bench bench/bench_two_servers.py adds 16 clients and a SIGKILL.)"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
pytest.importorskip("gradio")
import bench_two_servers as b2  # noqa: E402
from gradio_client import Client  # noqa: E402
from serve import serve_app  # noqa: E402

from tests.pg import pg_server  # noqa: E402, F401  (the PostgreSQL fixture)

ITEMS = 9


@pytest.fixture(scope="module")
def two_apps(pg_server, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("two")
    url, media = pg_server.create_database(), tmp / "media"
    b2.prepare(url, media, tmp / "data", ITEMS)
    users = b2.auth_file(tmp / "auth.txt", ["ann", "bob", "cy"])
    common = ("--db", url, "--media-dir", str(media), "--auth", str(tmp / "auth.txt"))
    ports = [7931, 7932]
    procs = []
    try:
        for p in ports:
            procs.append(serve_app(p, *common))
        yield url, media, users, [f"http://127.0.0.1:{p}/" for p in ports]
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)


def test_leases_hold_across_processes_and_overlap_counts_are_exact(two_apps):
    url, media, users, (a, b) = two_apps
    home = {"ann": a, "bob": b, "cy": a}  # ann and cy on process A, bob on process B
    c = {who: Client(u, auth=(who, users[who]), verbose=False) for who, u in home.items()}
    first = {who: c[who].predict(b2.QUEUE, api_name="/next_item")["id"] for who in ("ann", "bob", "cy")}
    # file order, overlap 2: ann (A) and bob (B) share the first item; cy (A) must not get it as a third
    assert first["ann"] == first["bob"] and first["cy"] != first["ann"], first
    again = c["bob"].predict(b2.QUEUE, api_name="/next_item")["id"]
    assert again == first["bob"]  # bob's lease, taken through B, is his on B
    stats = {u: Client(u, auth=("ann", users["ann"]), verbose=False) for u in (a, b)}
    leased = [s.predict(b2.QUEUE, api_name="/annotation_stats")["leased"] for s in stats.values()]
    assert leased == [2, 2]  # the two items held, seen the same from both processes
    log, stop = b2.Log(), threading.Event()
    t0 = time.perf_counter()
    workers = [
        threading.Thread(target=b2.annotator_loop, args=(who, users[who], [("AB"[u == b], u)], log, stop, t0))
        for who, u in home.items()
    ]  # fmt: skip
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=240)
    assert not any(w.is_alive() for w in workers)
    result = b2.check(url, media, log)
    assert result["acknowledged"] == ITEMS * b2.OVERLAP  # every place was filled, each submit acknowledged
    assert result["acknowledged_found"] == result["acknowledged"] and result["annotations_in_db"] == ITEMS * 2
    assert result["items_handed_to_more_than_overlap"] == 0 and result["max_annotators_handed_one_item"] == 2
    assert result["items_over_overlap"] == result["items_with_one_annotator_twice"] == 0
    assert result["done_items"] == ITEMS and result["done_without_exactly_overlap"] == 0
    per_item = Counter(x["item"] for x in log.acked)
    assert set(per_item.values()) == {2} and len(per_item) == ITEMS
    assert {x["server"] for x in log.acked} == {"A", "B"}  # both processes took labels
    got = [s.predict(b2.QUEUE, api_name="/annotation_stats") for s in stats.values()]
    assert b2.same_stats(got[0], got[1]), got
    assert (got[0]["total"], got[0]["labelled"], got[0]["labels_given"], got[0]["leased"]) == (ITEMS, ITEMS, 18, 0)
    assert sum(got[0]["annotators"].values()) == 18 and got[0]["agreement"]["items"] == ITEMS
