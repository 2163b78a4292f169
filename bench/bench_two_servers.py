"""Two app processes on one PostgreSQL database, one of them killed mid-burst (a script, not a test).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_two_servers.py [--clients 16] [--seconds 60] [--save]

A private PostgreSQL 15 server (tests/pg.py) holds one queue of ``--items`` distinct images with overlap 2;
two ``python app.py --db postgresql://... --media-dir SHARED --auth FILE`` processes serve it. ``--clients``
annotators (one gradio_client client each, spread evenly over the two processes) loop ``/next_item`` +
``/submit_item`` for ``--seconds``; at half time process A is killed with SIGKILL and its clients move to B
(same annotator, same login). Afterwards process A is started again on the same database and:
- no item was handed to more annotators than the overlap (every handed lease is recorded, and none expires
  within the run), and no annotator was handed an item that another held at the same time beyond the overlap;
- every acknowledged submit (a call that returned its id) is in the database, with its item, annotator and
  label, once;
- overlap counts are exact: no item has more than 2 labels or two labels from one person, and an item is done
  exactly when it has 2;
- ``/annotation_stats`` from both processes agree with each other and with the database.
Throughput: acknowledged submits per second per process (A over its life, B over the run) and in all.
Prints a table; ``--save`` writes bench/results/two_servers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serve import serve_app  # noqa: E402

QUEUE = "team"
OVERLAP = 2
LABELS = [str(d) for d in range(10)]


def make_folder(folder: Path, n: int) -> Path:
    """``folder/metadata.jsonl``: n distinct small noise PNGs (each a new sample)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{i:05d}.png")
        lines.append(json.dumps({"id": f"s{i}", "image": f"{i:05d}.png"}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def prepare(url: str, media: Path, data: Path, n: int) -> None:
    """Import the queue (overlap 2, file order) into the shared database and media folder."""
    from ume_mma.annotate import import_dataset, open_store

    store = open_store(url, media)
    try:
        import_dataset(store, make_folder(data, n), QUEUE, labels=LABELS, order="file", overlap=OVERLAP)
    finally:
        store.close()


def auth_file(path: Path, names: list[str]) -> dict[str, str]:
    """An --auth file with one annotator line per name; returns name -> password."""
    users = {name: f"pw-{name}" for name in names}
    path.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    return users


class Log:
    """What the clients saw: every item handed out and every acknowledged submit (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handed: list[dict] = []  # {"item", "annotator", "server", "t"}
        self.acked: list[dict] = []  # {"id", "item", "annotator", "label", "server", "t"}
        self.moved = 0

    def add(self, kind: str, **row) -> None:
        with self.lock:
            getattr(self, kind).append(row)


def annotator_loop(
    name: str, password: str, servers: list[tuple[str, str]], log: Log, stop: threading.Event, t0: float
) -> None:
    """Annotate through the first of ``servers`` ((name, URL) pairs) until ``stop`` or the queue is empty; on a
    dead server move to the next one."""
    from gradio_client import Client

    for k, (server, url) in enumerate(servers):
        try:
            client = Client(url, auth=(name, password), verbose=False)
        except Exception:  # noqa: BLE001 - that server is down: try the next one
            continue
        if k:
            with log.lock:
                log.moved += 1
        try:
            while not stop.is_set():
                item = client.predict(QUEUE, api_name="/next_item")
                if item is None:
                    return
                log.add("handed", item=item["id"], annotator=name, server=server, t=time.perf_counter() - t0)
                label = LABELS[(item["id"] * 7 + sum(map(ord, name))) % 10]
                r = client.predict(item["id"], label, [], "", QUEUE, api_name="/submit_item")
                log.add("acked", id=r["id"], item=r["item_id"], annotator=r["annotator"], label=r["label"],
                        server=server, t=time.perf_counter() - t0)  # fmt: skip
            return
        except Exception:  # noqa: BLE001 - the server was killed mid-call: that call is not acknowledged
            continue


def check(url: str, media: Path, log: Log) -> dict:
    """Leases, acknowledged submits and overlap counts against the database."""
    import sqlalchemy as sa

    from ume_mma.annotate import AnnotationQueue, open_store
    from ume_mma.annotate import schema as s

    store = open_store(url, media)
    try:
        with store.transaction() as conn:
            rows = conn.execute(sa.select(s.annotations.c.id, s.annotations.c.item_id, s.annotations.c.annotator,
                                          s.annotations.c.label)).all()  # fmt: skip
            items = conn.execute(sa.select(s.queue_items.c.id, s.queue_items.c.state)).all()
        stats = AnnotationQueue(store, QUEUE).stats().to_dict()
    finally:
        store.close()
    handed: dict[int, set[str]] = defaultdict(set)
    for h in log.handed:
        handed[h["item"]].add(h["annotator"])
    by_id = {r.id: r for r in rows}
    labels: dict[int, list[str]] = defaultdict(list)
    for r in rows:
        labels[r.item_id].append(r.annotator)
    found = sum(
        1 for a in log.acked
        if a["id"] in by_id and (by_id[a["id"]].item_id, by_id[a["id"]].annotator, by_id[a["id"]].label)
        == (a["item"], a["annotator"], a["label"])
    )  # fmt: skip
    done = {i.id for i in items if i.state == "done"}
    return {
        "handed_out": len(log.handed),
        "items_handed_to_more_than_overlap": sum(len(v) > OVERLAP for v in handed.values()),
        "max_annotators_handed_one_item": max((len(v) for v in handed.values()), default=0),
        "acknowledged": len(log.acked),
        "acknowledged_found": found,
        "acknowledged_lost": len(log.acked) - found,
        "acknowledged_duplicated": len(log.acked) - len({a["id"] for a in log.acked}),
        "annotations_in_db": len(rows),
        "items_over_overlap": sum(len(v) > OVERLAP for v in labels.values()),
        "items_with_one_annotator_twice": sum(len(v) != len(set(v)) for v in labels.values()),
        "done_items": len(done),
        "done_without_exactly_overlap": sum(len(labels.get(i, [])) != OVERLAP for i in done),
        "not_done_with_overlap": sum(len(v) == OVERLAP and i not in done for i, v in labels.items()),
        "db_stats": stats,
    }


def same_stats(a: dict, b: dict) -> bool:
    """The two servers' /annotation_stats are the same (both read after the run, leases far from expiry)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def run(args: argparse.Namespace, pg, tmp: Path) -> dict:
    from gradio_client import Client

    url = pg.create_database()
    media = tmp / "media"  # the one media folder both processes share
    prepare(url, media, tmp / "data", args.items)
    names = [f"a{i:02d}" for i in range(args.clients)]
    users = auth_file(tmp / "auth.txt", names)
    ports = [args.port, args.port + 1]
    common = ("--db", url, "--media-dir", str(media), "--auth", str(tmp / "auth.txt"))
    procs = [serve_app(p, *common) for p in ports]
    urls = [f"http://127.0.0.1:{p}/" for p in ports]
    servers = list(zip("AB", urls, strict=True))  # even clients start on A (and move to B), odd ones on B
    log, stop = Log(), threading.Event()
    threading.excepthook = lambda a: None  # gradio_client's stream threads die with the killed server
    t0 = time.perf_counter()
    workers = [
        threading.Thread(target=annotator_loop, args=(n, users[n], servers[i % 2 :], log, stop, t0))
        for i, n in enumerate(names)
    ]  # fmt: skip
    for w in workers:
        w.start()
    time.sleep(args.seconds / 2)
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(timeout=30)
    killed_at = time.perf_counter() - t0
    time.sleep(args.seconds / 2)
    stop.set()
    for w in workers:
        w.join(timeout=60)
    elapsed = time.perf_counter() - t0
    procs[0] = serve_app(ports[0], *common)  # A again, on the database the kill left
    admin = {n: Client(u, auth=(names[0], users[names[0]]), verbose=False) for n, u in zip("AB", urls, strict=True)}
    stats = {n: c.predict(QUEUE, api_name="/annotation_stats") for n, c in admin.items()}
    for p in procs:
        p.terminate()
        p.wait(timeout=30)
    result = check(url, media, log)
    on = {s: [a for a in log.acked if a["server"] == s] for s in "AB"}
    db = result.pop("db_stats")
    keys = ("total", "labelled", "pending", "leased", "labels_given", "overlap")
    return {
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "killed_A_at_s": round(killed_at, 1),
        "items": args.items,
        "overlap": OVERLAP,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "clients_moved_to_B": log.moved,
        "submits_per_s": {
            "A": round(len(on["A"]) / killed_at, 1),
            "B": round(len(on["B"]) / elapsed, 1),
            "all": round(len(log.acked) / elapsed, 1),
        },
        "acknowledged_on": {s: len(v) for s, v in on.items()},
        **result,
        "stats_agree": same_stats(stats["A"], stats["B"]) and all(stats["A"][k] == db[k] for k in keys),
        "stats": {k: stats["A"][k] for k in keys},
    }


def table(r: dict) -> str:
    t = r["submits_per_s"]
    return "\n".join([
        "| measure | result |",
        "|---|---|",
        f"| {r['clients']} clients over two app processes, one PostgreSQL, {r['seconds']:.0f} s | "
        f"{t['all']} submits/s in all (A {t['A']}/s until killed, B {t['B']}/s) |",
        f"| process A killed with SIGKILL at {r['killed_A_at_s']:.0f} s | "
        f"{r['clients_moved_to_B']} clients moved to B |",
        f"| acknowledged submits | {r['acknowledged']}: {r['acknowledged_found']} found, "
        f"{r['acknowledged_lost']} lost |",
        f"| items handed to more annotators than the overlap ({r['overlap']}) | "
        f"{r['items_handed_to_more_than_overlap']} |",
        f"| items over the overlap / one annotator twice / done without exactly {r['overlap']} labels | "
        f"{r['items_over_overlap']} / {r['items_with_one_annotator_twice']} / {r['done_without_exactly_overlap']} |",
        f"| /annotation_stats from both processes agree with the database | {r['stats_agree']} |",
    ])  # fmt: skip


def main() -> None:
    from tests.pg import PG_BIN, PgServer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--items", type=int, default=1500)
    ap.add_argument("--port", type=int, default=7891)
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    if not (PG_BIN / "initdb").is_file():
        raise SystemExit(f"PostgreSQL is not installed ({PG_BIN}/initdb missing)")
    root = Path(tempfile.mkdtemp(prefix="ume-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
    pg = PgServer(root)
    pg.init()
    pg.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-two-") as tmp:
            r = run(args, pg, Path(tmp))
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(table(r))
    print(json.dumps(r, indent=2))
    if args.save:
        (ROOT / "bench" / "results" / "two_servers.json").write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
