"""Fine-tuning jobs: a training config run in its own process (never in the caller's), its state in the
annotation database (table ``jobs``), its progress as JSON lines, on a registered runner: ``local`` (this
machine, one job per device, the rest queued) or ``hf`` (Hugging Face Jobs).

    store = open_store(default_db())   # ume_mma.home: $UME_MMA_HOME, /data on a Space, else the user data folder
    job_id = start_job(store, {"init_from": "checkpoints/av-digits", "data": "exports/x"})   # or annotations=True
    job_status(store, job_id)    # state, progress (phase, epoch, step, loss, val accuracy), metrics, before/after
    cancel_job(store, job_id)    # SIGTERM: the trainer saves its state; resume_job(store, job_id) continues
    list_jobs(store)

CLI: ``python -m ume_mma.jobs start|status|cancel|resume|list``.
"""

from ume_mma.jobs import hf, local  # noqa: F401  (the runners register themselves)
from ume_mma.jobs.api import (
    cancel_job,
    job_checkpoint,
    job_name,
    job_status,
    list_jobs,
    recover_jobs,
    resume_job,
    start_job,
)
from ume_mma.jobs.runners import RUNNERS, Runner, get_runner, register_runner
from ume_mma.jobs.store import JobError, JobStore

__all__ = [
    "RUNNERS",
    "JobError",
    "JobStore",
    "Runner",
    "cancel_job",
    "get_runner",
    "job_checkpoint",
    "job_name",
    "job_status",
    "list_jobs",
    "recover_jobs",
    "register_runner",
    "resume_job",
    "start_job",
]
