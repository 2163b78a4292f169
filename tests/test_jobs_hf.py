"""The Hugging Face Jobs runner against a mocked ``huggingface_hub.HfApi``: the uploads, the job's command line,
the token (from HF_TOKEN only, passed as a secret), status from inspect_job/fetch_job_logs, cancel_job."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from tests.jobsutil import job_overrides, make_base, make_data
from ume_mma.annotate import open_store
from ume_mma.errors import InputError
from ume_mma.jobs import JobStore, cancel_job, job_status, resume_job, start_job

TOKEN = "hf_test_token"
PROGRESS = [
    "Downloading...",
    json.dumps({"event": "phase", "phase": "mma", "epochs": 2, "steps": 3, "start_epoch": 0}),
    json.dumps({"event": "step", "phase": "mma", "epoch": 1, "step": 2, "steps": 3, "loss": 0.5}),
    json.dumps({"event": "eval", "name": "before", "accuracy": {"full": 0.25}}),
]


def _stage(stage: str, message: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(id="job-42", status=SimpleNamespace(stage=stage, message=message))


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with mock.patch("huggingface_hub.HfApi") as api_class:
        api = api_class.return_value
        api.whoami.return_value = {"name": "alice"}
        api.upload_folder.side_effect = [SimpleNamespace(oid=f"rev{i}") for i in range(10)]
        api.run_job.return_value = _stage("SCHEDULING")
        api.inspect_job.return_value = _stage("RUNNING")
        api.fetch_job_logs.side_effect = lambda **kw: iter(PROGRESS)
        yield api_class, api


@pytest.fixture
def inputs(tmp_path):
    return tmp_path, make_base(tmp_path / "base"), make_data(tmp_path / "data")


def _start(tmp_path, base, data, **options):
    store = open_store(tmp_path / "a.db")
    job_id = start_job(store, job_overrides(tmp_path, base, data, replay=0.5, base_data=str(data)), "hf",
                       options={"flavor": "t4-small", **options})  # fmt: skip
    return store, job_id


def test_submits_the_training_command_with_the_data_pushed_to_the_hub(hub, inputs):
    api_class, api = hub
    store, job_id = _start(*inputs)
    tmp_path, base, data = inputs
    assert {c.kwargs.get("token") for c in api_class.call_args_list} == {TOKEN}  # the token from HF_TOKEN
    data_repo, model_repo = f"alice/ume-mma-job-{job_id}-data", f"alice/ume-mma-tiny-job-{job_id}"
    uploads = [(c.kwargs["folder_path"], c.kwargs["path_in_repo"]) for c in api.upload_folder.call_args_list]
    assert uploads[:3] == [(str(data), "data"), (str(base), "base"), (str(data), "base_data")]
    assert [p for _, p in uploads[3:]] == ["code", None]
    assert {c.kwargs["repo_id"] for c in api.upload_folder.call_args_list} == {data_repo}
    assert api.upload_folder.call_args_list[3].kwargs["allow_patterns"][0] == "ume_mma/**/*.py"
    created = {(c.args[0], c.kwargs["repo_type"], c.kwargs["private"]) for c in api.create_repo.call_args_list}
    assert created == {(data_repo, "dataset", True), (model_repo, "model", True)}
    remote = json.loads((JobStore(store).folder(job_id) / "hub" / "job.json").read_text())
    assert (remote["data"], remote["init_from"], remote["base_data"], remote["out"]) == (
        "/job/data", "/job/base", "/job/base_data", "/job/out")  # fmt: skip
    assert remote["replay"] == 0.5 and remote["epochs"] == 2
    (call,) = api.run_job.call_args_list
    kw = call.kwargs
    assert kw["flavor"] == "t4-small" and kw["image"] == "python:3.11" and kw["secrets"] == {"HF_TOKEN": TOKEN}
    assert TOKEN not in json.dumps(kw["env"]) and TOKEN not in " ".join(kw["command"])
    assert kw["command"][:2] == ["bash", "-c"]
    script = kw["command"][2].splitlines()
    assert script == [
        "set -euo pipefail",
        "pip install --quiet --no-cache-dir huggingface_hub==2.4.0",
        f"hf download {data_repo} --repo-type dataset --revision rev4 --local-dir /job",
        "pip install --quiet --no-cache-dir -r /job/code/requirements.txt /job/code",
        "cd /job && python -m ume_mma.train /job/job.json --device cuda --progress /dev/stdout",
        f"python -m ume_mma.jobs push-model /job/out/checkpoint {model_repo}",
    ]
    status = job_status(store, job_id)
    assert (status["state"], status["remote_id"], status["device"]) == ("running", "job-42", "hf:t4-small")
    progress = status["progress"]
    assert (progress["phase"], progress["step"], progress["steps"], progress["loss"]) == ("mma", 2, 3, 0.5)
    assert status["before"] == {"full": 0.25}
    api.inspect_job.assert_called_with(job_id="job-42")
    api.fetch_job_logs.assert_called_with(job_id="job-42")


def test_status_follows_the_job_to_its_end(hub, inputs):
    _, api = hub
    store, job_id = _start(*inputs)
    api.inspect_job.return_value = _stage("COMPLETED")
    logs = [*PROGRESS, json.dumps({"event": "done", "chosen": "mma"})]
    api.fetch_job_logs.side_effect = lambda **kw: iter(logs)
    status = job_status(store, job_id)
    assert status["state"] == "succeeded" and status["metrics"]["chosen"] == "mma"
    assert status["checkpoint"] == f"hf-hub:alice/ume-mma-tiny-job-{job_id}"


def test_an_error_stage_is_a_failed_job_with_the_hub_message(hub, inputs):
    _, api = hub
    store, job_id = _start(*inputs)
    api.inspect_job.return_value = _stage("ERROR", "CUDA out of memory")
    status = job_status(store, job_id)
    assert status["state"] == "failed" and status["error"] == "CUDA out of memory"
    with pytest.raises(ValueError, match="has already failed: there is nothing to cancel"):
        cancel_job(store, job_id)
    with pytest.raises(ValueError, match="keeps no state: start it again"):
        resume_job(store, job_id)


def test_cancel_uses_cancel_job(hub, inputs):
    _, api = hub
    store, job_id = _start(*inputs)
    assert cancel_job(store, job_id)["state"] == "cancelled"
    api.cancel_job.assert_called_once_with(job_id="job-42")


def test_without_hf_token_nothing_is_uploaded_or_submitted(hub, inputs, monkeypatch):
    _, api = hub
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(InputError, match="HF_TOKEN"):
        _start(*inputs)
    assert not api.upload_folder.called and not api.run_job.called
    assert JobStore(open_store(inputs[0] / "a.db")).list() == []  # no job row either


def test_a_failed_upload_marks_the_job_failed(hub, inputs):
    from huggingface_hub.errors import HfHubHTTPError

    _, api = hub
    api.upload_folder.side_effect = HfHubHTTPError("403 Forbidden", response=mock.Mock(status_code=403))
    with pytest.raises(Exception, match="403 Forbidden"):
        _start(*inputs)
    store = open_store(Path(inputs[0]) / "a.db")
    (job,) = JobStore(store).list()
    assert job["state"] == "failed" and "403 Forbidden" in job["error"] and not api.run_job.called
