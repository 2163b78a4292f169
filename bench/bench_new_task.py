"""A new task trained as the app trains it (issue 21): spoken-icons (``python -m ume_mma.data build spoken-icons``:
eight words spoken by three Festival voices, their Adwaita icons and a sentence naming them; labels no shipped
checkpoint has) through :func:`ume_mma.jobs.start_job` with ``new_task=True`` (what the Train tab and ``/start_job``
call), an encoder per modality (the scratch encoders: they load on any server) and the defaults by size
(:func:`ume_mma.newtask.size_defaults`). The job runs in its own process on this CPU, as in the app.

Measured: the held-out (test split) accuracy of the saved model, with every modality and without each one, every
model of the run (uni-modal, naive, MMA, UME), the model UME-MMA chose, and the job's wall time from start to its
end (``job_s``; ``train_s``: the trainer's own ``elapsed_s``). A script, not a test::

    python bench/bench_new_task.py [--work DIR] [--save]     # writes bench/results/new_task.json with --save
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENCODERS = {"audio": "scratch.logmel-cnn", "image": "scratch.image-cnn-rgb", "text": "scratch.hashed-text"}


def measure(work: Path, data: Path | None) -> dict:
    from ume_mma.annotate import open_store
    from ume_mma.data.format import load_dataset
    from ume_mma.data.spoken_icons import build_spoken_icons
    from ume_mma.jobs import job_status, start_job
    from ume_mma.jobs.store import FINISHED

    work.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = work / "spoken-icons"
        if not (data / "metadata.jsonl").is_file():
            build_spoken_icons(data)
    db = work / "jobs.db"
    for leftover in (db, work / "jobs.db.jobs"):
        if leftover.is_file():
            leftover.unlink()
    store = open_store(db)
    overrides = {"data": str(data), "encoders": ENCODERS, "seed": 0, "cache_dir": str(work / "cache")}
    started = time.perf_counter()
    job_id = start_job(store, overrides, "local", new_task=True)
    while (status := job_status(store, job_id, tail=0))["state"] not in FINISHED:
        time.sleep(0.5)
    job_s = time.perf_counter() - started
    if status["state"] != "succeeded":
        raise SystemExit(f"job {job_id} {status['state']}: {status['error']}")
    from ume_mma.jobs import JobStore

    metrics = json.loads((JobStore(store).folder(job_id) / "out" / "metrics.json").read_text())
    cfg = status["config"]
    rows = {s: len(load_dataset(data).split(s).samples) for s in ("train", "val", "test")}
    return {
        "dataset": "spoken-icons",
        "build_info": json.loads((data / "build_info.json").read_text()),
        "rows": rows,
        "labels": load_dataset(data).labels,
        "encoders": ENCODERS,
        "settings": {k: cfg[k] for k in ("epochs", "mma_epochs", "batch_size", "lr", "mma_lr", "dropout_p", "seed")},
        "chosen": metrics["chosen"],
        "saved": metrics["saved"],
        "test": {name: t["accuracy"] for name, t in metrics["test"].items()},
        "test_rows": metrics["test"]["ume-mma"]["n"],
        "job_s": round(job_s, 1),
        "train_s": metrics["elapsed_s"],
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "threads": status["options"].get("threads"),
            "load_1min_at_end": round(os.getloadavg()[0], 1),  # a shared machine: other work ran beside the job
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/ume-mma-new-task"))
    ap.add_argument("--data", type=Path, default=None, help="a built spoken-icons folder (default: build one)")
    ap.add_argument("--save", action="store_true", help="write bench/results/new_task.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = measure(args.work, args.data)
    print(json.dumps(result, indent=2))
    if args.save:
        (ROOT / "bench" / "results" / "new_task.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
