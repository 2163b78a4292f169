"""The ``hf`` runner: the same training command on Hugging Face Jobs (a GPU flavor), through ``ume_mma.hub``.

Before submitting, the job's inputs go to a private Hub dataset repo (``data_repo``): the dataset (``data/``),
a local base checkpoint (``base/``) and base dataset (``base_data/``), the code of this ``ume_mma`` (``code/``:
the job runs exactly the version that submitted it) and ``job.json`` (the config with the container's paths).
The job (``image``, default ``python:3.11``) downloads that commit, installs the code, trains with the
progress lines on stdout, and pushes the chosen checkpoint to the model repo ``model_repo`` itself. The token
is only read from ``HF_TOKEN`` and given to the job as a secret. ``status`` reads the job's stage and logs;
cancel is ``cancel_job``. A Hugging Face job keeps no state after it ends: it cannot be resumed.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from ume_mma import hub
from ume_mma.jobs.local import PACKAGE_PARENT
from ume_mma.jobs.runners import Runner, register_runner

DEFAULT_FLAVOR = "a10g-small"
DEFAULT_IMAGE = "python:3.11"
WORKDIR = "/job"
CODE_PATTERNS = ["ume_mma/**/*.py", "pyproject.toml", "requirements.txt", "README.md"]
STAGES = {"COMPLETED": "succeeded", "ERROR": "failed", "CANCELED": "cancelled", "DELETED": "cancelled"}


def remote_config(config: dict[str, Any]) -> dict[str, Any]:
    """The job's config with the container's paths (local inputs are uploaded under these names)."""
    remote = dict(config, data=f"{WORKDIR}/data", out=f"{WORKDIR}/out", cache_dir="/tmp/ume-mma-cache")
    if config.get("init_from") and Path(config["init_from"]).is_dir():
        remote["init_from"] = f"{WORKDIR}/base"
    if config.get("base_data"):
        remote["base_data"] = f"{WORKDIR}/base_data"
    return remote


def job_command(data_repo: str, revision: str, model_repo: str) -> list[str]:
    """The command the Hugging Face job runs: fetch the inputs, install the code, train, push the checkpoint."""
    q = shlex.quote
    steps = [
        "set -euo pipefail",
        "pip install --quiet --no-cache-dir huggingface_hub==2.4.0",
        f"hf download {q(data_repo)} --repo-type dataset --revision {q(revision)} --local-dir {WORKDIR}",
        f"pip install --quiet --no-cache-dir -r {WORKDIR}/code/requirements.txt {WORKDIR}/code",
        f"cd {WORKDIR} && python -m ume_mma.train {WORKDIR}/job.json --device cuda --progress /dev/stdout",
        f"python -m ume_mma.jobs push-model {WORKDIR}/out/checkpoint {q(model_repo)}",
    ]
    return ["bash", "-c", "\n".join(steps)]


@register_runner("hf")
class HfJobsRunner(Runner):
    exclusive = False  # the Hub runs each job on its own machine: submitted at once, never queued here
    resumable = False

    def device(self, options: dict[str, Any]) -> str:
        return f"hf:{options.get('flavor') or DEFAULT_FLAVOR}"

    def check(self, options: dict[str, Any]) -> None:
        hub.hf_token()  # a missing token is a clear error before anything is written or uploaded

    def prepare(self, job: dict[str, Any]) -> dict[str, Any]:
        """Upload the job's inputs to the dataset repo; create the model repo. Returns the options to keep."""
        options, config = dict(job["options"]), job["config"]
        owner = options.get("namespace") or hub.whoami()
        data_repo = options.get("data_repo") or f"{owner}/ume-mma-job-{job['id']}-data"
        model_repo = options.get("model_repo") or f"{owner}/ume-mma-{config['task']}-job-{job['id']}"
        uploads = [(config["data"], "data", None)]
        if config.get("init_from") and Path(config["init_from"]).is_dir():
            uploads.append((config["init_from"], "base", None))
        if config.get("base_data"):
            uploads.append((config["base_data"], "base_data", None))
        uploads.append((str(PACKAGE_PARENT), "code", CODE_PATTERNS))
        folder = self.jobs.folder(job["id"]) / "hub"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "job.json").write_text(json.dumps(remote_config(config), indent=2) + "\n")
        uploads.append((str(folder), None, ["job.json"]))
        revision = ""
        for local, path_in_repo, patterns in uploads:
            revision = hub.push_folder(local, data_repo, "dataset", path_in_repo, allow_patterns=patterns)
        hub.create_repo(model_repo, "model")
        return options | {"data_repo": data_repo, "model_repo": model_repo, "revision": revision}

    def dispatch(self, device: str) -> int | None:
        """Submit every queued job of ``device`` (a failed submission marks that job failed)."""
        started = None
        for job in self.jobs.list(["queued"]):
            if job["device"] != device:
                continue
            if self.jobs.move(job["id"], ["queued"], "running", started_at=self.jobs.clock()):
                self.launch(job)
                started = job["id"]
        return started

    def launch(self, job: dict[str, Any]) -> None:
        options = job["options"]
        command = job_command(options["data_repo"], options["revision"], options["model_repo"])
        flavor, image = options.get("flavor") or DEFAULT_FLAVOR, options.get("image") or DEFAULT_IMAGE
        env = {"PYTHONUNBUFFERED": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        try:
            remote = hub.run_job(image, command, flavor, env, labels={"ume-mma-job": str(job["id"])})
        except Exception as exc:
            self.jobs.move(job["id"], ["running"], "failed", error=str(exc).splitlines()[0][:2000])
            raise
        self.jobs.set(job["id"], remote_id=remote)

    def refresh(self, job: dict[str, Any]) -> None:
        """Map the job's stage: COMPLETED -> succeeded (the checkpoint is ``hf-hub:<model_repo>``), ERROR ->
        failed (with the Hub's message), CANCELED/DELETED -> cancelled; SCHEDULING and RUNNING stay running."""
        if job["state"] != "running" or not job["remote_id"]:
            return
        status = hub.inspect_job(job["remote_id"])
        state = STAGES.get(status["stage"])
        if state is None:
            return
        values: dict[str, Any] = {"error": status["message"]} if state == "failed" else {}
        if state == "succeeded":
            from ume_mma.progress import summarize_progress

            summary = summarize_progress(self.progress_lines(job))
            values["metrics"] = {"chosen": summary.get("chosen"), "evals": summary["evals"]}
            values["metrics"]["checkpoint"] = f"hf-hub:{job['options']['model_repo']}"
        self.jobs.move(job["id"], ["running"], state, **values)

    def signal_cancel(self, job: dict[str, Any]) -> bool:
        if job["remote_id"]:
            hub.cancel_job(job["remote_id"])
        return False  # the caller records the cancel: nothing of ours runs to do it

    def progress_lines(self, job: dict[str, Any]) -> list[str]:
        return hub.job_logs(job["remote_id"]) if job.get("remote_id") else []
