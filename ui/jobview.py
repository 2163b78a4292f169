"""What a client sees of a job: its status without a server path (the base and the result by name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ui.checkpoint import ROOT
from ume_mma.jobs import job_name
from ume_mma.jobs.api import PATH_KEYS


def shown_ref(ref: str | None, jobs_root: Path) -> str | None:
    """A checkpoint reference as a client may see it: a folder of the app (``checkpoints/x``), a job's
    checkpoint by name (``job-3``), else the folder's own name; never the server's path."""
    if not ref or not Path(ref).is_absolute():
        return ref
    path = Path(ref)
    if path.is_relative_to(jobs_root) and len(path.relative_to(jobs_root).parts) >= 1:
        return path.relative_to(jobs_root).parts[0]
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def public_status(status: dict[str, Any], jobs_root: Path) -> dict[str, Any]:
    """A job's status for a client: no server path (no output folder, data folders or runner options; the
    base and the result by name: ``checkpoint`` is ``job-<id>``, which /load_model and /predict take)."""
    out = {k: v for k, v in status.items() if k not in ("out_dir", "options")}
    out["config"] = {k: v for k, v in (status.get("config") or {}).items() if k not in (*PATH_KEYS, "out")}
    out["metrics"] = {k: v for k, v in (status.get("metrics") or {}).items() if k != "checkpoint"} or None
    out["checkpoint"] = job_name(status["id"]) if status.get("checkpoint") else None
    if isinstance(out.get("error"), str):  # a message may quote the job's own folders
        for folder, shown in ((jobs_root, ""), (ROOT, "")):
            out["error"] = out["error"].replace(f"{folder}/", shown)
    return scrub(out, jobs_root)


def scrub(value: Any, jobs_root: Path) -> Any:
    """``value`` with every absolute path in it (a base, a data folder in the metrics) shown by name."""
    if isinstance(value, dict):
        return {k: scrub(v, jobs_root) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, jobs_root) for v in value]
    if isinstance(value, str) and value.startswith("/") and len(value) < 4096:
        return shown_ref(value, jobs_root)
    return value
