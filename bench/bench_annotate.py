"""Durability and throughput of annotating through the app (a script, not a test).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_annotate.py [--kills 5] [--clients 16] [--seconds 8] [--save]

1. Throughput: ``python app.py --db DB`` in its own process; ``--clients`` gradio_client clients call
   ``/annotate`` concurrently for ``--seconds`` (each call a distinct image: a new sample, a media file and an
   annotation, committed before the call returns); calls per second.
2. Durability, ``--kills`` times on the same database: the clients fire ``/annotate``; after a random 1-3 s the
   server is killed with SIGKILL mid-burst; then the database is opened again (and the app restarted on it)
   and every acknowledged annotation (a call that returned its id) is looked for: present, not duplicated,
   with its label, and its media file byte-identical (SHA-256) to what was sent.
Prints a table; ``--save`` writes bench/results/annotate.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serve import serve_app  # noqa: E402  (bench/ is on sys.path when run as a script)


def images(folder: Path, n: int) -> list[Path]:
    """``n`` distinct small PNGs (noise: every one is a new sample)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"img{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(path)
        out.append(path)
    return out


def burst(url: str, files: list[Path], clients: int, stop: threading.Event, on_start=None) -> list[dict]:
    """Clients annotate distinct files until ``stop`` or the server dies; returns the acknowledged calls.
    ``on_start`` runs once every client is connected (the kill timer starts then: mid-burst, not mid-connect)."""
    from gradio_client import Client, handle_file

    acked: list[dict] = []
    lock = threading.Lock()
    queue = list(files)

    def worker(client: Client) -> None:
        while not stop.is_set():
            with lock:
                if not queue:
                    return
                path = queue.pop()
            label = str(int(hashlib.sha256(path.name.encode()).hexdigest(), 16) % 10)
            try:
                r = client.predict(image=handle_file(str(path)), label=label, note=path.name, api_name="/annotate")
            except Exception:  # noqa: BLE001 - the server was killed: this call is not acknowledged
                return
            with lock:
                acked.append({"id": r["id"], "label": label, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})

    workers = [threading.Thread(target=worker, args=(Client(url, verbose=False),)) for _ in range(clients)]
    if on_start is not None:
        on_start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return acked


def check(db: Path, acked: list[dict]) -> dict[str, int]:
    """Acknowledged annotations present (with label and identical media), duplicated, lost."""
    import sqlalchemy as sa

    from ume_mma.annotate import open_store
    from ume_mma.annotate import schema as s

    store = open_store(db)
    with store.transaction() as conn:
        rows = conn.execute(
            sa.select(s.annotations.c.id, s.annotations.c.label, s.samples.c.image).join(s.samples)
        ).all()  # fmt: skip
    store_root = store.media.root
    store.close()
    by_id: dict[str, list] = {}
    for row in rows:
        by_id.setdefault(row.id, []).append(row)
    found = bad_media = 0
    for a in acked:
        got = by_id.get(a["id"], [])
        if got and got[0].label == a["label"]:
            found += 1
            if hashlib.sha256((store_root / got[0].image).read_bytes()).hexdigest() != a["sha256"]:
                bad_media += 1
    duplicated = sum(len(v) - 1 for v in by_id.values())
    return {"acknowledged": len(acked), "found": found, "lost": len(acked) - found, "duplicated": duplicated,
            "media_mismatch": bad_media, "rows": len(rows)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8.0, help="length of the throughput run")
    ap.add_argument("--port", type=int, default=7877)
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    threading.excepthook = lambda args: None  # gradio_client's stream threads die with the killed server
    tmp = Path(tempfile.mkdtemp(prefix="bench-annotate-"))
    files = images(tmp / "images", 4000)
    db, url = tmp / "ann.db", f"http://127.0.0.1:{args.port}/"
    proc = serve_app(args.port, "--db", str(db))
    stop = threading.Event()
    timer = threading.Timer(args.seconds, stop.set)
    t0 = time.perf_counter()
    timer.start()
    acked = burst(url, files[:2000], args.clients, stop)
    rate = len(acked) / (time.perf_counter() - t0)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    rounds, all_acked, rng = [], list(acked), random.Random(0)
    pool = files[2000:]
    for k in range(args.kills):
        proc = serve_app(args.port, "--db", str(db))
        stop = threading.Event()
        killer = threading.Timer(rng.uniform(1.0, 3.0), lambda p=proc, s=stop: (p.kill(), s.set()))
        acked = burst(url, pool[k * 400 : (k + 1) * 400], args.clients, stop, on_start=killer.start)
        proc.wait(timeout=30)
        all_acked += acked
        result = check(db, all_acked)  # the database after a SIGKILL, opened again
        rounds.append({"kill": k + 1, "acknowledged_this_burst": len(acked), **result})
        print(f"kill {k + 1}: {rounds[-1]}", flush=True)
    restart = serve_app(args.port, "--db", str(db))  # the app starts on the database the kills left
    from gradio_client import Client

    stats = Client(url, verbose=False).predict("app", api_name="/annotation_stats")
    restart.terminate()
    restart.wait(timeout=30)
    final = check(db, all_acked)
    out = {"clients": args.clients, "annotate_calls_per_s_sqlite": round(rate, 1), "kills": rounds,
           "final": final, "stats_after_restart": stats}  # fmt: skip
    print("| measure | result |\n|---|---|")
    print(f"| /annotate with {args.clients} concurrent clients, SQLite | {rate:.1f} calls/s |")
    f = final
    print(
        f"| SIGKILL mid-burst, {args.kills} times | {f['acknowledged']} acknowledged, {f['found']} found, "
        f"{f['lost']} lost, {f['duplicated']} duplicated, {f['media_mismatch']} media mismatches |"
    )
    if args.save:
        (ROOT / "bench" / "results" / "annotate.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
