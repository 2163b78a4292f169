"""The supervisor of one local job: ``python -m ume_mma.jobs.supervisor JOB_ID`` (started by the local
runner, never by hand). It runs the training command as its child, in its own process group, records the
outcome in the database (succeeded / failed / cancelled / interrupted, exit code, final metrics, the error
line) and then starts the next queued job of the device. The database comes from the environment
(``UME_MMA_JOBS_DB``: never on the command line, where a password would show)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ume_mma.jobs.local import ENV_DB, ENV_MEDIA, ENV_ROOT, TRAIN_LOG, LocalRunner, finished_outputs, train_command
from ume_mma.jobs.store import JobStore
from ume_mma.progress import EXIT_STOPPED, StopRequest


def summarize_metrics(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What a job keeps of its run's ``metrics.json``: the choice, the saved model (the choice, or its
    reliability-weighted form) and that model's test evaluation, the fine-tune record."""
    path = Path(out_dir) / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    keep = ("chosen", "saved", "task", "seed", "data", "train_rows", "elapsed_s", "resumed", "finetune")
    saved = metrics.get("saved") or metrics["chosen"]  # the model in checkpoint/
    return {k: metrics[k] for k in keep if k in metrics} | {"test": metrics["test"][saved]}


def error_line(log: Path) -> str:
    """The trainer's one-line error (``error: ...``), else the last line of its log."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    errors = [line for line in lines if line.startswith("error: ")]
    return (errors or [line for line in lines if line.strip()] or ["(no output)"])[-1][:2000]


def outcome(jobs: JobStore, job_id: int, rc: int, stopped: bool) -> tuple[str, dict[str, Any]]:
    """The final state of a run that exited with ``rc`` and the values to record."""
    job = jobs.get(job_id)
    folder = jobs.folder(job_id)
    if rc == 0 and finished_outputs(job["out_dir"]):
        return "succeeded", {"metrics": summarize_metrics(job["out_dir"]), "error": None}
    if stopped or job["cancel_requested_at"] is not None:
        return "cancelled", {"error": None}
    if rc in (EXIT_STOPPED, -signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP):
        return "interrupted", {"error": "stopped by a signal: resume it"}
    return "failed", {"error": error_line(folder / TRAIN_LOG)}


def lower_priority(increment: int) -> None:
    """Make this process (and the children it starts) ``increment`` nicer; a no-op where ``os.nice`` is absent."""
    if increment > 0 and hasattr(os, "nice"):
        os.nice(increment)


def run_job(jobs: JobStore, job_id: int) -> int:
    """Run the job if it is running with this process recorded as its own; record the outcome."""
    stop = StopRequest().install()  # SIGTERM (a cancel) reaches the trainer too: it saves its state and exits
    job = jobs.get(job_id)  # waits for the dispatcher's transaction (which records this pid) to commit
    if job["state"] != "running" or job["pid"] != os.getpid():
        return 0  # not ours (the dispatcher's transaction failed): do nothing
    folder = jobs.folder(job_id)
    rc = -signal.SIGTERM
    lower_priority(job["options"].get("nice") or 0)  # the training process inherits it
    if not stop.requested:
        with (folder / TRAIN_LOG).open("ab") as log:
            proc = subprocess.Popen(train_command(job, folder), cwd=folder, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)  # fmt: skip
            rc = proc.wait()
    state, values = outcome(jobs, job_id, rc, stop.requested)
    jobs.move(job_id, ["running"], state, exit_code=rc, **values)
    LocalRunner(jobs).dispatch(job["device"])  # the next queued job of this device
    return 0


def main(argv: list[str] | None = None) -> int:
    from ume_mma.annotate.store import open_store

    args = sys.argv[1:] if argv is None else argv
    store = open_store(os.environ[ENV_DB], os.environ.get(ENV_MEDIA) or None)
    try:
        return run_job(JobStore(store, os.environ.get(ENV_ROOT) or None), int(args[0]))
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
