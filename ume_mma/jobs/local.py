"""The ``local`` runner: a job runs on this machine, in its own process group, one job per device at a time.

Starting a job spawns a supervisor (``python -m ume_mma.jobs.supervisor JOB_ID``, a new session, so it
outlives the app or CLI that started it) which runs the training command as its child and records the
outcome. The training command is ``python -m ume_mma.train CONFIG --device cpu`` on a machine without a GPU
(Accelerate on one CPU process would only add its launcher's start-up time) and ``python -m
accelerate.commands.launch --num_processes N [--multi_gpu] -m ume_mma.train CONFIG --device cuda`` (the
module form of ``accelerate launch``) on N GPUs. Cancel sends SIGTERM to the process group: the trainer saves
its state at the next step boundary. A running job whose process group is gone (the machine restarted, the
supervisor was killed) is marked ``interrupted`` by :meth:`LocalRunner.refresh`.

A job shares the machine with the app that serves predictions, so it yields: its processes run ``nice``-r
(option ``nice``, an increment like the ``nice`` command, default :data:`DEFAULT_NICE`) and, on a CPU, with
``threads`` torch/OpenMP threads (default: every CPU but one, so the app keeps a core). Both are recorded in
the job's options, and the trainer reports what it got in its ``start`` progress line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import ume_mma
from ume_mma.annotate.schema import jobs as jobs_table
from ume_mma.jobs.runners import Runner, register_runner
from ume_mma.jobs.store import JobError

PACKAGE_PARENT = Path(ume_mma.__file__).resolve().parents[1]
PROGRESS = "progress.jsonl"
TRAIN_LOG = "train.log"
SUPERVISOR_LOG = "supervisor.log"
ENV_DB, ENV_MEDIA, ENV_ROOT = "UME_MMA_JOBS_DB", "UME_MMA_JOBS_MEDIA", "UME_MMA_JOBS_ROOT"
DEFAULT_NICE = 10
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_threads() -> int:
    """Training threads of a CPU job by default: every CPU but one (at least one)."""
    return max(1, (os.cpu_count() or 1) - 1)


def _check_int(options: dict[str, Any], key: str, low: int, high: int | None) -> None:
    value = options.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise JobError(f"runner option {key!r} must be an integer {bounds}, got {value!r}")


def train_command(job: dict[str, Any], folder: Path) -> list[str]:
    """The training command of a local job (see the module docstring for the choice of launcher)."""
    args = ["-m", "ume_mma.train", str(folder / "config.json"), "--progress", str(folder / PROGRESS)]
    args += ["--resume"] if job["resume"] else []
    options = job["options"]
    if options.get("device", "cpu") == "cpu":
        return [sys.executable, *args, "--device", "cpu"]
    n = int(options.get("gpus", 1))
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n), "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no"] + (["--multi_gpu"] if n > 1 else [])
    return [*launch, *args, "--device", "cuda"]


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot; None when it does not exist or on non-Linux)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()[19]


def group_alive(pgid: int | None) -> bool:
    """Whether any process (not a zombie) of process group ``pgid`` is left."""
    if pgid is None:
        return False
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel (zombies count as alive there)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def finished_outputs(out_dir: str) -> bool:
    """A complete run left its checkpoint (renamed into place when complete) and its metrics."""
    out = Path(out_dir)
    return (out / "checkpoint" / "config.json").is_file() and (out / "metrics.json").is_file()


@register_runner("local")
class LocalRunner(Runner):
    exclusive = True

    def device(self, options: dict[str, Any]) -> str:
        """``cuda`` (every GPU of the machine, one job at a time) when there is a GPU, else ``cpu``."""
        if options.get("device") not in (None, "auto"):
            return options["device"]
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def check(self, options: dict[str, Any]) -> None:
        """``nice`` is an integer 0..19 and ``threads`` a positive integer (either may be absent)."""
        _check_int(options, "nice", 0, 19)
        _check_int(options, "threads", 1, None)

    def prepare(self, job: dict[str, Any]) -> dict[str, Any]:
        """The priority and (on a CPU) the thread count the job will run with, defaults filled in."""
        options = job["options"]
        out = {"nice": DEFAULT_NICE if options.get("nice") is None else options["nice"]}
        if job["device"] == "cpu":
            out["threads"] = options.get("threads") or default_threads()
        return out

    def dispatch(self, device: str) -> int | None:
        """When ``device`` is free, start its oldest queued job (claimed and spawned in one transaction, so
        a job is never running without its process recorded). Returns the started job's id."""
        with self.jobs.store.transaction() as conn:
            job = self.jobs.claim_next(device, conn)
            if job is None:
                return None
            try:
                proc = self._spawn(job)
            except OSError as exc:
                error = f"could not start the job's process: {exc}"
                row = jobs_table.update().where(jobs_table.c.id == job["id"])
                conn.execute(row.values(state="failed", error=error, finished_at=self.jobs.clock()))
                return None
            values = {"pid": proc.pid, "process": f"{proc.pid}:{process_start(proc.pid)}"}
            conn.execute(jobs_table.update().where(jobs_table.c.id == job["id"]).values(**values))
        return int(job["id"])

    def launch(self, job: dict[str, Any]) -> None:
        self.dispatch(job["device"])

    def _spawn(self, job: dict[str, Any]) -> subprocess.Popen:
        """The supervisor of ``job`` in a new session (its own process group), logging to the job folder."""
        store = self.jobs.store
        folder = self.jobs.folder(job["id"])
        folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env[ENV_DB] = store.engine.url.render_as_string(hide_password=False)  # not on the command line
        env[ENV_MEDIA], env[ENV_ROOT] = str(store.media.root), str(self.jobs.root)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH")]))
        if job["options"].get("threads"):
            env.update(dict.fromkeys(THREAD_VARS, str(job["options"]["threads"])))
        with (folder / SUPERVISOR_LOG).open("ab") as log:
            cmd = [sys.executable, "-m", "ume_mma.jobs.supervisor", str(job["id"])]
            return subprocess.Popen(
                cmd, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def refresh(self, job: dict[str, Any]) -> None:
        """A running job whose process group is gone: ``succeeded`` if its outputs are complete, else
        ``interrupted`` (resumable)."""
        if job["state"] != "running" or group_alive(job["pid"]):
            return
        from ume_mma.jobs.supervisor import summarize_metrics

        cond = sa.and_(jobs_table.c.id == job["id"], jobs_table.c.state == "running", jobs_table.c.pid == job["pid"])
        if finished_outputs(job["out_dir"]):
            values = {"state": "succeeded", "metrics": summarize_metrics(job["out_dir"])}
        else:
            values = {"state": "interrupted", "error": "the job's process is gone (restart or kill): resume it"}
        with self.jobs.store.transaction() as conn:
            conn.execute(jobs_table.update().where(cond).values(finished_at=self.jobs.clock(), **values))

    def signal_cancel(self, job: dict[str, Any]) -> bool:
        """SIGTERM to the job's process group; True when it was alive (its supervisor records the end)."""
        if not group_alive(job["pid"]):
            return False
        try:
            os.killpg(job["pid"], signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def progress_lines(self, job: dict[str, Any]) -> list[str]:
        path = self.jobs.folder(job["id"]) / PROGRESS
        return path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []
