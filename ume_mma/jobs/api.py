"""The jobs API the app and the CLI call: start, status, cancel, resume, list (and recover after a restart).

Everything that can be wrong with a job's input is checked before anything is written (a job row, a
folder, an upload): the config validates, the data loads and has train/val/test samples, the base
checkpoint loads and knows every label. Those problems raise :class:`~ume_mma.trainconfig.ConfigError`,
:class:`~ume_mma.jobs.store.JobError` or another ``ValueError`` of the library (usage errors).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ume_mma.annotate.store import Store
from ume_mma.compat import check_modalities
from ume_mma.errors import DatasetFormatError, InputError
from ume_mma.jobs.runners import get_runner
from ume_mma.jobs.store import ACTIVE, FINISHED, JobError, JobStore
from ume_mma.progress import events, phase_progress, progress_curve, summarize_progress
from ume_mma.trainconfig import TrainConfig, load_config

PATH_KEYS = ("data", "base_data", "cache_dir")


def job_store(store: Store | JobStore) -> JobStore:
    return store if isinstance(store, JobStore) else JobStore(store)


def _override(key: str, value: Any) -> str:
    """``key=value`` in the syntax of training overrides (JSON for dicts, ``none`` for None)."""
    if value is None:
        return f"{key}=none"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={json.dumps(value) if isinstance(value, dict) else value}"


def build_config(config: str | os.PathLike[str] | None, overrides: dict[str, Any] | list[str]) -> TrainConfig:
    """The job's training config (``out`` is set per job later); local paths are made absolute."""
    items = [_override(k, v) for k, v in overrides.items()] if isinstance(overrides, dict) else list(overrides)
    cfg = load_config(config, items, out="(set per job)")
    for key in PATH_KEYS:
        value = getattr(cfg, key)
        if value:
            setattr(cfg, key, str(Path(value).expanduser().resolve()))
    if cfg.init_from and Path(cfg.init_from).expanduser().exists():
        cfg.init_from = str(Path(cfg.init_from).expanduser().resolve())
    return cfg


def validate(cfg: TrainConfig) -> None:
    """The data loads and every split the training reads has samples; it has a modality the model reads
    (the base's, or the config's encoders'); a fine-tune's base loads and knows every label of the data (and
    of the replayed base data). Nothing is decoded or encoded here."""
    from ume_mma import finetune
    from ume_mma.checkpoint import load_config as load_model_config
    from ume_mma.data.format import load_dataset

    data = load_dataset(cfg.data)
    for split in (cfg.train_split, cfg.val_split, cfg.test_split):
        if not data.split(split).samples:
            raise DatasetFormatError(
                f"{cfg.data}: no {split!r} samples; training needs train, val and test samples "
                "(annotate more items, or export with other split fractions)"
            )
    if not cfg.init_from:  # a new task: its encoders load here and take the data's modalities, enough rows per label
        from ume_mma.newtask import check_new_task

        check_modalities(cfg.encoders, data.modalities, model="the config's model", data=cfg.data)
        check_new_task(data, cfg.encoders, cfg.data, (cfg.train_split, cfg.val_split, cfg.test_split))
    if cfg.init_from:
        base, _ = load_model_config(cfg.init_from)  # labels and modalities first: a misfit is refused at once
        check_modalities(base.modalities, data.modalities, model=f"init_from={cfg.init_from}", data=cfg.data)
        finetune.check_new_labels(data.labels, data.split(cfg.train_split).labels, base, cfg.data)
        had = {m for s in data.split(cfg.train_split).samples for m in s.present}
        if not had & set(base.modalities):  # absent modalities are skipped; none at all leaves nothing to learn
            raise DatasetFormatError(
                f"the training samples have {', '.join(sorted(had)) or 'no input'}, none of which the base "
                f"checkpoint uses ({', '.join(base.modalities)}): nothing to fine-tune on"
            )
        if cfg.base_data:
            finetune.check_labels(load_dataset(cfg.base_data).labels, base.labels, f"base_data {cfg.base_data}")
        finetune.load_base(cfg.init_from)  # then the weights load (or the job is refused)


def start_job(
    store: Store | JobStore,
    config_overrides: dict[str, Any] | list[str],
    runner: str = "local",
    *,
    config: str | os.PathLike[str] | None = None,
    options: dict[str, Any] | None = None,
    annotations: str | bool | None = None,
    owner: str | None = None,
    new_task: bool = False,
) -> int:
    """Queue a fine-tuning (or training) job and start it when its device is free; returns the job id.

    ``config``: a TOML/JSON file (optional); ``config_overrides``: ``{key: value}`` or ``["key=value"]``
    (e.g. ``{"init_from": "checkpoints/av-digits", "data": "exports/x", "replay": 0.3, "base_data": ...}``).
    ``annotations``: train on the store's current annotations (``True``: every queue; a name: that queue),
    exported into the job's folder. ``options``: runner options (``device`` for local; ``flavor``,
    ``image``, ``namespace``, ``data_repo``, ``model_repo`` for ``hf``). ``owner``: who starts it (the app's
    user; None from the CLI). ``new_task``: train a new task from scratch on the data's own labels (no
    ``init_from``; ``config_overrides`` a dict with ``encoders``, modality -> name or ``""`` to leave it out):
    checked and completed with defaults by size by :func:`ume_mma.newtask.task_overrides`.
    """
    jobs = job_store(store)
    run = get_runner(runner, jobs)
    staged = _stage_annotations(jobs, annotations) if annotations else None
    try:
        overrides = _with_data(config_overrides, staged)
        if new_task:
            from ume_mma.newtask import NewTaskError, task_overrides

            if not isinstance(overrides, dict):
                raise NewTaskError("a new task takes its settings as a dict of overrides")
            overrides = task_overrides(overrides)
        cfg = build_config(config, overrides)
        validate(cfg)
        options = dict(options or {})
        run.check(options)
        device = run.device(options)
        if runner == "local":
            options["device"] = device
            if device == "cuda":
                import torch

                options.setdefault("gpus", torch.cuda.device_count())
        job_id = jobs.add(cfg.to_dict(), runner, device, options, owner=owner)
    except BaseException:
        if staged is not None:
            shutil.rmtree(staged.parent, ignore_errors=True)
        raise
    _write_job_folder(jobs, job_id, staged)
    job = jobs.get(job_id)
    try:
        jobs.set(job_id, options={**job["options"], **run.prepare(job)})
    except Exception as exc:
        jobs.move(job_id, ["queued"], "failed", error=str(exc).splitlines()[0][:2000])
        raise
    run.dispatch(job["device"])
    return job_id


def _with_data(overrides: dict[str, Any] | list[str], staged: Path | None) -> dict[str, Any] | list[str]:
    if staged is None:
        return overrides
    return {**overrides, "data": str(staged)} if isinstance(overrides, dict) else [*overrides, f"data={staged}"]


def _stage_annotations(jobs: JobStore, annotations: str | bool) -> Path:
    """Export the store's annotations to a staging folder (an empty annotation set is an ``InputError``)."""
    from ume_mma.annotate.export import export

    jobs.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=jobs.root))
    try:
        export(jobs.store, staging / "data", queue=None if annotations is True else str(annotations))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging / "data"


def _write_job_folder(jobs: JobStore, job_id: int, staged: Path | None) -> None:
    """The job folder: ``config.json`` (the complete config) and, for annotations, ``data/``."""
    folder = jobs.folder(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    job = jobs.get(job_id)
    config = job["config"]
    if staged is not None:
        os.replace(staged, folder / "data")
        shutil.rmtree(staged.parent, ignore_errors=True)
        config = {**config, "data": str(folder / "data")}
        jobs.set(job_id, config=config)
    tmp = folder / ".config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, folder / "config.json")


def recover_jobs(store: Store | JobStore) -> None:
    """Bring running jobs up to date (a local job whose process is gone becomes ``interrupted``) and start
    queued jobs on free devices. The app calls it at start; status and list call it too."""
    jobs = job_store(store)
    for job in jobs.list(["running"]):
        get_runner(job["runner"], jobs).refresh(job)
    queued = {(job["runner"], job["device"]) for job in jobs.list(["queued"])}
    for runner, device in sorted(queued):
        get_runner(runner, jobs).dispatch(device)


def job_status(store: Store | JobStore, job_id: int, tail: int = 20) -> dict[str, Any]:
    """State, progress (phase, epoch/epochs, step/steps, loss, validation accuracy), the last ``tail``
    progress lines, per-phase progress (``bars``: :func:`~ume_mma.progress.phase_progress`), the points of a
    loss/accuracy plot (``curve``: :func:`~ume_mma.progress.progress_curve`), final metrics and the before/after
    evaluation of a job: ``before``/``after`` on the test split of its data, ``base_before``/``base_after`` on
    the test split of its ``base_data`` (when given)."""
    jobs = job_store(store)
    job = jobs.get(job_id)
    run = get_runner(job["runner"], jobs)
    if job["state"] == "running":
        run.refresh(job)
    elif job["state"] == "queued":  # its device may have been freed by a job whose process is gone
        recover_jobs(jobs)
    job = jobs.get(job_id)
    lines = list(events(run.progress_lines(job)))  # parsed once for the three summaries below
    summary = summarize_progress(lines, tail)
    recent = summary.pop("recent")
    metrics = job["metrics"] or {}
    record = metrics.get("finetune") or {}
    checkpoint = Path(job["out_dir"]) / "checkpoint"
    return {
        **{k: job[k] for k in ("id", "state", "runner", "device", "created_at", "started_at", "finished_at")},
        **{k: job[k] for k in ("exit_code", "error", "remote_id", "out_dir", "config", "options", "owner")},
        "queue_position": jobs.queue_position(job),
        "progress": summary,
        "recent": recent,
        "bars": phase_progress(lines),
        "curve": progress_curve(lines),
        "metrics": job["metrics"],
        "before": (record.get("before") or {}).get("accuracy") or summary["evals"].get("before"),
        "after": (record.get("after") or {}).get("accuracy") or summary["evals"].get("after"),
        "base_before": (record.get("base_before") or {}).get("accuracy") or summary["evals"].get("base_before"),
        "base_after": (record.get("base_after") or {}).get("accuracy") or summary["evals"].get("base_after"),
        "checkpoint": str(checkpoint) if (checkpoint / "config.json").is_file() else metrics.get("checkpoint"),
    }


def cancel_job(store: Store | JobStore, job_id: int) -> dict[str, Any]:
    """Cancel a queued job at once, or ask a running one to stop (SIGTERM: it saves its state at the next
    step and is then marked ``cancelled``). A finished job raises :class:`JobError`. Returns the job row."""
    jobs = job_store(store)
    job = jobs.get(job_id)
    if job["state"] in FINISHED:
        done = "was already cancelled" if job["state"] == "cancelled" else f"has already {job['state']}"
        raise JobError(f"job {job_id} {done}: there is nothing to cancel")
    if job["state"] in ("queued", "interrupted") and jobs.move(job_id, [job["state"]], "cancelled"):
        return jobs.get(job_id)
    run = get_runner(job["runner"], jobs)
    jobs.set(job_id, cancel_requested_at=jobs.clock())
    if not run.signal_cancel(job):
        jobs.move(job_id, ["running"], "cancelled")
    return jobs.get(job_id)


def resume_job(store: Store | JobStore, job_id: int) -> dict[str, Any]:
    """Queue an interrupted, cancelled or failed job again; it continues from its saved state (``--resume``)."""
    jobs = job_store(store)
    job = jobs.get(job_id)
    run = get_runner(job["runner"], jobs)
    if job["state"] in ACTIVE or job["state"] == "succeeded":
        now = "has succeeded" if job["state"] == "succeeded" else f"is {job['state']}"
        raise JobError(f"job {job_id} {now}: only an interrupted, cancelled or failed job can resume")
    if not run.resumable:
        raise JobError(f"job {job_id} ran on {job['runner']!r}, which keeps no state: start it again instead")
    reset = dict(resume=True, pid=None, process=None, finished_at=None, cancel_requested_at=None, exit_code=None)
    if not jobs.move(job_id, [job["state"]], "queued", error=None, **reset):
        raise JobError(f"job {job_id} changed state meanwhile; try again")
    run.dispatch(job["device"])
    return jobs.get(job_id)


def job_name(job_id: int) -> str:
    """A job's checkpoint by name: ``job-<id>`` (what the app shows instead of the folder's path)."""
    return f"job-{int(job_id)}"


def job_checkpoint(store: Store | JobStore, name: str) -> str | None:
    """The folder of the checkpoint named ``job-<id>`` (:func:`job_name`) when that job has one, else None."""
    match = re.fullmatch(r"job-(\d{1,18})", (name or "").strip())
    if match is None:
        return None
    folder = job_store(store).folder(int(match.group(1))) / "out" / "checkpoint"
    return str(folder) if (folder / "config.json").is_file() else None


def list_jobs(store: Store | JobStore) -> list[dict[str, Any]]:
    """Every job, newest first: id, state, runner, device, times, data, init_from, task, chosen model and
    accuracy."""
    jobs = job_store(store)
    recover_jobs(jobs)
    rows = []
    for job in jobs.list():
        test = ((job["metrics"] or {}).get("test") or {}).get("accuracy", {})
        rows.append(
            {k: job[k] for k in ("id", "state", "runner", "device", "created_at", "started_at", "finished_at", "owner")}
            | {"data": job["config"].get("data"), "init_from": job["config"].get("init_from")}
            | {"task": job["config"].get("task")}
            | {"chosen": (job["metrics"] or {}).get("chosen"), "test_full": test.get("full"), "error": job["error"]}
        )
    return rows


__all__ = ["InputError", "cancel_job", "job_status", "list_jobs", "recover_jobs", "resume_job", "start_job"]
